"""Content masks for content-aware pruning: where salt-and-pepper noise may be placed.

A mask function maps generated images ``[N, H, W, C]`` (float, nominally [-1, 1]) to booleans
``[N, H, W]`` (True: content of interest). Available:

* ``'none'``: every pixel (returned as ``None``, meaning "no mask").
* ``'face_parser'``: CAGC's face mask — a BiSeNet face parser (face-parsing.PyTorch
  ``79999_iter.pth``, 19 classes) keeping labels > 0 and ≠ 16 (everything but background and
  cloth). It is built by ``gancomp_jax.nets.make_face_mask_fn(weights)``; ``weights`` is the file
  the user has (required, never downloaded).
* any Python callable with the signature above.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

MaskFn = Callable[[np.ndarray], np.ndarray]
MASKS = ("none", "face_parser")


def get_mask_fn(mask: str | MaskFn | None, weights: str | os.PathLike | None = None) -> MaskFn | None:
    """Resolves a mask spec to a function (or None for all pixels); errors before any work is done."""
    if mask is None or (isinstance(mask, str) and mask in ("", "none")):
        return None
    if callable(mask):
        return mask
    if mask == "face_parser":
        return _face_parser(weights)
    raise ValueError(f"unknown content mask {mask!r}; use one of {MASKS} or a callable images -> masks")


def _face_parser(weights: Any) -> MaskFn:
    if not weights:
        raise ValueError("mask 'face_parser' needs the BiSeNet face-parser weight file "
                         "(face-parsing.PyTorch 79999_iter.pth, or a converted directory): set mask_weights")
    if not Path(weights).exists():
        raise FileNotFoundError(f"face-parser weight file {weights} does not exist")
    try:
        import gancomp_jax.nets as nets
        make = getattr(nets, "make_face_mask_fn")
        import gancomp_jax.nets.bisenet  # noqa: F401  (fails clearly if the port is absent)
    except (ImportError, AttributeError) as e:
        raise ValueError("mask 'face_parser' needs the Flax BiSeNet port (gancomp_jax.nets.bisenet), "
                         f"which is not available in this installation: {e}") from None
    fn = make(weights)

    def mask_fn(images):
        return np.asarray(fn(images)).astype(bool)
    return mask_fn
