"""Image conversions and PNG/grid writing (NVlabs quantisation, atomic writes)."""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [-1, 1] (``[N, H, W, C]``) → uint8 as NVlabs: ``clip(x*127.5+128, 0, 255)``.

    The cast truncates toward zero, like torch's ``.to(torch.uint8)`` after the clamp.
    """
    x = np.asarray(images, dtype=np.float32) * np.float32(127.5) + np.float32(128)
    return np.clip(x, 0, 255).astype(np.uint8)


def _pil(img: np.ndarray) -> Image.Image:
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return Image.fromarray(img, "L")
    if img.shape[-1] == 3:
        return Image.fromarray(img, "RGB")
    raise ValueError(f"cannot save an image with shape {img.shape}")


def save_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Writes a uint8 ``[H, W, C]`` image atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _pil(img).save(tmp, format="PNG")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def make_grid(images: np.ndarray, cols: int | None = None) -> np.ndarray:
    """Tiles uint8 ``[N, H, W, C]`` images into one ``[rows*H, cols*W, C]`` image (row-major)."""
    n, h, w, c = images.shape
    cols = cols or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / cols))
    grid = np.zeros((rows * h, cols * w, c), dtype=images.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = images[i]
    return grid
