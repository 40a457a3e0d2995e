"""StyleGAN2 losses and regularisers as NVlabs' ``StyleGAN2Loss`` computes them.

All functions return *per-sample* values (shape ``[N]``) unless stated; the trainer takes the
mean and applies the weights and lazy-regularisation intervals.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def nonsaturating_g_loss(gen_logits: jnp.ndarray) -> jnp.ndarray:
    """``softplus(-D(G(z)))``; logits ``[N, 1]`` → ``[N]``."""
    return jax.nn.softplus(-gen_logits.reshape(gen_logits.shape[0], -1)).mean(axis=1)


def logistic_d_loss(gen_logits: jnp.ndarray, real_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """D's logistic loss split into ``(softplus(D(G(z))), softplus(-D(x)))``, each ``[N]``."""
    gen = jax.nn.softplus(gen_logits.reshape(gen_logits.shape[0], -1)).mean(axis=1)
    real = jax.nn.softplus(-real_logits.reshape(real_logits.shape[0], -1)).mean(axis=1)
    return gen, real


def r1_penalty(d_fn: Callable[[jnp.ndarray], jnp.ndarray], real_img: jnp.ndarray
               ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """R1 gradient penalty ``|∇_x D(x)|²`` per sample (Mescheder et al. 2018).

    Args:
      d_fn: images ``[N, H, W, C]`` → logits ``[N, 1]`` (closing over D's parameters, so the
        penalty stays differentiable with respect to them).
      real_img: ``[N, H, W, C]``.

    Returns:
      ``(penalty [N], logits [N, 1])``. Multiply by ``gamma / 2`` for NVlabs' ``loss_Dr1``.
    """
    logits, vjp = jax.vjp(d_fn, real_img)
    (grads,) = vjp(jnp.ones_like(logits))
    return jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=(1, 2, 3)), logits


def path_length_penalty(synth_fn: Callable[[jnp.ndarray], jnp.ndarray], ws: jnp.ndarray,
                        key: jax.Array, pl_mean: jnp.ndarray, decay: float = 0.01
                        ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Path-length regularisation (Karras et al. 2020), NVlabs form.

    ``y ~ N(0, I) / sqrt(H*W)``; ``L = sqrt(mean_layers(sum_w (J_ws^T y)^2))`` per sample;
    ``pl_mean' = pl_mean + decay * (mean(L) - pl_mean)``; penalty ``(L - pl_mean')²``. As in
    NVlabs, ``pl_mean'`` is *not* detached inside the penalty (it depends on this batch).

    Args:
      synth_fn: ws ``[N, num_ws, w_dim]`` → images ``[N, H, W, C]``.
      ws: the (style-mixed) ws the images were generated from.
      key: PRNG key for ``y``.
      pl_mean: running mean of path lengths (scalar).
      decay: EMA rate of ``pl_mean``.

    Returns:
      ``(penalty [N], lengths [N], new pl_mean (stop-gradient))``.
    """
    img, vjp = jax.vjp(synth_fn, ws)
    h, w = img.shape[1], img.shape[2]
    noise = jax.random.normal(key, img.shape, jnp.float32) / jnp.sqrt(jnp.float32(h * w))
    (grads,) = vjp(noise.astype(img.dtype))
    lengths = jnp.sqrt(jnp.mean(jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=2), axis=1))
    new_mean = pl_mean + decay * (jnp.mean(lengths) - pl_mean)
    penalty = jnp.square(lengths - new_mean)
    return penalty, lengths, jax.lax.stop_gradient(new_mean)
