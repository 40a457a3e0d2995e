"""Bias + activation + gain + clamp, with NVlabs' default gains (``bias_act``).

``y = clamp(act(x + b) * gain, -clamp, +clamp)`` where the bias is broadcast along the last
(channel) axis and ``gain`` defaults to the activation's ``def_gain`` (sqrt(2) for (leaky) ReLU,
so that activations keep unit variance).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Activation:
    fn: Callable[[jnp.ndarray, float], jnp.ndarray]
    def_alpha: float
    def_gain: float


ACTIVATIONS: dict[str, Activation] = {
    "linear": Activation(lambda x, a: x, 0.0, 1.0),
    "relu": Activation(lambda x, a: jax.nn.relu(x), 0.0, float(np.sqrt(2))),
    "lrelu": Activation(lambda x, a: jnp.where(x >= 0, x, x * a), 0.2, float(np.sqrt(2))),
    "tanh": Activation(lambda x, a: jnp.tanh(x), 0.0, 1.0),
    "sigmoid": Activation(lambda x, a: jax.nn.sigmoid(x), 0.0, 1.0),
    "elu": Activation(lambda x, a: jax.nn.elu(x), 0.0, 1.0),
    "selu": Activation(lambda x, a: jax.nn.selu(x), 0.0, 1.0),
    "softplus": Activation(lambda x, a: jax.nn.softplus(x), 0.0, 1.0),
    "swish": Activation(lambda x, a: jax.nn.sigmoid(x) * x, 0.0, float(np.sqrt(2))),
}


def activation_gain(act: str) -> float:
    """The default gain NVlabs applies after ``act``."""
    return get_activation(act).def_gain


def get_activation(act: str) -> Activation:
    try:
        return ACTIVATIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}") from None


def bias_act(
    x: jnp.ndarray,
    b: jnp.ndarray | None = None,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> jnp.ndarray:
    """Adds ``b`` (shape ``[C]``, broadcast on the last axis of ``x``), activates, scales, clamps.

    Args:
      x: ``[..., C]``.
      b: optional bias ``[C]``.
      act: one of ``ACTIVATIONS``.
      alpha: negative slope for ``lrelu`` (default 0.2).
      gain: output scale (default: the activation's default gain).
      clamp: if not None, clip the output to ``[-clamp, clamp]``.
    """
    spec = get_activation(act)
    alpha = spec.def_alpha if alpha is None else float(alpha)
    gain = spec.def_gain if gain is None else float(gain)
    if b is not None:
        x = x + b.astype(x.dtype)
    x = spec.fn(x, alpha)
    if gain != 1:
        x = x * jnp.asarray(gain, x.dtype)
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return x
