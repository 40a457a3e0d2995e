#!/usr/bin/env python
"""Every compression method on the digits teacher trained to a plateau: same students, same image
budget, two seeds, curves, one table.

    python tools/compare_methods.py OUT [--kimg_cap 40] [--caps itgc=30,...] [--chunk_kimg 8]
        [--eval_every_kimg 2] [--patience 4] [--plateau_tol 0.02] [--seeds 0,1]
        [--ratios 0.7,0.9] [--methods a,b,...] [--num_gen 2000] [--eval_num_gen 1000]

1. **Students.** Prunes the teacher (default: the shipped ``gancomp_jax/assets/digits_teacher``,
   small32) at every ratio of ``--ratios`` with the content-aware criterion
   (``OUT/students/r<ratio>/prune``; the quickstart's settings), with DCP-GAN's ``dcp`` criterion
   (``.../prune_dcp``, ``experiments/dcp_gan.py:digits``) and applies SVS to the DCP student
   (``.../svs_init``). A uniform ratio gives every student the same widths, so the same MACs
   (ratio 0.7: 3.66 M MACs). The first ratio is the comparison's: every method runs there; the
   others only for ``RATIO_SUBSET`` (NICKEL & DiME, DCP + SVS, CAGC KD). Only the students a
   ratio's methods need are built.
2. **Runs.** One run per method × ratio × seed in ``OUT/runs/<method>@<ratio>/seed<seed>``: the
   method's ``digits`` variant (``experiments/<method>.py:digits``, ``config.seed`` = seed) with
   the eval hook (:mod:`gancomp_jax.metrics.hook`) logging ``Eval/fid_digits`` on
   ``--eval_num_gen`` images every ``--eval_every_kimg`` kimg. A run is a resumable chunked loop:
   train to the next ``--chunk_kimg`` (``total_kimg`` raised in the same workdir, so the trainer
   resumes exactly from the checkpoint it sealed at the end of the previous chunk), read
   ``metrics.jsonl``, decide (:func:`plateau_decision`): stop when the best fid_digits of the
   last ``--patience`` evaluations is not lower than the best before them by more than the
   relative ``--plateau_tol``, or at the method's kimg cap (``--kimg_cap``, ``--caps``).
   The same cap, chunk and evaluation schedule (so the same image budget) for every method.

   Chained methods are chunked in their **last** stage only: DGL-GAN's stage 1 (plain StyleGAN2
   of the pruned student, ``method.init=pruned``) trains a fixed 2/5 of the cap first, then
   stage 2 (teacher-D guidance) is chunked; GAN Slimming's sparsity training of the full-width
   student (1/3 of the cap) and its ``gan_slimming`` pruning run first, then the fine-tuning
   stage 3 is chunked. Their curves start after the fixed stages (kimg counts every stage's
   images, so the cap is the same total budget); the fixed stages are not evaluated.

   ``OUT/runs/.../state.json`` (written atomically after every chunk) records the settings,
   chunks, curve and decision; a finished run is skipped on re-runs, an interrupted one goes on
   from its last chunk (the trainer from its last checkpoint), a failed one is recorded and
   retried on the next invocation while the others go on. Settings that differ from a run's
   state (chunk, schedule, teacher, student) are refused: use a new OUT. The cap alone may be
   raised on the same OUT (``--kimg_cap 80`` after 40): runs that stopped at the old cap go on
   from their last chunk, plateau stops stay stopped, a lower cap is refused. A chained method
   keeps the fixed-stage length of the cap it started with (``split_cap_kimg`` in its state).
   A tqdm bar over all chunks of all runs shows the ETA of the whole comparison (a run that stops
   at a plateau removes its remaining chunks from the total).
3. **Report.** :func:`gancomp_jax.jobs.report.make_report` on the teacher, the untrained students
   and every run's final ``model/`` (``OUT/report``: fid_digits on ``--num_gen`` images, class
   coverage, MACs, images/s, ``grid.png`` with one row per model). Then ``OUT/report.md`` and
   ``OUT/report.json`` (mean, min and max over seeds per method and ratio, per-seed values,
   kimg trained, stop reasons), ``OUT/curves.png`` (fid_digits vs kimg: one line per method,
   mean over seeds and min–max band) and ``OUT/quality_vs_macs.png`` (log x when the MACs span
   more than a factor of 20).

``--kimg K`` keeps the earlier fixed-budget behaviour (cap = chunk = K: one chunk per run).
The final model of a run is its last ``model/``; the table also gives each run's best curve
value (the trainer's ``best_model/`` keeps that model across chunks, for whoever wants it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "tools"]   # tools/profile.py vs stdlib
sys.path.insert(0, str(ROOT))

EXPERIMENTS = ROOT / "experiments"

# name -> (experiment file, kind, student)
#   kind: 'train' (one training run), 'dgl_gan' / 'gan_slimming' (chained jobs)
#   student: which pruned model it starts from ('prune', 'prune_dcp', 'svs_init'; None: own chain)
METHODS: dict[str, tuple[str, str, str | None]] = {
    "nickel_dime": ("nickel_dime", "train", "prune"),
    "dgl_gan": ("dgl_gan", "dgl_gan", "prune"),
    "cagc_kd": ("cagc_kd", "train", "prune"),
    "stylekd": ("stylekd", "train", "prune"),
    "itgc": ("itgc", "train", "prune"),
    "gan_slimming": ("gan_slimming", "gan_slimming", None),
    "dcp_gan": ("stylekd", "train", "prune_dcp"),
    "svs": ("stylekd", "train", "svs_init"),
}
LABELS = {"pruned": "pruned (untrained)", "nickel_dime": "NICKEL & DiME", "dgl_gan": "DGL-GAN",
          "cagc_kd": "CAGC KD", "stylekd": "StyleKD", "itgc": "ITGC", "gan_slimming": "GAN Slimming",
          "dcp_gan": "DCP-GAN (+StyleKD)", "svs": "SVS (DCP + SVS + StyleKD)"}
RATIO_SUBSET = ("nickel_dime", "svs", "cagc_kd")   # the methods also run at the other ratios
PRE_SPLIT = {"dgl_gan": 2 / 5, "gan_slimming": 1 / 3}   # fixed first stage(s): share of the cap
METRIC = "fid_digits"
KEY = f"Eval/{METRIC}"


def experiment_config(name: str, variant: str = "digits"):
    """``get_config(variant)`` of ``experiments/<name>.py``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"_compare_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def kimg_of(kimg: float, batch: int) -> float:
    """The images a trainer run of ``kimg`` sees: ceil(kimg * 1000 / B) steps of batch B, in kimg."""
    return math.ceil(round(float(kimg) * 1000 / batch, 9)) * batch / 1000


# --------------------------------------------------------------------------- students


def prune_students(teacher: str, out: Path, *, ratio: float, n_sample: int, dcp_n_sample: int,
                   needed=("prune", "prune_dcp", "svs_init"), log=print) -> dict[str, str]:
    """The content-aware, DCP and DCP+SVS students of ``teacher`` at ``ratio`` in ``out``
    (only those ``needed``; skipped when already there)."""
    from gancomp_jax.jobs import prune

    needed = set(needed) | ({"prune_dcp"} if "svs_init" in needed else set())
    paths = {"prune": out / "prune" / "model", "prune_dcp": out / "prune_dcp" / "model",
             "svs_init": out / "svs_init" / "model"}
    if "prune" in needed and not (paths["prune"] / "model.json").is_file():
        log(f"[prune] content_aware ratio {ratio} -> {paths['prune'].parent}")
        c = prune.default_config()           # the quickstart's prune stage
        c.teacher, c.criterion, c.mask, c.ratio = teacher, "content_aware", "none", ratio
        c.n_sample, c.batch_size, c.overwrite = n_sample, 16, True
        prune.run(c, str(paths["prune"].parent))
    if "prune_dcp" in needed and not (paths["prune_dcp"] / "model.json").is_file():
        log(f"[prune] dcp ratio {ratio} -> {paths['prune_dcp'].parent}")
        c = experiment_config("dcp_gan", "digits")
        c.teacher, c.ratio, c.n_sample, c.overwrite = teacher, ratio, dcp_n_sample, True
        prune.run(c, str(paths["prune_dcp"].parent))
    if "svs_init" in needed and not (paths["svs_init"] / "model.json").is_file():
        from gancomp_jax.prune.svs import svs_model
        log(f"[svs] singular value scaling of {paths['prune_dcp']} -> {paths['svs_init']}")
        svs_model(str(paths["prune_dcp"]), str(paths["svs_init"]), overwrite=True)
    return {k: str(v) for k, v in paths.items() if k in needed}


# --------------------------------------------------------------------------- one run


def method_config(name: str, teacher: str, students: dict[str, str], *, seed: int = 0, ratio: float = 0.7,
                  eval_every_kimg: float = 0.0, eval_num_gen: int = 1000, cap: float = 0.0):
    """The digits config of one method: teacher, student, seed and the eval hook set; chained
    methods' fixed stage gets ``PRE_SPLIT`` of ``cap`` (the chunked stage's kimg is set per chunk)."""
    exp, kind, student = METHODS[name]
    c = experiment_config(exp, "digits")
    c.method.teacher = teacher
    if student is not None:
        c.method.student = students[student]
    c.seed = int(seed)
    c.total_steps = 0
    c.progress = False                   # the comparison has its own bar
    if eval_every_kimg > 0:
        c.eval.every_kimg = float(eval_every_kimg)
        c.eval.hooks = ("gancomp_jax.metrics.hook:make_hook",)
        c.eval.metrics = METRIC
        c.eval.best_metric = METRIC
        c.eval.num_gen = int(eval_num_gen)
    if kind == "dgl_gan":
        c.method.init = "pruned"
        c.method.stage1_kimg = cap * PRE_SPLIT[name]
    elif kind == "gan_slimming":
        c.method.stage1_kimg = cap * PRE_SPLIT[name]
        c.prune.ratio = float(ratio)     # its own pruning stage, at the comparison's ratio
    return c


def pre_kimg(name: str, config) -> float:
    """Images (kimg) of a method's fixed stages before the chunked one (0 for single runs)."""
    kind = METHODS[name][1]
    return kimg_of(config.method.stage1_kimg, config.batch_size) if kind != "train" else 0.0


def train_chunk(name: str, config, workdir: Path, target_kimg: float) -> dict:
    """Trains ``name`` in ``workdir`` until ``target_kimg`` kimg in all (resuming what is there).

    Returns ``{'model': final model dir, 'metrics': metrics.jsonl of the chunked stage,
    'offset_kimg': kimg before that stage, 'batch': B}``.
    """
    import ml_collections

    from gancomp_jax.train.trainer import train
    kind, B = METHODS[name][1], int(config.batch_size)
    if kind == "train":
        c = ml_collections.ConfigDict(config.to_dict())
        c.total_kimg = float(target_kimg)
        r = train(c, str(workdir))
        return {"model": str(r.model_dir), "metrics": str(workdir / "metrics.jsonl"), "offset_kimg": 0.0, "batch": B}
    from gancomp_jax.jobs import dgl_gan, gan_slimming
    job = dgl_gan if kind == "dgl_gan" else gan_slimming
    pre = pre_kimg(name, config)
    last_key, last_stage = ("stage2_kimg", 2) if kind == "dgl_gan" else ("stage3_kimg", 3)
    c = ml_collections.ConfigDict(config.to_dict())
    c.method[last_key] = max(float(target_kimg) - pre, 1e-6)
    if not (workdir / "stage1" / "model" / "model.json").is_file():
        s1 = job.stage_config(c, 1, workdir)
        s1.eval.every_kimg, s1.eval.hooks, s1.eval.best_metric = 0.0, (), ""   # fixed stage: not evaluated
        train(s1, str(workdir / "stage1"))
    if kind == "gan_slimming" and not (workdir / "stage2" / "model" / "model.json").is_file():
        from gancomp_jax.jobs import prune as prune_job
        prune_job.run(gan_slimming.prune_config(c, workdir), str(workdir / "stage2"))
    stage = workdir / f"stage{last_stage}"
    r = train(job.stage_config(c, last_stage, workdir), str(stage))
    return {"model": str(r.model_dir), "metrics": str(stage / "metrics.jsonl"), "offset_kimg": pre, "batch": B}


def read_curve(metrics: str | Path, batch: int, offset_kimg: float = 0.0, key: str = KEY) -> list[list[float]]:
    """``[[kimg, value], ...]`` of ``key`` in a metrics.jsonl (by step, last record of a step wins)."""
    by_step: dict[int, float] = {}
    path = Path(metrics)
    if not path.is_file():
        return []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue                          # a line cut by a kill
        if key in rec and rec[key] is not None and math.isfinite(float(rec[key])):
            by_step[int(rec["step"])] = float(rec[key])
    return [[round(offset_kimg + s * batch / 1000, 6), v] for s, v in sorted(by_step.items())]


def plateau_decision(curve: list, kimg: float, cap: float, patience: int, tol: float) -> str | None:
    """Why a run stops now, or None to go on.

    ``curve``: ``[[kimg, fid], ...]`` (lower is better). 'plateau': at least ``patience + 1``
    evaluations and min(last ``patience``) > (1 − ``tol``) · min(those before) — the best value
    did not improve by more than the relative ``tol`` over the last ``patience`` evaluations.
    'cap': ``kimg`` reached ``cap``.
    """
    vals = [v for _, v in curve]
    if patience > 0 and len(vals) > patience:
        before, recent = min(vals[:-patience]), min(vals[-patience:])
        if recent > before * (1.0 - tol):
            return "plateau"
    if kimg >= cap - 1e-9:
        return "cap"
    return None


def _write_json(path: Path, obj) -> None:
    from gancomp_jax.utils.atomic_dir import replace_file
    replace_file(path, json.dumps(obj, indent=2, default=str).encode())


def chunk_targets(pre: float, cap: float, chunk: float) -> list[float]:
    """The total-kimg targets of a run's chunks: pre + chunk, pre + 2·chunk, ..., cap."""
    n = max(1, math.ceil(round((cap - pre) / chunk, 9)))
    return [min(cap, pre + chunk * (i + 1)) for i in range(n)]


EXTENSIBLE = ("cap_kimg", "split_cap_kimg")   # settings a later invocation may change (the cap may rise)


def _previous_state(workdir: Path) -> dict | None:
    path = workdir / "state.json"
    return json.loads(path.read_text()) if path.is_file() else None


def split_cap(prev: dict | None, cap: float) -> float:
    """The cap that sets a chained method's fixed stage: the one its run started with."""
    ps = (prev or {}).get("settings") or {}
    return float(ps.get("split_cap_kimg", ps.get("cap_kimg", cap)))


def extends(prev: dict | None, cap: float) -> bool:
    """Whether ``cap`` lets a run that stopped at its earlier cap go on."""
    ps = (prev or {}).get("settings") or {}
    return bool(prev) and prev.get("stop") == "cap" and cap > float(ps.get("cap_kimg", cap)) + 1e-9


def run_one(name: str, config, workdir: Path, settings: dict, *, cap: float, chunk: float, patience: int,
            tol: float, runner: Callable = None, on_chunk=lambda: None, log=print) -> dict:
    """The chunked loop of one run (see module docstring); returns its state (also in state.json)."""
    runner = runner or train_chunk
    state_path = workdir / "state.json"
    state = {"settings": settings, "chunks": [], "curve": [], "done": False, "stop": None, "model": None,
             "kimg": 0.0, "train_seconds": 0.0}
    if state_path.is_file():
        prev = json.loads(state_path.read_text())
        ps = prev.get("settings") or {}
        fixed = lambda d: {k: v for k, v in d.items() if k not in EXTENSIBLE}
        if fixed(ps) != fixed(settings):
            raise ValueError(f"{state_path} was made with {ps}, not {settings}; use a new OUT "
                             f"directory (or delete {workdir})")
        if cap < float(ps.get("cap_kimg", cap)) - 1e-9:
            raise ValueError(f"{state_path}: this run has a cap of {ps['cap_kimg']:g} kimg; a lower cap ({cap:g}) "
                             f"needs a new OUT directory")
        extended = extends(prev, cap)
        state.update(prev)
        state["settings"] = {**settings, "split_cap_kimg": split_cap(prev, cap)}
        state.pop("error", None)
        if extended:
            state.update(done=False, stop=None)
            log(f"{workdir.parent.name}/{workdir.name}: cap raised {ps['cap_kimg']:g} -> {cap:g} kimg; going on "
                f"from {state['kimg']:.2f} kimg")
    else:
        state["settings"] = {**settings, "split_cap_kimg": cap}
    if state["done"]:
        return state
    workdir.mkdir(parents=True, exist_ok=True)
    done_target = state["chunks"][-1]["target_kimg"] if state["chunks"] else -math.inf
    targets = chunk_targets(pre_kimg(name, config), cap, chunk)
    for target in [t for t in targets if t > done_target + 1e-9]:
        t0 = time.time()
        r = runner(name, config, workdir, target)
        dt = time.time() - t0
        kimg = r["offset_kimg"] + kimg_of(target - r["offset_kimg"], r["batch"])
        state["chunks"].append({"target_kimg": target, "kimg": kimg, "seconds": dt})
        state["curve"] = read_curve(r["metrics"], r["batch"], r["offset_kimg"])
        state.update(model=r["model"], kimg=kimg, train_seconds=state["train_seconds"] + dt)
        stop = plateau_decision(state["curve"], target, cap, patience, tol)
        state.update(done=stop is not None, stop=stop)
        _write_json(state_path, state)
        on_chunk()
        last = state["curve"][-1][1] if state["curve"] else float("nan")
        log(f"{workdir.parent.name}/{workdir.name}: {kimg:.2f} kimg, {METRIC} {last:.2f}, "
            f"{dt:.0f} s{'; stop: ' + stop if stop else ''}")
        if stop:
            break
    return state


def plan_runs(methods: list[str], ratios: list[float], seeds: list[int]) -> list[tuple[str, float, int]]:
    """(method, ratio, seed) of every run: all methods at ratios[0], RATIO_SUBSET at the others.

    Seed-major within a ratio (every method's first seed before any second seed), so that an
    interrupted comparison already has one complete table for its first ratio and seed.
    """
    runs = []
    for i, ratio in enumerate(ratios):
        for s in seeds:
            runs += [(m, ratio, s) for m in methods if i == 0 or m in RATIO_SUBSET]
    return runs


def run_dir(out: Path, method: str, ratio: float, seed: int) -> Path:
    return out / "runs" / f"{method}@{ratio:g}" / f"seed{seed}"


def train_all(runs, teacher: str, students: dict[float, dict[str, str]], out: Path, *, caps: dict[str, float],
              chunk: float, eval_every: float, eval_num_gen: int, patience: int, tol: float,
              runner: Callable = None, progress: bool = True, log=print) -> dict[tuple, dict]:
    """Every run of ``runs`` (skipping finished ones); ``{(method, ratio, seed): state or {'error'}}``."""
    from tqdm import tqdm

    configs, totals, done_chunks = {}, 0, 0
    for m, ratio, seed in runs:
        prev = _previous_state(run_dir(out, m, ratio, seed))
        c = method_config(m, teacher, students[ratio], seed=seed, ratio=ratio, eval_every_kimg=eval_every,
                          eval_num_gen=eval_num_gen, cap=split_cap(prev, caps[m]))
        c.compilation_cache_dir = str(out / "xla_cache")   # one persistent XLA cache for all runs and chunks
        configs[(m, ratio, seed)] = c
        n = len(chunk_targets(pre_kimg(m, c), caps[m], chunk))
        k = 0
        if prev:
            k = min(n, len(prev.get("chunks", [])))
            n = k if prev.get("done") and not extends(prev, caps[m]) else n
        totals, done_chunks = totals + n, done_chunks + k
    bar = tqdm(total=totals, initial=done_chunks, unit="chunk", desc="comparison", disable=not progress,
               dynamic_ncols=True, smoothing=0.0)
    results = {}
    try:
        for key in runs:
            m, ratio, seed = key
            wd = run_dir(out, m, ratio, seed)
            c = configs[key]
            student = METHODS[m][2]
            settings = {"method": m, "ratio": ratio, "seed": seed, "teacher": teacher,
                        "student": students[ratio].get(student) if student else None, "cap_kimg": caps[m],
                        "chunk_kimg": chunk, "eval_every_kimg": eval_every, "eval_num_gen": eval_num_gen,
                        "patience": patience, "plateau_tol": tol,
                        "split_cap_kimg": split_cap(_previous_state(wd), caps[m])}
            n_total = len(chunk_targets(pre_kimg(m, c), caps[m], chunk))
            bar.set_description(f"{m}@{ratio:g} seed {seed}")
            try:
                st = run_one(m, c, wd, settings, cap=caps[m], chunk=chunk, patience=patience, tol=tol,
                             runner=runner, on_chunk=lambda: bar.update(1), log=bar.write if progress else log)
            except ValueError:
                raise
            except Exception as e:  # noqa: BLE001 — one run's failure is a result of the comparison
                err = f"{type(e).__name__}: {e}".splitlines()[0][:300]
                wd.mkdir(parents=True, exist_ok=True)
                prev = json.loads((wd / "state.json").read_text()) if (wd / "state.json").is_file() else {}
                _write_json(wd / "state.json", {**prev, "settings": settings, "error": err,
                                                "traceback": traceback.format_exc()})
                results[key] = {"error": err}
                (bar.write if progress else log)(f"{m}@{ratio:g} seed {seed}: FAILED: {err}")
                continue
            if st["done"] and len(st["chunks"]) < n_total:     # stopped early: fewer chunks to go
                bar.total -= n_total - len(st["chunks"])
                bar.refresh()
            results[key] = st
    finally:
        bar.close()
    return results


# --------------------------------------------------------------------------- aggregation, plots, table


def _stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return sum(vals) / len(vals), min(vals), max(vals)


def aggregate(report_rows: list[dict], results: dict[tuple, dict], students_by_name: dict[str, str]) -> list[dict]:
    """One row per teacher, untrained student and method × ratio: mean / min / max over seeds."""
    by_name = {r["name"]: r for r in report_rows}
    rows = []

    def base(label, r):
        return dict(label=label, macs=r and r["macs"], params=r and r["params"],
                    compression_rate=r and r["compression_rate"], images_per_second=r and r["images_per_second"])

    t = by_name.get("teacher")
    fid = t and t["metrics"].get(METRIC)
    rows.append(dict(method="teacher", ratio=None, seeds=[], **base("teacher", t), fid_mean=fid, fid_min=fid,
                     fid_max=fid, coverage_mean=t and t["metrics"].get("digits_coverage"), per_seed={},
                     curves={}, errors={}))
    for name in students_by_name:
        r = by_name.get(name)
        fid = r and r["metrics"].get(METRIC)
        rows.append(dict(method="pruned", ratio=float(name.split("@")[1]), seeds=[], **base(f"{name} (untrained)", r),
                         fid_mean=fid, fid_min=fid, fid_max=fid,
                         coverage_mean=r and r["metrics"].get("digits_coverage"), per_seed={}, curves={}, errors={}))
    groups: dict[tuple, list] = {}
    for (m, ratio, seed), st in results.items():
        groups.setdefault((m, ratio), []).append((seed, st))
    for (m, ratio), items in groups.items():
        per_seed, curves, errors, r0 = {}, {}, {}, None
        for seed, st in sorted(items):
            if "error" in st:
                errors[seed] = st["error"]
                continue
            r = by_name.get(f"{m}@{ratio:g}/s{seed}")
            r0 = r0 or r
            best = min((v for _, v in st["curve"]), default=None)
            per_seed[seed] = dict(fid=r and r["metrics"].get(METRIC),
                                  coverage=r and r["metrics"].get("digits_coverage"), kimg=st["kimg"],
                                  stop=st["stop"], train_seconds=st["train_seconds"], best_curve_fid=best,
                                  model=st["model"])
            curves[seed] = st["curve"]
        fm, fmin, fmax = _stats([p["fid"] for p in per_seed.values()])
        rows.append(dict(method=m, ratio=ratio, seeds=sorted(per_seed), **base(LABELS.get(m, m), r0),
                         fid_mean=fm, fid_min=fmin, fid_max=fmax,
                         coverage_mean=_stats([p["coverage"] for p in per_seed.values()])[0],
                         per_seed=per_seed, curves=curves, errors=errors))
    return rows


def markdown(rows: list[dict], info: dict) -> str:
    f = lambda v, fmt: "" if v is None else format(v, fmt)
    head = ["method", "ratio", f"{METRIC} ↓ mean [min, max]", "per seed", "class coverage", "MACs",
            "compression", "kimg per seed (stop)", "best curve", "train s", "error"]
    lines = [f"{METRIC} on {info['num_gen']} generated images of each run's final model (digits classifier "
             f"features vs all real digits); class coverage = Σ_k min(share_k, 0.1); mean, min and max over "
             f"seeds {info['seeds']}. Each run trains in chunks of {info['chunk_kimg']:g} kimg up to its cap "
             f"({info['caps_text']}), evaluated every {info['eval_every_kimg']:g} kimg on {info['eval_num_gen']} "
             f"images, and stops when its best {METRIC} did not improve by more than {100 * info['plateau_tol']:g} % "
             f"over the last {info['patience']} evaluations ('plateau') or at the cap ('cap'). best curve: the "
             f"lowest logged {METRIC} (mean over seeds; {info['eval_num_gen']} images). MACs: multiply-accumulates "
             f"per image; compression = 1 − MACs/MACs(teacher). train s: wall-clock seconds of all chunks "
             f"(compilation included), summed over seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        ps = r["per_seed"]
        bests = [p["best_curve_fid"] for p in ps.values() if p["best_curve_fid"] is not None]
        fid = "" if r["fid_mean"] is None else (
            f"{r['fid_mean']:.2f}" if r["fid_min"] == r["fid_max"] else
            f"{r['fid_mean']:.2f} [{r['fid_min']:.2f}, {r['fid_max']:.2f}]")
        lines.append("| " + " | ".join([
            r["label"], f(r["ratio"], "g"), fid,
            ", ".join(f"s{s}: {p['fid']:.2f}" for s, p in ps.items() if p["fid"] is not None),
            f(r["coverage_mean"], ".3f"), f(r["macs"], ","),
            "" if r["compression_rate"] is None else f"{100 * r['compression_rate']:.1f} %",
            ", ".join(f"{p['kimg']:.1f} ({p['stop']})" for p in ps.values()),
            f(sum(bests) / len(bests) if bests else None, ".2f"),
            f(sum(p["train_seconds"] for p in ps.values()) if ps else None, ".0f"),
            "; ".join(f"s{s}: {e}" for s, e in r["errors"].items()).replace("|", "/")]) + " |")
    return "\n".join(lines) + "\n"


def _mean_band(curves: dict) -> tuple[list, list, list, list]:
    """kimg, mean, min, max over the seeds that have a value at each kimg."""
    at: dict[float, list] = {}
    for c in curves.values():
        for k, v in c:
            at.setdefault(k, []).append(v)
    ks = sorted(at)
    return ks, [sum(at[k]) / len(at[k]) for k in ks], [min(at[k]) for k in ks], [max(at[k]) for k in ks]


def plot_curves(rows: list[dict], path: Path, teacher_fid: float | None = None, main_ratio=None) -> Path:
    """fid_digits vs kimg: per method × ratio the mean over seeds (line) and min–max band."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for r in rows:
        if not r["curves"] or not any(r["curves"].values()):
            continue
        ks, mean, lo, hi = _mean_band(r["curves"])
        (line,) = ax.plot(ks, mean, marker=".", lw=1.5, label=f"{r['label']} @{r['ratio']:g} (n={len(r['curves'])})",
                          ls="-" if main_ratio is None or r["ratio"] == main_ratio else "--")
        ax.fill_between(ks, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
    if teacher_fid is not None:
        ax.axhline(teacher_fid, color="k", lw=1, ls=":", label=f"teacher ({teacher_fid:.1f})")
    ax.set_xlabel("student kimg (all stages)")
    ax.set_ylabel(f"{METRIC} (lower is better)")
    ax.set_yscale("log")
    ax.set_title(f"{METRIC} during training: mean over seeds, min–max band")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_quality_vs_macs(rows: list[dict], path: Path) -> Path:
    """Mean fid_digits (min–max error bars over seeds) against MACs; log x when MACs span > 20×."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r["fid_mean"] is not None and r["macs"]]
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for r in pts:
        x, y = r["macs"], r["fid_mean"]
        err = [[y - r["fid_min"]], [r["fid_max"] - y]]
        ax.errorbar([x], [y], yerr=err, fmt="*" if r["method"] == "teacher" else "o", ms=10 if r["method"] == "teacher"
                    else 5, capsize=3)
        ax.annotate(r["label"] if r["ratio"] is None or r["method"] == "pruned" else f"{r['label']} @{r['ratio']:g}",
                    (x, y), textcoords="offset points", xytext=(5, 3), fontsize=7)
    macs = [r["macs"] for r in pts]
    if macs and max(macs) / max(min(macs), 1) > 20:
        ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("generator MACs per image")
    ax.set_ylabel(f"{METRIC} (lower is better; mean, min–max over seeds)")
    ax.set_title(f"{METRIC} vs MACs")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_outputs(out: Path, rows: list[dict], info: dict) -> str:
    """``OUT/report.md``, ``report.json``, ``curves.png`` and ``quality_vs_macs.png``."""
    from gancomp_jax.utils.atomic_dir import replace_file
    teacher_fid = rows[0]["fid_mean"] if rows and rows[0]["method"] == "teacher" else None
    plot_curves(rows, out / "curves.png", teacher_fid, (info.get("ratios") or [None])[0])
    plot_quality_vs_macs(rows, out / "quality_vs_macs.png")
    md = ("# Compression methods on the digits teacher, trained to a plateau\n\n" + markdown(rows, info) +
          "\n![curves](curves.png)\n\n![quality vs MACs](quality_vs_macs.png)\n\n"
          "Sample grid (one row per model): `report/grid.png`.\n")
    replace_file(out / "report.md", md.encode())
    _write_json(out / "report.json", {**info, "rows": rows})
    return md


# --------------------------------------------------------------------------- CLI


def _floats(text: str, what: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of numbers") from None
    if not vals:
        raise ValueError(f"{what}: empty")
    return vals


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output directory (resumable)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    ap.add_argument("--seeds", default="0,1", help="training seeds (default 0,1)")
    ap.add_argument("--ratios", default="0.7,0.9", help="pruning ratios; the first for every method, the others "
                    f"for {list(RATIO_SUBSET)} (default 0.7,0.9)")
    ap.add_argument("--kimg_cap", type=float, default=40.0, help="kimg cap per run (default 40)")
    ap.add_argument("--caps", default="", help="per-method caps, e.g. itgc=30,dgl_gan=50")
    ap.add_argument("--chunk_kimg", type=float, default=8.0, help="kimg per chunk (default 8)")
    ap.add_argument("--eval_every_kimg", type=float, default=2.0, help="eval hook interval (default 2)")
    ap.add_argument("--eval_num_gen", type=int, default=1000, help="images per curve evaluation (default 1000)")
    ap.add_argument("--patience", type=int, default=4, help="evaluations without improvement (default 4)")
    ap.add_argument("--plateau_tol", type=float, default=0.02, help="relative improvement that counts (default 0.02)")
    ap.add_argument("--kimg", type=float, default=0.0, help="fixed budget: cap = chunk = KIMG (the old behaviour)")
    ap.add_argument("--num_gen", type=int, default=2000, help="generated images for the final fid_digits (default 2000)")
    ap.add_argument("--teacher", default="", help="teacher model directory (default: the shipped digits teacher)")
    ap.add_argument("--n_sample", type=int, default=64, help="content-aware scoring samples (default 64)")
    ap.add_argument("--dcp_n_sample", type=int, default=200, help="DCP scoring samples (default 200)")
    ap.add_argument("--no_progress", action="store_true", help="no progress bar")
    return ap.parse_args(argv)


def main(argv=None, runner: Callable = None) -> int:
    a = parse_args(argv)
    try:
        methods = [m.strip() for m in a.methods.split(",") if m.strip()]
        bad = [m for m in methods if m not in METHODS]
        if bad or not methods:
            raise ValueError(f"unknown method(s) {bad}; choose from {list(METHODS)}")
        seeds = [int(s) for s in _floats(a.seeds, "--seeds")]
        ratios = _floats(a.ratios, "--ratios")
        if any(not 0 < r < 1 for r in ratios) or len(set(ratios)) != len(ratios):
            raise ValueError(f"--ratios: {a.ratios!r} must be distinct values in (0, 1)")
        if a.kimg:
            if not a.kimg > 0:
                raise ValueError(f"--kimg must be positive, got {a.kimg}")
            a.kimg_cap = a.chunk_kimg = a.kimg
        for opt in ("kimg_cap", "chunk_kimg"):
            if not getattr(a, opt) > 0 or not math.isfinite(getattr(a, opt)):
                raise ValueError(f"--{opt} must be positive, got {getattr(a, opt)}")
        if a.eval_every_kimg < 0 or a.patience < 0 or not 0 <= a.plateau_tol < 1 or a.eval_num_gen < 1:
            raise ValueError("--eval_every_kimg and --patience must be >= 0, --plateau_tol in [0, 1), "
                             "--eval_num_gen >= 1")
        caps = {m: a.kimg_cap for m in METHODS}
        for item in filter(None, (s.strip() for s in a.caps.split(","))):
            m, _, v = item.partition("=")
            if m not in METHODS:
                raise ValueError(f"--caps: unknown method {m!r}")
            caps[m] = _floats(v, f"--caps {m}")[0]
            if not caps[m] > 0:
                raise ValueError(f"--caps {m}: must be positive, got {v}")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from gancomp_jax.jobs.quickstart import SHIPPED_TEACHER
    teacher = str(Path(a.teacher or SHIPPED_TEACHER).absolute())
    if not Path(teacher).exists():
        print(f"error: teacher {teacher} does not exist", file=sys.stderr)
        return 2
    if not (Path(teacher) / "model.json").is_file():
        print(f"error: teacher {teacher} is not a model directory (no model.json)", file=sys.stderr)
        return 2
    out = Path(a.out).absolute()
    from gancomp_jax.utils.atomic_dir import check_workdir, read_marker, write_marker
    try:  # new, empty or an earlier comparison of ours (resumed): never a folder of other files
        if (read_marker(out) or {}).get("tool") != "compare_methods":
            check_workdir(out, ("students", "runs", "report", "report.md", "report.json", "curves.png",
                                "quality_vs_macs.png", "xla_cache"))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_marker(out, "compare_methods")
    log = lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True)
    t0 = time.time()
    runs = plan_runs(methods, ratios, seeds)
    try:
        students = {}
        for ratio in ratios:
            need = {METHODS[m][2] for m, r, _ in runs if r == ratio and METHODS[m][2]} | {"prune"}
            students[ratio] = prune_students(teacher, out / "students" / f"r{ratio:g}", ratio=ratio,
                                             n_sample=a.n_sample, dcp_n_sample=a.dcp_n_sample, needed=need, log=log)
        results = train_all(runs, teacher, students, out, caps=caps, chunk=a.chunk_kimg, eval_every=a.eval_every_kimg,
                            eval_num_gen=a.eval_num_gen, patience=a.patience, tol=a.plateau_tol, runner=runner,
                            progress=not a.no_progress, log=log)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:          # Ctrl-C: the trainer sealed what it could; state.json per chunk
        print(f"interrupted: {e or 'Ctrl-C'}; re-run the same command to resume", file=sys.stderr)
        return 130
    from gancomp_jax.jobs import report
    untrained = {f"pruned@{r:g}": students[r]["prune"] for r in ratios}
    models = dict(untrained)
    models.update({f"{m}@{r:g}/s{s}": st["model"] for (m, r, s), st in results.items() if st.get("model")})
    log(f"[report] {METRIC} on {a.num_gen} images for teacher + {len(models)} models -> {out / 'report'}")
    rep = report.make_report(teacher, models, out / "report", metrics=METRIC, num_gen=a.num_gen,
                             progress=not a.no_progress)
    rows = aggregate(rep["rows"], results, untrained)
    used = sorted({m for m, _, _ in runs})
    info = dict(num_gen=a.num_gen, seeds=seeds, ratios=ratios, chunk_kimg=a.chunk_kimg,
                caps={m: caps[m] for m in used}, caps_text=", ".join(f"{m} {caps[m]:g}" for m in used),
                eval_every_kimg=a.eval_every_kimg, eval_num_gen=a.eval_num_gen, patience=a.patience,
                plateau_tol=a.plateau_tol, teacher=teacher, students={f"{r:g}": s for r, s in students.items()},
                wall_seconds=time.time() - t0)
    md = write_outputs(out, rows, info)
    print(md)
    log(f"wrote {out / 'report.md'}, report.json, curves.png, quality_vs_macs.png "
        f"({(time.time() - t0) / 60:.1f} min this invocation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
