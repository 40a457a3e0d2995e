#!/usr/bin/env python
"""Every compression method on the digits teacher, same student size and budget, one table.

    python tools/compare_methods.py [--kimg 2] [--num_gen 2000] [--methods a,b,...] OUT

1. Prunes the teacher (default: the shipped ``gancomp_jax/assets/digits_teacher``, small32) once
   with the content-aware criterion at ratio 0.7 (``OUT/prune``; the quickstart's settings), once
   with DCP-GAN's ``dcp`` criterion at the same ratio (``OUT/prune_dcp``,
   ``experiments/dcp_gan.py:digits``), and applies SVS to the DCP-pruned student
   (``OUT/svs_init``; the released SVS pipeline is DCP pruning → SVS → StyleKD fine-tuning).
   A uniform ratio gives every student the same widths, so the same MACs.
2. Trains each method's ``digits`` variant (``experiments/<method>.py:digits``) from its student
   for the same budget of ``--kimg`` thousand student images (each method's total / per-stage
   kimg is overridden; chained methods split the budget across their training stages in the
   proportions of their digits variants):

   ==============  =========================================================================
   nickel_dime     NICKEL & DiME, from the content-aware student
   dgl_gan         DGL-GAN, stage 1 (2/5 of K, plain StyleGAN2) + stage 2 (3/5, teacher-D
                   guidance), from the content-aware student (``method.init=pruned``)
   cagc_kd         CAGC distillation, from the content-aware student
   stylekd         StyleKD, from the content-aware student
   itgc            ITGC, from the content-aware student
   gan_slimming    GAN Slimming's own chain: sparsity training of the *full-width* student
                   (1/3 of K) → ``gan_slimming`` pruning at ratio 0.7 → fine-tuning (2/3 of K)
   dcp_gan         StyleKD fine-tuning of the DCP-pruned student (as DCP-GAN does)
   svs             StyleKD fine-tuning of the DCP-pruned, singular-value-scaled student
   ==============  =========================================================================

   Each method runs in ``OUT/methods/<name>``; its wall-clock seconds (compilation included) are
   timed. Finished methods (``DONE.json``) are skipped on re-runs; a failing method is recorded
   (``FAILED.json``, the error in the table) and the others go on; the next run retries it.
3. Calls :func:`gancomp_jax.jobs.report.make_report` on the teacher, the untrained pruned
   student and every trained student (``OUT/report``: fid_digits, class coverage, MACs,
   compression rate, images/s, grid, plot) and writes the comparison table to
   ``OUT/compare.md`` and ``OUT/compare.json``.

``--kimg`` must match a previous run in the same OUT (a finished method trained with another
budget is refused, never silently reused); use a new OUT to change it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "tools"]   # tools/profile.py vs stdlib
sys.path.insert(0, str(ROOT))

EXPERIMENTS = ROOT / "experiments"

# name -> (experiment file, kind, student)
#   kind: 'train' (one training run, total_kimg = K), 'dgl_gan' / 'gan_slimming' (chained jobs)
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
DGL_SPLIT = (2 / 5, 3 / 5)        # experiments/dgl_gan.py digits: 2 + 3 kimg
GS_SPLIT = (1 / 3, 2 / 3)         # experiments/gan_slimming.py digits: 1 + 2 kimg


def experiment_config(name: str, variant: str = "digits"):
    """``get_config(variant)`` of ``experiments/<name>.py``."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"_compare_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


# --------------------------------------------------------------------------- students


def prune_students(teacher: str, out: Path, *, ratio: float, n_sample: int, dcp_n_sample: int,
                   log=print) -> dict[str, str]:
    """The content-aware, DCP and DCP+SVS students of ``teacher`` (skipped when already there)."""
    from gancomp_jax.jobs import prune
    from gancomp_jax.prune.svs import svs_model

    paths = {"prune": out / "prune" / "model", "prune_dcp": out / "prune_dcp" / "model",
             "svs_init": out / "svs_init" / "model"}
    if not (paths["prune"] / "model.json").is_file():
        log(f"[prune] content_aware ratio {ratio} -> {paths['prune'].parent}")
        c = prune.default_config()           # the quickstart's prune stage
        c.teacher, c.criterion, c.mask, c.ratio = teacher, "content_aware", "none", ratio
        c.n_sample, c.batch_size, c.overwrite = n_sample, 16, True
        prune.run(c, str(paths["prune"].parent))
    if not (paths["prune_dcp"] / "model.json").is_file():
        log(f"[prune] dcp ratio {ratio} -> {paths['prune_dcp'].parent}")
        c = experiment_config("dcp_gan", "digits")
        c.teacher, c.ratio, c.n_sample, c.overwrite = teacher, ratio, dcp_n_sample, True
        prune.run(c, str(paths["prune_dcp"].parent))
    if not (paths["svs_init"] / "model.json").is_file():
        log(f"[svs] singular value scaling of {paths['prune_dcp']} -> {paths['svs_init']}")
        svs_model(str(paths["prune_dcp"]), str(paths["svs_init"]), overwrite=True)
    return {k: str(v) for k, v in paths.items()}


# --------------------------------------------------------------------------- methods


def method_config(name: str, teacher: str, students: dict[str, str], kimg: float):
    """The digits config of one method with its budget set to ``kimg`` student kimg."""
    exp, kind, student = METHODS[name]
    c = experiment_config(exp, "digits")
    c.method.teacher = teacher
    if student is not None:
        c.method.student = students[student]
    c.total_steps = 0
    c.progress = True
    if kind == "train":
        c.total_kimg = kimg
    elif kind == "dgl_gan":
        c.method.init = "pruned"
        c.method.stage1_kimg, c.method.stage2_kimg = kimg * DGL_SPLIT[0], kimg * DGL_SPLIT[1]
    elif kind == "gan_slimming":
        c.method.stage1_kimg, c.method.stage3_kimg = kimg * GS_SPLIT[0], kimg * GS_SPLIT[1]
    return c


def run_method(name: str, config, workdir: Path) -> dict:
    """Trains one method; returns ``{'model', 'kimg', 'train_seconds'}``."""
    kind = METHODS[name][1]
    t0 = time.time()
    if kind == "train":
        from gancomp_jax.train.trainer import train
        r = train(config, str(workdir))
        model, kimg = str(r.model_dir), float(r.kimg)
    else:
        import math

        from gancomp_jax.jobs import dgl_gan, gan_slimming
        job = dgl_gan if kind == "dgl_gan" else gan_slimming
        model = job.run(config, str(workdir))["model"]
        B = int(config.batch_size)
        stage_kimg = ((config.method.stage1_kimg, config.method.stage2_kimg) if kind == "dgl_gan"
                      else (config.method.stage1_kimg, config.method.stage3_kimg))
        # the images the stages saw: the trainer's step count (ceil(kimg * 1000 / B)) × batch
        kimg = sum(math.ceil(float(k) * 1000 / B) * B / 1000 for k in stage_kimg)
    return {"model": model, "kimg": kimg, "train_seconds": time.time() - t0}


def train_all(methods: list[str], teacher: str, students: dict[str, str], out: Path, kimg: float,
              log=print) -> dict[str, dict]:
    """Trains (or skips, when finished) every method; returns ``{name: result or {'error': ...}}``."""
    results: dict[str, dict] = {}
    for i, name in enumerate(methods, 1):
        wd = out / "methods" / name
        done, failed = wd / "DONE.json", wd / "FAILED.json"
        settings = {"kimg": kimg, "teacher": teacher,
                    "student": students.get(METHODS[name][2]) if METHODS[name][2] else None}
        if done.is_file():
            prev = json.loads(done.read_text())
            if prev.get("settings") != settings:
                raise ValueError(f"{done} was trained with {prev.get('settings')}, not {settings}; "
                                 f"use a new OUT directory (or delete {wd})")
            results[name] = prev["result"]
            log(f"[{i}/{len(methods)}] {name}: done before ({prev['result']['train_seconds']:.0f} s), skipped")
            continue
        log(f"[{i}/{len(methods)}] {name}: training {kimg:g} kimg in {wd}")
        try:
            cfg = method_config(name, teacher, students, kimg)
            wd.mkdir(parents=True, exist_ok=True)
            res = run_method(name, cfg, wd)
        except Exception as e:  # noqa: BLE001 — one method's failure is a result of the comparison
            err = f"{type(e).__name__}: {e}".splitlines()[0][:300]
            wd.mkdir(parents=True, exist_ok=True)
            failed.write_text(json.dumps({"settings": settings, "error": err,
                                          "traceback": traceback.format_exc()}, indent=2))
            results[name] = {"error": err}
            log(f"[{i}/{len(methods)}] {name}: FAILED: {err}")
            continue
        failed.unlink(missing_ok=True)
        done.write_text(json.dumps({"settings": settings, "result": res}, indent=2))
        results[name] = res
        log(f"[{i}/{len(methods)}] {name}: {res['kimg']:.2f} kimg in {res['train_seconds']:.0f} s")
    return results


# --------------------------------------------------------------------------- table


def comparison_rows(report_rows: list[dict], results: dict[str, dict]) -> list[dict]:
    """One row per model: report numbers (by model name) plus training time, kimg or error."""
    by_name = {r["name"]: r for r in report_rows}
    names = ["teacher", "pruned"] + list(results)
    rows = []
    for n in names:
        r, res = by_name.get(n), results.get(n, {})
        m = r["metrics"] if r else {}
        rows.append(dict(method=n, label=LABELS.get(n, n), fid_digits=m.get("fid_digits"),
                         digits_coverage=m.get("digits_coverage"),
                         digits_classes_present=m.get("digits_classes_present"),
                         params=r and r["params"], macs=r and r["macs"],
                         compression_rate=r and r["compression_rate"],
                         images_per_second=r and r["images_per_second"],
                         kimg=res.get("kimg"), train_seconds=res.get("train_seconds"),
                         model=r["model"] if r else res.get("model"), error=res.get("error")))
    return rows


def markdown(rows: list[dict], kimg: float, num_gen: int) -> str:
    f = lambda v, fmt: "" if v is None else format(v, fmt)
    head = ["method", "fid_digits ↓", "class coverage", "classes", "MACs", "compression", "images/s",
            "train kimg", "train s", "error"]
    lines = [f"Same budget: {kimg:g} kimg of student images per method; fid_digits and class coverage "
             f"on {num_gen} generated images (digits classifier features vs all real digits); class coverage "
             f"= Σ_k min(share_k, 0.1) over predicted digits. MACs: executed multiply-accumulates per "
             f"image; compression = 1 − MACs/MACs(teacher). train s: wall-clock seconds of the method's "
             f"training (all its stages, XLA compilation included) on this machine; images/s: batch-16 "
             f"float32 inference (gancomp_jax.jobs.report), noisy on a shared CPU.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["label"], f(r["fid_digits"], ".2f"), f(r["digits_coverage"], ".3f"),
            f(r["digits_classes_present"], "d"), f(r["macs"], ","),
            "" if r["compression_rate"] is None else f"{100 * r['compression_rate']:.1f} %",
            f(r["images_per_second"], ".0f"), f(r["kimg"], ".2f"), f(r["train_seconds"], ".0f"),
            (r["error"] or "").replace("|", "/")]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output directory (resumable)")
    ap.add_argument("--kimg", type=float, default=2.0, help="student kimg per method (default 2)")
    ap.add_argument("--num_gen", type=int, default=2000, help="generated images for fid_digits (default 2000)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    ap.add_argument("--teacher", default="", help="teacher model directory (default: the shipped digits teacher)")
    ap.add_argument("--ratio", type=float, default=0.7, help="pruning ratio (default 0.7)")
    ap.add_argument("--n_sample", type=int, default=64, help="content-aware scoring samples (default 64)")
    ap.add_argument("--dcp_n_sample", type=int, default=200, help="DCP scoring samples (default 200)")
    a = ap.parse_args(argv)
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        print(f"error: unknown method(s) {bad}; choose from {list(METHODS)}", file=sys.stderr)
        return 2
    if not a.kimg > 0:
        print(f"error: --kimg must be positive, got {a.kimg}", file=sys.stderr)
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
    from gancomp_jax.utils.atomic_dir import check_workdir, write_marker
    try:  # new, empty or an earlier comparison of ours (resumed): never a folder of other files
        if not ((out / "prune").is_dir() or (out / "methods").is_dir()):
            check_workdir(out, ("prune", "prune_dcp", "svs_init", "methods", "report", "compare.md", "compare.json"))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_marker(out, "compare_methods")
    log = lambda s: print(f"{time.strftime('%H:%M:%S')} {s}", flush=True)
    t0 = time.time()
    try:
        students = prune_students(teacher, out, ratio=a.ratio, n_sample=a.n_sample,
                                  dcp_n_sample=a.dcp_n_sample, log=log)
        results = train_all(methods, teacher, students, out, a.kimg, log=log)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from gancomp_jax.jobs import report
    models = {"pruned": students["prune"]}
    models.update({n: r["model"] for n, r in results.items() if "model" in r})
    log(f"[report] fid_digits on {a.num_gen} images for teacher + {len(models)} students -> {out / 'report'}")
    rep = report.make_report(teacher, models, out / "report", metrics="fid_digits", num_gen=a.num_gen)
    rows = comparison_rows(rep["rows"], results)
    md = "# Compression methods on the digits teacher\n\n" + markdown(rows, a.kimg, a.num_gen)
    (out / "compare.md").write_text(md)
    (out / "compare.json").write_text(json.dumps(
        {"kimg": a.kimg, "num_gen": a.num_gen, "teacher": teacher, "students": students, "rows": rows,
         "report": rep.get("markdown"), "wall_seconds": time.time() - t0}, indent=2, default=str))
    print(md)
    log(f"wrote {out / 'compare.md'} and {out / 'compare.json'} ({(time.time() - t0) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
