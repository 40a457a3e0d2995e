"""VGG16 (torchvision layout) and LPIPS v0.1 with the VGG trunk, in Flax.

**VGG16.** torchvision's ``vgg16``: 13 3x3 convolutions (bias, ReLU) in five stages separated by
2x2 max pools (``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}``), adaptive average pool to 7x7,
then ``classifier.0`` (25088 -> 4096), ReLU, dropout, ``classifier.3`` (4096 -> 4096), ReLU,
dropout, ``classifier.6`` (4096 -> 1000). Weights: torchvision ``vgg16-397923af.pth``.
:func:`vgg16_apply` returns the five LPIPS taps ``relu1_2 .. relu5_3`` (NHWC) and, when the file
has the classifier, ``fc7`` ``[N, 4096]`` (the ReLU output of ``classifier.3``, dropout off) and
``logits`` ``[N, 1000]``.

*Precision/recall features.* NVlabs' metrics use the 4096-d fc7 features of their TorchScript
``vgg16.pt`` (a port of the Caffe VGG16 via StyleGAN's TensorFlow network), fed uint8 images that
it resizes to 224 internally. We provide torchvision VGG16's fc7 (``preprocess='imagenet224'``:
bilinear resize to 224, ImageNet mean/std). Same architecture and role, different weights and
input pipeline, so values are not interchangeable with NVlabs' numbers.

**LPIPS v0.1** (``lpips.LPIPS(net='vgg', version='0.1')``), inputs in ``[-1, 1]``: the scaling
layer ``(x - shift) / scale`` with shift ``(-.030, -.088, -.188)`` and scale ``(.458, .448,
.450)``; the five VGG taps; each tap unit-normalised over channels ``f / (||f||_2 + 1e-10)``;
squared difference; the learned non-negative 1x1 ``lin{k}`` (no bias); spatial mean; sum over the
five layers. Heads: ``lpips/weights/v0.1/vgg.pth`` shipped in the ``lpips`` wheel (a legacy
``torch.save`` of ``lin{k}.model.1.weight`` ``[1, C, 1, 1]``, C = 64, 128, 256, 512, 512).
One deliberate difference: the channel norm uses a square root whose gradient is 0 (not NaN)
where a feature vector is exactly zero; values are unchanged.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .loaded import LoadedNet
from .preprocess import imagenet_normalize, resize_bilinear, to_unit
from .weights import (check_variables, is_converted_dir, load_converted, numbered, read_state_dict,
                      torch_to_flax)

__all__ = [
    "LPIPS_CHANNELS",
    "LPIPS_SCALE",
    "LPIPS_SHIFT",
    "VGG16",
    "find_lpips_heads",
    "load_lpips_vgg",
    "load_vgg16",
    "lpips_apply",
    "vgg16_apply",
]

VGG_NETWORK = "VGG16 (torchvision)"
LPIPS_NETWORK = "LPIPS v0.1 (VGG)"
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# torchvision feature index of the ReLU after which each LPIPS tap is taken
TAPS = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3", 22: "relu4_3", 29: "relu5_3"}
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
VGG_PREPROCESS = ("imagenet224", "imagenet", "none")


@lru_cache(maxsize=64)
def _adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``[out, in]`` averaging matrix of torch's adaptive average pooling along one axis."""
    a = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)
        a[i, start:end] = 1.0 / (end - start)
    return a


def adaptive_avg_pool(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """torch ``AdaptiveAvgPool2d(size)`` on ``[N, H, W, C]``."""
    ah = jnp.asarray(_adaptive_pool_matrix(x.shape[1], size[0]), x.dtype)
    aw = jnp.asarray(_adaptive_pool_matrix(x.shape[2], size[1]), x.dtype)
    return jnp.einsum("pw,nowc->nopc", aw, jnp.einsum("oh,nhwc->nowc", ah, x))


class VGG16(nn.Module):
    """torchvision VGG16 on ImageNet-normalised ``[N, H, W, 3]``; see the module docstring.

    ``classifier=False`` builds only ``features`` (enough for LPIPS); ``last_tap`` stops after
    that torchvision feature index (29 = relu5_3).
    """

    classifier: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = {}
        x = x.astype(self.dtype)
        index = 0
        for v in VGG16_CFG:
            if v == "M":
                if not self.classifier and index > max(TAPS):
                    break
                x = nn.max_pool(x, (2, 2), (2, 2), "VALID")
                index += 1
            else:
                x = nn.Conv(v, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=f"features_{index}")(x)
                x = nn.relu(x)
                if index + 1 in TAPS:
                    out[TAPS[index + 1]] = x
                index += 2
        if self.classifier:
            x = adaptive_avg_pool(x, (7, 7))
            x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # flatten in torch's NCHW order
            x = nn.relu(nn.Dense(4096, dtype=self.dtype, name="classifier_0")(x))
            x = nn.relu(nn.Dense(4096, dtype=self.dtype, name="classifier_3")(x))
            out["fc7"] = x.astype(jnp.float32)
            out["logits"] = nn.Dense(1000, dtype=self.dtype, name="classifier_6")(x).astype(jnp.float32)
        return out


def vgg_init_variables(classifier: bool) -> Any:
    size = 32 if not classifier else 224
    module = VGG16(classifier=classifier)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))


def vgg16_apply(variables: Any, images: jnp.ndarray, *, preprocess: str = "imagenet224",
                classifier: bool = True, dtype: Any = jnp.float32) -> dict[str, jnp.ndarray]:
    """VGG16 features of ``images [N, H, W, 3]``.

    ``preprocess``: ``'imagenet224'`` (images in ``[-1, 1]``; to ``[0, 1]``, bilinear resize to
    224, ImageNet mean/std), ``'imagenet'`` (the same without resizing) or ``'none'`` (already
    normalised). Returns the taps ``relu1_2 .. relu5_3`` ``[N, h, w, C]`` and, with the
    classifier, ``fc7`` ``[N, 4096]`` and ``logits`` ``[N, 1000]``.
    """
    if preprocess == "imagenet224":
        images = imagenet_normalize(resize_bilinear(to_unit(images), (224, 224)))
    elif preprocess == "imagenet":
        images = imagenet_normalize(to_unit(images))
    elif preprocess != "none":
        raise ValueError(f"{VGG_NETWORK}: unknown preprocess {preprocess!r}; choose from {VGG_PREPROCESS}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{VGG_NETWORK}: expected images [N, H, W, 3], got shape {tuple(images.shape)}")
    if min(images.shape[1:3]) < 16:
        raise ValueError(f"{VGG_NETWORK}: images must be at least 16x16, got {tuple(images.shape[1:3])}")
    return VGG16(classifier=classifier, dtype=dtype).apply(variables, images)


def _read_vgg(path: Any, network: str, classifier: bool | None) -> tuple[Any, bool]:
    """VGG16 variables from torchvision's file; ``classifier=None`` -> use it if the file has it."""
    state = read_state_dict(path, network)
    if classifier is None:
        classifier = "classifier.0.weight" in state
    return torch_to_flax(state, vgg_init_variables(classifier), network, str(path), module_name=numbered), classifier


def load_vgg16(path: Any, *, dtype: Any = jnp.float32, preprocess: str = "imagenet224",
               classifier: bool | None = None) -> LoadedNet:
    """Load torchvision ``vgg16-397923af.pth`` (or a converted directory) as kind ``vgg16``."""
    if preprocess not in VGG_PREPROCESS:
        raise ValueError(f"{VGG_NETWORK}: unknown preprocess {preprocess!r}; choose from {VGG_PREPROCESS}")
    if is_converted_dir(path):
        variables, config = load_converted(path, "vgg16", VGG_NETWORK)
        classifier = bool(config.get("classifier", True))
        check_variables(variables, vgg_init_variables(classifier), VGG_NETWORK, str(path))
    else:
        variables, classifier = _read_vgg(path, VGG_NETWORK, classifier)
    variables = jax.tree.map(jnp.asarray, variables)
    return LoadedNet("vgg16", variables,
                     partial(vgg16_apply, preprocess=preprocess, classifier=classifier, dtype=dtype),
                     {"classifier": classifier, "preprocess": preprocess, "dtype": jnp.dtype(dtype).name}, str(path))


# --------------------------------------------------------------------------- LPIPS
def _unit_normalize(f: jnp.ndarray, eps: float = 1e-10) -> jnp.ndarray:
    """``f / (sqrt(sum_c f^2) + eps)`` (lpips.normalize_tensor), with a zero gradient at ``f = 0``."""
    sumsq = jnp.sum(jnp.square(f), axis=-1, keepdims=True)
    positive = sumsq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sumsq, 1.0)), 0.0)
    return f / (norm + eps)


def lpips_apply(params: Any, images0: jnp.ndarray, images1: jnp.ndarray, *, dtype: Any = jnp.float32,
                per_layer: bool = False) -> Any:
    """LPIPS v0.1 distance between ``images0`` and ``images1`` ``[N, H, W, 3]`` in ``[-1, 1]``.

    Returns ``[N]`` float32 (``lpips.LPIPS(net='vgg')(in0, in1)`` flattened), or with
    ``per_layer=True`` a pair ``(distance [N], [5 x [N]])``. Differentiable in both images.
    """
    if images0.shape != images1.shape:
        raise ValueError(f"{LPIPS_NETWORK}: image shapes differ: {tuple(images0.shape)} vs {tuple(images1.shape)}")
    n = images0.shape[0]
    shift = jnp.asarray(LPIPS_SHIFT, jnp.float32)
    scale = jnp.asarray(LPIPS_SCALE, jnp.float32)
    x = (jnp.concatenate([images0, images1], axis=0).astype(jnp.float32) - shift) / scale
    feats = vgg16_apply(params["vgg"], x, preprocess="none", classifier=False, dtype=dtype)
    layers = []
    for k, tap in enumerate(TAPS.values()):
        f = feats[tap].astype(jnp.float32)
        diff = jnp.square(_unit_normalize(f[:n]) - _unit_normalize(f[n:]))
        weighted = jnp.einsum("nhwc,c->nhw", diff, params["lin"][f"lin{k}"])
        layers.append(jnp.mean(weighted, axis=(1, 2)))
    dist = sum(layers)
    return (dist, layers) if per_layer else dist


def find_lpips_heads(version: str = "0.1") -> Path:
    """The v0.1 VGG heads file inside the installed ``lpips`` package (not imported, only located)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.origin:
        raise FileNotFoundError(
            f"{LPIPS_NETWORK}: no heads file given and the lpips package is not installed; pass "
            f"lin_path=.../lpips/weights/v{version}/vgg.pth (shipped in the lpips 0.1.4 wheel)")
    path = Path(spec.origin).parent / "weights" / f"v{version}" / "vgg.pth"
    if not path.is_file():
        raise FileNotFoundError(f"{LPIPS_NETWORK}: {path} not found in the installed lpips package")
    return path


def _lpips_abstract() -> dict[str, Any]:
    lin = {f"lin{k}": jax.ShapeDtypeStruct((c,), jnp.float32) for k, c in enumerate(LPIPS_CHANNELS)}
    return {"vgg": vgg_init_variables(False), "lin": lin}


def read_lpips_heads(path: Any) -> dict[str, np.ndarray]:
    """``{'lin0': [64], ..., 'lin4': [512]}`` from lpips' ``weights/v0.1/vgg.pth``."""
    from .weights import check_state_dict

    state = read_state_dict(path, LPIPS_NETWORK)
    expected = {f"lin{k}.model.1.weight": (1, c, 1, 1) for k, c in enumerate(LPIPS_CHANNELS)}
    check_state_dict(state, expected, LPIPS_NETWORK, str(path))
    return {f"lin{k}": np.asarray(state[f"lin{k}.model.1.weight"], np.float32).reshape(-1)
            for k in range(len(LPIPS_CHANNELS))}


def load_lpips_vgg(path: Any, *, lin_path: Any = None, dtype: Any = jnp.float32) -> LoadedNet:
    """LPIPS v0.1 (VGG) from torchvision's ``vgg16-397923af.pth`` plus lpips' ``v0.1/vgg.pth`` heads.

    ``path`` is the VGG16 file (or a converted ``lpips_vgg`` directory, which holds both);
    ``lin_path`` the heads file, by default the one inside the installed ``lpips`` package.
    The returned ``apply(params, images0, images1)`` gives ``[N]`` distances.
    """
    if is_converted_dir(path):
        params, _ = load_converted(path, "lpips_vgg", LPIPS_NETWORK)
        check_variables(params, _lpips_abstract(), LPIPS_NETWORK, str(path))
        lin_source = str(path)
    else:
        lin_path = find_lpips_heads() if lin_path is None else lin_path
        vgg, _ = _read_vgg(path, LPIPS_NETWORK, classifier=False)
        params = {"vgg": vgg, "lin": read_lpips_heads(lin_path)}
        lin_source = str(lin_path)
    params = jax.tree.map(jnp.asarray, params)
    return LoadedNet("lpips_vgg", params, partial(lpips_apply, dtype=dtype),
                     {"dtype": jnp.dtype(dtype).name, "lin_source": lin_source}, str(path))
