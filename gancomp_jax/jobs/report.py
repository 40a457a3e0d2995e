"""Report job: teacher vs students — cost, speed and quality in one table, grid and plot.

    python -m gancomp_jax.main --config experiments/report.py --workdir OUT \
        --config.teacher=T --config.students=S1,S2 [--config.names=teacher,pruned,distilled] \
        [--config.metrics=fid50k_full --config.inception=FILE --config.data.source=zip ...]

Writes, in OUT:

* ``report.json`` and ``report.md``: one row per model — parameters and MACs of the generator
  (:func:`gancomp_jax.metrics.cost.generator_cost`, executed MACs for one image), compression
  rate ``1 − MACs/MACs_teacher``, MAC ratio ``MACs_teacher/MACs`` (the speed-up MACs predict),
  measured speed-up (images/s over the teacher's images/s), images/s (jitted float32 batch inference on this
  machine's first device, median of timed calls after a warm-up), and every metric's results;
* ``grid.png``: one row per model (teacher first), the same seeds in every row
  (``z = RandomState(seed).randn``, ``noise_mode='const'``, ψ = 1), described in ``report.md``;
* ``quality_vs_macs.png``: the first FID-like result (``fid50k_full``, ``fid_digits``, ...)
  against MACs, the figure compression papers show (matplotlib);
* ``metric-<name>.jsonl``: NVlabs-style records, one per model (``snapshot_pkl`` = the model).

BigGAN models (teacher and students all BigGAN; a report mixing families is refused): parameters
of G's ``params`` collection, MACs from :func:`gancomp_jax.models.biggan.cost.generator_macs`;
class-conditional metrics sample classes as ``class_sampling`` says (``dataset``: the data's
labels, ``uniform``, ``balanced``: equal class-major blocks; e.g. ``fid_digits,
class_accuracy_digits`` on the digits); images/s times ``G(z, y)`` in eval mode (classes
``i mod n_classes``) the same way; ``grid.png`` has one block of rows per class (the first
``grid_classes`` classes), within it one row per model, the same seeds (no truncation) in every row.

:func:`make_report` is the same as a function (the quickstart's ``evaluate`` stage calls it).
"""

from __future__ import annotations

import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gancomp_jax.utils.images import make_grid, save_png, to_uint8
from gancomp_jax.utils.ranges import parse_seeds

#: Files the report writes into its folder (an earlier report of ours is replaced; other folders are refused).
REPORT_FILES = ("report.json", "report.md", "grid.png", "quality_vs_macs.png")


def images_per_second(spec, batch_size: int = 16, iters: int = 9) -> float:
    """Generator throughput: images/s of jitted batch inference (const noise, float32; median of
    ``iters`` repetitions after warm-up, :func:`time_generators`)."""
    return time_generators([spec], batch_size, iters)[0]["images_per_second"]


def _is_biggan(spec) -> bool:
    return bool(getattr(spec, "is_biggan", False))


# BigGAN G(z, y) in eval mode; the module is static (hashable), so the grid and the timing share
# one compiled program per architecture and batch size
_biggan_apply = jax.jit(lambda G, v, z, y: G.apply(v, z, y), static_argnums=0)


def _timed_call(spec, batch_size: int):
    """(jitted function, its arguments): const noise for StyleGAN2; eval mode, classes ``i mod K``, BigGAN."""
    G = spec.module
    z = jnp.asarray(np.random.RandomState(0).randn(batch_size, G.config.z_dim), jnp.float32)
    if _is_biggan(spec):
        y = jnp.asarray(np.arange(batch_size) % G.config.n_classes, jnp.int32)
        return functools.partial(_biggan_apply, G), (jax.device_put(spec.variables), z, y)
    fn = jax.jit(lambda v, z, c, G=G: G.apply(v, z, c, noise_mode="const"))
    c = None
    if G.config.c_dim:
        c = jnp.zeros((batch_size, G.config.c_dim)).at[:, 0].set(1)
    return fn, (jax.device_put(spec.variables), z, c)


def time_generators(specs: Sequence[Any], batch_size: int = 16, reps: int = 9, warmup: int = 2
                    ) -> list[dict[str, Any]]:
    """Throughput of several generators measured the same way, for comparison.

    Every model runs the same jitted float32 call (const noise) on the same ``batch_size``
    latents; each is compiled and run ``warmup`` times first, then the models are timed
    round-robin (model 1, 2, ..., model 1, 2, ...) for ``reps`` rounds, so that a change of
    machine load during the measurement hits all of them alike. Per model: ``images_per_second``
    = batch / median time, ``images_per_second_min`` / ``_max`` (slowest / fastest repetition),
    ``times_s`` (every repetition).
    """
    runs = []
    for spec in specs:
        fn, args = _timed_call(spec, batch_size)
        for _ in range(max(1, warmup)):
            jax.block_until_ready(fn(*args))
        runs.append((fn, args, []))
    for _ in range(max(1, reps)):
        for fn, args, times in runs:
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - t0)
    return [dict(images_per_second=batch_size / statistics.median(t), images_per_second_min=batch_size / max(t),
                 images_per_second_max=batch_size / min(t), times_s=list(t),
                 batch_size=batch_size) for _, _, t in runs]


def sample_row(spec, seeds: Sequence[int]) -> np.ndarray:
    """uint8 ``[len(seeds), R, R, 3]``: NVlabs seeds, const noise, ψ = 1."""
    G = spec.module
    z = np.stack([np.random.RandomState(s).randn(G.config.z_dim) for s in seeds]).astype(np.float32)
    c = None
    if G.config.c_dim:
        c = np.zeros((len(seeds), G.config.c_dim), np.float32)
        c[:, 0] = 1
    img = np.asarray(jax.jit(lambda v, z, c: G.apply(v, z, c, noise_mode="const"))(spec.variables, z, c))
    u8 = to_uint8(img)
    return np.repeat(u8, 3, axis=-1) if u8.shape[-1] == 1 else u8


def class_rows(spec, seeds: Sequence[int], classes: Sequence[int]) -> list[np.ndarray]:
    """BigGAN: per class, uint8 ``[len(seeds), R, R, 3]`` (``z = RandomState(seed).randn``, no
    truncation, eval mode), one jitted call for all classes."""
    G = spec.module
    z = np.stack([np.random.RandomState(s).randn(G.config.z_dim) for s in seeds]).astype(np.float32)
    zz = np.tile(z, (len(classes), 1))
    y = np.repeat(np.asarray(classes, np.int32), len(seeds))
    img = to_uint8(np.asarray(_biggan_apply(G, jax.device_put(spec.variables), jnp.asarray(zz), jnp.asarray(y))))
    return [img[i * len(seeds):(i + 1) * len(seeds)] for i in range(len(classes))]


def _cost(spec) -> dict[str, Any]:
    """``{'params', 'macs', 'macs_cagc'}`` of one generated image (``macs_cagc`` None for BigGAN)."""
    if _is_biggan(spec):
        from gancomp_jax.convert.common import count_parameters
        from gancomp_jax.models.biggan.cost import generator_macs  # BigGAN reports only
        return dict(params=count_parameters(spec.variables), macs=generator_macs(spec.config), macs_cagc=None)
    from gancomp_jax.metrics.cost import generator_cost
    cost = generator_cost(spec.config)
    return dict(params=int(cost["params"]), macs=int(cost["macs"]), macs_cagc=int(cost["macs_cagc"]))


def _resize_nearest(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[1] == size:
        return img
    idx = (np.arange(size) * img.shape[1]) // size
    return img[:, idx][:, :, idx]


def _quality_key(results: Mapping[str, Any]) -> str | None:
    for k in ("fid50k_full", "fid50k", "fid_digits", "kid50k_full", "kid50k"):
        if k in results:
            return k
    return None


def plot_quality_vs_macs(rows: list[dict], key: str, path: Path) -> Path:
    """Scatter of ``key`` against generator MACs (log x), teacher as a star, labelled points."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    for r in rows:
        if key not in r["metrics"]:
            continue
        x, y = r["macs"], r["metrics"][key]
        ax.scatter([x], [y], marker="*" if r["role"] == "teacher" else "o",
                   s=140 if r["role"] == "teacher" else 60, zorder=3)
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("generator MACs per image")
    ax.set_ylabel(key + (" (lower is better)" if key.startswith(("fid", "kid")) else ""))
    ax.set_title(f"{key} vs MACs")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, list):
        return "[" + ", ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in v) + "]"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        for k in r["metrics"]:
            if k not in keys and not isinstance(r["metrics"][k], list):
                keys.append(k)
    head = ["model", "role", "params", "MACs", "compression", "MAC ratio", "measured speed-up", "images/s"] + keys
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["name"], r["role"], _fmt(r["params"]), _fmt(r["macs"]),
                 f"{100 * r['compression_rate']:.1f} %", f"{r['mac_ratio']:.2f}×",
                 f"{r['measured_speedup']:.2f}×" if r.get("measured_speedup") else "n/a",
                 _fmt_speed(r)] + [_fmt(r["metrics"].get(k, "")) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt_speed(r) -> str:
    lo, hi = r.get("images_per_second_min"), r.get("images_per_second_max")
    med = f"{r['images_per_second']:.1f}"
    return f"{med} ({lo:.0f}–{hi:.0f})" if lo is not None and hi is not None else med


def make_report(teacher: str, students: Sequence[str] | Mapping[str, str], out_dir: str | Path, *,
                names: Sequence[str] | None = None, metrics: str = "fid_digits", data=None,
                inception: str | None = None, vgg16: str | None = None, lpips: str | None = None,
                fid_convention: str = "nvlabs", num_gen: int | None = None, max_real: int | None = None,
                seeds: str = "0-7", batch_size: int = 64, speed_batch: int = 16, speed_iters: int = 9,
                seed: int = 0, progress: bool = True, class_sampling: str = "dataset",
                grid_classes: int = 10) -> dict[str, Any]:
    """Builds the report (see module docstring) and returns its JSON content.

    ``students``: paths, or ``{name: path}``; ``names``: names for teacher and students (default:
    'teacher' and the student directory names). ``data``: a data config (default: the embedded
    digits). ``metrics``: comma-separated registry names ('' for none). ``class_sampling`` and
    ``grid_classes``: conditional models (module docstring).
    """
    import dataclasses

    from gancomp_jax.data import build_source, default_data_config
    from gancomp_jax.jobs.evaluate import load_generator
    from gancomp_jax.metrics import registry
    from gancomp_jax.metrics.cost import compression_rate
    from gancomp_jax.metrics.hook import _labels

    from gancomp_jax.utils.atomic_dir import check_workdir, prepare_workdir, replace_file

    out = Path(out_dir)
    check_workdir(out, REPORT_FILES)  # new, empty or an earlier report of ours: nothing else is replaced
    if isinstance(students, Mapping):
        student_items = list(students.items())
    else:
        student_items = [(Path(str(p).rstrip("/")).name, p) for p in students]
    models = [("teacher", teacher, "teacher")] + [(n, p, "student") for n, p in student_items]
    if names:
        if len(names) != len(models):
            raise ValueError(f"config.names has {len(names)} names for {len(models)} models (teacher + students)")
        models = [(n, p, role) for n, (_, p, role) in zip(names, models)]
    if not teacher:
        raise ValueError("config.teacher is required (a model directory, NVlabs .pkl or rosinality .pt)")
    metric_names = [m.strip() for m in str(metrics).split(",") if m.strip()]
    bad = [m for m in metric_names if not registry.is_valid_metric(m)]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid: {', '.join(registry.list_valid_metrics())}")
    data = data if data is not None else default_data_config()
    source = build_source(data)
    dataset_name = data.get("name") or data.get("source")
    labels = _labels(source)
    specs = [(n, p, role, dataclasses.replace(load_generator(str(p), labels=labels), class_sampling=class_sampling))
             for n, p, role in models]  # all load first
    biggan = _is_biggan(specs[0][3])
    other = [(n, p) for n, p, _, s in specs if _is_biggan(s) != biggan]
    if other:
        fam = lambda b: "a BigGAN" if b else "a StyleGAN2"  # noqa: E731
        raise ValueError(f"the report compares models of one family: the teacher {teacher} is {fam(biggan)} "
                         f"generator but {other[0][0]} ({other[0][1]}) is {fam(not biggan)} generator")
    seed_list = parse_seeds(seeds)
    grid_class_list = []
    if biggan:
        if int(grid_classes) < 1:
            raise ValueError(f"grid_classes must be >= 1, got {grid_classes}")
        grid_class_list = list(range(min(int(grid_classes), specs[0][3].c_dim)))
    prepare_workdir(out, "report", REPORT_FILES)
    teacher_cost = _cost(specs[0][3])
    rows, grid_rows, detectors = [], [], {}
    for name, path, role, spec in specs:
        logging.info("report: %s (%s)", name, path)
        cost = _cost(spec)
        row = dict(name=name, role=role, model=str(path), resolution=spec.resolution,
                   widths=list(spec.config.channels), params=int(cost["params"]), macs=int(cost["macs"]),
                   macs_cagc=cost["macs_cagc"],
                   compression_rate=compression_rate(cost["macs"], teacher_cost["macs"]),
                   mac_ratio=teacher_cost["macs"] / max(cost["macs"], 1),
                   metrics={}, records=[])
        opts = registry.MetricOptions(G=spec, dataset=source, dataset_name=dataset_name,
                                      inception=inception, vgg16=vgg16, lpips=lpips,
                                      fid_convention=fid_convention, batch_size=batch_size, num_gen=num_gen,
                                      max_real=max_real, seed=seed, progress=progress, detectors=detectors)
        for m in metric_names:
            rec = registry.calc_metric(m, opts)
            registry.report_metric(rec, str(out), snapshot=str(path))
            row["metrics"].update(rec["results"])
            row["records"].append({k: rec[k] for k in rec if k != "results"})
        rows.append(row)
        grid_rows.append(class_rows(spec, seed_list, grid_class_list) if biggan else sample_row(spec, seed_list))
    # all models timed together, round-robin, after the metrics (see time_generators)
    for row, speed in zip(rows, time_generators([s[3] for s in specs], speed_batch, speed_iters)):
        row.update(speed)
        row["measured_speedup"] = row["images_per_second"] / max(rows[0]["images_per_second"], 1e-12)
    if biggan:  # class-major: per class, one row per model
        grid_rows = [per_model[k] for k in range(len(grid_class_list)) for per_model in grid_rows]
    size = max(r.shape[1] for r in grid_rows)
    grid = make_grid(np.concatenate([_resize_nearest(r, size) for r in grid_rows]), cols=len(seed_list))
    grid_path = out / "grid.png"
    save_png(grid_path, grid)
    key = next((k for k in (_quality_key(r["metrics"]) for r in rows) if k), None)
    plot_path = plot_quality_vs_macs(rows, key, out / "quality_vs_macs.png") if key else None
    report = dict(teacher=str(teacher), rows=rows, seeds=seed_list, grid=str(grid_path),
                  plot=None if plot_path is None else str(plot_path), quality_metric=key,
                  family="biggan" if biggan else "stylegan2", class_sampling=class_sampling,
                  grid_classes=grid_class_list,
                  device=str(jax.devices()[0].device_kind), num_devices=len(jax.devices()))
    replace_file(out / "report.json", json.dumps(report, indent=2, default=str).encode())
    cost_module = "gancomp_jax.models.biggan.cost" if biggan else "gancomp_jax.metrics.cost"
    md = ["# Compression report" + (" (BigGAN)" if biggan else ""), "",
          f"Teacher: `{teacher}`. MACs: executed multiply-accumulates of one generated image "
          f"({cost_module}); compression rate = 1 − MACs/MACs(teacher); MAC ratio = "
          f"MACs(teacher)/MACs, the speed-up the MAC count predicts; measured speed-up = images/s over the "
          f"teacher's images/s; images/s: batch {speed_batch}, float32, on {report['device']}: every model "
          f"compiled and warmed up, then timed round-robin, {speed_iters} repetitions each; median "
          f"(slowest–fastest repetition).", "",
          markdown_table(rows), ""]
    for r in rows:
        shares = r["metrics"].get("digits_class_shares")
        if shares:
            md.append(f"- {r['name']}: digit shares {_fmt(shares)}")
    if biggan:
        md += ["", f"Classes sampled as `{class_sampling}` for the metrics. Samples per class (classes "
               f"{grid_class_list[0]}–{grid_class_list[-1]}, one block of rows each; within a block one row per "
               f"model: {', '.join(r['name'] for r in rows)}; seeds {seeds}; eval mode, no truncation):", "",
               f"![grid]({grid_path.name})", ""]
    else:
        md += ["", f"Samples (rows: {', '.join(r['name'] for r in rows)}; seeds {seeds}; const noise, ψ = 1):", "",
               f"![grid]({grid_path.name})", ""]
    if plot_path:
        md += [f"![{key} vs MACs]({plot_path.name})", ""]
    replace_file(out / "report.md", "\n".join(md).encode())
    report["markdown"] = str(out / "report.md")
    return report


def run(config, workdir: str) -> dict[str, Any]:
    students = [s.strip() for s in str(config.students).split(",") if s.strip()]
    names = [s.strip() for s in str(config.names).split(",") if s.strip()] or None
    report = make_report(
        config.teacher, students, workdir, names=names, metrics=config.metrics, data=config.data,
        inception=config.inception or None, vgg16=config.vgg16 or None, lpips=config.lpips or None,
        fid_convention=config.fid_convention, num_gen=int(config.num_gen) or None,
        max_real=int(config.max_real) or None, seeds=config.seeds, batch_size=int(config.batch_size),
        speed_batch=int(config.speed_batch), seed=int(config.seed), progress=bool(config.progress),
        class_sampling=str(config.get("class_sampling", "dataset")), grid_classes=int(config.get("grid_classes", 10)))
    print(markdown_table(report["rows"]))
    print(f"report: {report['markdown']} (grid {report['grid']}, plot {report['plot']})")
    return report
