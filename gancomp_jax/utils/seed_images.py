"""Removing an earlier run's per-seed images from a generation workdir (``seedNNNN.png``).

Its own module so that the StyleGAN2 and BigGAN generation jobs share it without importing each
other (no import cycle).
"""

from __future__ import annotations

import re
from pathlib import Path

_SEED_PNG = re.compile(r"seed\d{4,}\.png")


def remove_stale_seed_images(out: Path, written: list[Path]) -> int:
    """Deletes ``seedNNNN.png`` files in our workdir ``out`` that this run did not write (an earlier
    run's other seeds, which would otherwise sit beside the new grid); returns how many."""
    keep = {p.name for p in written}
    stale = [p for p in out.iterdir()
             if _SEED_PNG.fullmatch(p.name) and p.name not in keep and (p.is_file() or p.is_symlink())]
    for p in stale:
        p.unlink()
    return len(stale)
