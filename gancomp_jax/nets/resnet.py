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
are never left random. The depth is checked against the published family before
anything is built: ResNet-50's (3, 4, 6, 3) blocks and width 64 exactly, so a file
with a block removed or an extra ``layer1.300000.*`` key is refused naming the key
(``architecture="custom"`` accepts other depths, 1..64 blocks per stage, and even
widths up to 256). Converted directories are checked against the variables their
config implies.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from .weights import check_variables, is_converted_dir, load_converted, numbered, read_state_dict, torch_to_flax

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


#: The published ResNet-50 (He et al. 2016): bottleneck blocks per stage and stem width.
RESNET50_LAYERS = (3, 4, 6, 3)
RESNET50_WIDTH = 64
#: Bounds for ``architecture="custom"`` (e.g. the small random networks of the tests).
MAX_CUSTOM_BLOCKS = 64
MAX_CUSTOM_WIDTH = 256
ARCHITECTURES = ("published", "custom")


def check_architecture_choice(architecture: Any, network: str) -> str:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{network}: architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    return architecture


def stage_blocks(state: Mapping[str, Any], network: str, path: Any, architecture: str = "published"
                 ) -> list[int]:
    """Blocks per stage read off the keys ``layer{s}.{b}.*`` and checked against the family.

    ``architecture="published"``: exactly ResNet-50's (3, 4, 6, 3); a missing or extra block is
    an error naming the key. ``"custom"``: any 1..MAX_CUSTOM_BLOCKS blocks per stage, numbered
    without gaps. Keys ``layer{s}.*`` of other stages or with a non-numeric block are errors.
    """
    check_architecture_choice(architecture, network)
    found: dict[int, dict[int, str]] = {s: {} for s in range(1, 5)}
    for key in state:
        if not key.startswith("layer"):
            continue
        head, _, rest = key.partition(".")
        stage_text, block_text = head[len("layer"):], rest.partition(".")[0]
        if not stage_text.isdigit():
            continue
        stage = int(stage_text)
        if stage not in found or not block_text.isdigit() or len(block_text) > 6:
            raise ValueError(f"{network}: {path} has an unexpected tensor {key!r} (a ResNet has stages "
                             f"layer1..layer4 of numbered blocks)")
        found[stage].setdefault(int(block_text), key)
    layers = []
    for stage, blocks in found.items():
        if architecture == "published":
            want = RESNET50_LAYERS[stage - 1]
            extra = sorted(b for b in blocks if b >= want)
            if extra:
                raise ValueError(f"{network}: {path} has a tensor {blocks[extra[0]]!r} but ResNet-50's stage "
                                 f"{stage} has blocks 0..{want - 1} only")
        else:
            if not blocks:
                raise ValueError(f"{network}: {path} has no tensor 'layer{stage}.0.conv1.weight'; is this the right file?")
            want = max(blocks) + 1
            if want > MAX_CUSTOM_BLOCKS:
                raise ValueError(f"{network}: {path} has a tensor {blocks[max(blocks)]!r}: more than "
                                 f"{MAX_CUSTOM_BLOCKS} blocks in stage {stage}")
        missing = [b for b in range(want) if b not in blocks]
        if missing:
            raise ValueError(f"{network}: {path} has no tensor 'layer{stage}.{missing[0]}.conv1.weight' (block "
                             f"{missing[0]} of stage {stage} is missing); is this the right file?")
        layers.append(want)
    return layers


def check_width(width: Any, network: str, path: Any, key: str, architecture: str) -> int:
    """The stem width: 64 for the published family, 1..MAX_CUSTOM_WIDTH (even) for custom ones."""
    if architecture == "published" and width != RESNET50_WIDTH:
        raise ValueError(f"{network}: {path}: tensor {key!r} gives width {width}, ResNet-50 has {RESNET50_WIDTH}")
    if not (isinstance(width, int) and 2 <= width <= MAX_CUSTOM_WIDTH and width % 2 == 0):
        raise ValueError(f"{network}: {path}: tensor {key!r} gives width {width}, expected an even number in "
                         f"2..{MAX_CUSTOM_WIDTH}")
    return width


def check_config(config: Mapping[str, Any], network: str, path: Any, architecture: str) -> dict[str, Any]:
    """A stored ``{'layers', 'width'}`` config checked against the family (before building anything)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"{network}: {path}: config must be a JSON object, got {type(config).__name__}")
    layers, width = config.get("layers"), config.get("width")
    ok = (isinstance(layers, (list, tuple)) and len(layers) == 4
          and all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_CUSTOM_BLOCKS for n in layers))
    if not ok or (architecture == "published" and tuple(layers) != RESNET50_LAYERS):
        want = list(RESNET50_LAYERS) if architecture == "published" else f"4 stages of 1..{MAX_CUSTOM_BLOCKS} blocks"
        raise ValueError(f"{network}: {path}: config 'layers' is {layers!r}, expected {want}")
    if isinstance(width, bool) or not isinstance(width, int):
        raise ValueError(f"{network}: {path}: config 'width' is {width!r}, expected an integer")
    check_width(width, network, path, "config.width", architecture)
    return dict(config)


def resnet_config_from_state(state: Mapping[str, np.ndarray], path: Any = "", architecture: str = "published"
                             ) -> dict[str, Any]:
    """``layers`` (blocks per stage) and ``width`` (stem channels) read off the tensor shapes and checked."""
    if "conv1.weight" not in state:
        raise ValueError(
            f"{NETWORK}: {path} has no tensor 'conv1.weight' (expected a torchvision ResNet-50 state dict); "
            "is this the right file?"
        )
    layers = stage_blocks(state, NETWORK, path, architecture)
    shape = tuple(np.shape(state["conv1.weight"]))
    if len(shape) != 4:
        raise ValueError(f"{NETWORK}: {path}: tensor 'conv1.weight' has shape {shape}, expected (width, 3, 7, 7)")
    width = check_width(int(shape[0]), NETWORK, path, "conv1.weight", architecture)
    return dict(layers=layers, width=width)


def convert_resnet_state(state: Mapping[str, np.ndarray], path: Any = "", architecture: str = "published"
                         ) -> tuple[dict, dict[str, Any]]:
    """torchvision-named state dict -> (Flax variables {'params', 'batch_stats'}, config)."""
    config = resnet_config_from_state(state, path, architecture)
    module = ResNet(tuple(config["layers"]), config["width"])
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    return torch_to_flax(state, shapes, NETWORK, str(path), module_name=numbered), config


def _strip(key: str) -> str:
    for prefix in ("module.", "backbone."):
        key = key.replace(prefix, "")
    return key


def read_dino_rn50_params(path: str | Path, architecture: str = "published") -> tuple[dict, dict[str, Any]]:
    """``dino_resnet50_pretrain.pth`` (or a full DINO checkpoint) -> (variables, config)."""
    check_architecture_choice(architecture, NETWORK)
    state = read_state_dict(path, NETWORK, nested_keys=("teacher", "state_dict", "model"), strip_prefixes=())
    state = {_strip(k): v for k, v in state.items()}
    return convert_resnet_state(state, path, architecture)


def abstract_variables(config: Mapping[str, Any]) -> Any:
    """Shapes of the Flax variables of a ResNet ``config`` (nothing allocated)."""
    module = ResNet(tuple(config["layers"]), config["width"])
    return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


def resnet_apply(variables: Any, images: jax.Array, *, config: Mapping[str, Any], dtype: Any = jnp.float32) -> jax.Array:
    """Pooled features of preprocessed images [N, H, W, 3] -> [N, 32 * width] float32 (2048 for RN50)."""
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{NETWORK}: expected images [N, H, W, 3], got {tuple(images.shape)}")
    return ResNet(tuple(config["layers"]), config["width"], dtype).apply(variables, images)


def load_dino_rn50(path: str | Path, *, dtype: Any = jnp.float32, architecture: str = "published"):
    """Registry loader: ``dino_resnet50_pretrain.pth`` or a converted directory -> LoadedNet.

    ``apply(params, images)``: images [N, H, W, 3] already preprocessed (ImageNet
    mean/std for the canonical input; see :mod:`gancomp_jax.nets.embedders`).
    ``architecture``: ``"published"`` (ResNet-50's blocks (3, 4, 6, 3) and width 64, exactly)
    or ``"custom"`` (other depths and widths within bounds, e.g. small test networks).
    """
    from .loaded import LoadedNet

    check_architecture_choice(architecture, NETWORK)
    if is_converted_dir(path):
        variables, config = load_converted(path, "dino_rn50", NETWORK)
        config = check_config(config, NETWORK, path, architecture)
        check_variables(variables, abstract_variables(config), NETWORK, str(path))
    else:
        variables, config = read_dino_rn50_params(path, architecture)
    return LoadedNet("dino_rn50", variables, partial(resnet_apply, config=config, dtype=dtype), config, str(path))
