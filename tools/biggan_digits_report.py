#!/usr/bin/env python
"""Teacher-vs-student report for class-conditional BigGANs on the embedded digits.

    python tools/biggan_digits_report.py OUT_DIR NAME=MODEL [NAME=MODEL ...] [--per_class 200]

MODEL is anything ``load_any`` reads (a training run, a DGL-GAN run, a model directory); its
``G_ema`` (else ``G``) is evaluated. Writes ``OUT_DIR/report.json``, ``OUT_DIR/report.md`` (one
row per model: G parameters, MACs per image, fid_digits, class accuracy) and
``OUT_DIR/grid_<NAME>.png`` (one row per class, 8 samples each). Bad input: one ``error:``
line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir")
    p.add_argument("models", nargs="+", help="NAME=MODEL")
    p.add_argument("--per_class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import numpy as np

        from gancomp_jax import checkpoints
        from gancomp_jax.convert.common import count_parameters
        from gancomp_jax.metrics.biggan_digits import class_samples, evaluate
        from gancomp_jax.models.biggan.cost import generator_macs
        from gancomp_jax.utils.atomic_dir import write_marker
        from gancomp_jax.utils.images import make_grid, save_png

        out = Path(args.out_dir)
        if out.exists() and any(out.iterdir()) and not (out / ".gancomp_jax_output.json").exists():
            raise ValueError(f"{out} exists and is not an output of ours")
        out.mkdir(parents=True, exist_ok=True)
        write_marker(out, "biggan_digits_report")
        rows = []
        for item in args.models:
            if "=" not in item:
                raise ValueError(f"model argument {item!r} must look like NAME=MODEL")
            name, path = item.split("=", 1)
            nets = checkpoints.load_any(path)
            gname, net = checkpoints.pick_generator(nets)
            if net.kind != "biggan_generator":
                raise ValueError(f"{path}: {gname} is a {net.kind}, not a BigGAN generator")
            res = evaluate(net, args.per_class, args.seed)
            rows.append(dict(name=name, model=str(path), network=gname, params=count_parameters(net.variables),
                             macs=generator_macs(net.config), widths=list(net.config.channels), **res))
            imgs, _ = class_samples(net, 8, args.seed + 1)
            save_png(out / f"grid_{name}.png", make_grid(imgs, cols=8))
        (out / "report.json").write_text(json.dumps(rows, indent=2))
        lines = ["| model | G params | MACs / image | fid_digits | class accuracy | coverage |",
                 "|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['name']} | {r['params']:,} | {r['macs'] / 1e6:.1f} M | {r['fid_digits']:.1f} | "
                         f"{r['class_accuracy']:.3f} | {r['digits_coverage']:.3f} |")
        (out / "report.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    except (ValueError, OSError, KeyError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
