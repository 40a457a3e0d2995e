"""Training state (one pytree) and the Adam optimisers with lazy-regularisation correction."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from gancomp_jax import checkpoints


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; checkpointed as one tree.

    Attributes:
      step: completed iterations (int32 scalar).
      g: generator variables ``{'params', 'buffers'}`` (buffers: ``w_avg``, ``noise_const``).
      g_ema: exponential moving average of ``g`` (buffers copied from ``g``).
      d: discriminator variables ``{'params'}``.
      g_opt, d_opt: optimiser states.
      pl_mean: running mean of path lengths (float32 scalar).
      key: raw PRNG key data (``uint32``); step keys are ``fold_in(key, step)``.
    """

    step: jnp.ndarray
    g: Any
    g_ema: Any
    d: Any
    g_opt: Any
    d_opt: Any
    pl_mean: jnp.ndarray
    key: jnp.ndarray


def lazy_adam(lr: float, betas: tuple[float, float], eps: float, reg_interval: int | None
              ) -> optax.GradientTransformation:
    """Adam with NVlabs' lazy-regularisation correction.

    With a regulariser applied every ``k`` steps as its own optimiser step, the effective
    minibatch grows by ``k/(k+1)``; NVlabs scales the learning rate by that ratio and raises
    the betas to its power.
    """
    ratio = 1.0 if not reg_interval else reg_interval / (reg_interval + 1)
    return optax.adam(lr * ratio, b1=betas[0] ** ratio, b2=betas[1] ** ratio, eps=eps)


def init_state(g_cfg, d_cfg, g_tx, d_tx, key: jax.Array) -> TrainState:
    """Fresh networks (NVlabs initialisation) and optimiser states."""
    kg, kd, kstate = jax.random.split(key, 3)
    g = checkpoints.init_network("generator", g_cfg, kg).variables
    d = {"params": checkpoints.init_network("discriminator", d_cfg, kd).variables["params"]}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        g=g,
        g_ema=jax.tree.map(jnp.copy, g),
        d=d,
        g_opt=g_tx.init(g["params"]),
        d_opt=d_tx.init(d["params"]),
        pl_mean=jnp.zeros((), jnp.float32),
        key=jax.random.key_data(kstate),
    )
