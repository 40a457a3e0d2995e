#!/usr/bin/env python
"""Singular Value Scaling (AAAI 2025) of a pruned model directory, before fine-tuning.

    python tools/svs.py PRUNED_MODEL_DIR OUT_MODEL_DIR [--no-torgb] [--no-synthesis] [--overwrite]

Writes OUT_MODEL_DIR: ``G`` and ``G_ema`` with every synthesis weight's singular values replaced
by their square roots and every synthesis bias divided by sqrt(||b|| + 1e-8); other networks
copied (see :mod:`gancomp_jax.prune.svs`). The prune job does the same with ``--config.svs=True``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="pruned model directory")
    ap.add_argument("dst", help="output model directory")
    ap.add_argument("--no-torgb", action="store_true", help="leave the ToRGB layers as they are")
    ap.add_argument("--no-synthesis", action="store_true", help="leave the conv layers as they are")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace OUT_MODEL_DIR if it is a model directory of ours (never the source or other files)")
    a = ap.parse_args(argv)
    from gancomp_jax.prune.svs import svs_model
    try:
        out = svs_model(a.src, a.dst, synthesis=not a.no_synthesis, torgb=not a.no_torgb, overwrite=a.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
