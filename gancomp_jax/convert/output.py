"""Where a conversion may write: never over the source, never over folders that are not ours.

The shared guard is :mod:`gancomp_jax.utils.atomic_dir`; this converter is stricter and only
ever replaces a model directory (not other marked outputs of ours).

``--overwrite`` replaces a previous output of ours only: a model directory holding exactly
``model.json`` (format ``gancomp_jax.model``) and ``variables/``, as
:func:`gancomp_jax.checkpoints.save_model` writes it. Anything else (a folder holding the
source file, foreign files, a plain file, a symbolic link) is refused before anything is read.
"""

from __future__ import annotations

import os
from pathlib import Path

from gancomp_jax.utils.atomic_dir import MODEL_DIR_ENTRIES, OutputRefused, _protected, is_model_dir

__all__ = ["MODEL_DIR_ENTRIES", "check_output_dir", "is_model_dir"]


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
    why = _protected(out_dir, ())
    if why:
        raise OutputRefused(f"OUT_DIR {out_dir} must not be replaced: {why}; nothing was changed")
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass --overwrite to replace it")
    ours, why = is_model_dir(out_dir)
    if not ours:
        raise ValueError(f"--overwrite only replaces a model directory written by this converter "
                         f"(model.json + variables/), and {out_dir} is not one: {why}; nothing was changed")
