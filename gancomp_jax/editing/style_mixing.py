"""Style mixing as NVlabs' ``style_mixing.py``: rows take the coarse/fine styles of columns.

For every seed of ``row_seeds ∪ col_seeds``: ``z = RandomState(seed).randn(z_dim)``, ``w =
mapping(z)`` ``[num_ws, w_dim]``, truncated on every layer ``w_avg + (w - w_avg) * psi``. The
image of (row, col) is the synthesis of the row's ws with the layers ``col_styles`` (e.g.
``0-6``) taken from the column's ws. Images are quantised ``clip(x * 127.5 + 128, 0, 255)``
truncated to uint8 as torch does. The grid has an empty top-left cell, the column seeds' own
images along the first row, the row seeds' own images down the first column, and the mixes
inside (NVlabs layout).

``noise_mode='random'``: NVlabs draws torch noise for every synthesis call; we key the noise of
image (row, col) by ``fold_in(fold_in(key(noise_seed), row), col)`` (the sources by (seed,
seed)), so a re-run is identical. ``const`` and ``none`` need no random numbers and match NVlabs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.editing.latents import z_for_seeds
from gancomp_jax.models.generator import NOISE_MODES, Generator
from gancomp_jax.utils.images import to_uint8


def check_styles(col_styles: list[int], num_ws: int) -> list[int]:
    bad = [s for s in col_styles if not 0 <= s < num_ws]
    if bad:
        raise ValueError(f"col_styles {bad} out of range: this generator has {num_ws} style layers (0-{num_ws - 1})")
    if not col_styles:
        raise ValueError("col_styles is empty")
    return list(col_styles)


def style_mix(G: Generator, variables: Any, row_seeds: list[int], col_seeds: list[int], col_styles: list[int],
              truncation_psi: float = 1.0, noise_mode: str = "const", noise_seed: int = 0
              ) -> dict[tuple[int, int], np.ndarray]:
    """``{(row, col): uint8 [R, R, C]}`` for every pair plus ``(seed, seed)`` for every source seed."""
    cfg = G.config
    if cfg.c_dim > 0:
        raise ValueError(f"style mixing needs an unconditional generator; this one has c_dim={cfg.c_dim}")
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    col_styles = check_styles(col_styles, cfg.num_ws)
    all_seeds = sorted(set(row_seeds) | set(col_seeds))
    ws = np.asarray(jax.jit(lambda v, z: G.apply(v, z, method=Generator.map))(
        variables, jnp.asarray(z_for_seeds(all_seeds, cfg.z_dim), jnp.float32)))
    w_avg = np.asarray(variables["buffers"]["mapping"]["w_avg"], np.float32)
    ws = w_avg + (ws - w_avg) * np.float32(truncation_psi)
    w_of = dict(zip(all_seeds, ws))
    synth = jax.jit(lambda v, w, k: G.apply(v, w, noise_mode, rngs={"noise": k}, method=Generator.synthesize))
    base = jax.random.key(noise_seed)

    def render(w, r, c):
        k = jax.random.fold_in(jax.random.fold_in(base, r), c)
        return to_uint8(np.asarray(synth(variables, jnp.asarray(w[None]), k)))[0]

    images = {(s, s): render(w_of[s], s, s) for s in all_seeds}
    for r in row_seeds:
        for c in col_seeds:
            w = w_of[r].copy()
            w[col_styles] = w_of[c][col_styles]
            images[(r, c)] = render(w, r, c)
    return images


def mixing_grid(images: dict[tuple[int, int], np.ndarray], row_seeds: list[int], col_seeds: list[int]) -> np.ndarray:
    """uint8 ``[(rows+1)*R, (cols+1)*R, C]`` in NVlabs' layout (black top-left cell)."""
    h, w, c = next(iter(images.values())).shape
    grid = np.zeros(((len(row_seeds) + 1) * h, (len(col_seeds) + 1) * w, c), np.uint8)
    for j, cs in enumerate(col_seeds, start=1):
        grid[0:h, j * w:(j + 1) * w] = images[(cs, cs)]
    for i, rs in enumerate(row_seeds, start=1):
        grid[i * h:(i + 1) * h, 0:w] = images[(rs, rs)]
        for j, cs in enumerate(col_seeds, start=1):
            grid[i * h:(i + 1) * h, j * w:(j + 1) * w] = images[(rs, cs)]
    return grid
