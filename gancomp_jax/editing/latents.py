"""Latent inputs of the editing tools: NVlabs seeds → z, ``projected_w.npz`` files → ws.

``projected_w.npz`` is what NVlabs' ``projector.py`` and our ``project`` job write: key ``w``,
float32 ``[N, num_ws, w_dim]`` (N = 1 for one projection). NVlabs' ``generate.py --projected-w``
only asserts the shape; we check key, dtype, shape and finiteness with one error each.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


def z_for_seeds(seeds: list[int], z_dim: int) -> np.ndarray:
    """float64 ``[len(seeds), z_dim]``: ``RandomState(seed).randn(z_dim)`` per seed (NVlabs)."""
    return np.stack([np.random.RandomState(s).randn(z_dim) for s in seeds])


def load_projected_w(path: str, num_ws: int, w_dim: int) -> np.ndarray:
    """``w`` of a ``projected_w.npz``, checked to be finite floats ``[N, num_ws, w_dim]``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"projected_w file {path} does not exist")
    if not p.is_file():
        raise ValueError(f"projected_w {path} is not a file")
    try:
        with np.load(p, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError(f"projected_w file {path} is a .npy array, not an .npz with key 'w'")
            if "w" not in f.files:
                raise ValueError(f"projected_w file {path} has no key 'w' (keys: {sorted(f.files)}); expected "
                                 f"the projected_w.npz of the project job or NVlabs projector.py")
            ws = np.asarray(f["w"])
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"projected_w file {path} is not a readable .npz ({e.__class__.__name__}: {e})") from None
    except ValueError as e:
        if "projected_w" in str(e):
            raise
        raise ValueError(f"projected_w file {path} is not a readable .npz ({e})") from None
    if ws.ndim != 3 or ws.shape[1:] != (num_ws, w_dim) or ws.shape[0] < 1 or not np.issubdtype(ws.dtype, np.floating):
        raise ValueError(f"projected_w file {path}: 'w' has shape {tuple(ws.shape)} ({ws.dtype}); this generator "
                         f"needs floats of shape [N, {num_ws}, {w_dim}] (N, num_ws, w_dim)")
    if not np.all(np.isfinite(ws)):
        raise ValueError(f"projected_w file {path}: 'w' holds NaN or Inf values")
    return ws.astype(np.float32)
