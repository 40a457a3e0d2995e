"""ITGC's variational energy-based distillation terms (pure functions).

``energy(t, s, u) -> (E [N], u')`` is an energy network with its spectral-norm state ``u``
(:func:`gancomp_jax.models.energy.energy_apply` with bound parameters).

- :func:`langevin_sample` — ``T̃``: start from the student image ``x₀ = sg(S)`` and take
  ``steps`` steps ``x ← x − step_size·∇_x Σ_n E(x, S) + σ·ε``, ``ε ~ N(0, I)``; the result is
  detached (released ``Langevin_dynamics``: 10 steps, step 50, σ 0.005).
- :func:`ebm_generator_term` — ``mean(E(T, S) − E(T̃, S))`` (the generator's MI term, weighted by
  ``kd_VID_MI_lambda``).
- :func:`ebm_loss` — the energy network's loss
  ``mean E(T, S) − mean E(T̃, S) + l2 · mean(E(T, S)² + E(T̃, S)²)``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

EnergyFn = Callable[[jnp.ndarray, jnp.ndarray, Any], "tuple[jnp.ndarray, Any]"]


def langevin_sample(energy: EnergyFn, s: jnp.ndarray, u: Any, key: jax.Array, steps: int = 10,
                    step_size: float = 50.0, sigma: float = 0.005) -> tuple[jnp.ndarray, Any]:
    """``(T̃, u')``: Langevin dynamics on the first argument of ``energy`` from ``sg(s)``."""
    s_const = jax.lax.stop_gradient(s)

    def step(carry, k):
        x, u = carry

        def total(x):
            e, u2 = energy(x, s_const, u)
            return jnp.sum(e), u2

        g, u = jax.grad(total, has_aux=True)(x)
        x = x - step_size * g + sigma * jax.random.normal(k, x.shape, x.dtype)
        return (x, u), None

    (x, u), _ = jax.lax.scan(step, (s_const.astype(jnp.float32), u), jax.random.split(key, int(steps)))
    return jax.lax.stop_gradient(x), u


def ebm_generator_term(e_pos: jnp.ndarray, e_neg: jnp.ndarray) -> jnp.ndarray:
    """``mean(E(T, S) − E(T̃, S))``."""
    return jnp.mean(e_pos - e_neg)


def ebm_loss(e_pos: jnp.ndarray, e_neg: jnp.ndarray, l2_lambda: float = 0.05) -> jnp.ndarray:
    """``mean E(T,S) − mean E(T̃,S) + l2 · mean(E(T,S)² + E(T̃,S)²)``."""
    return jnp.mean(e_pos) - jnp.mean(e_neg) + l2_lambda * jnp.mean(jnp.square(e_pos) + jnp.square(e_neg))


__all__ = ["ebm_generator_term", "ebm_loss", "langevin_sample"]
