"""Projection losses: ``vgg_nvlabs`` (NVlabs' projector distance), ``lpips`` (LPIPS v0.1), ``mse``.

All three are built by :func:`make_distance` as ``(prepare(target), dist(prepared, synth))``
where ``target`` is uint8 ``[1, R, R, C]`` and ``synth`` the generator's float output
``[1, R, R, C]`` in ``[-1, 1]``; ``dist`` returns a float32 scalar and is differentiable in
``synth``.

**vgg_nvlabs** — what NVlabs' ``projector.py`` computes with its TorchScript ``vgg16.pt``: both
images in ``[0, 255]`` (``(synth + 1) * 255/2``), area-downsampled to 256x256 when larger, fed to
``vgg16(x, resize_images=False, return_lpips=True)``, which returns per image one vector whose
squared Euclidean distance is the LPIPS distance (NVlabs' PPL metric relies on exactly that);
the loss is ``(target_features - synth_features).square().sum()`` with the target's features
computed once. We build such a vector explicitly — the five VGG taps, each unit-normalised over
channels, multiplied by ``sqrt(lin_k / (h_k * w_k))`` (LPIPS head ``k``, tap size), flattened and
concatenated — from torchvision's VGG16 trunk (``vgg16-397923af.pth``, which users provide) and
the LPIPS v0.1 heads (``weights/v0.1/vgg.pth`` in the ``lpips`` wheel); its squared distance
equals ``lpips.LPIPS(net='vgg')`` (tested). What differs from NVlabs, therefore:

- the trunk weights: NVlabs' ``vgg16.pt`` is a port of the VGG16 inside StyleGAN's TensorFlow
  ``vgg16_zhang_perceptual.pkl``; ours are torchvision's (the trunk the ``lpips`` package uses);
- the linear heads: ours are LPIPS v0.1; the heads baked into ``vgg16.pt`` come from the same
  LPIPS work but their exact version is not recorded in the file's name (we could not inspect
  the file offline);
- the input normalisation: ``vgg16.pt`` normalises its ``[0, 255]`` input inside the TorchScript
  code; we map ``[0, 255]`` to ``[-1, 1]`` and apply LPIPS' scaling layer (shift/scale), as the
  ``lpips`` package does.

The structure (area downsampling, LPIPS-style normalised and weighted features, summed squared
difference, cached target features) is NVlabs'. Distances are therefore of the same kind and
magnitude as NVlabs' but not equal to them.

**lpips** — ``lpips.LPIPS(net='vgg', version='0.1')`` between target and synth in ``[-1, 1]``,
both resized to 256 with bilinear interpolation when larger (the convention of rosinality's
projector, which CAGC's ``get_projected_image.py`` builds on); both images go through VGG at
every step. Same weights as ``vgg_nvlabs``.

**mse** — ``mean((synth - target)^2)`` with both images in ``[-1, 1]`` (``F.mse_loss`` of
rosinality/CAGC's projector); needs no weights. Its magnitude (0.01–0.5) is close to LPIPS', so
NVlabs' noise-regularisation weight 1e5 keeps its meaning.

A VGG-based loss asked for without its weight file is an error naming the file; random VGG
weights are never used.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.nets.preprocess import resize_bilinear
from gancomp_jax.nets.vgg_lpips import LPIPS_SCALE, LPIPS_SHIFT, TAPS, adaptive_avg_pool, vgg16_apply

LOSSES = ("vgg_nvlabs", "lpips", "mse")
VGG_FILE = "vgg16-397923af.pth"
PERCEPTUAL_SIZE = 256


def area_downsample(x: jnp.ndarray, size: int = PERCEPTUAL_SIZE) -> jnp.ndarray:
    """torch ``F.interpolate(mode='area')`` to ``size`` when ``x [N, H, W, C]`` is larger."""
    if x.shape[1] <= size:
        return x
    return adaptive_avg_pool(x, (size, size))


def bilinear_downsample(x: jnp.ndarray, size: int = PERCEPTUAL_SIZE) -> jnp.ndarray:
    if x.shape[1] <= size:
        return x
    return resize_bilinear(x, (size, size))


def uint8_to_unit(images: np.ndarray | jnp.ndarray) -> jnp.ndarray:
    """uint8 ``[0, 255]`` → float ``[-1, 1]`` (``x / 127.5 - 1``)."""
    return jnp.asarray(images, jnp.float32) / 127.5 - 1.0


def _rgb(x: jnp.ndarray) -> jnp.ndarray:
    """VGG needs 3 channels: a 1-channel image is repeated."""
    return jnp.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def lpips_feature_vector(params: Any, images: jnp.ndarray) -> jnp.ndarray:
    """``[N, D]`` vectors whose squared distance is the LPIPS v0.1 distance; ``images`` in [-1, 1]."""
    shift = jnp.asarray(LPIPS_SHIFT, jnp.float32)
    scale = jnp.asarray(LPIPS_SCALE, jnp.float32)
    feats = vgg16_apply(params["vgg"], (_rgb(images) - shift) / scale, preprocess="none", classifier=False)
    parts = []
    for k, tap in enumerate(TAPS.values()):
        f = feats[tap].astype(jnp.float32)
        sumsq = jnp.sum(jnp.square(f), axis=-1, keepdims=True)
        pos = sumsq > 0
        norm = jnp.where(pos, jnp.sqrt(jnp.where(pos, sumsq, 1.0)), 0.0)
        f = f / (norm + 1e-10)
        hw = f.shape[1] * f.shape[2]
        f = f * jnp.sqrt(params["lin"][f"lin{k}"] / hw)
        parts.append(f.reshape(f.shape[0], -1))
    return jnp.concatenate(parts, axis=1)


def load_lpips_params(loss: str, vgg16: str, lpips_lin: str = "") -> Any:
    """LPIPS v0.1 parameters (VGG trunk + heads), or an error naming the missing file."""
    from gancomp_jax import nets

    if not vgg16:
        raise ValueError(f"loss={loss!r} needs torchvision's VGG16 weights ({VGG_FILE}, or a directory "
                         f"converted with tools/convert_feature_net.py lpips_vgg): set config.vgg16=PATH. "
                         f"Without VGG weights use loss='mse'")
    return nets.load("lpips_vgg", vgg16, lin_path=lpips_lin or None).params


def make_distance(loss: str, params: Any = None) -> tuple[Callable, Callable]:
    """``(prepare, dist)`` for ``loss``; ``params`` are LPIPS parameters for the VGG losses."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "mse":
        def prepare(target_u8):
            return uint8_to_unit(target_u8)

        def dist(prepared, synth):
            return jnp.mean(jnp.square(synth.astype(jnp.float32) - prepared))
        return prepare, dist

    if params is None:
        raise ValueError(f"loss={loss!r} needs LPIPS/VGG parameters")

    if loss == "vgg_nvlabs":
        def features(x255):  # [0, 255] images → LPIPS feature vectors
            return lpips_feature_vector(params, area_downsample(x255) / 127.5 - 1.0)

        def prepare(target_u8):
            return features(jnp.asarray(target_u8, jnp.float32))

        def dist(prepared, synth):
            return jnp.sum(jnp.square(prepared - features((synth.astype(jnp.float32) + 1.0) * (255.0 / 2))))
        return prepare, dist

    def prepare(target_u8):  # lpips
        return bilinear_downsample(uint8_to_unit(target_u8))

    def dist(prepared, synth):
        a = lpips_feature_vector(params, bilinear_downsample(synth.astype(jnp.float32)))
        b = lpips_feature_vector(params, prepared)
        return jnp.sum(jnp.square(a - b))
    return prepare, dist


def psnr(a_u8: np.ndarray, b_u8: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (peak 255); inf when equal."""
    mse = np.mean((np.asarray(a_u8, np.float64) - np.asarray(b_u8, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def lpips_metric(params: Any, a_u8: np.ndarray, b_u8: np.ndarray) -> float:
    """LPIPS v0.1 between two uint8 images ``[H, W, C]``, area-downsampled to 256 when larger
    (CAGC reports LPIPS at 256)."""
    a = area_downsample(uint8_to_unit(a_u8[None]))
    b = area_downsample(uint8_to_unit(b_u8[None]))
    fa, fb = lpips_feature_vector(params, a), lpips_feature_vector(params, b)
    return float(jnp.sum(jnp.square(fa - fb)))
