#!/usr/bin/env python
"""Correctness against CPU references, then benchmarks, on this machine's accelerator.

    python tools/device_check.py --out OUT [--nvlabs DIR]      # full mode (one H100: < 8 min)
    python tools/device_check.py --tiny --out OUT              # tiny configs (CPU, about a minute)

See gancomp_jax/accel/device_check.py."""

import sys
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from gancomp_jax.accel.device_check import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
