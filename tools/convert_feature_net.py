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

Hostile or odd inputs are refused before anything is built or written: only regular files are
read (a FIFO given as SRC is refused by name), the architecture a file or ``config.json``
declares is checked against the published family (ResNet-50's blocks (3, 4, 6, 3) exactly,
ViT depths/widths/heads/patch and image sizes within bounds; see ``gancomp_jax.nets.resnet``
and ``gancomp_jax.nets.vit``), ``config.json`` is bounded in size and nesting. Ctrl-C prints one
line and exits 130, leaving nothing behind.
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
EXIT_INTERRUPTED = 130


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
    from gancomp_jax.utils.atomic_dir import check_output_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("kind", nargs="?", help="network kind (see --list)")
    p.add_argument("src", nargs="?", help="the published weight file (or directory, for kinds that take one)")
    p.add_argument("out", nargs="?", help="output directory")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="loader option (repeatable)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT if it is a previous output of ours (never a folder of other files or SRC)")
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
        # before anything is read: OUT may only replace an output of ours, never SRC or user files
        check_output_dir(args.out, [args.src], args.overwrite)
        net = nets.load(args.kind, args.src, **kwargs)
        out = save_converted(args.out, args.kind, net.params, net.config, source=args.src,
                             overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, TypeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:  # the output is written beside OUT and moved into place last: nothing is left
        print(f"error: interrupted; nothing was written to {args.out}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"wrote {args.kind} from {args.src} to {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C outside main's own handler (e.g. while importing JAX)
        print("error: interrupted; nothing was written", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
