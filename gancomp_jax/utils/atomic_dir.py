"""Atomic replacement of an output directory that was written completely beside it first."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path


def move_into_place(tmp: Path, directory: Path) -> None:
    """Renames the finished ``tmp`` to ``directory``; an existing ``directory`` is first renamed
    aside and deleted only after the new one is in place, so a reader never sees half of either."""
    if directory.exists():
        trash = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
        directory.rename(trash)
        tmp.rename(directory)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(directory)
