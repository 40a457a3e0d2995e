"""DiME as released by NICKEL & DiME (Yeo et al., ECCV 2024): raw-moment matching.

The released ``training/loss_DD.py`` does not compute a kernel MMD. For each embedder ``e``
(DINO ResNet-50, CLIP ResNet-50) it matches the batch's first and second *raw* moments of the
student's embeddings to precomputed "global" moments with an L1 distance::

    L_e = mean_d | mean_b f_e(x_b) − g1_e |  +  mean_d | mean_b f_e(x_b)² − g2_e |
    L_DiME = Σ_e λ_e L_e,      λ_dino = 20, λ_clip = 15

(``g1_e = global_{e}_first``, ``g2_e = global_{e}_second`` from a ``torch.load``-ed dict). The
moments are estimated per accumulation round of ``batch_gpu`` samples (8 with the FFHQ-256
config) and the per-round losses are averaged (their gradients add up); ``groups`` reproduces
this on a global batch independently of the number of devices.

Released preprocessing (student images in [-1, 1], NCHW in torch, NHWC here): CLIP gets
``F.interpolate(x, 224, 'bilinear', align_corners=False)`` with *no* CLIP normalisation and no
[0, 1] rescale; DINO gets the raw images (no resize, no ImageNet normalisation).

The kernel-MMD form that the paper describes is :mod:`gancomp_jax.losses.mmd` (ours).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

RELEASED_WEIGHTS = {"dino": 20.0, "clip": 15.0}
GLOBAL_KEYS = ("first", "second")


def global_key(embedder: str, moment: str) -> str:
    """``global_{embedder}_{first|second}`` (the released dict's key names)."""
    return f"global_{embedder}_{moment}"


def released_preprocess(images: jnp.ndarray, family: str) -> jnp.ndarray:
    """The released inputs for an embedder ``family`` (``'clip'`` or ``'dino'``).

    ``images [N, H, W, C]`` in [-1, 1] → CLIP: bilinear resize to 224×224 (half-pixel centres,
    no antialiasing = torch ``align_corners=False``), values unchanged; DINO: unchanged.
    """
    if family == "clip":
        n, _, _, c = images.shape
        return jax.image.resize(images, (n, 224, 224, c), method="bilinear", antialias=False)
    if family == "dino":
        return images
    raise ValueError(f"no released preprocessing for embedder family {family!r}; use 'clip' or 'dino'")


def raw_moments(feats: jnp.ndarray, groups: int = 1) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per-group batch means of ``f`` and ``f²``: ``feats [N, d]`` → two ``[groups, d]``.

    Groups are contiguous chunks of the batch (the released per-GPU accumulation rounds).
    """
    n, d = feats.shape
    if groups < 1 or n % groups:
        raise ValueError(f"batch of {n} cannot be split into {groups} moment groups")
    f = feats.astype(jnp.float32).reshape(groups, n // groups, d)
    return jnp.mean(f, axis=1), jnp.mean(jnp.square(f), axis=1)


def moment_loss(feats: jnp.ndarray, first: jnp.ndarray, second: jnp.ndarray,
                groups: int = 1) -> tuple[jnp.ndarray, jnp.ndarray]:
    """One embedder's released DiME terms ``(L_first, L_second)`` (float32 scalars).

    Args:
      feats: student embeddings ``[N, d]``.
      first, second: global moments ``[d]``, or per-group targets ``[groups, d]`` (e.g. the
        teacher's moments on the same latents when no global statistics are used).
      groups: moments are estimated on ``groups`` contiguous chunks of ``N/groups`` samples
        and the per-chunk losses are averaged.
    """
    d = feats.shape[-1]
    ok = ((d,), (groups, d))
    if first.shape not in ok or second.shape not in ok:
        raise ValueError(f"target moments must have shape ({d},) or ({groups}, {d}), "
                         f"got {first.shape} and {second.shape}")
    m1, m2 = raw_moments(feats, groups)
    l1 = jnp.mean(jnp.abs(m1 - jnp.broadcast_to(first.astype(jnp.float32), m1.shape)), axis=1)
    l2 = jnp.mean(jnp.abs(m2 - jnp.broadcast_to(second.astype(jnp.float32), m2.shape)), axis=1)
    return jnp.mean(l1), jnp.mean(l2)


def dime_loss(feats: Mapping[str, jnp.ndarray], global_stats: Mapping[str, jnp.ndarray],
              weights: Mapping[str, float] = RELEASED_WEIGHTS, groups: int = 1
              ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """``Σ_e λ_e (L_e,first + L_e,second)`` over the embedders in ``feats``.

    Args:
      feats: ``{embedder name: [N, d_e]}``.
      global_stats: the released dict (``global_{e}_{first,second}``).
      weights: ``{embedder name: λ_e}``.

    Returns:
      ``(total, {'{e}_first': …, '{e}_second': …})``.
    """
    total = jnp.float32(0.0)
    terms = {}
    for name, f in feats.items():
        keys = [global_key(name, m) for m in GLOBAL_KEYS]
        missing = [k for k in keys if k not in global_stats]
        if missing:
            raise ValueError(f"global statistics lack {missing} (have {sorted(global_stats)})")
        if name not in weights:
            raise ValueError(f"no DiME weight for embedder {name!r} (have {sorted(weights)})")
        l1, l2 = moment_loss(f, jnp.asarray(global_stats[keys[0]]), jnp.asarray(global_stats[keys[1]]), groups)
        terms[f"{name}_first"] = l1
        terms[f"{name}_second"] = l2
        total = total + weights[name] * (l1 + l2)
    return total, terms
