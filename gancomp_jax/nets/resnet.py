"""torchvision-layout ResNet-50 in Flax, for DINO's ResNet-50 (``dino_resnet50_pretrain.pth``).

Architecture (He et al. 2016, torchvision's "v1.5" variant that DINO trained):
7x7/2 convolution -> BatchNorm -> ReLU -> 3x3/2 max pool (padding 1), four
stages of bottleneck blocks (3, 4, 6, 3) with widths 64/128/256/512 x 4, the
stride on the 3x3 convolution of each stage's first block and a 1x1/stride
convolution + BN shortcut, then global average pooling. DINO replaces ``fc``
with ``Identity``, so the output is the pooled [N, 2048] feature (eval mode:
BatchNorm running statistics).

``dino_resnet50_pretrain.pth`` is a ``torch.save`` state dict with torchvision
key names (``conv1.weight``, ``layer1.0.downsample.0.weight``, ...). Like
NICKEL & DiME's loader this also accepts a full DINO checkpoint (the ``teacher``
entry is used) and strips ``module.`` and ``backbone.`` from keys; keys of
``fc`` / the DINO projection ``head`` are ignored. Unlike that loader
(``strict=False``), a missing or misshapen backbone key is an error: weights
are never left random.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .weights import is_converted_dir, load_converted, numbered, read_state_dict, torch_to_flax

__all__ = [
    "NETWORK",
    "ResNet",
    "convert_resnet_state",
    "load_dino_rn50",
    "read_dino_rn50_params",
    "resnet_apply",
    "resnet_config_from_state",
]

NETWORK = "DINO ResNet-50"
BN_EPS = 1e-5


def _bn(dtype: Any, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=dtype, name=name)


def _conv(features: int, kernel: int, stride: int, dtype: Any, name: str) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(
        features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
        use_bias=False, dtype=dtype, name=name,
    )


class Bottleneck(nn.Module):
    """torchvision Bottleneck (expansion 4, stride on the 3x3 conv). NHWC in/out."""

    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = nn.relu(_bn(self.dtype, "bn1")(_conv(self.planes, 1, 1, self.dtype, "conv1")(x)))
        out = nn.relu(_bn(self.dtype, "bn2")(_conv(self.planes, 3, self.stride, self.dtype, "conv2")(out)))
        out = _bn(self.dtype, "bn3")(_conv(self.planes * 4, 1, 1, self.dtype, "conv3")(out))
        identity = x
        if self.downsample:
            identity = _conv(self.planes * 4, 1, self.stride, self.dtype, "downsample_0")(x)
            identity = _bn(self.dtype, "downsample_1")(identity)
        return nn.relu(out + identity)


class ResNet(nn.Module):
    """torchvision ResNet trunk with global average pooling: [N, H, W, 3] -> [N, 32 * width].

    Any H, W (>= 32 for the 5 stride-2 steps to leave at least one pixel).
    """

    layers: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        x = nn.relu(_bn(self.dtype, "bn1")(_conv(self.width, 7, 2, self.dtype, "conv1")(x)))
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        inplanes = self.width
        for stage, blocks in enumerate(self.layers):
            planes = self.width * 2**stage
            for b in range(blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                down = b == 0 and (stride != 1 or inplanes != planes * 4)
                x = Bottleneck(planes, stride, down, self.dtype, name=f"layer{stage + 1}_{b}")(x)
                inplanes = planes * 4
        return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def resnet_config_from_state(state: Mapping[str, np.ndarray], path: Any = "") -> dict[str, Any]:
    """``layers`` (blocks per stage) and ``width`` (stem channels) read off the tensor shapes."""
    if "conv1.weight" not in state:
        raise ValueError(
            f"{NETWORK}: {path} has no tensor 'conv1.weight' (expected a torchvision ResNet-50 state dict); "
            "is this the right file?"
        )
    layers = []
    for stage in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in state if k.startswith(f"layer{stage}.") and k.split(".")[1].isdigit()}
        if not blocks:
            raise ValueError(f"{NETWORK}: {path} has no tensor 'layer{stage}.0.conv1.weight'; is this the right file?")
        layers.append(max(blocks) + 1)
    return dict(layers=layers, width=int(np.shape(state["conv1.weight"])[0]))


def convert_resnet_state(state: Mapping[str, np.ndarray], path: Any = "") -> tuple[dict, dict[str, Any]]:
    """torchvision-named state dict -> (Flax variables {'params', 'batch_stats'}, config)."""
    config = resnet_config_from_state(state, path)
    module = ResNet(tuple(config["layers"]), config["width"])
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return torch_to_flax(state, shapes, NETWORK, str(path), module_name=numbered), config


def _strip(key: str) -> str:
    for prefix in ("module.", "backbone."):
        key = key.replace(prefix, "")
    return key


def read_dino_rn50_params(path: str | Path) -> tuple[dict, dict[str, Any]]:
    """``dino_resnet50_pretrain.pth`` (or a full DINO checkpoint) -> (variables, config)."""
    state = read_state_dict(path, NETWORK, nested_keys=("teacher", "state_dict", "model"), strip_prefixes=())
    state = {_strip(k): v for k, v in state.items()}
    return convert_resnet_state(state, path)


def resnet_apply(variables: Any, images: jax.Array, *, config: Mapping[str, Any], dtype: Any = jnp.float32) -> jax.Array:
    """Pooled features of preprocessed images [N, H, W, 3] -> [N, 32 * width] float32 (2048 for RN50)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{NETWORK}: expected images [N, H, W, 3], got {tuple(images.shape)}")
    return ResNet(tuple(config["layers"]), config["width"], dtype).apply(variables, images)


def load_dino_rn50(path: str | Path, *, dtype: Any = jnp.float32):
    """Registry loader: ``dino_resnet50_pretrain.pth`` or a converted directory -> LoadedNet.

    ``apply(params, images)``: images [N, H, W, 3] already preprocessed (ImageNet
    mean/std for the canonical input; see :mod:`gancomp_jax.nets.embedders`).
    """
    from . import LoadedNet

    if is_converted_dir(path):
        variables, config = load_converted(path, "dino_rn50", NETWORK)
    else:
        variables, config = read_dino_rn50_params(path)
    return LoadedNet("dino_rn50", variables, partial(resnet_apply, config=config, dtype=dtype), config, str(path))
