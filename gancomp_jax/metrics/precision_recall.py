"""Improved precision and recall (Kynkäänniemi et al. 2019), as NVlabs ``precision_recall.py``.

Features (NVlabs: ``vgg16.pt`` with ``return_features=True``) are cast to float16. For
precision the manifold is the real set and the probes are generated; for recall the reverse.
Each manifold point's radius is the distance to its ``k``-th nearest neighbour in the manifold
(``kthvalue(k + 1)``, the point itself being the first), computed in float32 from the float16
distances and stored as float16; a probe counts if it lies within the radius of any manifold
point (``dist <= radius``, float16). Distances are Euclidean (``torch.cdist``) between float16
features; here they are computed in float32 from the float16 features and rounded to float16,
in row batches of ``row_batch_size`` (×``col_batch_size`` columns), so memory stays
``row_batch_size × N``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


@jax.jit
def _cdist16(rows, cols):
    """Euclidean distances ``[R, C]`` between float16 rows and cols, computed in float32, as float16."""
    r = rows.astype(jnp.float32)
    c = cols.astype(jnp.float32)
    d2 = (r * r).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2.0 * (r @ c.T)
    return jnp.sqrt(jnp.maximum(d2, 0.0)).astype(jnp.float16)


def _distances(rows: np.ndarray, manifold: np.ndarray, col_batch_size: int) -> np.ndarray:
    parts = [np.asarray(_cdist16(rows, manifold[i:i + col_batch_size]))
             for i in range(0, manifold.shape[0], col_batch_size)]
    return np.concatenate(parts, axis=1)


def manifold_radii(manifold: np.ndarray, nhood_size: int, row_batch_size: int = 10000,
                   col_batch_size: int = 10000) -> np.ndarray:
    """float16 ``[N]``: distance of each manifold point to its ``nhood_size``-th neighbour."""
    if manifold.shape[0] <= nhood_size:
        raise ValueError(f"precision/recall needs more than k={nhood_size} samples per set, got {manifold.shape[0]}")
    kth = []
    for i in range(0, manifold.shape[0], row_batch_size):
        dist = _distances(manifold[i:i + row_batch_size], manifold, col_batch_size).astype(np.float32)
        kth.append(np.partition(dist, nhood_size, axis=1)[:, nhood_size].astype(np.float16))
    return np.concatenate(kth)


def precision_recall(real_features, gen_features, nhood_size: int = 3, row_batch_size: int = 10000,
                     col_batch_size: int = 10000) -> tuple[float, float]:
    """``(precision, recall)`` between ``real_features [Nr, D]`` and ``gen_features [Ng, D]``."""
    real = np.asarray(real_features).astype(np.float16)
    gen = np.asarray(gen_features).astype(np.float16)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f"precision/recall needs [N, D] features of equal D, got {real.shape} and {gen.shape}")
    results = {}
    for name, manifold, probes in (("precision", real, gen), ("recall", gen, real)):
        kth = manifold_radii(manifold, nhood_size, row_batch_size, col_batch_size)
        pred = []
        for i in range(0, probes.shape[0], row_batch_size):
            dist = _distances(probes[i:i + row_batch_size], manifold, col_batch_size)
            pred.append((dist <= kth[None, :]).any(axis=1))
        results[name] = float(np.concatenate(pred).astype(np.float32).mean())
    return results["precision"], results["recall"]
