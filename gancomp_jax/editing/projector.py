"""Projection of an image into a generator's latent space: NVlabs' ``projector.py`` in JAX.

Algorithm (stylegan2-ada-pytorch ``projector.project``), for a target uint8 ``[R, R, C]``:

1. ``w_avg`` / ``w_std`` from ``w_avg_samples`` (10,000) latents
   ``z = RandomState(123).randn(N, z_dim)`` through the mapping network (first w of each):
   ``w_avg = mean(w)`` ``[1, 1, w_dim]``, ``w_std = sqrt(sum((w - w_avg)^2) / N)`` (a scalar).
2. Variables: ``w_opt`` initialised to ``w_avg`` (``space='w'``: ``[1, 1, w_dim]``, broadcast to
   all ``num_ws`` layers; ``space='w_plus'``: ``[1, num_ws, w_dim]``, one w per layer — an
   option NVlabs does not have) and every ``noise_const`` map of the synthesis network,
   re-initialised with standard normal noise.
3. For ``step`` in ``0 .. num_steps-1``, ``t = step / num_steps``:
   ``w_noise_scale = w_std * initial_noise_factor * max(0, 1 - t / noise_ramp_length)^2``;
   ``lr = initial_learning_rate * rampdown * rampup`` with
   ``rampdown = 0.5 - 0.5 cos(pi * min(1, (1 - t) / lr_rampdown_length))`` and
   ``rampup = min(1, t / lr_rampup_length)``; synthesise ``w_opt + N(0, 1) * w_noise_scale``
   with ``noise_mode='const'`` (the optimised maps); loss ``dist + regularize_noise_weight *
   reg`` where ``reg`` sums, for every noise map and every level of its 2x average-pooling pyramid
   down to 8x8 (a map of side <= 8 is used once), the squared mean of the map times itself rolled
   by one pixel along x and along y; one Adam step (beta 0.9, 0.999, eps 1e-8) on ``w_opt`` and
   the noise maps; record ``w_opt``; then renormalise each noise map to zero mean and unit
   mean-square.
4. Result: the recorded w of every step, as ws ``[num_steps, num_ws, w_dim]``; the last is the
   projection, saved as ``projected_w.npz`` (key ``w``, ``[1, num_ws, w_dim]``).

Defaults are NVlabs': ``num_steps`` 1000, ``w_avg_samples`` 10,000, ``initial_learning_rate``
0.1, ``initial_noise_factor`` 0.05, ``lr_rampdown_length`` 0.25, ``lr_rampup_length`` 0.05,
``noise_ramp_length`` 0.75, ``regularize_noise_weight`` 1e5, seed 303.

Differences from NVlabs (every one deliberate):

- Random numbers come from ``jax.random`` keyed by ``seed`` (NVlabs seeds torch's global RNG
  with 303), so a run is reproducible but not bit-identical to a torch run.
- ``loss`` chooses the distance (:mod:`gancomp_jax.editing.perceptual`): ``vgg_nvlabs`` is NVlabs'
  LPIPS-feature distance built from torchvision's VGG16 and the LPIPS v0.1 heads (NVlabs uses its
  own ``vgg16.pt``; the differences are listed there); ``lpips`` and ``mse`` are options.
- The projection is the *final* recorded ``w_opt`` (as NVlabs) and ``proj.png`` is rendered with
  the optimised noise maps discarded: NVlabs renders ``G.synthesis(w, noise_mode='const')`` with
  a deep copy of G whose noise buffers it optimised, so its ``proj.png`` uses the *optimised*
  noise while ``generate.py --projected-w`` (a fresh G) uses the *stored* noise. We render
  ``proj.png`` with the generator's stored ``noise_const`` maps, so that ``proj.png`` equals what
  ``generate --projected_w`` renders from ``projected_w.npz`` (tested bit-exactly).
  ``render_noise='optimized'`` renders with the optimised maps instead (NVlabs' ``proj.png``),
  and the maps are then also saved in ``projected_noise.npz``.
- Conditional generators (``c_dim > 0``) are refused; NVlabs passes no label and fails too.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from gancomp_jax.models.generator import Generator

SPACES = ("w", "w_plus")
RENDER_NOISE = ("stored", "optimized")


@dataclasses.dataclass(frozen=True)
class ProjectorOptions:
    """NVlabs' ``project()`` arguments plus our ``space``/``loss`` options (see the module doc)."""

    num_steps: int = 1000
    w_avg_samples: int = 10000
    initial_learning_rate: float = 0.1
    initial_noise_factor: float = 0.05
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    noise_ramp_length: float = 0.75
    regularize_noise_weight: float = 1e5
    space: str = "w"
    seed: int = 303

    def validate(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.w_avg_samples < 1:
            raise ValueError(f"w_avg_samples must be >= 1, got {self.w_avg_samples}")
        if self.space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {self.space!r}")
        for name in ("lr_rampdown_length", "lr_rampup_length", "noise_ramp_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def learning_rate(step: int, o: ProjectorOptions) -> float:
    """NVlabs' ramped learning rate at ``step``."""
    t = step / o.num_steps
    ramp = min(1.0, (1.0 - t) / o.lr_rampdown_length)
    ramp = 0.5 - 0.5 * np.cos(ramp * np.pi)
    ramp = ramp * min(1.0, t / o.lr_rampup_length)
    return float(o.initial_learning_rate * ramp)


def w_noise_scale(step: int, w_std: float, o: ProjectorOptions) -> float:
    t = step / o.num_steps
    return float(w_std * o.initial_noise_factor * max(0.0, 1.0 - t / o.noise_ramp_length) ** 2)


def w_stats(G: Generator, variables: Any, z_dim: int, n: int, chunk: int = 2000) -> tuple[np.ndarray, float]:
    """``w_avg [1, 1, w_dim]`` and scalar ``w_std`` from ``RandomState(123).randn(n, z_dim)``."""
    z = np.random.RandomState(123).randn(n, z_dim)
    mapf = jax.jit(lambda v, z: G.apply(v, z, method=Generator.map)[:, 0])
    ws = np.concatenate([np.asarray(mapf(variables, jnp.asarray(z[i:i + chunk], jnp.float32)))
                         for i in range(0, n, chunk)]).astype(np.float32)[:, None, :]
    w_avg = np.mean(ws, axis=0, keepdims=True)
    w_std = float((np.sum((ws - w_avg) ** 2) / n) ** 0.5)
    return w_avg, w_std


def noise_paths(variables: Any) -> list[tuple[str, ...]]:
    """Paths of every ``noise_const`` map in ``variables['buffers']`` (sorted)."""
    flat = traverse_util.flatten_dict(dict(variables.get("buffers", {})))
    return sorted(k for k in flat if k[-1] == "noise_const")


def with_noise(variables: Any, paths: list[tuple[str, ...]], maps: list[jnp.ndarray]) -> Any:
    """``variables`` with the noise maps at ``paths`` replaced by ``maps``."""
    flat = traverse_util.flatten_dict(dict(variables["buffers"]))
    for p, m in zip(paths, maps):
        flat[p] = m
    return {**variables, "buffers": traverse_util.unflatten_dict(flat)}


def noise_regularization(maps: list[jnp.ndarray]) -> jnp.ndarray:
    """NVlabs' noise-map regulariser over 2x average-pooled pyramids (maps ``[H, W]``)."""
    reg = jnp.float32(0.0)
    for m in maps:
        x = m
        while True:
            reg = reg + jnp.mean(x * jnp.roll(x, 1, axis=1)) ** 2
            reg = reg + jnp.mean(x * jnp.roll(x, 1, axis=0)) ** 2
            if x.shape[0] <= 8:
                break
            h, w = x.shape
            x = x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return reg


def normalize_noise(maps: list[jnp.ndarray]) -> list[jnp.ndarray]:
    out = []
    for m in maps:
        m = m - jnp.mean(m)
        out.append(m * jax.lax.rsqrt(jnp.mean(jnp.square(m))))
    return out


@dataclasses.dataclass
class Projection:
    """Result of :func:`project`: ``ws`` ``[num_steps, num_ws, w_dim]`` (the w after each step),
    the optimised noise maps, and the loss / distance of every step."""

    ws: np.ndarray
    noise: dict[str, np.ndarray]
    losses: np.ndarray
    dists: np.ndarray

    @property
    def w(self) -> np.ndarray:
        """The projection, ``[1, num_ws, w_dim]``."""
        return self.ws[-1:]


def make_step(G: Generator, dist: Callable, o: ProjectorOptions, paths: list[tuple[str, ...]]):
    """``(tx, step)``: the Adam transform and the jitted optimisation step
    ``step(params, opt_state, lr, noise_scale, key, variables, target_prepared)``. Build it once per
    generator and loss and pass it to :func:`project` for every target (one compilation)."""
    cfg = G.config
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.0, b1=0.9, b2=0.999, eps=1e-8)

    def loss_fn(p, noise_scale, k, variables, target_prepared):
        w = p["w"] + jax.random.normal(k, p["w"].shape, jnp.float32) * noise_scale
        ws = jnp.broadcast_to(w, (1, cfg.num_ws, cfg.w_dim))
        img = G.apply(with_noise(variables, paths, p["noise"]), ws, "const", method=Generator.synthesize)
        d = dist(target_prepared, img)
        return d + noise_regularization(p["noise"]) * o.regularize_noise_weight, d

    @jax.jit
    def step(p, s, lr, noise_scale, k, variables, target_prepared):
        (loss, d), g = jax.value_and_grad(loss_fn, has_aux=True)(p, noise_scale, k, variables, target_prepared)
        s.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
        updates, s = tx.update(g, s, p)
        p = optax.apply_updates(p, updates)
        return {"w": p["w"], "noise": normalize_noise(p["noise"])}, s, loss, d

    return tx, step


def project(G: Generator, variables: Any, target_u8: np.ndarray, prepare: Callable, dist: Callable,
            o: ProjectorOptions = ProjectorOptions(), *, w_avg_std: tuple[np.ndarray, float] | None = None,
            step: tuple[Any, Callable] | None = None, initial_noise: dict[str, np.ndarray] | None = None,
            progress: Callable[[int, float, float], None] | None = None) -> Projection:
    """Projects uint8 ``target_u8 [R, R, C]`` into ``G`` (see the module docstring).

    ``prepare``/``dist`` come from :func:`gancomp_jax.editing.perceptual.make_distance`;
    ``w_avg_std`` reuses precomputed :func:`w_stats`; ``step`` reuses :func:`make_step` (built with
    the same ``dist``, ``o`` and generator); ``initial_noise`` replaces the random initial noise maps
    (keys ``'synthesis/b4/conv1/noise_const'`` ..., as in :attr:`Projection.noise`; for tests against a
    reference); ``progress(step, dist, loss)`` is called after every step.
    """
    o.validate()
    cfg = G.config
    if cfg.c_dim > 0:
        raise ValueError(f"projection needs an unconditional generator; this one has c_dim={cfg.c_dim}")
    want = (cfg.img_resolution, cfg.img_resolution, cfg.img_channels)
    if tuple(target_u8.shape) != want:
        raise ValueError(f"target has shape {tuple(target_u8.shape)}, the generator needs {want}")
    w_avg, w_std = w_avg_std if w_avg_std is not None else w_stats(G, variables, cfg.z_dim, o.w_avg_samples)
    paths = noise_paths(variables)
    tx, step_fn = step if step is not None else make_step(G, dist, o, paths)
    key = jax.random.key(o.seed)
    key, *nkeys = jax.random.split(key, len(paths) + 1)
    flat = traverse_util.flatten_dict(dict(variables["buffers"]))
    noise = [jax.random.normal(k, flat[p].shape, jnp.float32) for k, p in zip(nkeys, paths)]
    if initial_noise is not None:
        if sorted(initial_noise) != sorted("/".join(p) for p in paths):
            raise ValueError(f"initial_noise must give exactly the maps {['/'.join(p) for p in paths]}")
        noise = [jnp.asarray(initial_noise["/".join(p)], jnp.float32) for p in paths]
    w0 = np.repeat(w_avg, cfg.num_ws, axis=1) if o.space == "w_plus" else w_avg
    params = {"w": jnp.asarray(w0, jnp.float32), "noise": noise}
    opt_state = tx.init(params)
    target_prepared = prepare(jnp.asarray(target_u8[None]))

    ws_out = np.zeros((o.num_steps, cfg.num_ws, cfg.w_dim), np.float32)
    losses = np.zeros(o.num_steps, np.float32)
    dists = np.zeros(o.num_steps, np.float32)
    for i in range(o.num_steps):
        key, k = jax.random.split(key)
        params, opt_state, loss, d = step_fn(params, opt_state, learning_rate(i, o), w_noise_scale(i, w_std, o), k,
                                             variables, target_prepared)
        ws_out[i] = np.broadcast_to(np.asarray(params["w"])[0], (cfg.num_ws, cfg.w_dim))
        losses[i], dists[i] = float(loss), float(d)
        if progress is not None:
            progress(i, float(d), float(loss))
    noise_out = {"/".join(p): np.asarray(m) for p, m in zip(paths, params["noise"])}
    return Projection(ws_out, noise_out, losses, dists)
