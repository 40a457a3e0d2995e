"""Training state (one pytree, keyed by role) and Adam with the lazy-regularisation correction."""

from __future__ import annotations

from typing import Any, Mapping

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training; checkpointed as one tree.

    Attributes:
      step: completed iterations (int32 scalar).
      params: trainable role → variables (generators ``{'params', 'buffers'}`` with buffers
        ``w_avg``, ``noise_const``; discriminators ``{'params'}``).
      opt: trainable role → optimiser state.
      ema: role → exponential moving average of ``params[role]`` (roles declared with ``ema``).
      extra: the method's extra state (e.g. ``pl_mean``, float32 scalar).
      key: raw PRNG key data (``uint32``); phase keys are ``fold_in(fold_in(key, step), phase)``.
    """

    step: jnp.ndarray
    params: dict[str, Any]
    opt: dict[str, Any]
    ema: dict[str, Any]
    extra: dict[str, Any]
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


def init_state(initial: Mapping[str, Any], txs: Mapping[str, optax.GradientTransformation],
               ema_roles: tuple[str, ...], extra: Mapping[str, Any], state_key: jax.Array) -> TrainState:
    """A fresh state from the trainable networks' initial variables (role → variables)."""
    params = {r: dict(v) for r, v in initial.items()}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt={r: txs[r].init(params[r]["params"]) for r in params},
        ema={r: jax.tree.map(jnp.copy, params[r]) for r in ema_roles},
        extra={k: jnp.asarray(v) for k, v in extra.items()},
        key=jax.random.key_data(state_key),
    )
