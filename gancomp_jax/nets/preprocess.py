"""Image preprocessing for the perception networks, matching the PyTorch references exactly.

All functions take and return NHWC arrays (``[N, H, W, C]``) and are pure, jit-able and
differentiable. Resizing is written as two small interpolation matrices (one per axis) built
in numpy from the static shapes, so it reproduces ``torch.nn.functional.interpolate`` to
float rounding — including its border clamping, which ``jax.image.resize`` does not share:

* ``resize_bilinear(x, size, align_corners=False)`` = ``F.interpolate(mode='bilinear',
  align_corners=False)`` without antialiasing (pytorch-fid's resize to 299, LPIPS, CAGC's
  resize to 512 for the face parser);
* ``resize_bilinear(x, size, align_corners=True)`` = ``align_corners=True`` (BiSeNet's
  upsampling of its logits);
* ``resize_nearest(x, size)`` = ``F.interpolate(mode='nearest')`` (index ``floor(i * in/out)``)
  and ``resize_nearest(x, size, half_pixel=True)`` = ``mode='nearest-exact'`` (index
  ``floor((i + 0.5) * in/out)``, what PIL's NEAREST does).

Value ranges: images in the project are ``[-1, 1]``; :func:`to_unit` maps them to ``[0, 1]``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import jax.numpy as jnp
import numpy as np

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "fid_inception_input",
    "imagenet_normalize",
    "interpolation_matrix",
    "quantize_uint8",
    "resize_bilinear",
    "resize_nearest",
    "to_unit",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@lru_cache(maxsize=256)
def interpolation_matrix(in_size: int, out_size: int, mode: str, align_corners: bool = False) -> np.ndarray:
    """``[out_size, in_size]`` float32 matrix ``A`` with ``resized = A @ signal`` along one axis.

    ``mode`` is ``'bilinear'``, ``'nearest'`` or ``'nearest-exact'``; the index arithmetic is
    PyTorch's (``area_pixel_compute_source_index`` with scale ``in/out``, negative source
    coordinates clamped to 0, the upper neighbour clamped to the last pixel).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"cannot resize an axis of {in_size} pixels to {out_size}")
    # float32 index arithmetic, as torch's CPU kernels for float32 images
    f32 = np.float32
    a = np.zeros((out_size, in_size), np.float32)
    dst = np.arange(out_size, dtype=f32)
    if mode == "bilinear":
        if align_corners:
            scale = f32((in_size - 1) / (out_size - 1)) if out_size > 1 else f32(0.0)
            src = dst * scale
        else:
            src = np.maximum(f32(in_size / out_size) * (dst + f32(0.5)) - f32(0.5), f32(0.0))
        i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        i1 = np.minimum(i0 + 1, in_size - 1)
        lam = (src - i0.astype(f32)).astype(f32)
        np.add.at(a, (np.arange(out_size), i0), f32(1.0) - lam)
        np.add.at(a, (np.arange(out_size), i1), lam)
    elif mode == "nearest":
        idx = np.minimum(np.floor(dst * f32(in_size / out_size)).astype(np.int64), in_size - 1)
        a[np.arange(out_size), idx] = 1.0
    elif mode == "nearest-exact":
        idx = np.minimum(np.floor((dst + f32(0.5)) * f32(in_size / out_size)).astype(np.int64), in_size - 1)
        a[np.arange(out_size), idx] = 1.0
    else:
        raise ValueError(f"unknown interpolation mode {mode!r}")
    return a.astype(np.float32)


def _resize(x: jnp.ndarray, size: Sequence[int], mode: str, align_corners: bool) -> jnp.ndarray:
    if x.ndim != 4:
        raise ValueError(f"expected images [N, H, W, C], got shape {tuple(x.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    in_h, in_w = x.shape[1], x.shape[2]
    if (in_h, in_w) == (out_h, out_w):
        return x
    ah = jnp.asarray(interpolation_matrix(in_h, out_h, mode, align_corners), x.dtype)
    aw = jnp.asarray(interpolation_matrix(in_w, out_w, mode, align_corners), x.dtype)
    x = jnp.einsum("oh,nhwc->nowc", ah, x)
    return jnp.einsum("pw,nowc->nopc", aw, x)


def resize_bilinear(x: jnp.ndarray, size: Sequence[int], *, align_corners: bool = False) -> jnp.ndarray:
    """Bilinear resize of ``x [N, H, W, C]`` to ``size = (H', W')`` as torch (no antialiasing)."""
    return _resize(x, size, "bilinear", align_corners)


def resize_nearest(x: jnp.ndarray, size: Sequence[int], *, half_pixel: bool = False) -> jnp.ndarray:
    """Nearest resize as torch ``'nearest'`` (or ``'nearest-exact'`` / PIL NEAREST if ``half_pixel``)."""
    return _resize(x, size, "nearest-exact" if half_pixel else "nearest", False)


def to_unit(x: jnp.ndarray) -> jnp.ndarray:
    """``[-1, 1] -> [0, 1]``: ``(x + 1) / 2`` (no clamping)."""
    return (x + 1.0) * 0.5


def quantize_uint8(x01: jnp.ndarray) -> jnp.ndarray:
    """Round ``[0, 1]`` images to 256 levels as ``(x*255 + 0.5).clamp(0, 255).to(uint8) / 255``.

    Returned as floats in ``[0, 1]``; the rounding has zero gradient (use only where the
    reference quantises, e.g. CAGC's conversion to a PIL image before face parsing).
    """
    return jnp.floor(jnp.clip(x01 * 255.0 + 0.5, 0.0, 255.0)) / 255.0


def imagenet_normalize(x01: jnp.ndarray) -> jnp.ndarray:
    """``(x - mean) / std`` with the ImageNet statistics, for ``[0, 1]`` RGB images."""
    mean = jnp.asarray(IMAGENET_MEAN, x01.dtype)
    std = jnp.asarray(IMAGENET_STD, x01.dtype)
    return (x01 - mean) / std


def fid_inception_input(x01: jnp.ndarray, *, resize: bool = True) -> jnp.ndarray:
    """pytorch-fid's input transform: bilinear resize to 299 (``align_corners=False``), then ``2x - 1``.

    ``x01``: ``[N, H, W, 3]`` in ``[0, 1]``. Returns ``[N, 299, 299, 3]`` in ``[-1, 1]``.
    """
    if resize:
        x01 = resize_bilinear(x01, (299, 299), align_corners=False)
    return 2.0 * x01 - 1.0
