"""Latent interpolation (morphing) through a list of keyframes, for one or several generators.

Keyframes are NVlabs seeds (``z = RandomState(seed).randn(z_dim)``) or ``projected_w.npz`` files.
Between consecutive keyframes ``frames`` images are made at ``t = i / frames`` (the last keyframe
is appended once at the end), so K keyframes give ``(K - 1) * frames + 1`` images.

- ``space='w'``: linear interpolation of ws ``[num_ws, w_dim]`` (seeds are mapped first, then
  truncated ``w_avg + (w - w_avg) * psi`` with the model's own ``w_avg``);
- ``space='z'``: spherical interpolation of z (``slerp``, falling back to lerp when the two
  directions are nearly parallel), then mapping and truncation per frame. Only for seeds.

Several generators render the *same* latents: the same z for every model (each maps it with its
own mapping network) or the same projected ws (their ``[num_ws, w_dim]`` must fit every model).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.editing.latents import z_for_seeds
from gancomp_jax.models.generator import Generator
from gancomp_jax.utils.images import to_uint8

SPACES = ("w", "z")


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between vectors ``a`` and ``b`` (float64)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(a64, b64) / (np.linalg.norm(a64) * np.linalg.norm(b64))
    omega = np.arccos(np.clip(cos, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return (1 - t) * a64 + t * b64
    return (np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)


def path_weights(num_keys: int, frames: int) -> list[tuple[int, float]]:
    """``(segment index, t)`` of every frame along ``num_keys`` keyframes."""
    if num_keys < 2:
        raise ValueError(f"interpolation needs at least 2 keyframes, got {num_keys}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    out = [(k, i / frames) for k in range(num_keys - 1) for i in range(frames)]
    return out + [(num_keys - 2, 1.0)]


def frame_latents(keys: np.ndarray, frames: int, space: str) -> np.ndarray:
    """Interpolated latents ``[F, ...]`` along keyframes ``keys [K, ...]``."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    out = []
    for k, t in path_weights(len(keys), frames):
        a, b = keys[k], keys[k + 1]
        out.append(slerp(a, b, t) if space == "z" else (1 - t) * a.astype(np.float64) + t * b.astype(np.float64))
    return np.stack(out)


def render_morph(G: Generator, variables: Any, *, seeds: list[int] | None = None, ws: np.ndarray | None = None,
                 frames: int = 8, space: str = "w", truncation_psi: float = 1.0, noise_mode: str = "const",
                 batch: int = 16) -> np.ndarray:
    """uint8 frames ``[F, R, R, C]`` of the morph through ``seeds`` or ``ws [K, num_ws, w_dim]``."""
    cfg = G.config
    if cfg.c_dim > 0:
        raise ValueError(f"interpolation needs an unconditional generator; this one has c_dim={cfg.c_dim}")
    if (seeds is None) == (ws is None):
        raise ValueError("give keyframes as seeds or as projected ws (not both)")
    mapf = jax.jit(lambda v, z: G.apply(v, z, method=Generator.map))
    w_avg = np.asarray(variables["buffers"]["mapping"]["w_avg"], np.float32)
    if seeds is not None:
        z = z_for_seeds(seeds, cfg.z_dim)
        if space == "z":
            zs = frame_latents(z, frames, "z").astype(np.float32)
            wf = np.concatenate([np.asarray(mapf(variables, jnp.asarray(zs[i:i + batch])))
                                 for i in range(0, len(zs), batch)])
        else:
            keys = np.asarray(mapf(variables, jnp.asarray(z, jnp.float32)))
            wf = frame_latents(keys, frames, "w").astype(np.float32)
        wf = w_avg + (wf - w_avg) * np.float32(truncation_psi)
    else:
        if space != "w":
            raise ValueError("projected w keyframes are interpolated in W: use space='w'")
        if ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise ValueError(f"keyframe ws have shape {ws.shape[1:]}, this generator needs ({cfg.num_ws}, {cfg.w_dim})")
        wf = frame_latents(ws, frames, "w").astype(np.float32)
    synth = jax.jit(lambda v, w, k: G.apply(v, w, noise_mode, rngs={"noise": k}, method=Generator.synthesize))
    key = jax.random.key(0)
    imgs = [np.asarray(synth(variables, jnp.asarray(wf[i:i + batch]), jax.random.fold_in(key, i)))
            for i in range(0, len(wf), batch)]
    return to_uint8(np.concatenate(imgs))
