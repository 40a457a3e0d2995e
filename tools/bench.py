#!/usr/bin/env python
"""Benchmarks; see gancomp_jax/bench.py. Example: python tools/bench.py --model paper256 --batch 8"""

import sys
from pathlib import Path

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from gancomp_jax.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
