"""Where a conversion may write: never over the source, never over folders that are not ours.

``--overwrite`` replaces a previous output of ours only: a model directory holding exactly
``model.json`` (format ``gancomp_jax.model``) and ``variables/``, as
:func:`gancomp_jax.checkpoints.save_model` writes it. Anything else (a folder holding the
source file, foreign files, a plain file, a symbolic link) is refused before anything is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["MODEL_DIR_ENTRIES", "check_output_dir", "is_model_dir"]

#: What :func:`gancomp_jax.checkpoints.save_model` puts in a model directory.
MODEL_DIR_ENTRIES = frozenset({"model.json", "variables"})
_MODEL_FORMAT = "gancomp_jax.model"  # gancomp_jax.checkpoints.FORMAT (not imported: it pulls in JAX)


def is_model_dir(path: str | os.PathLike) -> tuple[bool, str]:
    """``(True, '')`` if ``path`` is a model directory of ours, else ``(False, why not)``."""
    path = Path(path)
    if path.is_symlink():
        return False, "it is a symbolic link"
    if not path.is_dir():
        return False, "it is not a directory"
    entries = sorted(p.name for p in path.iterdir())
    foreign = [name for name in entries if name not in MODEL_DIR_ENTRIES]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        return False, f"it holds files that are not part of a converted model ({shown})"
    description = path / "model.json"
    if not description.is_file() or not (path / "variables").is_dir():
        return False, "it lacks model.json or variables/"
    try:
        with open(description, "rb") as f:
            desc = json.loads(f.read(1 << 20))
    except (OSError, ValueError):
        return False, "its model.json is not readable JSON"
    if not isinstance(desc, dict) or desc.get("format") != _MODEL_FORMAT:
        return False, f"its model.json is not a {_MODEL_FORMAT} description"
    return True, ""


def check_output_dir(out_dir: str | os.PathLike, src: str | os.PathLike, overwrite: bool) -> None:
    """Raises unless ``out_dir`` may receive the model converted from ``src``.

    Raises:
      ValueError: ``out_dir`` is, or contains, ``src``; or ``overwrite`` is set and ``out_dir``
        is not a model directory written by this converter.
      FileExistsError: ``out_dir`` exists and ``overwrite`` is not set.
    """
    out_dir, src = Path(out_dir), Path(src)
    out_real, src_real = out_dir.resolve(), src.resolve()
    if out_real == src_real or out_real in src_real.parents:
        raise ValueError(f"OUT_DIR {out_dir} must not be or contain the source file {src}; "
                         "choose a new directory for the converted model")
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    ours, why = is_model_dir(out_dir)
    if not ours:
        raise ValueError(f"--overwrite only replaces a model directory written by this converter "
                         f"(model.json + variables/), and {out_dir} is not one: {why}; nothing was changed")
