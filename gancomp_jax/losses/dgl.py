"""DGL-GAN (Tian et al.): a frozen teacher discriminator guides a narrow student generator.

From ``stylegan2_dgl/training/loss.py`` of ``yuesongtian/DGL-GAN`` (TensorFlow StyleGAN2):

- ``G_dg_pathreg``: ``softplus(-D(G(z))) + α · softplus(-D_T(G(z)))`` (+ path length);
  α = 0.5 in the signature, 0.1 in the authors' configs (:func:`dgl_g_teacher_term`).
- ``G_pathreg_ens``: the teacher term becomes ``sg(-l) · softplus(-l) · 1[l < 0]`` with
  ``l = D_T(G(z))``: only samples the teacher scores as fake count, weighted by the detached
  negated logit; several teachers are summed, each times α (:func:`dgl_g_ens_term`).
- ``D_logistic_r1_smooth``: teacher-weighted D loss
  ``(1 - σ(D_T(G(z)))) softplus(D(G(z))) + σ(D_T(x)) softplus(-D(x))``
  (:func:`dgl_d_teacher_weighted`); R1 as usual.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _flat(logits: jnp.ndarray) -> jnp.ndarray:
    return logits.reshape(logits.shape[0], -1).mean(axis=1)


def dgl_g_teacher_term(teacher_logits: jnp.ndarray) -> jnp.ndarray:
    """``softplus(-D_T(G(z)))``; logits ``[N, 1]`` → ``[N]`` (multiply by α)."""
    return jax.nn.softplus(-_flat(teacher_logits))


def dgl_g_ens_term(teacher_logits: jnp.ndarray) -> jnp.ndarray:
    """``sg(-l) · softplus(-l) · 1[l < 0]`` per sample (``[N, 1]`` → ``[N]``; multiply by α)."""
    logit = _flat(teacher_logits)
    coeff = jax.lax.stop_gradient(-logit)
    keep = jax.lax.stop_gradient((logit < 0).astype(jnp.float32))
    return coeff * jax.nn.softplus(-logit) * keep


def dgl_d_teacher_weighted(gen_logits: jnp.ndarray, real_logits: jnp.ndarray,
                           teacher_gen_logits: jnp.ndarray, teacher_real_logits: jnp.ndarray
                           ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``((1 - σ(D_T(G))) softplus(D(G)), σ(D_T(x)) softplus(-D(x)))``, each ``[N]``.

    The teacher's probabilities are constants (the teacher D is frozen).
    """
    p_fake = jax.lax.stop_gradient(jax.nn.sigmoid(_flat(teacher_gen_logits)))
    p_real = jax.lax.stop_gradient(jax.nn.sigmoid(_flat(teacher_real_logits)))
    gen = (1.0 - p_fake) * jax.nn.softplus(_flat(gen_logits))
    real = p_real * jax.nn.softplus(-_flat(real_logits))
    return gen, real
