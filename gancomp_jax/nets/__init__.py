"""Pretrained perception networks in Flax, loaded from their published weight files.

One registry maps a network *kind* (``"inception_fid"``, ``"lpips_vgg"``,
``"bisenet"``, ...) to a loader. A loader is called as ``loader(path, **kw)``
and returns a :class:`LoadedNet`: the parameters as a pytree of arrays, a pure
``apply(params, images, **kw)`` function (jit-able, batched, differentiable with
respect to the images) and the JSON-able ``config`` needed to rebuild ``apply``
from converted parameters. ``path`` is either the file users have (read
without executing code, see :mod:`gancomp_jax.io.torch_pickle`) or a directory
written by ``python tools/convert_feature_net.py KIND SRC OUT``
(:mod:`gancomp_jax.nets.weights`).

Loaders may be registered as ``"package.module:function"`` strings so that
importing this package stays cheap; the module is imported on first use.

Preprocessing helpers (resizing, ImageNet / CLIP normalisation, pytorch-fid's
``2x - 1``) live in :mod:`gancomp_jax.nets.preprocess`; loading helpers (torch
state dicts, safetensors, converted Orbax directories, key/shape checks) in
:mod:`gancomp_jax.nets.weights`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from .loaded import LoadedNet

__all__ = [
    "LoadedNet",
    "available",
    "describe",
    "load",
    "make_face_mask_fn",
    "register",
]


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., LoadedNet] | str
    description: str


_REGISTRY: dict[str, _Entry] = {}


def register(
    kind: str,
    loader: Callable[..., LoadedNet] | str,
    *,
    description: str = "",
    overwrite: bool = False,
) -> None:
    """Register ``loader(path, **kw) -> LoadedNet`` under ``kind``.

    ``loader`` may be a callable or a lazy ``"module:function"`` string.
    Registering an existing kind raises ValueError unless ``overwrite``.
    """
    if not kind or not isinstance(kind, str):
        raise ValueError(f"network kind must be a non-empty string, got {kind!r}")
    if kind in _REGISTRY and not overwrite:
        raise ValueError(f"network kind {kind!r} is already registered")
    if isinstance(loader, str) and ":" not in loader:
        raise ValueError(f"lazy loader for {kind!r} must be 'module:function', got {loader!r}")
    _REGISTRY[kind] = _Entry(loader, description)


def available() -> list[str]:
    """Registered network kinds, sorted."""
    return sorted(_REGISTRY)


def describe(kind: str) -> str:
    """One-line description of ``kind`` (the file it loads and what it outputs)."""
    return _entry(kind).description


def _entry(kind: str) -> _Entry:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(
            f"unknown network kind {kind!r}; available: {', '.join(available())}"
        ) from None


def get_loader(kind: str) -> Callable[..., LoadedNet]:
    """The loader callable of ``kind`` (imports a lazy loader's module)."""
    loader = _entry(kind).loader
    if isinstance(loader, str):
        module_name, _, attr = loader.partition(":")
        loader = getattr(importlib.import_module(module_name), attr)
    return loader


def load(kind: str, path: Any, **kw: Any) -> LoadedNet:
    """Load network ``kind`` from ``path`` (original weight file or converted directory)."""
    return get_loader(kind)(path, **kw)


def make_face_mask_fn(path: Any, **kw: Any) -> Callable[..., Any]:
    """BiSeNet face mask function ``images NHWC in [-1, 1] -> bool [N, H, W]``.

    See :func:`gancomp_jax.nets.bisenet.make_face_mask_fn`.
    """
    from .bisenet import make_face_mask_fn as _make

    return _make(path, **kw)


# --------------------------------------------------------------------------- built-in kinds
register(
    "inception_fid",
    "gancomp_jax.nets.inception:load_inception_fid",
    description="Inception-v3 FID variant (pytorch-fid pt_inception-2015-12-05-6726825d.pth): "
    "pool [N,2048], logits [N,1008]",
)
register(
    "vgg16",
    "gancomp_jax.nets.vgg_lpips:load_vgg16",
    description="torchvision VGG16 (vgg16-397923af.pth): conv features and classifier fc2 [N,4096]",
)
register(
    "lpips_vgg",
    "gancomp_jax.nets.vgg_lpips:load_lpips_vgg",
    description="LPIPS v0.1 with VGG16 trunk (vgg16-397923af.pth + lpips weights/v0.1/vgg.pth): "
    "distance [N]",
)
register(
    "bisenet",
    "gancomp_jax.nets.bisenet:load_bisenet",
    description="BiSeNet face parser (face-parsing.PyTorch 79999_iter.pth): 19-class logits at input size",
)
register(
    "face_parser",
    "gancomp_jax.nets.bisenet:load_bisenet",
    description="alias of 'bisenet'",
)
register(
    "clip_rn50",
    "gancomp_jax.nets.clip_resnet:load_clip_rn50",
    description="CLIP ResNet-50 image encoder (OpenAI RN50.pt TorchScript, or open_clip/timm "
    "resnet50_clip.openai safetensors): embedding [N,1024]",
)
register(
    "dino_rn50",
    "gancomp_jax.nets.resnet:load_dino_rn50",
    description="DINO ResNet-50 (dino_resnet50_pretrain.pth, torchvision layout): pooled [N,2048]",
)
register(
    "clip_vit",
    "gancomp_jax.nets.vit:load_clip_vit",
    description="CLIP ViT B/32, B/16, L/14 image encoder with projection (Hugging Face CLIP dir): "
    "embedding [N,projection_dim]",
)
register(
    "dino_vit",
    "gancomp_jax.nets.vit:load_dino_vit",
    description="DINO ViT-S/16, B/16 (Hugging Face ViT dir, facebook/dino-vit*): CLS [N,hidden]",
)
register(
    "dinov2",
    "gancomp_jax.nets.vit:load_dinov2",
    description="DINOv2 ViT-S/B/L/14 (Hugging Face Dinov2 dir, facebook/dinov2-*): CLS [N,hidden]",
)
