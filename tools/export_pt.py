#!/usr/bin/env python
"""Export a model's generators (pruned students included) for the PyTorch StyleGAN2 codebases.

    python tools/export_pt.py MODEL OUT_DIR [--which G_ema,G,D] [--format rosinality,safetensors]
                                            [--writer auto|torch|zip] [--overwrite]

MODEL is anything :func:`gancomp_jax.checkpoints.load_any` reads (a model directory, a training,
DGL-GAN or prune run directory, an NVlabs ``.pkl``, a rosinality ``.pt``). OUT_DIR receives

* ``rosinality.pt``: a rosinality stylegan2-pytorch / CAGC checkpoint ``{'g_ema', 'g', 'd',
  'latent_avg'}`` (those present; per-layer widths as the tensors have them, like CAGC's pruned
  files), written with ``torch.save`` when torch is installed, else with the project's
  torch-free writer of the same zip format (``--writer`` picks);
* ``G_ema.nvlabs.safetensors`` (and ``G``, ``D``): NVlabs stylegan2-ada-pytorch state dicts;
* ``export.json``: files, sha256, widths and warnings (and the marker ``.gancomp_jax_output.json``).

OUT_DIR is written beside itself and moved into place when complete; ``--overwrite`` replaces
only an earlier export of ours, never a folder holding MODEL or other files.

Read them back with ``tools/convert_pt_weights.py OUT_DIR/rosinality.pt MODEL_DIR`` and
``gancomp_jax.export.nvlabs_safetensors.load_nvlabs_safetensors``. Bad input ends with one
``error: ...`` line and exit code 2, and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # host work

EXIT_BAD_INPUT = 2


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model directory, run directory, NVlabs .pkl or rosinality .pt")
    p.add_argument("out_dir", help="output directory")
    p.add_argument("--which", default="all", help="networks: comma-separated G_ema,G,D or all (default)")
    p.add_argument("--format", default="rosinality,safetensors",
                   help="comma-separated: rosinality and/or safetensors (default both)")
    p.add_argument("--writer", default="auto", choices=("auto", "torch", "zip"),
                   help="how rosinality.pt is written (default auto: torch.save when torch is installed)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT_DIR if it is an earlier export of ours (never MODEL's folder or other files)")
    return p.parse_args(argv)


def run(args) -> int:
    from gancomp_jax.export import export_model

    model = Path(args.model)
    if not model.exists():
        raise FileNotFoundError(f"model {model} does not exist")
    which = None if args.which == "all" else [w.strip() for w in args.which.split(",") if w.strip()]
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    summary = export_model(model, args.out_dir, which=which, formats=formats, writer=args.writer,
                           overwrite=args.overwrite)
    print(f"exported {args.model} -> {args.out_dir}")
    for name, info in summary["files"].items():
        what = ", ".join(info["networks"]) if "networks" in info else info["network"]
        extra = f", written with {info['writer']}" if "writer" in info else ""
        print(f"  {name:<28} {info['format']} ({what}{extra})  sha256 {info['sha256'][:16]}")
    for name, net in summary["networks"].items():
        print(f"  {name}: {net['kind']} {net['img_resolution']}px widths {net['widths']}")
    for w in summary["warnings"]:
        print(f"warning: {w}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
