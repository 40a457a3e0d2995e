"""Quickstart: the whole compression pipeline on the embedded digits dataset, as stages.

Stages run in order, each in ``WORKDIR/<stage>/``; re-running the command resumes an
interrupted stage and skips finished ones. Today's stages:

* ``train_teacher`` — trains a small StyleGAN2 teacher (``config.teacher``) from scratch.

Later stages (prune → distil → evaluate) plug in here, reading the previous stage's outputs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from absl import logging

from gancomp_jax.train.trainer import train

STAGES = ("train_teacher",)


def _stage_train_teacher(config, stage_dir: Path) -> dict:
    result = train(config.teacher, stage_dir)
    return {"model": str(result.model_dir), "grid": str(result.grid_path), "kimg": result.kimg,
            "train_seconds": result.seconds, "peak_rss_gib": result.peak_rss_gib}


RUNNERS = {"train_teacher": _stage_train_teacher}


def run(config, workdir: str):
    stages = [s.strip() for s in config.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in RUNNERS]
    if unknown:
        raise ValueError(f"unknown quickstart stage(s) {unknown}; available: {list(RUNNERS)}")
    work = Path(workdir).absolute()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    summary = {}
    for stage in stages:
        stage_dir = work / stage
        done_marker = stage_dir / "DONE.json"
        if done_marker.is_file():
            logging.info("stage %s already done (%s)", stage, done_marker)
            summary[stage] = json.loads(done_marker.read_text())
            continue
        logging.info("stage %s → %s", stage, stage_dir)
        summary[stage] = RUNNERS[stage](config, stage_dir)
        done_marker.write_text(json.dumps(summary[stage], indent=2))
    grid = summary.get("train_teacher", {}).get("grid")
    if grid:
        shutil.copyfile(grid, work / "teacher_grid.png")
    wall = time.time() - t0
    (work / "summary.json").write_text(json.dumps({"stages": summary, "wall_seconds": wall}, indent=2))
    print(f"quickstart finished in {wall / 60:.1f} min: teacher samples {work / 'teacher_grid.png'}, "
          f"teacher model {summary.get('train_teacher', {}).get('model')}")
    return summary
