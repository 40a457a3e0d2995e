#!/usr/bin/env python
"""Convert an NVlabs StyleGAN2 ``.pkl`` or a rosinality/CAGC ``.pt`` into our model checkpoint.

    python tools/convert_pt_weights.py SRC OUT_DIR [--which G_ema|G|D|all] [--reader auto|torch|builtin]
                                                   [--overwrite]

``--which`` also takes a comma-separated list (``G_ema,D``); the default ``all`` converts every
network in the file. The format is detected from the content. rosinality ``.pt`` files are read
with ``torch.load(weights_only=True)`` when torch is installed (``--reader auto``), else with the
project's torch-free restricted unpickler (``--reader builtin``); NVlabs pickles always with the latter. OUT_DIR is written atomically
(gancomp_jax.checkpoints.save_model) and an existing OUT_DIR is left alone unless
``--overwrite`` is given. Bad input ends with one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a plain checkout, too
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # conversion is host work; don't grab an accelerator

EXIT_BAD_INPUT = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="NVlabs network pickle (.pkl) or rosinality checkpoint (.pt)")
    p.add_argument("out_dir", help="output model directory (gancomp_jax format)")
    p.add_argument("--which", default="all",
                   help="networks to convert: G_ema, G, D, a comma-separated list, or all (default)")
    p.add_argument("--reader", default="auto", choices=("auto", "torch", "builtin"),
                   help="how to read rosinality .pt files (default auto: torch.load(weights_only=True) "
                        "when torch is installed, else the built-in reader)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    src, out_dir = Path(args.src), Path(args.out_dir)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file" if not src.exists() else f"{src} is not a file")
    if out_dir.exists() and not args.overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    if out_dir.resolve() == src.resolve() or src.resolve() in out_dir.resolve().parents:
        raise ValueError(f"OUT_DIR {out_dir} must not be or contain the source file")

    t0 = time.perf_counter()
    from gancomp_jax import checkpoints
    from gancomp_jax.convert import import_torch
    from gancomp_jax.convert.summary import format_summary

    t1 = time.perf_counter()
    result = import_torch(src, which=args.which, reader=args.reader)
    t2 = time.perf_counter()
    metadata = dict(result.metadata, converted_by="tools/convert_pt_weights.py")
    checkpoints.save_model(out_dir, dict(result), metadata=metadata, overwrite=args.overwrite)
    t3 = time.perf_counter()
    timings = {"imports": t1 - t0, "load": result.metadata["load_seconds"],
               "convert": result.metadata["convert_seconds"],
               "other": max(t2 - t1 - result.metadata["load_seconds"] - result.metadata["convert_seconds"], 0.0),
               "save": t3 - t2}
    print(format_summary(result.metadata, str(out_dir), timings))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError) as e:  # ConversionError & loader errors are ValueErrors
        message = " ".join(str(e).split())  # one line
        print(f"error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
