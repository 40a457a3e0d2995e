"""CLIP's image encoder ResNet-50 (OpenAI's "modified ResNet") in Flax, loaded from RN50.pt.

Architecture (Radford et al. 2021; openai/CLIP ``model.py`` and open_clip
``modified_resnet.py``), for RN50: layers (3, 4, 6, 3), width 64, 32 heads,
1024-d output.

* Stem: three 3x3 convolutions (3 -> w/2 stride 2, w/2 -> w/2, w/2 -> w), each
  followed by BatchNorm and ReLU, then a 2x2 average pool (no max pool).
* Bottleneck blocks (1x1, 3x3, 1x1, expansion 4). All convolutions have stride
  1; a block with stride 2 average-pools (2x2) after the 3x3 convolution
  ("anti-aliased" striding), and its shortcut is AvgPool(2) -> 1x1 conv -> BN.
* Attention pooling: the final [N, h, w, 32w] map becomes a sequence of h*w
  tokens with their mean prepended, plus a learned positional embedding
  [h*w+1, 32w]; one multi-head attention with the mean token as the query
  (32w/64 heads) and an output projection ``c_proj`` [32w -> output_dim].
  The embedding is that query's output, [N, output_dim].

The positional embedding fixes the input size: 224 px for RN50 (7x7 tokens).

Before anything is built the architecture is checked against the released RN50
(blocks (3, 4, 6, 3), width 64, 32 heads, 1024-d output; a missing or extra block is
an error naming the key) and the input size against 32..1024 px;
``architecture="custom"`` accepts other depths and widths within bounds (small test
networks). Converted directories are checked against the variables their config implies.

Files read (never with ``torch.jit.load``, never a hub):

* OpenAI ``RN50.pt``: a TorchScript archive, read with
  :mod:`gancomp_jax.nets.torchscript`; tensors are float16 there.
* open_clip / HF ``timm/resnet50_clip.openai``: ``open_clip_model.safetensors``
  (OpenAI key names, ``visual.`` prefix) or timm's ``model.safetensors``
  (``stem.conv1.conv``, ``stages.S.B.conv1_1x1.conv``, ``head.q`` ... names).
* A ``torch.save`` state dict with either naming.
* A directory converted by ``tools/convert_feature_net.py clip_rn50``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..io.safe_files import require_regular_file
from . import resnet
from .torchscript import is_torchscript_archive, load_torchscript_state_dict
from .weights import check_variables, is_converted_dir, load_converted, read_state_dict

__all__ = [
    "AttentionPool2d",
    "ModifiedResNet",
    "NETWORK",
    "canonical_clip_rn50_state",
    "clip_rn50_apply",
    "clip_rn50_config_from_state",
    "convert_clip_rn50_state",
    "load_clip_rn50",
    "read_clip_rn50_params",
]

NETWORK = "CLIP RN50 image encoder"
BN_EPS = 1e-5


def _conv(features: int, kernel: int, dtype: Any, name: str) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(
        features, (kernel, kernel), padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype, name=name
    )


def _bn(dtype: Any, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=True, epsilon=BN_EPS, dtype=dtype, name=name)


def _avg_pool(x: jax.Array, size: int) -> jax.Array:
    """torch ``AvgPool2d(size)``: window = stride = size, no padding, floor."""
    return nn.avg_pool(x, (size, size), strides=(size, size), padding="VALID")


class Bottleneck(nn.Module):
    """CLIP bottleneck block; ``stride`` > 1 average-pools after the 3x3 conv. NHWC in/out."""

    planes: int
    stride: int = 1
    downsample: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = nn.relu(_bn(self.dtype, "bn1")(_conv(self.planes, 1, self.dtype, "conv1")(x)))
        out = nn.relu(_bn(self.dtype, "bn2")(_conv(self.planes, 3, self.dtype, "conv2")(out)))
        if self.stride > 1:
            out = _avg_pool(out, self.stride)
        out = _bn(self.dtype, "bn3")(_conv(self.planes * 4, 1, self.dtype, "conv3")(out))
        identity = x
        if self.downsample:
            if self.stride > 1:
                identity = _avg_pool(identity, self.stride)
            identity = _conv(self.planes * 4, 1, self.dtype, "downsample_conv")(identity)
            identity = _bn(self.dtype, "downsample_bn")(identity)
        return nn.relu(out + identity)


class AttentionPool2d(nn.Module):
    """QKV attention pooling: [N, h, w, C] -> [N, output_dim] (the mean token's output)."""

    num_heads: int
    output_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        tokens = x.reshape(n, h * w, c)
        tokens = jnp.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1)  # [N, L, C]
        pos = self.param("positional_embedding", nn.initializers.normal(c**-0.5), (h * w + 1, c))
        tokens = tokens + pos.astype(tokens.dtype)[None]
        head_dim = c // self.num_heads
        dense = lambda feats, name: nn.Dense(feats, dtype=self.dtype, name=name)  # noqa: E731
        q = dense(c, "q_proj")(tokens[:, :1]).reshape(n, 1, self.num_heads, head_dim)
        k = dense(c, "k_proj")(tokens).reshape(n, h * w + 1, self.num_heads, head_dim)
        v = dense(c, "v_proj")(tokens).reshape(n, h * w + 1, self.num_heads, head_dim)
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(head_dim)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        out = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, c)
        return dense(self.output_dim, "c_proj")(out)


class ModifiedResNet(nn.Module):
    """CLIP's modified ResNet image encoder. [N, H, W, 3] (CLIP-normalised) -> [N, output_dim].

    ``H = W = 32 * sqrt(positional tokens - 1)`` (224 for the released RN50).
    """

    layers: Sequence[int] = (3, 4, 6, 3)
    width: int = 64
    heads: int = 32
    output_dim: int = 1024
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        half = self.width // 2
        for i, (feats, stride) in enumerate([(half, 2), (half, 1), (self.width, 1)], start=1):
            conv = nn.Conv(
                feats, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), use_bias=False,
                dtype=self.dtype, name=f"conv{i}",
            )
            x = nn.relu(_bn(self.dtype, f"bn{i}")(conv(x)))
        x = _avg_pool(x, 2)
        inplanes = self.width
        for stage, blocks in enumerate(self.layers):
            planes = self.width * 2**stage
            for b in range(blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                down = b == 0 and (stride > 1 or inplanes != planes * 4)
                x = Bottleneck(planes, stride, down, self.dtype, name=f"layer{stage + 1}_{b}")(x)
                inplanes = planes * 4
        out = AttentionPool2d(self.heads, self.output_dim, self.dtype, name="attnpool")(x)
        return out.astype(jnp.float32)


# --------------------------------------------------------------------------- weights

_TIMM_STAGE = re.compile(r"^stages\.(\d+)\.(\d+)\.(conv[123])_(?:1x1|kxk)\.(conv|bn)\.(.+)$")
_TIMM_SHORTCUT = re.compile(r"^stages\.(\d+)\.(\d+)\.shortcut\.conv\.(conv|bn)\.(.+)$")
_TIMM_HEAD = {"pos_embed": "positional_embedding", "q": "q_proj", "k": "k_proj", "v": "v_proj", "proj": "c_proj"}


def require(state: Mapping[str, np.ndarray], key: str, shape: Any, network: str, path: Any) -> np.ndarray:
    """``state[key]`` as float32 numpy, checking that it exists and has ``shape`` (None: any)."""
    if key not in state:
        raise ValueError(f"{network}: {path} has no tensor {key!r}; is this the right file?")
    value = np.asarray(state[key])
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ValueError(f"{network}: {path}: tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value.astype(np.float32)


def _from_timm(key: str) -> str | None:
    """timm ``resnet50_clip`` name -> OpenAI name (None: not part of the encoder)."""
    m = re.match(r"^stem\.conv(\d)\.(conv|bn)\.(.+)$", key)
    if m:
        return f"conv{m[1]}.{m[3]}" if m[2] == "conv" else f"bn{m[1]}.{m[3]}"
    m = _TIMM_STAGE.match(key)
    if m:
        stage, block, conv, kind, rest = m.groups()
        layer = f"layer{int(stage) + 1}.{block}."
        return layer + (conv if kind == "conv" else "bn" + conv[-1]) + "." + rest
    m = _TIMM_SHORTCUT.match(key)
    if m:
        stage, block, kind, rest = m.groups()
        return f"layer{int(stage) + 1}.{block}.downsample.{0 if kind == 'conv' else 1}.{rest}"
    m = re.match(r"^head\.([a-z_]+)(?:\.(.+))?$", key)
    if m and m[1] in _TIMM_HEAD:
        return f"attnpool.{_TIMM_HEAD[m[1]]}" + (f".{m[2]}" if m[2] else "")
    return None


def canonical_clip_rn50_state(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Image-encoder tensors under OpenAI's names without ``visual.`` (``conv1.weight``, ``attnpool.c_proj.bias``).

    Accepts OpenAI / open_clip full-model state dicts (``visual.`` prefix, text
    tower ignored), a bare ``ModifiedResNet`` state dict and timm's names.
    """
    if any(k.startswith("visual.") for k in state):
        return {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if any(k.startswith("stem.conv1.") for k in state):
        out = {}
        for key, value in state.items():
            name = _from_timm(key)
            if name is not None:
                out[name] = value
        return out
    return dict(state)


#: The released CLIP RN50: ResNet-50 blocks, width 64, 32 heads, 1024-d output.
RN50_CONFIG = dict(layers=[3, 4, 6, 3], width=64, heads=32, output_dim=1024)
#: Attention-pool grid sides accepted (image size = 32 * side; released: 7, i.e. 224 px).
MAX_GRID_SIDE = 32
MAX_OUTPUT_DIM = 4096


def check_config(config: Mapping[str, Any], path: Any, architecture: str = "published") -> dict[str, Any]:
    """A ``{'layers', 'width', 'heads', 'output_dim', 'image_size'}`` config checked against the family."""
    config = resnet.check_config(config, NETWORK, path, architecture)
    for key in ("heads", "output_dim", "image_size"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{NETWORK}: {path}: config {key!r} is {value!r}, expected a positive integer")
    width = config["width"]
    if config["heads"] != width * 32 // 64:
        raise ValueError(f"{NETWORK}: {path}: config 'heads' is {config['heads']}, expected {width * 32 // 64}")
    if architecture == "published" and config["output_dim"] != RN50_CONFIG["output_dim"]:
        raise ValueError(f"{NETWORK}: {path}: output dimension {config['output_dim']}, CLIP RN50 has "
                         f"{RN50_CONFIG['output_dim']}")
    if config["output_dim"] > MAX_OUTPUT_DIM:
        raise ValueError(f"{NETWORK}: {path}: output dimension {config['output_dim']}, more than {MAX_OUTPUT_DIM}")
    size = config["image_size"]
    if size % 32 or not 1 <= size // 32 <= MAX_GRID_SIDE:
        raise ValueError(f"{NETWORK}: {path}: image size {size}, expected a multiple of 32 up to "
                         f"{32 * MAX_GRID_SIDE}")
    return config


def clip_rn50_config_from_state(state: Mapping[str, np.ndarray], path: Any = "", architecture: str = "published"
                                ) -> dict[str, Any]:
    """Architecture (layers, width, heads, output_dim, image_size) read off the tensor shapes and checked."""
    conv3 = np.shape(require_present(state, "conv3.weight", path))
    if len(conv3) != 4:
        raise ValueError(f"{NETWORK}: {path}: tensor 'conv3.weight' has shape {tuple(conv3)}, expected "
                         "(width, width/2, 3, 3)")
    width = resnet.check_width(int(conv3[0]), NETWORK, path, "conv3.weight", architecture)
    layers = resnet.stage_blocks(state, NETWORK, path, architecture)
    pos = tuple(np.shape(require_present(state, "attnpool.positional_embedding", path)))
    tokens = pos[0] - 1 if len(pos) == 2 else -1
    side = int(round(math.sqrt(tokens))) if 0 < tokens <= (MAX_GRID_SIDE + 1) ** 2 else -1
    if side < 1 or side > MAX_GRID_SIDE or side * side != tokens or pos[1] != width * 32:
        raise ValueError(
            f"{NETWORK}: {path} key 'attnpool.positional_embedding' has shape {pos}, expected "
            f"(s*s+1, {width * 32}) with s in 1..{MAX_GRID_SIDE} (image size 32*s)"
        )
    c_proj = tuple(np.shape(require_present(state, "attnpool.c_proj.weight", path)))
    if len(c_proj) != 2 or not c_proj[0]:
        raise ValueError(f"{NETWORK}: {path}: tensor 'attnpool.c_proj.weight' has shape {c_proj}, expected "
                         f"(output_dim, {width * 32})")
    config = dict(layers=list(layers), width=width, heads=width * 32 // 64, output_dim=int(c_proj[0]),
                  image_size=32 * side)
    return check_config(config, path, architecture)


def require_present(state: Mapping[str, Any], key: str, path: Any) -> Any:
    if key not in state:
        raise ValueError(f"{NETWORK}: {path} has no tensor {key!r}; is this the right file?")
    return state[key]


def abstract_variables(config: Mapping[str, Any]) -> Any:
    """Shapes of the Flax variables of a CLIP ResNet ``config`` (nothing allocated)."""
    module = ModifiedResNet(tuple(config["layers"]), config["width"], config["heads"], config["output_dim"])
    size = config["image_size"]
    return jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))


def _torch_name(path: tuple[str, ...]) -> str:
    """Flax variable path -> OpenAI tensor name."""
    parts = []
    for p in path[:-1]:
        m = re.match(r"^layer(\d)_(\d+)$", p)
        if m:
            parts.append(f"layer{m[1]}.{m[2]}")
        elif p == "downsample_conv":
            parts.append("downsample.0")
        elif p == "downsample_bn":
            parts.append("downsample.1")
        else:
            parts.append(p)
    leaf = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}.get(path[-1], path[-1])
    return ".".join(parts + [leaf])


def _to_flax(value: np.ndarray, leaf: str) -> np.ndarray:
    if leaf == "kernel":
        return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    return value


def convert_clip_rn50_state(state: Mapping[str, np.ndarray], path: Any = "", architecture: str = "published"
                            ) -> tuple[dict, dict[str, Any]]:
    """Canonical (OpenAI-named) state -> (Flax variables {'params', 'batch_stats'}, config).

    Every variable of the module must be present with the right shape; extra
    keys (text tower, ``num_batches_tracked``) are ignored.
    """
    config = clip_rn50_config_from_state(state, path, architecture)
    shapes = abstract_variables(config)
    flat = {}
    for var_path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        keys = tuple(k.key for k in var_path)
        name = _torch_name(keys[1:])
        torch_shape = leaf.shape
        if keys[-1] == "kernel":
            torch_shape = (leaf.shape[3], leaf.shape[2], *leaf.shape[:2]) if leaf.ndim == 4 else leaf.shape[::-1]
        flat[keys] = _to_flax(require(state, name, torch_shape, NETWORK, path), keys[-1])
    variables: dict = {}
    for keys, value in flat.items():
        node = variables
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = np.ascontiguousarray(value)
    return variables, config


def read_clip_rn50_params(path: str | Path, architecture: str = "published") -> tuple[dict, dict[str, Any]]:
    """Read an original CLIP RN50 weight file (see module docstring) -> (variables, config)."""
    resnet.check_architecture_choice(architecture, NETWORK)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{NETWORK}: weight file {path} does not exist")
    if not path.is_dir():
        require_regular_file(path, f"{NETWORK}: weight file")  # a FIFO or device is never opened
    if path.is_file() and is_torchscript_archive(path):
        try:
            state = load_torchscript_state_dict(path)
        except ValueError as exc:  # UnsafePickleError / CheckpointFormatError
            raise ValueError(f"{NETWORK}: refusing to load {path}: {exc}") from None
    else:
        state = read_state_dict(path, NETWORK)
    return convert_clip_rn50_state(canonical_clip_rn50_state(state), path, architecture)


def clip_rn50_apply(variables: Any, images: jax.Array, *, config: Mapping[str, Any], dtype: Any = jnp.float32) -> jax.Array:
    """Embed preprocessed images [N, S, S, 3] (S = config['image_size']) -> [N, output_dim] float32."""
    size = config["image_size"]
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(f"{NETWORK}: expected images [N, {size}, {size}, 3], got {tuple(images.shape)}")
    module = ModifiedResNet(tuple(config["layers"]), config["width"], config["heads"], config["output_dim"], dtype)
    return module.apply(variables, images)


def load_clip_rn50(path: str | Path, *, dtype: Any = jnp.float32, architecture: str = "published"):
    """Registry loader: original file or converted directory -> LoadedNet.

    ``apply(params, images)``: images [N, 224, 224, 3] already CLIP-preprocessed
    (see :mod:`gancomp_jax.nets.embedders` for the [-1, 1] -> input step).
    ``architecture``: ``"published"`` (RN50's blocks, width, heads and output size exactly) or
    ``"custom"`` (other depths and widths within bounds, e.g. small test networks).
    """
    from functools import partial

    from .loaded import LoadedNet
    resnet.check_architecture_choice(architecture, NETWORK)
    if is_converted_dir(path):
        variables, config = load_converted(path, "clip_rn50", NETWORK)
        config = check_config(config, path, architecture)
        check_variables(variables, abstract_variables(config), NETWORK, str(path))
    else:
        variables, config = read_clip_rn50_params(path, architecture)
    apply = partial(clip_rn50_apply, config=config, dtype=dtype)
    return LoadedNet("clip_rn50", variables, apply, config, str(path))
