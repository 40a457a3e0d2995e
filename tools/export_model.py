#!/usr/bin/env python
"""Export a generator for deployment: ONNX (ONNX Runtime, opset 18) or StableHLO (jax.export).

    python tools/export_model.py MODEL OUT_DIR --format onnx|stablehlo [--truncation_psi P]
        [--noise_mode const|none] [--batch N|dynamic] [--dtype float32|float16]
        [--network auto|NAME] [--overwrite]

MODEL is anything the generate job reads: a model directory (teacher, pruned or distilled
student), a training run directory or its ``checkpoints/<step>``, an NVlabs ``.pkl``, a
rosinality ``.pt``. OUT_DIR receives ``generator.onnx`` or ``generator.stablehlo``,
``signature.json``, ``README.md`` and the marker ``.gancomp_jax_output.json``; it is written
beside its final place and moved there when complete. Without ``--truncation_psi`` the graph
takes ψ as a scalar input. ``--overwrite`` replaces only an earlier output of ours. Bad input
ends with one ``error: ...`` line and exit code 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # exporting is host work; don't grab an accelerator

EXIT_BAD_INPUT = 2


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'dynamic', got {text!r}")
    return n


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one 'error:' line, exit 2 (argparse prints the usage too)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    p = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model directory, training run, NVlabs .pkl or rosinality .pt")
    p.add_argument("out_dir", help="output folder (must not exist unless --overwrite)")
    p.add_argument("--format", required=True, help="onnx or stablehlo")
    p.add_argument("--truncation_psi", type=float, default=None,
                   help="bake this truncation ψ in (default: ψ is a scalar graph input)")
    p.add_argument("--noise_mode", default="const", help="const (stored noise maps) or none")
    p.add_argument("--batch", type=_batch, default=None, help="fixed batch size, or 'dynamic' (default)")
    p.add_argument("--dtype", default="float32", help="float32 or float16 (synthesis weights and compute)")
    p.add_argument("--network", default="auto", help="network to export (default: G_ema, else G)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is an earlier output of ours")
    args = p.parse_args(argv)

    from gancomp_jax.deploy import check_request, export_generator

    try:
        check_request(args.format, args.noise_mode, args.dtype, args.batch, args.truncation_psi)
        s = export_generator(args.model, args.out_dir, args.format, args.truncation_psi, args.noise_mode,
                             args.batch, args.dtype, args.network, args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    ins = ", ".join(f"{i['name']}{i['shape']}" for i in s["inputs"])
    print(f"wrote {Path(args.out_dir) / s['file']} ({s['file_bytes'] / 2**20:.1f} MiB, {s['format']}, "
          f"exported in {s['export_seconds']:.1f} s): {ins} -> image{s['outputs'][0]['shape']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
