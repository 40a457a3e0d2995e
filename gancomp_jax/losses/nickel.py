"""NICKEL (Yeo et al., ECCV 2024): the student's two discriminators and the knowledge exchange.

As released (``training/loss_DD.py``):

- student G (Gmain): ``softplus(-D_S(G_S(z))) + softplus(-D_T(G_S(z)))`` per sample
  (:func:`nickel_g_adversarial`), plus DiME and the usual lazy path-length term;
- D_S (Dmain): logistic loss on student fakes and reals, plus ``10 · L_FM`` where ``L_FM`` is
  the Haar high-band MSE between the teacher generator's block output at ``R/4`` (detached)
  and D_S's block ``b{R/2}`` output (also ``R/4``) on the *teacher's* images
  (:func:`nickel_feature_matching`); R1 every 16 steps;
- D_T (same Dmain phase, its own Adam): logistic loss on student fakes and reals; R1.

Block choice (paper256): G_T ``b64`` (256 channels, 64×64) and D_S ``b128`` (256 channels,
64×64); :func:`nickel_blocks` gives the same pair at any resolution. When the widths differ, a
1×1 adapter (a trainable ``[C_D, C_G]`` matrix and bias, trained with D_S) maps D_S's feature
to the generator's width before the wavelet transform (ours; the released setting needs none).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.losses.haar import haar_highband_mse

FM_WEIGHT = 10.0
FM_LEVELS = 4


def nickel_g_adversarial(student_d_logits: jnp.ndarray, teacher_d_logits: jnp.ndarray) -> jnp.ndarray:
    """``softplus(-D_S(G_S(z))) + softplus(-D_T(G_S(z)))``; logits ``[N, 1]`` → ``[N]``."""
    s = jax.nn.softplus(-student_d_logits.reshape(student_d_logits.shape[0], -1)).mean(axis=1)
    t = jax.nn.softplus(-teacher_d_logits.reshape(teacher_d_logits.shape[0], -1)).mean(axis=1)
    return s + t


def nickel_blocks(img_resolution: int) -> tuple[str, str]:
    """``(generator block, discriminator block)`` whose outputs are ``R/4`` pixels square.

    paper256 (R = 256) gives ``('b64', 'b128')``, the released pair. Needs R ≥ 16.
    """
    if img_resolution < 16:
        raise ValueError(f"NICKEL feature matching needs img_resolution >= 16, got {img_resolution}")
    return f"b{img_resolution // 4}", f"b{img_resolution // 2}"


def init_adapter(key: jax.Array, in_channels: int, out_channels: int) -> dict[str, jnp.ndarray]:
    """1×1 adapter ``{'weight': [in, out], 'bias': [out]}`` (He-uniform-like init, zero bias)."""
    bound = 1.0 / np.sqrt(in_channels)
    w = jax.random.uniform(key, (in_channels, out_channels), jnp.float32, -bound, bound)
    return {"weight": w, "bias": jnp.zeros((out_channels,), jnp.float32)}


def apply_adapter(params: dict[str, jnp.ndarray] | None, x: jnp.ndarray) -> jnp.ndarray:
    """``x [N, H, W, C_in]`` → ``[N, H, W, C_out]`` (identity when ``params`` is None)."""
    if params is None:
        return x
    return jnp.einsum("nhwc,cd->nhwd", x.astype(jnp.float32), params["weight"]) + params["bias"]


def nickel_feature_matching(teacher_g_feat: jnp.ndarray, student_d_feat: jnp.ndarray,
                            adapter: dict[str, jnp.ndarray] | None = None,
                            levels: int = FM_LEVELS) -> jnp.ndarray:
    """``L_FM = Σ_{j≤levels} MSE(highs_j(sg(F_GT)), highs_j(A(F_DS)))`` (float32 scalar).

    Args:
      teacher_g_feat: the teacher generator's block output ``[N, h, w, C_G]`` on ``z``
        (gradients are stopped here).
      student_d_feat: D_S's block output ``[N, h, w, C_D]`` on the teacher's images.
      adapter: 1×1 adapter params when ``C_D != C_G``.
      levels: Haar levels (4 as released; at most ``log2(h)`` keeps every level non-trivial).
    """
    pred = apply_adapter(adapter, student_d_feat)
    if pred.shape != teacher_g_feat.shape:
        raise ValueError(f"NICKEL feature shapes differ: teacher G {teacher_g_feat.shape}, "
                         f"D_S {student_d_feat.shape} (after adapter {pred.shape}); "
                         "enable the 1x1 adapter or pick matching blocks")
    return haar_highband_mse(jax.lax.stop_gradient(teacher_g_feat), pred, levels)
