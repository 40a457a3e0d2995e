#!/usr/bin/env python
"""Convert a pretrained perception network's weight file into our converted directory (Orbax).

    python tools/convert_feature_net.py KIND SRC OUT [--arg KEY=VALUE ...] [--overwrite]

KIND is a kind registered in ``gancomp_jax.nets`` (``--list`` prints them): e.g.
``inception_fid`` (pytorch-fid ``pt_inception-2015-12-05-6726825d.pth``), ``vgg16``
(torchvision ``vgg16-397923af.pth``), ``lpips_vgg`` (the VGG16 file; the v0.1 heads come from
``--arg lin_path=.../lpips/weights/v0.1/vgg.pth`` or the installed ``lpips`` package),
``bisenet`` (``79999_iter.pth``). ``--arg`` passes loader options (values parsed as JSON when
possible, else kept as strings). The file is read without executing code from it; every key and
shape is checked. OUT is written atomically and holds ``feature_net.json`` plus ``variables/``;
``gancomp_jax.nets.load(KIND, OUT)`` then loads it. Bad input ends with one ``error: ...`` line
and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # conversion is host work; don't grab an accelerator

EXIT_BAD_INPUT = 2


def _parse_arg(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--arg expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    from gancomp_jax import nets
    from gancomp_jax.nets.weights import save_converted

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", nargs="?", help="network kind (see --list)")
    p.add_argument("src", nargs="?", help="the published weight file (or directory, for kinds that take one)")
    p.add_argument("out", nargs="?", help="output directory")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="loader option (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--list", action="store_true", help="print the registered kinds and exit")
    args = p.parse_args(argv)
    if args.list:
        for kind in nets.available():
            print(f"{kind}: {nets.describe(kind)}")
        return 0
    if not (args.kind and args.src and args.out):
        p.error("KIND, SRC and OUT are required")
    try:
        kwargs = dict(_parse_arg(a) for a in args.arg)
        if Path(args.out).exists() and not args.overwrite:
            raise FileExistsError(f"{args.out} already exists; pass --overwrite to replace it")
        net = nets.load(args.kind, args.src, **kwargs)
        out = save_converted(args.out, args.kind, net.params, net.config, source=args.src,
                             overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.kind} from {args.src} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
