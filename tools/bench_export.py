#!/usr/bin/env python
"""Images/s of exported generators side by side: ours in JAX, ONNX Runtime, NVlabs PyTorch (CPU).

    python tools/bench_export.py [--models digits,paper256_r0.7,paper256_r0.9,paper256]
        [--batches 1,16] [--nvlabs third_party/stylegan2-ada-pytorch] [--min_time 3]
        [--workdir DIR] [--json OUT.json]

Models:
  digits          the quickstart's student: the shipped digits teacher (gancomp_jax/assets)
                  pruned by 70 % with the prune library (content-aware, no mask, 64 samples —
                  the quickstart's prune settings), not distilled;
  paper256_r0.7   paper256 preset (NVlabs config-f widths at 256 px) with CAGC's ratio-0.7
  paper256_r0.9   and ratio-0.9 student widths, random (NVlabs-initialised) weights;
  paper256        the paper256 teacher, random weights.

Each model is saved as a model directory and exported with the export tool's library
(:func:`gancomp_jax.deploy.export_generator`: dynamic batch, ψ an input, const noise, float32)
to ONNX and to StableHLO; their file sizes and export times are printed. Then, per batch size:

  jax     the generate job's jitted function (gancomp_jax.jobs.generate.make_generate_fn);
  onnx    ONNX Runtime (CPUExecutionProvider, default session options) on generator.onnx;
  nvlabs  NVlabs stylegan2-ada-pytorch ``training/networks.py`` Generator (torch CPU, float32,
          its reference implementations of the custom ops) with the same weights, per-layer
          widths set block by block. Skipped, with a note, when ``--nvlabs`` is not a checkout
          (fetch NVlabs/stylegan2-ada-pytorch into the ignored ``third_party/`` folder).

All three run const noise and ψ = 1. A call is timed after one warm-up call (compilation);
calls repeat until ``--min_time`` seconds have passed (at least 2); images/s = batch / median
call time. The max
abs difference of each runtime's batch-1 image to JAX's is printed as a check. Timings depend
on the machine and its load: say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ("digits", "paper256_r0.7", "paper256_r0.9", "paper256")


def build_model(name: str, out: Path) -> Path:
    """Writes model ``name`` (see the module docstring) as a model directory at ``out``."""
    import jax

    from gancomp_jax import checkpoints
    from gancomp_jax.models import get_preset
    from gancomp_jax.prune.pipeline import PruneOptions, prune
    from gancomp_jax.prune.widths import student_widths

    if name == "digits":
        teacher = checkpoints.load_model(REPO / "gancomp_jax" / "assets" / "digits_teacher")
        res = prune(teacher, PruneOptions(criterion="content_aware", mask="none", ratio=0.7, n_sample=64,
                                          batch_size=16, progress=False))
        networks = {"G_ema": res.networks["G_ema"]}
    else:
        cfg = get_preset("paper256").generator
        if name != "paper256":
            cfg = cfg.replace(channels=student_widths(cfg, ratio=float(name.split("_r")[1])))
        networks = {"G_ema": checkpoints.init_network("generator", cfg, jax.random.key(0))}
    checkpoints.save_model(out, networks)
    return out


def timed(fn, batch: int, min_time: float, max_calls: int = 50) -> float:
    """images/s of ``fn()``: one warm-up call, then at least 2 calls and ``min_time`` seconds;
    ``batch`` / the median call time (robust to other processes' bursts on a shared machine)."""
    fn()
    times, start = [], time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if (time.perf_counter() - start >= min_time and len(times) >= 2) or len(times) >= max_calls:
            return batch / float(np.median(times))


def nvlabs_generator(checkout: Path, cfg, variables):
    """NVlabs' Generator with our per-layer widths and our weights (torch, CPU, float32, eval)."""
    import torch

    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    from training import networks as nv

    from gancomp_jax.models.nvlabs_compat import to_nvlabs_state_dict

    G = nv.Generator(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
                     img_channels=cfg.img_channels, mapping_kwargs=dict(num_layers=cfg.mapping_layers),
                     synthesis_kwargs=dict(channel_base=1 << 20, channel_max=512, num_fp16_res=0, conv_clamp=None,
                                           architecture=cfg.architecture))
    for res in G.synthesis.block_resolutions:
        cin, c0, c1 = cfg.block_channels(res)
        if c0 != c1:
            raise ValueError(f"b{res}: conv0 width {c0} != conv1 width {c1}; NVlabs blocks need equal widths")
        setattr(G.synthesis, f"b{res}", nv.SynthesisBlock(
            cin, c1, w_dim=cfg.w_dim, resolution=res, img_channels=cfg.img_channels,
            is_last=res == cfg.img_resolution, use_fp16=False, architecture=cfg.architecture, conv_clamp=None))
    sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_nvlabs_state_dict(variables, "G_ema").items()}
    G.load_state_dict(sd, strict=True)
    return G.eval().requires_grad_(False)


def bench_model(name: str, work: Path, batches: list[int], nvlabs: Path | None, min_time: float) -> dict:
    import jax
    import jax.numpy as jnp
    import onnxruntime as ort

    from gancomp_jax import checkpoints
    from gancomp_jax.deploy import export_generator
    from gancomp_jax.jobs.generate import latents_for_seeds, make_generate_fn
    from gancomp_jax.models import Generator

    model_dir = build_model(name, work / name / "model")
    net = checkpoints.load_model(model_dir)["G_ema"]
    cfg = net.config
    row = dict(model=name, widths=list(cfg.channels))
    for fmt in ("onnx", "stablehlo"):
        s = export_generator(str(model_dir), str(work / name / fmt), fmt)
        row[fmt] = dict(file_bytes=s["file_bytes"], export_seconds=s["export_seconds"])
        row.update(params=s["cost"]["params"], macs=s["cost"]["macs"])
    variables = jax.tree.map(jnp.asarray, net.variables)
    gen = make_generate_fn(Generator(cfg), 1.0, None, "const")
    sess = ort.InferenceSession(str(work / name / "onnx" / "generator.onnx"), providers=["CPUExecutionProvider"])
    G_nv = nvlabs_generator(nvlabs, cfg, net.variables) if nvlabs else None
    key = jax.random.key(0)
    one = np.array(1.0, np.float32)
    row["images_per_s"] = {}
    for batch in batches:
        z = latents_for_seeds(list(range(batch)), cfg.z_dim)
        run_jax = lambda: np.asarray(gen(variables, z, None, key))  # noqa: E731
        run_ort = lambda: sess.run(["image"], {"z": z, "truncation_psi": one})[0]  # noqa: E731
        ips = {"jax": timed(run_jax, batch, min_time), "onnx": timed(run_ort, batch, min_time)}
        if G_nv is not None:
            import torch

            zt = torch.from_numpy(z)
            with torch.no_grad():
                run_nv = lambda: G_nv(zt, None, truncation_psi=1, noise_mode="const", force_fp32=True)  # noqa: E731
                ips["nvlabs"] = timed(run_nv, batch, min_time)
        row["images_per_s"][batch] = ips
        if batch == batches[0]:
            ref = np.transpose(run_jax(), (0, 3, 1, 2))
            row["max_abs_diff_vs_jax"] = {"onnx": float(np.abs(run_ort() - ref).max())}
            if G_nv is not None:
                with torch.no_grad():
                    row["max_abs_diff_vs_jax"]["nvlabs"] = float(np.abs(run_nv().numpy() - ref).max())
        print(f"  {name} batch {batch}: " + ", ".join(f"{k} {v:.2f} img/s" for k, v in ips.items()), flush=True)
    return row


def table(rows: list[dict], batches: list[int], with_nv: bool) -> str:
    runtimes = ["jax", "onnx"] + (["nvlabs"] if with_nv else [])
    label = {"jax": "JAX (ours)", "onnx": "ONNX Runtime", "nvlabs": "NVlabs PyTorch"}
    head = ["model", "params", "MACs/img"] + [f"{label[r]} b{b}" for b in batches for r in runtimes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["model"], f"{r['params'] / 1e6:.2f} M", f"{r['macs'] / 1e9:.2f} G" if r["macs"] >= 1e9 else f"{r['macs'] / 1e6:.1f} M"]
        cells += [f"{r['images_per_s'][b].get(rt, float('nan')):.2f}" for b in batches for rt in runtimes]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| model | ONNX size | ONNX export | StableHLO size | StableHLO export | "
              "max abs diff vs JAX (b1) |", "|---|---|---|---|---|---|"]
    for r in rows:
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in r["max_abs_diff_vs_jax"].items())
        lines.append(f"| {r['model']} | {r['onnx']['file_bytes'] / 2**20:.1f} MiB | {r['onnx']['export_seconds']:.1f} s | "
                     f"{r['stablehlo']['file_bytes'] / 2**20:.1f} MiB | {r['stablehlo']['export_seconds']:.1f} s | "
                     f"{diffs} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--batches", default="1,16")
    p.add_argument("--nvlabs", default=str(REPO / "third_party" / "stylegan2-ada-pytorch"),
                   help="NVlabs stylegan2-ada-pytorch checkout (training/networks.py)")
    p.add_argument("--min_time", type=float, default=3.0, help="seconds of timed calls per cell")
    p.add_argument("--workdir", default="", help="keep models and exports here (default: a temporary folder)")
    p.add_argument("--json", default="", help="also write the results as JSON")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS]
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        batches = []
    if bad or not models or not batches or min(batches) < 1:
        print(f"error: --models must be from {MODELS} and --batches positive integers "
              f"(got {args.models!r}, {args.batches!r})", file=sys.stderr)
        return 2
    nvlabs = Path(args.nvlabs)
    if not (nvlabs / "training" / "networks.py").is_file():
        print(f"note: {nvlabs} is not an NVlabs stylegan2-ada-pytorch checkout; the NVlabs PyTorch column is "
              "skipped (fetch NVlabs/stylegan2-ada-pytorch into third_party/stylegan2-ada-pytorch)")
        nvlabs = None
    else:
        try:
            import torch
            print(f"NVlabs PyTorch: {nvlabs} (torch {torch.__version__}, {torch.get_num_threads()} threads)")
        except ImportError:
            print("note: torch is not installed; the NVlabs PyTorch column is skipped")
            nvlabs = None
    import jax
    import onnxruntime as ort
    print(f"JAX {jax.__version__} ({jax.default_backend()}), onnxruntime {ort.__version__}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench_export_") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        rows = [bench_model(m, work, batches, nvlabs, args.min_time) for m in models]
    print(f"load average {os.getloadavg()[0]:.1f} at end\n")
    print(table(rows, batches, nvlabs is not None))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
