"""Quickstart: the whole compression pipeline on the embedded digits dataset, as stages.

Stages run in order, each in ``WORKDIR/<stage>/``; re-running the command resumes an
interrupted stage and skips finished ones. A finished stage whose settings (or inputs) changed
since it ran is refused with the list of changed keys, never silently reused.

* ``train_teacher`` — (optional) trains the small StyleGAN2 teacher (``config.teacher``) from
  scratch; without it the teacher shipped with the package (``gancomp_jax/assets/digits_teacher``,
  made by this very stage) is used.
* ``prune``         — content-aware pruning of the teacher (``config.prune``).
* ``distil_*``      — distillation methods (``config.distil.<method>``) on the pruned student.
* ``evaluate``      — the report: teacher vs pruned vs distilled students (``config.evaluate``).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from absl import logging

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHIPPED_TEACHER = ASSETS / "digits_teacher"


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def changed_settings(old: dict, new: dict) -> list[str]:
    """``['key: old -> new', ...]`` for every differing leaf of two nested dicts."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k, "<unset>") != b.get(k, "<unset>")]


def _jsonable(x):
    return json.loads(json.dumps(x, default=str))


# ---------------------------------------------------------------------------------------------
# Stages: each returns (settings that define it, a runner). The runner gets the stage directory
# and the results of earlier stages and returns a JSON-able dict.


def _teacher_path(config, results: dict) -> str:
    if "train_teacher" in results:
        return results["train_teacher"]["model"]
    path = Path(config.teacher_model or SHIPPED_TEACHER)
    if not (path / "model.json").is_file():
        raise FileNotFoundError(f"quickstart teacher {path} is not a model directory; add the train_teacher "
                                f"stage (--config.stages=train_teacher,...) or set --config.teacher_model")
    return str(path)


def _stage_train_teacher(config, stage_dir: Path, results: dict) -> dict:
    from gancomp_jax.train.trainer import train

    result = train(config.teacher, stage_dir)
    return {"model": str(result.model_dir), "grid": str(result.grid_path), "kimg": result.kimg,
            "train_seconds": result.seconds, "peak_rss_gib": result.peak_rss_gib}


def _stage_prune(config, stage_dir: Path, results: dict) -> dict:
    from gancomp_jax.jobs import prune

    cfg = config.prune.copy_and_resolve_references()
    with cfg.unlocked():
        cfg.teacher = _teacher_path(config, results)
    return _jsonable(prune.run(cfg, str(stage_dir)))


def _pruned_student(results: dict) -> str:
    if "prune" not in results:
        raise ValueError("the distil stages start from the pruned student: put 'prune' before them in config.stages")
    return results["prune"]["model"]


def _method_config(config, section: str, results: dict):
    cfg = config[section].copy_and_resolve_references()
    with cfg.unlocked():
        cfg.method.teacher = _teacher_path(config, results)
        cfg.method.student = _pruned_student(results)
    return cfg


def _stage_distil_nickel_dime(config, stage_dir: Path, results: dict) -> dict:
    from gancomp_jax.train.trainer import train

    result = train(_method_config(config, "nickel_dime", results), stage_dir)
    return {"model": str(result.model_dir), "grid": str(result.grid_path), "kimg": result.kimg,
            "train_seconds": result.seconds}


def _stage_distil_dgl_gan(config, stage_dir: Path, results: dict) -> dict:
    from gancomp_jax.jobs import dgl_gan

    t0 = time.time()
    out = dgl_gan.run(_method_config(config, "dgl_gan", results), str(stage_dir))
    return {**out, "train_seconds": time.time() - t0}


def _stage_evaluate(config, stage_dir: Path, results: dict) -> dict:
    from gancomp_jax.jobs import report

    cfg = config.evaluate.copy_and_resolve_references()
    students = {"pruned": _pruned_student(results)}
    for stage, name in (("distil_nickel_dime", "nickel_dime"), ("distil_dgl_gan", "dgl_gan")):
        if stage in results:
            students[name] = results[stage]["model"]
    out = report.make_report(
        _teacher_path(config, results), students, stage_dir, metrics=cfg.metrics, data=cfg.data,
        num_gen=int(cfg.num_gen) or None, seeds=cfg.seeds, batch_size=int(cfg.batch_size),
        speed_batch=int(cfg.speed_batch), seed=int(cfg.seed), progress=bool(cfg.progress))
    print(report.markdown_table(out["rows"]))
    return {"report": str(out["markdown"]), "grid": str(out["grid"]), "plot": str(out["plot"])}


STAGES: dict[str, tuple[str, Callable[..., dict]]] = {
    # stage -> (config section that defines it, runner)
    "train_teacher": ("teacher", _stage_train_teacher),
    "prune": ("prune", _stage_prune),
    "distil_nickel_dime": ("nickel_dime", _stage_distil_nickel_dime),
    "distil_dgl_gan": ("dgl_gan", _stage_distil_dgl_gan),
    "evaluate": ("evaluate", _stage_evaluate),
}


def _inputs(stage: str, config, results: dict) -> dict:
    """What a stage reads from outside its own config section (part of its fingerprint)."""
    if stage == "train_teacher":
        return {}
    inputs = {"teacher": _teacher_path(config, results)}
    for name, res in results.items():
        if name != stage and isinstance(res, dict) and "model" in res:
            inputs[f"{name}.model"] = res["model"]
    return inputs


def run(config, workdir: str):
    stages = [s.strip() for s in config.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown quickstart stage(s) {unknown}; available: {list(STAGES)}")
    work = Path(workdir).absolute()
    from gancomp_jax.utils.atomic_dir import check_workdir, write_marker

    if not any((work / s / "DONE.json").is_file() for s in STAGES):  # else: an earlier quickstart, resumed
        check_workdir(work, ("summary.json", *STAGES))  # new, empty or ours: never a folder of other files
    write_marker(work, "quickstart")
    t0 = time.time()
    results: dict[str, dict] = {}
    for stage in stages:
        section, runner = STAGES[stage]
        stage_dir = work / stage
        settings = {section: _jsonable(config[section].to_dict()), "inputs": _inputs(stage, config, results)}
        done_marker = stage_dir / "DONE.json"
        if done_marker.is_file():
            done = json.loads(done_marker.read_text())
            changes = changed_settings(done.get("settings", {}), settings)
            if changes:
                raise ValueError(
                    f"quickstart stage '{stage}' in {stage_dir} already ran with other settings "
                    f"({'; '.join(changes[:8])}{' ...' if len(changes) > 8 else ''}); to redo it, delete "
                    f"{stage_dir} and the stages after it, or use a new --workdir")
            logging.info("stage %s already done (%s)", stage, done_marker)
            results[stage] = done["result"]
            continue
        logging.info("stage %s → %s", stage, stage_dir)
        stage_dir.mkdir(parents=True, exist_ok=True)
        results[stage] = _jsonable(runner(config, stage_dir, results))
        done_marker.write_text(json.dumps({"settings": settings, "result": results[stage]}, indent=2))
    wall = time.time() - t0
    (work / "summary.json").write_text(json.dumps({"stages": results, "wall_seconds": wall}, indent=2))
    grid = results.get("train_teacher", {}).get("grid")
    if grid:
        shutil.copyfile(grid, work / "teacher_grid.png")
    final = results.get("evaluate", {}).get("report") or str(work / "summary.json")
    print(f"quickstart finished in {wall / 60:.1f} min; report: {final}")
    return results
