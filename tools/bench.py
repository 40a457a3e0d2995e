#!/usr/bin/env python
"""Benchmarks; see gancomp_jax/bench.py. Example: python tools/bench.py --model paper256 --batch 8"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gancomp_jax.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
