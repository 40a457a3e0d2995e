"""Image embedders for DiME and feature metrics: a network plus its named input preprocessing.

``load_embedder(kind, path, preprocess=...) -> (params, apply_fn)`` where
``apply_fn(params, images)`` maps generator-range images ``[N, H, W, 3]`` in
``[-1, 1]`` (NHWC, float32 or bfloat16) to embeddings ``[N, D]`` float32. It is
pure, jit-able, batched and differentiable with respect to ``images``.

===========  =================================================  ==============  =================
kind         file (local only)                                  D               canonical input
===========  =================================================  ==============  =================
clip_rn50    OpenAI ``RN50.pt`` / open_clip or timm safetensors  1024            ``clip_224``
dino_rn50    ``dino_resnet50_pretrain.pth``                      2048            ``imagenet_224``
clip_vit     Hugging Face CLIP directory                         projection_dim  ``clip_224``
dino_vit     Hugging Face ViT directory (facebook/dino-vit*)     hidden size     ``imagenet_224``
dinov2       Hugging Face Dinov2 directory                       hidden size     ``imagenet_224``
===========  =================================================  ==============  =================

Preprocessing (``preprocess=``), for images in ``[-1, 1]``:

* ``"canonical"``: the network's own (table above).
* ``"released"``: what NICKEL & DiME's released code feeds its embedders:
  CLIP kinds get ``nd_clip``, DINO kinds ``nd_dino``.
* ``clip_224``: centre-crop to a square, ``(x + 1) / 2``, antialiased bicubic
  resize to the network's size S (224), CLIP mean/std.
* ``imagenet_224``: the same with antialiased bilinear resize and ImageNet mean/std.
* ``nd_clip``: ``F.interpolate(x, size=S, mode='bilinear', align_corners=False)``
  of the raw ``[-1, 1]`` image, no rescale, no normalisation (NICKEL & DiME).
* ``nd_dino``: the raw ``[-1, 1]`` image, no resize, no normalisation
  (NICKEL & DiME feed DINO the 256 px generator output).
* ``none``: identity (images must already be the network's input).

So an "as released" and a "corrected" DiME run differ only in ``preprocess``.
The resize of the canonical modes is ``jax.image.resize`` with antialiasing,
which equals torch's ``F.interpolate(..., antialias=True)`` (bicubic / bilinear,
to ~1e-6) and hence PIL's float resize; the reference pipelines resize uint8
PIL images, so their inputs differ by that rounding.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import jax
import jax.numpy as jnp

from . import LoadedNet, load
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, resize_bilinear

__all__ = [
    "CANONICAL_PREPROCESS",
    "CLIP_MEAN",
    "CLIP_STD",
    "EMBEDDER_KINDS",
    "PREPROCESS_CHOICES",
    "RELEASED_PREPROCESS",
    "load_embedder",
    "make_embedder",
    "preprocess_images",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

EMBEDDER_KINDS = ("clip_rn50", "dino_rn50", "clip_vit", "dino_vit", "dinov2")
CANONICAL_PREPROCESS = {
    "clip_rn50": "clip_224",
    "clip_vit": "clip_224",
    "dino_rn50": "imagenet_224",
    "dino_vit": "imagenet_224",
    "dinov2": "imagenet_224",
}
RELEASED_PREPROCESS = {
    "clip_rn50": "nd_clip",
    "clip_vit": "nd_clip",
    "dino_rn50": "nd_dino",
    "dino_vit": "nd_dino",
    "dinov2": "nd_dino",
}
PREPROCESS_CHOICES = ("canonical", "released", "clip_224", "imagenet_224", "nd_clip", "nd_dino", "none")


def _center_square(x: jax.Array) -> jax.Array:
    h, w = x.shape[1], x.shape[2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return x[:, top : top + side, left : left + side]


def _normalized(x: jax.Array, size: int, method: str, mean, std) -> jax.Array:
    x = _center_square(x)
    x01 = (x.astype(jnp.float32) + 1.0) * 0.5
    if x01.shape[1] != size:
        x01 = jax.image.resize(x01, (x01.shape[0], size, size, x01.shape[3]), method=method, antialias=True)
    return (x01 - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def preprocess_images(images: jax.Array, mode: str, size: int) -> jax.Array:
    """Apply preprocessing ``mode`` (see the module docstring) to [-1, 1] images [N, H, W, 3] -> [N, S, S, 3]."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"embedders expect images [N, H, W, 3], got shape {tuple(images.shape)}")
    if mode == "clip_224":
        return _normalized(images, size, "bicubic", CLIP_MEAN, CLIP_STD)
    if mode == "imagenet_224":
        return _normalized(images, size, "linear", IMAGENET_MEAN, IMAGENET_STD)
    if mode == "nd_clip":
        return resize_bilinear(images.astype(jnp.float32), (size, size), align_corners=False)
    if mode in ("nd_dino", "none"):
        return images
    raise ValueError(f"unknown preprocess {mode!r}; expected one of {', '.join(PREPROCESS_CHOICES)}")


def _resolve(kind: str, preprocess: str) -> str:
    if kind not in EMBEDDER_KINDS:
        raise ValueError(f"unknown embedder kind {kind!r}; expected one of {', '.join(EMBEDDER_KINDS)}")
    if preprocess == "canonical":
        return CANONICAL_PREPROCESS[kind]
    if preprocess == "released":
        return RELEASED_PREPROCESS[kind]
    if preprocess not in PREPROCESS_CHOICES:
        raise ValueError(f"unknown preprocess {preprocess!r}; expected one of {', '.join(PREPROCESS_CHOICES)}")
    return preprocess


def _embed(params: Any, images: jax.Array, *, net_apply: Callable, mode: str, size: int, dtype: Any) -> jax.Array:
    x = preprocess_images(images, mode, size)
    return net_apply(params, x.astype(dtype)).astype(jnp.float32)


def make_embedder(net: LoadedNet, preprocess: str = "canonical", *, dtype: Any = jnp.float32):
    """``(params, apply_fn)`` for a loaded network of an embedder kind (see :func:`load_embedder`)."""
    mode = _resolve(net.kind, preprocess)
    size = int(net.config.get("image_size", 224))
    apply_fn = partial(_embed, net_apply=net.apply, mode=mode, size=size, dtype=dtype)
    return net.params, apply_fn


def load_embedder(
    kind: str,
    path: Any,
    preprocess: str = "canonical",
    *,
    dtype: Any = jnp.float32,
    image_size: int | None = None,
    architecture: str | None = None,
):
    """Load embedder ``kind`` from ``path`` -> ``(params, apply_fn(params, images [-1,1] NHWC) -> [N, D])``.

    ``dtype=jnp.bfloat16`` runs the network in bfloat16 (parameters stay
    float32; the output is float32). ``image_size`` (ViT kinds only; default:
    the checkpoint's own for CLIP / DINO ViTs, 224 for DINOv2) fixes the
    network's input size; the ResNet kinds take their size from the weights
    (CLIP RN50: 224) or accept any size (DINO RN50). ``architecture`` (ResNet kinds only):
    ``"published"`` (default: ResNet-50 exactly) or ``"custom"`` (see :mod:`gancomp_jax.nets.resnet`).
    """
    mode = _resolve(kind, preprocess)  # validate before reading a large file
    kw: dict[str, Any] = {"dtype": dtype}
    if architecture is not None:
        if kind not in ("clip_rn50", "dino_rn50"):
            raise ValueError(f"{kind}: architecture applies to the ResNet kinds only")
        kw["architecture"] = architecture
    if image_size is not None:
        if kind not in ("clip_vit", "dino_vit", "dinov2"):
            raise ValueError(f"{kind}: image_size is fixed by the weights; it applies to the ViT kinds only")
        kw["image_size"] = image_size
    net = load(kind, path, **kw)
    return make_embedder(net, mode, dtype=dtype)
