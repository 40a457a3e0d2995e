"""Kernel maximum mean discrepancy (MMD²) between two sets of embeddings.

This is *our* "DiME done properly" (the paper describes DiME as an MMD between embedding
distributions; the released code matches raw moments instead, see
:mod:`gancomp_jax.losses.dime`). Kernels:

- ``gaussian``: ``k(x, y) = mean_s exp(-|x - y|² / (s · h))`` over the bandwidth multipliers
  ``s`` (default ``(0.25, 0.5, 1, 2, 4)``), where ``h`` is the median heuristic: the median of
  the squared pairwise distances of the pooled sample (diagonal excluded), not differentiated.
- ``polynomial``: ``k(x, y) = (x·y / d + coef0)^degree`` (KID's kernel with degree 3, coef0 1).

Estimators (Gretton et al., JMLR 2012):

- ``mmd2_unbiased(x, y)`` with ``n ≠ m`` (or ``paired=False``): within-set means exclude the
  diagonal, the cross term averages over all ``n·m`` pairs (KID's estimator).
- ``paired=True`` (needs ``n == m``): the U-statistic of Gretton's eq. (3), which also excludes
  the cross diagonal ``k(x_i, y_i)``; it is exactly 0 when ``x`` and ``y`` are the same set.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

DEFAULT_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
KERNELS = ("gaussian", "polynomial")


def squared_distances(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """``|x_i - y_j|²`` for ``x [n, d]``, ``y [m, d]`` → ``[n, m]`` (clamped at 0)."""
    xx = jnp.sum(jnp.square(x), axis=1)[:, None]
    yy = jnp.sum(jnp.square(y), axis=1)[None, :]
    return jnp.maximum(xx + yy - 2.0 * x @ y.T, 0.0)


def median_bandwidth(x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Median of the off-diagonal squared distances of ``concat(x, y)`` (stop-gradient)."""
    z = jax.lax.stop_gradient(jnp.concatenate([x, y], axis=0))
    n = z.shape[0]
    d2 = squared_distances(z, z)
    iu = jnp.triu_indices(n, k=1)
    return jnp.maximum(jnp.median(d2[iu]), 1e-12)


def gaussian_kernels(x: jnp.ndarray, y: jnp.ndarray, bandwidth: jnp.ndarray,
                     scales: Sequence[float] = DEFAULT_SCALES):
    """``(Kxx, Kyy, Kxy)`` of the multi-bandwidth Gaussian kernel."""
    def k(a, b):
        d2 = squared_distances(a, b)
        return sum(jnp.exp(-d2 / (s * bandwidth)) for s in scales) / len(scales)
    return k(x, x), k(y, y), k(x, y)


def polynomial_kernels(x: jnp.ndarray, y: jnp.ndarray, degree: int = 3, coef0: float = 1.0):
    """``(Kxx, Kyy, Kxy)`` of ``(x·y/d + coef0)^degree``."""
    d = x.shape[1]
    def k(a, b):
        return (a @ b.T / d + coef0) ** degree
    return k(x, x), k(y, y), k(x, y)


def _offdiag_mean(k: jnp.ndarray) -> jnp.ndarray:
    n = k.shape[0]
    return (jnp.sum(k) - jnp.trace(k)) / (n * (n - 1))


def mmd2_from_kernels(kxx: jnp.ndarray, kyy: jnp.ndarray, kxy: jnp.ndarray,
                      paired: bool = False) -> jnp.ndarray:
    """Unbiased MMD² from the three kernel matrices (see the module docstring)."""
    n, m = kxy.shape
    if n < 2 or m < 2:
        raise ValueError(f"unbiased MMD² needs at least 2 samples per set, got {n} and {m}")
    if paired:
        if n != m:
            raise ValueError(f"paired MMD² needs equal set sizes, got {n} and {m}")
        cross = _offdiag_mean(kxy) + _offdiag_mean(kxy.T)
    else:
        cross = 2.0 * jnp.mean(kxy)
    return _offdiag_mean(kxx) + _offdiag_mean(kyy) - cross


def mmd2_unbiased(x: jnp.ndarray, y: jnp.ndarray, kernel: str = "gaussian", *,
                  scales: Sequence[float] = DEFAULT_SCALES, bandwidth: jnp.ndarray | None = None,
                  degree: int = 3, coef0: float = 1.0, paired: bool = False) -> jnp.ndarray:
    """Unbiased MMD² between embeddings ``x [n, d]`` and ``y [m, d]`` (float32 scalar).

    Args:
      kernel: ``'gaussian'`` (median-heuristic multi-bandwidth) or ``'polynomial'``.
      scales: bandwidth multipliers of the Gaussian kernel.
      bandwidth: fixed Gaussian ``h`` instead of the median heuristic.
      degree, coef0: polynomial kernel settings.
      paired: use the U-statistic that excludes ``k(x_i, y_i)`` (needs ``n == m``).
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"MMD² needs embeddings [n, d] and [m, d], got {x.shape} and {y.shape}")
    x = x.astype(jnp.float32)
    y = y.astype(jnp.float32)
    if kernel == "gaussian":
        h = median_bandwidth(x, y) if bandwidth is None else jnp.asarray(bandwidth, jnp.float32)
        kxx, kyy, kxy = gaussian_kernels(x, y, h, scales)
    elif kernel == "polynomial":
        kxx, kyy, kxy = polynomial_kernels(x, y, degree, coef0)
    else:
        raise ValueError(f"unknown MMD kernel {kernel!r}; choose one of {KERNELS}")
    return mmd2_from_kernels(kxx, kyy, kxy, paired=paired)


def sample_bank(bank: jnp.ndarray, key: jax.Array, size: int) -> jnp.ndarray:
    """``size`` rows of a reference bank ``[B, d]`` drawn without replacement."""
    if size > bank.shape[0]:
        raise ValueError(f"bank of {bank.shape[0]} embeddings is smaller than the requested {size}")
    idx = jax.random.choice(key, bank.shape[0], (size,), replace=False)
    return bank[idx]
