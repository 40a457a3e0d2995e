"""Kernel Inception Distance (Bińkowski et al. 2018), as NVlabs ``kernel_inception_distance.py``.

Unbiased MMD² with the cubic polynomial kernel ``k(x, y) = (xᵀy/D + 1)³`` averaged over
``num_subsets`` random subsets of ``m = min(N_real, N_gen, max_subset_size)`` rows drawn
without replacement (NVlabs: 100 subsets of ≤ 1000). NVlabs draws subsets with the global,
unseeded ``np.random``; here the draws come from ``np.random.RandomState(seed)`` in the same
order (generated rows, then real rows, per subset), so results are reproducible.
"""

from __future__ import annotations

import numpy as np


def kernel_inception_distance(real_features, gen_features, num_subsets: int = 100,
                              max_subset_size: int = 1000, seed: int | None = 0) -> float:
    """KID between ``real_features [Nr, D]`` and ``gen_features [Ng, D]`` (float64 result)."""
    real = np.asarray(real_features)
    gen = np.asarray(gen_features)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f"KID needs [N, D] features of equal D, got {real.shape} and {gen.shape}")
    n = real.shape[1]
    m = min(min(real.shape[0], gen.shape[0]), max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples on each side, got {real.shape[0]} real and {gen.shape[0]} generated")
    rng = np.random.RandomState(seed) if seed is not None else np.random
    t = 0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)
