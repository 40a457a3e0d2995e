"""Output distillation terms of CAGC, GAN Slimming and StyleKD (pure functions of arrays).

Images are NHWC in ``[-1, 1]``. Masks are ``[N, H, W]`` (bool or 0/1 float) and multiply the
images, so masked-out pixels become 0 (mid-grey) in both teacher and student, and means run
over *all* pixels, zeros included (CAGC's ``get_masked_tensor`` + ``torch.mean``).

- :func:`masked_l1` — ``mean |M⊙T − M⊙S|`` (CAGC ``kd_l1_mode='Output_Only'``);
- :func:`intermediate_rgb_l1` — ``Σ_r mean |T_r − S_r|`` over the partial ToRGB images
  ``img{r}`` (``kd_l1_mode='Intermediate'``, unmasked as released);
- :func:`gram_matrix`, :func:`vgg_perceptual` — CAGC's ``utils/perceptual.py``:
  ``L1(relu1_2) + 1e5 · Σ_{relu1_2..relu4_3} MSE(Gram_S, Gram_T)`` with ``Gram = F Fᵀ / (C·H·W)``
  (VGG16 on ``(x + 1) / 2``, no ImageNet normalisation, as the fast-neural-style Vgg16 it uses);
- :func:`relation_kl` — StyleKD's relation loss ``KL(p_T ‖ p_S)`` over the row-softmax of the
  batch×batch cosine-similarity matrices between two views (``F.kl_div(log_softmax(s),
  softmax(t), 'batchmean')``).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

VGG_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def apply_mask(img: jnp.ndarray, mask: jnp.ndarray | None) -> jnp.ndarray:
    """``img [N, H, W, C] ⊙ mask [N, H, W]`` (None: unchanged)."""
    if mask is None:
        return img
    return img * mask.astype(img.dtype)[..., None]


def masked_l1(teacher: jnp.ndarray, student: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """``mean |M⊙T − M⊙S|`` over every element (scalar)."""
    t, s = apply_mask(teacher.astype(jnp.float32), mask), apply_mask(student.astype(jnp.float32), mask)
    return jnp.mean(jnp.abs(t - s))


def rgb_levels(features: Mapping[str, jnp.ndarray]) -> list[str]:
    """The ``img{r}`` keys of a generator's features, lowest resolution first."""
    return sorted((k for k in features if k.startswith("img")), key=lambda k: int(k[3:]))


def intermediate_rgb_l1(t_features: Mapping[str, jnp.ndarray], s_features: Mapping[str, jnp.ndarray]) -> jnp.ndarray:
    """``Σ_r mean |T_img{r} − S_img{r}|`` over every partial ToRGB image (scalar)."""
    keys = rgb_levels(t_features)
    if keys != rgb_levels(s_features):
        raise ValueError(f"teacher and student partial RGB images differ: {keys} vs {rgb_levels(s_features)}")
    return sum(jnp.mean(jnp.abs(t_features[k].astype(jnp.float32) - s_features[k].astype(jnp.float32)))
               for k in keys)


def gram_matrix(f: jnp.ndarray) -> jnp.ndarray:
    """``F Fᵀ / (C·H·W)`` of features ``[N, H, W, C]`` → ``[N, C, C]``."""
    n, h, w, c = f.shape
    x = f.reshape(n, h * w, c).astype(jnp.float32)
    return jnp.einsum("npc,npd->ncd", x, x) / (c * h * w)


def vgg_perceptual(s_feats: Mapping[str, jnp.ndarray], t_feats: Mapping[str, jnp.ndarray],
                   beta: float = 1e5, content_layer: str = "relu1_2",
                   style_layers=VGG_STYLE_LAYERS) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """CAGC's VGG perceptual loss: ``(content + beta·style, content, style)``.

    ``content = mean |S_l − T_l|`` at ``content_layer``; ``style = Σ_l mean (G(S_l) − G(T_l))²``.
    """
    content = jnp.mean(jnp.abs(s_feats[content_layer].astype(jnp.float32) - t_feats[content_layer].astype(jnp.float32)))
    style = sum(jnp.mean(jnp.square(gram_matrix(s_feats[l]) - gram_matrix(t_feats[l]))) for l in style_layers)
    return content + beta * style, content, style


def cosine_similarity_matrix(a: jnp.ndarray, b: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """``cos(a_i, b_j)`` for flattened rows: ``[N, ...]``, ``[M, ...]`` → ``[N, M]``.

    ``a·b / (max(|a|, eps) · max(|b|, eps))`` as torch's ``F.cosine_similarity`` (eps 1e-8).
    """
    a = a.reshape(a.shape[0], -1).astype(jnp.float32)
    b = b.reshape(b.shape[0], -1).astype(jnp.float32)
    na = jnp.maximum(jnp.linalg.norm(a, axis=1), eps)
    nb = jnp.maximum(jnp.linalg.norm(b, axis=1), eps)
    return (a @ b.T) / (na[:, None] * nb[None, :])


def relation_kl(s_view1: jnp.ndarray, s_view2: jnp.ndarray, t_view1: jnp.ndarray, t_view2: jnp.ndarray) -> jnp.ndarray:
    """StyleKD's relation KL for one layer: ``(1/N) Σ_i KL(p_T,i ‖ p_S,i)`` (scalar).

    ``p_X,i = softmax_j cos(X1_i, X2_j)``; views ``[N, ...]`` (block outputs of the latents and
    of the offset latents). With identical views for teacher and student it is 0.
    """
    log_ps = jax.nn.log_softmax(cosine_similarity_matrix(s_view1, s_view2), axis=1)
    t = cosine_similarity_matrix(t_view1, t_view2)
    log_pt = jax.nn.log_softmax(t, axis=1)
    pt = jnp.exp(log_pt)
    return jnp.sum(pt * (log_pt - log_ps)) / s_view1.shape[0]


__all__ = ["VGG_STYLE_LAYERS", "apply_mask", "cosine_similarity_matrix", "gram_matrix", "intermediate_rgb_l1",
           "masked_l1", "relation_kl", "rgb_levels", "vgg_perceptual"]
