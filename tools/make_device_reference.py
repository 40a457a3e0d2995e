#!/usr/bin/env python
"""Writes the reference values of tools/device_check.py's correctness part (run on a CPU).

    JAX_PLATFORMS=cpu python tools/make_device_reference.py [tests/fixtures/device_check_reference.npz]

Computes the tiny generator / discriminator outputs and every phase of one StyleGAN2 and one
NICKEL & DiME iteration (float32, matmul precision highest) on one CPU device, exactly as
gancomp_jax.accel.device_check.correctness_outputs does on an accelerator, and stores them with
the versions that made them. Re-run it when the models, losses or initialisers change on
purpose (the check's init/* rows say when the initial weights no longer match).
"""

import os
import sys
import tempfile
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from gancomp_jax.accel import device_check as dc  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else dc.REFERENCE
    if jax.default_backend() != "cpu":
        print("error: make the reference on a CPU (JAX_PLATFORMS=cpu)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        values = dc.correctness_outputs(tmp)
    meta = {"jax": jax.__version__, "numpy": np.__version__, "backend": "cpu", "matmul_precision": "highest",
            "made_by": "tools/make_device_reference.py"}
    dc.save_reference(out, values, meta)
    print(f"wrote {out}: {len(values)} arrays, {out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
