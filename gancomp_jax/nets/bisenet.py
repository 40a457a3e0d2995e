"""BiSeNet face parser (face-parsing.PyTorch, ResNet-18 context path, 19 classes) in Flax.

Architecture (names follow the ``79999_iter.pth`` state dict; BatchNorm eps 1e-5, running
statistics; every convolution without bias):

* ``cp.resnet``: ResNet-18 trunk — ``conv1`` 7x7/2, ``bn1``, ReLU, max pool 3x3/2 (pad 1), then
  ``layer1..4`` of two BasicBlocks each (``conv1``/``bn1``/``conv2``/``bn2``, shortcut
  ``downsample.0`` 1x1 conv + ``downsample.1`` BN when the shape changes), giving features at
  1/8 (128 ch), 1/16 (256 ch) and 1/32 (512 ch).
* ``cp`` context path: global average of the 1/32 features through ``conv_avg`` (1x1
  ConvBNReLU) added to ``arm32`` (AttentionRefinementModule: 3x3 ConvBNReLU ``conv``, global
  average -> ``conv_atten`` 1x1 -> ``bn_atten`` -> sigmoid gate), nearest-upsampled to 1/16,
  ``conv_head32``; plus ``arm16`` of the 1/16 features, nearest-upsampled to 1/8,
  ``conv_head16``.
* ``ffm`` (FeatureFusionModule): concat(1/8 trunk features, context 1/8) -> 1x1 ConvBNReLU
  ``convblk`` (256) -> ``feat * (1 + sigmoid(conv2(relu(conv1(mean(feat))))))``.
* heads ``conv_out`` (256 -> 256 -> 19), ``conv_out16`` / ``conv_out32`` (128 -> 64 -> 19): 3x3
  ConvBNReLU then 1x1 conv; each bilinearly upsampled to the input size with
  ``align_corners=True``. The main head ``conv_out`` is what face parsing uses.

Canonical input: RGB resized to 512x512, ImageNet mean/std. Labels: 0 background, 1 skin,
2/3 brows, 4/5 eyes, 6 glasses, 7/8 ears, 9 earrings, 10 nose, 11 mouth, 12/13 lips, 14 neck,
15 necklace, 16 cloth, 17 hair, 18 hat.

CAGC's face mask (:func:`face_mask`) keeps labels > 0 and != 16.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from .loaded import LoadedNet
from .preprocess import imagenet_normalize, quantize_uint8, resize_bilinear, resize_nearest, to_unit
from .weights import (check_variables, is_converted_dir, load_converted, numbered, read_state_dict,
                      torch_to_flax)

__all__ = ["BiSeNet", "NUM_CLASSES", "apply", "face_mask", "load_bisenet", "make_face_mask_fn"]

NETWORK = "BiSeNet face parser"
KIND = "bisenet"
NUM_CLASSES = 19
CLOTH = 16
PREPROCESS = ("imagenet512", "imagenet", "none")


def _bn(name, dtype):
    return nn.BatchNorm(use_running_average=True, epsilon=1e-5, dtype=dtype, name=name)


def _conv(features, k, stride, pad, name, dtype):
    return nn.Conv(features, (k, k), (stride, stride), ((pad, pad), (pad, pad)), use_bias=False,
                   dtype=dtype, name=name)


def _global_mean(x):
    return jnp.mean(x, axis=(1, 2), keepdims=True)


class ConvBNReLU(nn.Module):
    features: int
    k: int = 3
    stride: int = 1
    pad: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = _conv(self.features, self.k, self.stride, self.pad, "conv", self.dtype)(x)
        return nn.relu(_bn("bn", self.dtype)(x))


class BasicBlock(nn.Module):
    features: int
    stride: int = 1
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        r = nn.relu(_bn("bn1", self.dtype)(_conv(self.features, 3, self.stride, 1, "conv1", self.dtype)(x)))
        r = _bn("bn2", self.dtype)(_conv(self.features, 3, 1, 1, "conv2", self.dtype)(r))
        if x.shape[-1] != self.features or self.stride != 1:
            x = _bn("downsample_1", self.dtype)(_conv(self.features, 1, self.stride, 0, "downsample_0", self.dtype)(x))
        return nn.relu(x + r)


class Resnet18(nn.Module):
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.relu(_bn("bn1", self.dtype)(_conv(64, 7, 2, 3, "conv1", self.dtype)(x)))
        x = nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
        feats = []
        for i, (features, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            x = BasicBlock(features, stride, self.dtype, name=f"layer{i}_0")(x)
            x = BasicBlock(features, 1, self.dtype, name=f"layer{i}_1")(x)
            feats.append(x)
        return feats[1], feats[2], feats[3]  # 1/8, 1/16, 1/32


class AttentionRefinementModule(nn.Module):
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        feat = ConvBNReLU(self.features, dtype=self.dtype, name="conv")(x)
        atten = _conv(self.features, 1, 1, 0, "conv_atten", self.dtype)(_global_mean(feat))
        atten = nn.sigmoid(_bn("bn_atten", self.dtype)(atten))
        return feat * atten


class ContextPath(nn.Module):
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        feat8, feat16, feat32 = Resnet18(self.dtype, name="resnet")(x)
        avg = ConvBNReLU(128, 1, 1, 0, self.dtype, name="conv_avg")(_global_mean(feat32))
        feat32_sum = AttentionRefinementModule(128, self.dtype, name="arm32")(feat32) + avg  # nearest 1x1 -> HxW
        feat32_up = resize_nearest(feat32_sum, feat16.shape[1:3])
        feat32_up = ConvBNReLU(128, dtype=self.dtype, name="conv_head32")(feat32_up)
        feat16_sum = AttentionRefinementModule(128, self.dtype, name="arm16")(feat16) + feat32_up
        feat16_up = resize_nearest(feat16_sum, feat8.shape[1:3])
        feat16_up = ConvBNReLU(128, dtype=self.dtype, name="conv_head16")(feat16_up)
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    features: int = 256
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, fsp, fcp):
        feat = ConvBNReLU(self.features, 1, 1, 0, self.dtype, name="convblk")(jnp.concatenate([fsp, fcp], axis=-1))
        atten = nn.relu(_conv(self.features // 4, 1, 1, 0, "conv1", self.dtype)(_global_mean(feat)))
        atten = nn.sigmoid(_conv(self.features, 1, 1, 0, "conv2", self.dtype)(atten))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    mid: int
    n_classes: int = NUM_CLASSES
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = ConvBNReLU(self.mid, dtype=self.dtype, name="conv")(x)
        return _conv(self.n_classes, 1, 1, 0, "conv_out", self.dtype)(x)


class BiSeNet(nn.Module):
    """BiSeNet on normalised ``[N, H, W, 3]``; returns logits ``[N, H, W, 19]`` (and the two aux heads)."""

    aux: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        size = x.shape[1:3]
        x = x.astype(self.dtype)
        feat8, feat_cp8, feat_cp16 = ContextPath(self.dtype, name="cp")(x)
        fuse = FeatureFusionModule(256, self.dtype, name="ffm")(feat8, feat_cp8)
        up = partial(resize_bilinear, size=size, align_corners=True)
        out = up(BiSeNetOutput(256, dtype=self.dtype, name="conv_out")(fuse).astype(jnp.float32))
        heads16 = BiSeNetOutput(64, dtype=self.dtype, name="conv_out16")
        heads32 = BiSeNetOutput(64, dtype=self.dtype, name="conv_out32")
        if not self.aux:
            return out
        return (out, up(heads16(feat_cp8).astype(jnp.float32)), up(heads32(feat_cp16).astype(jnp.float32)))


def init_variables() -> Any:
    return jax.eval_shape(BiSeNet().init, jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))


def _preprocess(images: jnp.ndarray, preprocess: str, parse_size: int) -> jnp.ndarray:
    if preprocess in ("imagenet512", "imagenet"):
        x = jnp.clip(to_unit(images), 0.0, 1.0)
        if preprocess == "imagenet512":
            x = resize_bilinear(x, (parse_size, parse_size))
        return imagenet_normalize(x)
    if preprocess != "none":
        raise ValueError(f"{NETWORK}: unknown preprocess {preprocess!r}; choose from {PREPROCESS}")
    return images


def apply(variables: Any, images: jnp.ndarray, *, preprocess: str = "imagenet512", aux: bool = False,
          parse_size: int = 512, dtype: Any = jnp.float32) -> Any:
    """Face-parsing logits of ``images [N, H, W, 3]``.

    ``preprocess``: ``'imagenet512'`` (images in ``[-1, 1]``; clamp to ``[0, 1]``, bilinear resize
    to ``parse_size`` (512), ImageNet mean/std — CAGC's ``Batch_Img_Parsing``), ``'imagenet'``
    (same without resizing) or ``'none'`` (already normalised). Returns float32 logits
    ``[N, h, w, 19]`` at the network's input size (``aux=True``: the tuple of main, 1/8-context
    and 1/16-context heads, as the torch model's forward).
    """
    x = _preprocess(images, preprocess, parse_size)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{NETWORK}: expected images [N, H, W, 3], got shape {tuple(images.shape)}")
    return BiSeNet(aux=aux, dtype=dtype).apply(variables, x)


def face_mask(variables: Any, images: jnp.ndarray, *, resize_back: str = "nearest", quantize: bool = True,
              parse_size: int = 512, dtype: Any = jnp.float32) -> jnp.ndarray:
    """CAGC's content mask of ``images [N, H, W, 3]`` in ``[-1, 1]``: bool ``[N, H, W]``.

    Parses at ``parse_size`` (512) with the main head, ``argmax`` over the 19 classes, keeps
    labels > 0 and != 16 (not background, not cloth), and brings the mask back to ``H x W``:

    * pruning (``Extract_Face_Mask``; defaults): ``quantize=True`` rounds the image to uint8
      levels as CAGC's PIL conversion does, ``resize_back='nearest'`` is PIL's NEAREST
      (half-pixel centres). CAGC resizes the image to 512 with PIL's bilinear filter, which
      antialiases when shrinking (images > 512 px); we use torch-style bilinear (exact when
      enlarging up to border effects).
    * masked distillation (``Batch_Img_Parsing``): ``quantize=False``, ``resize_back='bilinear'``
      (bilinear resize of the 0/1 mask, then > 0.5).

    No gradient flows through the mask.
    """
    images = jax.lax.stop_gradient(jnp.asarray(images, jnp.float32))
    h, w = images.shape[1:3]
    x01 = jnp.clip(to_unit(images), 0.0, 1.0)
    if quantize:
        x01 = quantize_uint8(x01)
    x = imagenet_normalize(resize_bilinear(x01, (parse_size, parse_size)))
    logits = BiSeNet(aux=False, dtype=dtype).apply(variables, x)
    labels = jnp.argmax(logits, axis=-1)
    mask = ((labels > 0) & (labels != CLOTH)).astype(jnp.float32)[..., None]
    if resize_back == "nearest":
        mask = resize_nearest(mask, (h, w), half_pixel=True) > 0.5
    elif resize_back == "bilinear":
        mask = resize_bilinear(mask, (h, w)) > 0.5
    else:
        raise ValueError(f"{NETWORK}: resize_back must be 'nearest' or 'bilinear', got {resize_back!r}")
    return mask[..., 0]


def load_bisenet(path: Any, *, dtype: Any = jnp.float32, preprocess: str = "imagenet512",
                 aux: bool = False) -> LoadedNet:
    """Load face-parsing.PyTorch's ``79999_iter.pth`` (or a converted directory) as kind ``bisenet``."""
    if preprocess not in PREPROCESS:
        raise ValueError(f"{NETWORK}: unknown preprocess {preprocess!r}; choose from {PREPROCESS}")
    if is_converted_dir(path):
        variables, _ = load_converted(path, (KIND, "face_parser"), NETWORK)
        check_variables(variables, init_variables(), NETWORK, str(path))
    else:
        variables = torch_to_flax(read_state_dict(path, NETWORK), init_variables(), NETWORK, str(path),
                                  module_name=numbered)
    variables = jax.tree.map(jnp.asarray, variables)
    return LoadedNet(KIND, variables, partial(apply, preprocess=preprocess, aux=aux, dtype=dtype),
                     {"preprocess": preprocess, "aux": aux, "dtype": jnp.dtype(dtype).name}, str(path))


def make_face_mask_fn(path: Any, *, resize_back: str = "nearest", quantize: bool = True, parse_size: int = 512,
                      dtype: Any = jnp.float32) -> Callable[[Any], jnp.ndarray]:
    """Load the parser from ``path`` and return a jitted ``images [N, H, W, 3] in [-1, 1] -> bool [N, H, W]``.

    Defaults reproduce CAGC's pruning mask; see :func:`face_mask` for the options.
    """
    if resize_back not in ("nearest", "bilinear"):
        raise ValueError(f"{NETWORK}: resize_back must be 'nearest' or 'bilinear', got {resize_back!r}")
    variables = load_bisenet(path).params
    fn = jax.jit(partial(face_mask, resize_back=resize_back, quantize=quantize, parse_size=parse_size, dtype=dtype))
    return lambda images: fn(variables, jnp.asarray(images))
