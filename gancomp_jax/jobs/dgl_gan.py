"""DGL-GAN job: stage 1 (narrow StyleGAN2) in ``WORKDIR/stage1``, then stage 2 (teacher-D
guidance, starting from stage 1's networks with fresh optimiser states) in ``WORKDIR/stage2``.

Each stage is an ordinary training run (exact resume, logs, exports); re-running the job
resumes the unfinished stage. Returns ``{'stage1': dir, 'stage2': dir, 'model': stage2/model}``.
"""

from __future__ import annotations

from pathlib import Path

import ml_collections


def stage_config(config, stage: int, workdir: Path) -> ml_collections.ConfigDict:
    """The training config of one stage (``job='train'``, ``method.stage``, its kimg)."""
    c = ml_collections.ConfigDict(config.to_dict())
    c.job = "train"
    m = c.method
    kimg = float(m.stage1_kimg if stage == 1 else m.stage2_kimg)
    del m["stage1_kimg"], m["stage2_kimg"]
    m.stage = stage
    if stage == 2:
        m.stage1 = str(workdir / "stage1")
    c.total_kimg = kimg
    c.total_steps = 0
    return c


def run(config, workdir: str):
    from gancomp_jax.train.trainer import train

    root = Path(workdir)
    if float(config.method.stage1_kimg) <= 0 or float(config.method.stage2_kimg) <= 0:
        raise ValueError("config.method.stage1_kimg and stage2_kimg must be positive")
    for stage in (1, 2):
        train(stage_config(config, stage, root), str(root / f"stage{stage}"))
    return {"stage1": str(root / "stage1"), "stage2": str(root / "stage2"), "model": str(root / "stage2" / "model")}
