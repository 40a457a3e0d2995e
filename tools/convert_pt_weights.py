#!/usr/bin/env python
"""Convert an NVlabs StyleGAN2 ``.pkl`` or a rosinality/CAGC ``.pt`` into our model checkpoint.

    python tools/convert_pt_weights.py SRC OUT_DIR [--which G_ema|G|D|all] [--reader auto|torch|builtin]
                                                   [--overwrite] [--max-alloc SIZE]

``--which`` also takes a comma-separated list (``G_ema,D``); the default ``all`` converts every
network in the file. The format is detected from the content. rosinality ``.pt`` files are read
with ``torch.load(weights_only=True)`` when torch is installed (``--reader auto``), else with the
project's torch-free restricted unpickler (``--reader builtin``); NVlabs pickles always with the latter. OUT_DIR is written atomically
(gancomp_jax.checkpoints.save_model) and an existing OUT_DIR is left alone unless
``--overwrite`` is given, which replaces only a model directory written by this tool (never a
folder holding the source or other files). Reading a file may allocate at most ``--max-alloc``
(default: max(256 MiB, 4 x the file size)); a file that asks for more is refused before the
memory is allocated. Bad input ends with one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
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
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT_DIR if it is a model directory written by this tool")
    p.add_argument("--max-alloc", type=parse_size, default=None, metavar="SIZE",
                   help="most memory reading the file may allocate, e.g. 8G or 512M "
                        "(default: max(256M, 4 x the file size))")
    return p.parse_args(argv)


def parse_size(text: str) -> int:
    """'8G', '512M', '64K' or a plain number of bytes -> bytes."""
    units = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    body = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = body[-1:] if body[-1:] in units else ""
    try:
        value = float(body[: len(body) - len(unit)])
    except ValueError:
        value = float("nan")
    if not value > 0 or value * units[unit] > 1 << 50:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (use e.g. 8G, 512M or a number of bytes)")
    return int(value * units[unit])


def run(args: argparse.Namespace) -> int:
    src, out_dir = Path(args.src), Path(args.out_dir)
    biggan_dir = src.is_dir() and any((src / n).is_file() for n in ("G_ema.pth", "G.pth", "D.pth", "pytorch_model.bin"))
    if not src.is_file() and not biggan_dir:  # a BigGAN-PyTorch weights folder is read whole
        raise FileNotFoundError(f"{src}: no such file" if not src.exists() else f"{src} is not a file")
    from gancomp_jax.convert.output import check_output_dir

    check_output_dir(out_dir, src, args.overwrite)

    t0 = time.perf_counter()
    from gancomp_jax.convert import import_torch  # light; JAX is imported once the file has been read

    t1 = time.perf_counter()
    result = import_torch(src, which=args.which, reader=args.reader, max_alloc=args.max_alloc)
    t2 = time.perf_counter()
    from gancomp_jax import checkpoints
    from gancomp_jax.convert.summary import format_summary

    t3_imports = time.perf_counter()

    check_output_dir(out_dir, src, args.overwrite)  # again: the folder may have changed meanwhile
    metadata = dict(result.metadata, converted_by="tools/convert_pt_weights.py")
    checkpoints.save_model(out_dir, dict(result), metadata=metadata, overwrite=args.overwrite)
    t3 = time.perf_counter()
    meta = result.metadata
    timings = {"imports": t1 - t0 + meta["imports_seconds"] + (t3_imports - t2), "load": meta["load_seconds"],
               "convert": meta["convert_seconds"],
               "other": max(t2 - t1 - meta["load_seconds"] - meta["imports_seconds"] - meta["convert_seconds"], 0.0),
               "save": t3 - t3_imports}
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
    except (MemoryError, RecursionError) as e:  # the readers bound both; this is the last net
        print(f"error: {args.src}: reading or converting it failed ({type(e).__name__}); "
              "the file is corrupt or hostile", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
