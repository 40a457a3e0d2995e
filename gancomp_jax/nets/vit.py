"""Vision Transformers from Hugging Face directories: CLIP ViT, DINO ViT and DINOv2, in Flax.

The networks are transformers 4.57's own Flax modules (which run on our JAX and
Flax versions), applied as pure functions over a parameter pytree:

=========  =====================================  ===========================================  =====================
kind       checkpoints                            module                                       output [N, D]
=========  =====================================  ===========================================  =====================
clip_vit   openai/clip-vit-base-patch32, -16,     ``FlaxCLIPVisionTransformer`` + bias-free     ``visual_projection``
           clip-vit-large-patch14                 ``visual_projection`` Dense                  of the pooled CLS
dino_vit   facebook/dino-vits16, dino-vitb16      ``FlaxViTModule`` (no pooler)                CLS after final LN
dinov2     facebook/dinov2-small/base/large       ``FlaxDinov2Module``                         CLS after final LN
=========  =====================================  ===========================================  =====================

Loading reads only local files (never a hub): ``config.json`` and the weights,
preferring ``model.safetensors`` (or its shards), then ``flax_model.msgpack``
(``flax.serialization.msgpack_restore``), then ``pytorch_model.bin`` (read with
the restricted unpickler of :mod:`gancomp_jax.io.torch_pickle`, never
``torch.load``). Tensor names and shapes are checked one by one against the
Flax module (a missing tensor is an error, never a random weight).

Input size. Each network runs at one square size fixed at load
(``image_size``; default: the checkpoint's own for CLIP and DINO ViTs, i.e.
224, and 224 for DINOv2). When it differs from the
checkpoint's own (DINOv2 is published at 518 px, i.e. 37x37 patches), the
position embeddings are resized once at load exactly as transformers' torch
``interpolate_pos_encoding`` does (bicubic, ``align_corners=False``, A = -0.75,
to ``size=(H/patch, W/patch)``). transformers' *Flax* DINOv2 interpolates
differently (``jax.image`` bicubic with the old +0.1 scale offset), so it is
never asked to. Likewise its DINOv2 LayerScale multiplies the stored
``lambda1`` by ``layerscale_value`` twice, where torch uses it as stored; the
converter divides that factor out (a no-op for the released checkpoints,
whose ``layerscale_value`` is 1.0).

Hostile or odd inputs: ``config.json`` is read only if it is a regular file of at most 1 MiB
nested at most 32 deep and holding a JSON object; the architecture it declares is checked
against the published families before anything is built (:data:`BOUNDS`: at most 48 layers,
width 2048, 64 heads, patch 64, image size 1024 and 64 x 64 patches; ``hidden_act`` from
:data:`HIDDEN_ACTS`; DINOv2's ``layerscale_value`` in 1e-6..1e3); ``image_size`` must be an
integer within the same bounds. Converted directories are checked the same way, and their
variables against the shapes their config implies.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ..io.safe_files import load_json_file, require_regular_file
from .weights import check_variables, is_converted_dir, load_converted, read_state_dict

__all__ = [
    "CLIPImageEncoder",
    "NETWORKS",
    "bicubic_matrix",
    "build_module",
    "load_clip_vit",
    "load_dino_vit",
    "load_dinov2",
    "load_vit",
    "read_hf_vit_params",
    "resize_patch_grid",
    "vit_apply",
]

NETWORKS = {"clip_vit": "CLIP ViT image encoder", "dino_vit": "DINO ViT", "dinov2": "DINOv2 ViT"}
_MODEL_TYPES = {"clip_vit": ("clip", "clip_vision_model"), "dino_vit": ("vit",), "dinov2": ("dinov2",)}
_BASE_PREFIX = {"clip_vit": "", "dino_vit": "vit", "dinov2": "dinov2"}
DEFAULT_DINOV2_IMAGE_SIZE = 224
CONFIG_MAX_BYTES = 1 << 20


def _quiet_import():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import transformers.utils.logging as hf_logging

        hf_logging.set_verbosity_error()
        from transformers import CLIPConfig, CLIPVisionConfig, Dinov2Config, ViTConfig
        from transformers.models.clip.modeling_flax_clip import FlaxCLIPVisionTransformer
        from transformers.models.dinov2.modeling_flax_dinov2 import FlaxDinov2Module
        from transformers.models.vit.modeling_flax_vit import FlaxViTModule
    return dict(
        CLIPConfig=CLIPConfig, CLIPVisionConfig=CLIPVisionConfig, Dinov2Config=Dinov2Config, ViTConfig=ViTConfig,
        FlaxCLIPVisionTransformer=FlaxCLIPVisionTransformer, FlaxDinov2Module=FlaxDinov2Module,
        FlaxViTModule=FlaxViTModule,
    )


class CLIPImageEncoder(nn.Module):
    """CLIP vision tower + projection: pixels [N, S, S, 3] -> image embeddings [N, projection_dim]."""

    vision_config: Any
    projection_dim: int
    dtype: Any = jnp.float32

    def setup(self):
        hf = _quiet_import()
        self.vision_model = hf["FlaxCLIPVisionTransformer"](self.vision_config, dtype=self.dtype)
        self.visual_projection = nn.Dense(self.projection_dim, use_bias=False, dtype=self.dtype)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        pooled = self.vision_model(pixels, deterministic=True)[1]  # post_layernorm(CLS)
        return self.visual_projection(pooled)


class _ClsEncoder(nn.Module):
    """ViT / DINOv2 module -> the CLS token of the final LayerNorm output [N, hidden]."""

    inner: nn.Module

    def __call__(self, pixels: jax.Array) -> jax.Array:
        return self.inner(pixels, deterministic=True)[0][:, 0]


# --------------------------------------------------------------------------- architecture bounds
#: What the published CLIP ViT (B/32 .. bigG/14), DINO ViT (S/16, B/16) and DINOv2 (S .. g/14)
#: checkpoints use, with room to spare; anything outside is refused before a module is built.
BOUNDS = dict(num_hidden_layers=(1, 48), hidden_size=(1, 2048), num_attention_heads=(1, 64),
              intermediate_size=(1, 16384), patch_size=(1, 64), image_size=(1, 1024), projection_dim=(1, 4096))
MAX_GRID_SIDE = 64  # image_size / patch_size: at most 64 x 64 patches
MLP_RATIO = (0.25, 16.0)
LAYER_NORM_EPS = (1e-12, 0.1)
LAYERSCALE_VALUE = (1e-6, 1e3)  # DINOv2 (released: 1.0); the converter divides by its square
#: Activations transformers' Flax modules implement under the same name as its torch modules.
HIDDEN_ACTS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "quick_gelu", "relu", "silu", "swish")


def _int_in(value: Any, bounds: tuple[int, int]) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and bounds[0] <= value <= bounds[1]


def _number_in(value: Any, bounds: tuple[float, float]) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and bounds[0] <= value <= bounds[1])


def check_image_size(kind: str, image_size: Any, patch_size: int, where: Any) -> int:
    """``image_size`` as an int: a multiple of ``patch_size`` within :data:`BOUNDS` and the patch-grid cap."""
    network = NETWORKS[kind]
    if not _int_in(image_size, BOUNDS["image_size"]):
        raise ValueError(f"{network}: {where}: image_size {image_size!r} must be an integer in "
                         f"{BOUNDS['image_size'][0]}..{BOUNDS['image_size'][1]}")
    if image_size % patch_size:
        raise ValueError(f"{network}: image_size {image_size} is not a multiple of the patch size {patch_size}")
    if image_size // patch_size > MAX_GRID_SIDE:
        raise ValueError(f"{network}: {where}: image_size {image_size} with patch size {patch_size} gives "
                         f"{image_size // patch_size} x {image_size // patch_size} patches, more than "
                         f"{MAX_GRID_SIDE} x {MAX_GRID_SIDE}")
    return image_size


def check_vision_config(kind: str, cfg: Mapping[str, Any], where: Any) -> None:
    """Checks a vision tower's config (a ``to_dict()`` of transformers' config) against :data:`BOUNDS`."""
    network = NETWORKS[kind]

    def bad(key: str, want: str) -> ValueError:
        return ValueError(f"{network}: {where}: {key} is {cfg.get(key)!r}, expected {want}")

    keys = ["num_hidden_layers", "hidden_size", "num_attention_heads", "patch_size", "image_size"]
    keys += ["intermediate_size"] if kind != "dinov2" else []
    for key in keys:
        if not _int_in(cfg.get(key), BOUNDS[key]):
            raise bad(key, f"an integer in {BOUNDS[key][0]}..{BOUNDS[key][1]}")
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise bad("hidden_size", f"a multiple of num_attention_heads={cfg['num_attention_heads']}")
    if cfg.get("num_channels", 3) != 3:
        raise bad("num_channels", "3")
    if cfg.get("hidden_act") not in HIDDEN_ACTS:
        raise bad("hidden_act", f"one of {', '.join(HIDDEN_ACTS)}")
    eps = cfg.get("layer_norm_eps")
    if not _number_in(eps, LAYER_NORM_EPS):
        raise bad("layer_norm_eps", f"a number in {LAYER_NORM_EPS[0]}..{LAYER_NORM_EPS[1]}")
    if kind == "dinov2":
        if not _number_in(cfg.get("mlp_ratio"), MLP_RATIO):
            raise bad("mlp_ratio", f"a number in {MLP_RATIO[0]}..{MLP_RATIO[1]}")
        if not _number_in(cfg.get("layerscale_value"), LAYERSCALE_VALUE):
            raise bad("layerscale_value", f"a number in {LAYERSCALE_VALUE[0]:g}..{LAYERSCALE_VALUE[1]:g} "
                                          "(0 or a tiny value makes every block's LayerScale meaningless)")
    check_image_size(kind, cfg["image_size"], cfg["patch_size"], where)


def check_config(kind: str, config: Mapping[str, Any], where: Any) -> dict[str, Any]:
    """Our stored config (``hf_config``, ``image_size``, ...) checked before a module is built."""
    network = NETWORKS[kind]
    if not isinstance(config, Mapping) or not isinstance(config.get("hf_config"), Mapping):
        raise ValueError(f"{network}: {where}: config must be a JSON object with an 'hf_config' object")
    check_vision_config(kind, config["hf_config"], where)
    if config.get("image_size") != config["hf_config"]["image_size"]:
        raise ValueError(f"{network}: {where}: image_size {config.get('image_size')!r} differs from the "
                         f"hf_config's {config['hf_config']['image_size']!r}")
    if kind == "clip_vit" and not _int_in(config.get("projection_dim"), BOUNDS["projection_dim"]):
        raise ValueError(f"{network}: {where}: projection_dim is {config.get('projection_dim')!r}, expected an "
                         f"integer in {BOUNDS['projection_dim'][0]}..{BOUNDS['projection_dim'][1]}")
    return dict(config)


_BASE_DEFAULTS = dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072,
                      image_size=224, num_channels=3)
_HF_DEFAULTS = {
    "clip_vit": dict(_BASE_DEFAULTS, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5),
    "dino_vit": dict(_BASE_DEFAULTS, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-12),
    "dinov2": dict(_BASE_DEFAULTS, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-6, mlp_ratio=4,
                   layerscale_value=1.0),
}


def _precheck(kind: str, raw: Mapping[str, Any], image_size: Any, where: Any) -> None:
    """The values ``raw`` sets (before transformers is imported and fills in its defaults) and an
    explicit ``image_size``, checked against the same bounds: a hostile config fails in a second."""
    present = {k: v for k, v in raw.items() if k in BOUNDS or k in ("hidden_act", "layer_norm_eps", "mlp_ratio",
                                                                     "layerscale_value", "num_channels")}
    probe = {**_HF_DEFAULTS[kind], **present}  # what transformers' config classes default to
    check_vision_config(kind, probe, where)
    if image_size is not None:
        check_image_size(kind, image_size, probe["patch_size"], "image_size")


# --------------------------------------------------------------------------- configs
def _hf_config(kind: str, raw: Mapping[str, Any], image_size: int | None, path: Any) -> tuple[Any, dict[str, Any]]:
    """transformers config object for the vision tower at ``image_size`` and its JSON form."""
    model_type = raw.get("model_type")
    if model_type not in _MODEL_TYPES[kind]:
        raise ValueError(
            f"{NETWORKS[kind]}: {path}/config.json has model_type {model_type!r}, expected "
            f"{' or '.join(map(repr, _MODEL_TYPES[kind]))}"
        )
    raw = dict(raw)
    where = f"{path}/config.json"
    if kind == "clip_vit" and model_type == "clip" and not isinstance(raw.get("vision_config", {}), Mapping):
        raise ValueError(f"{NETWORKS[kind]}: {where}: vision_config must be a JSON object")
    _precheck(kind, raw.get("vision_config", {}) if model_type == "clip" else raw, image_size, where)
    hf = _quiet_import()
    extra: dict[str, Any] = {}
    try:
        if kind == "clip_vit":
            if model_type == "clip":
                full = hf["CLIPConfig"].from_dict(raw)
                vision, projection_dim = full.vision_config, full.projection_dim
            else:
                vision = hf["CLIPVisionConfig"].from_dict(raw)
                projection_dim = raw.get("projection_dim", vision.projection_dim)
            if not _int_in(projection_dim, BOUNDS["projection_dim"]):
                raise ValueError(f"projection_dim is {projection_dim!r}, expected an integer in "
                                 f"{BOUNDS['projection_dim'][0]}..{BOUNDS['projection_dim'][1]}")
            extra["projection_dim"] = int(projection_dim)
            config = vision
        elif kind == "dino_vit":
            config = hf["ViTConfig"].from_dict(raw)
        else:
            config = hf["Dinov2Config"].from_dict(raw)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise ValueError(f"{NETWORKS[kind]}: {where}: {exc}") from None
    check_vision_config(kind, config.to_dict(), where)  # as published, before anything is built
    extra["checkpoint_image_size"] = int(config.image_size)
    if image_size is None:  # CLIP / DINO ViT: their own size (224); DINOv2 (published at 518): 224
        image_size = DEFAULT_DINOV2_IMAGE_SIZE if kind == "dinov2" else config.image_size
    config.image_size = check_image_size(kind, image_size, config.patch_size, "image_size")
    return config, extra


def build_module(kind: str, config: Mapping[str, Any], dtype: Any = jnp.float32) -> nn.Module:
    """The Flax module of ``kind`` from our stored config (``hf_config`` dict, ``image_size`` ...)."""
    hf = _quiet_import()
    cfg = dict(config["hf_config"])
    if kind == "clip_vit":
        vision = hf["CLIPVisionConfig"].from_dict(cfg)
        return CLIPImageEncoder(vision, int(config["projection_dim"]), dtype)
    if kind == "dino_vit":
        return _ClsEncoder(hf["FlaxViTModule"](hf["ViTConfig"].from_dict(cfg), dtype=dtype, add_pooling_layer=False))
    if kind == "dinov2":
        return _ClsEncoder(hf["FlaxDinov2Module"](hf["Dinov2Config"].from_dict(cfg), dtype=dtype))
    raise ValueError(f"unknown ViT kind {kind!r}; expected one of {sorted(NETWORKS)}")


# --------------------------------------------------------------------------- position embeddings
def _cubic(t: np.ndarray, a: float = -0.75) -> tuple[np.ndarray, ...]:
    """torch's cubic convolution weights for the taps at offsets -1, 0, 1, 2 (``t`` in [0, 1))."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] matrix of ``F.interpolate(mode='bicubic', size=out, align_corners=False)`` along one axis."""
    a = np.zeros((out_size, in_size), np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        src = (i + 0.5) * scale - 0.5  # not clamped for cubic
        base = math.floor(src)
        for offset, w in zip(range(-1, 3), _cubic(np.float64(src - base))):
            a[i, min(max(base + offset, 0), in_size - 1)] += w
    return a


def resize_patch_grid(grid_tokens: np.ndarray, out_side: int) -> np.ndarray:
    """Resize position embeddings of a square patch grid [g*g, D] -> [out_side**2, D] as torch."""
    tokens, dim = grid_tokens.shape
    side = int(round(math.sqrt(tokens)))
    if side * side != tokens:
        raise ValueError(f"position embeddings of {tokens} patches do not form a square grid")
    if side == out_side:
        return grid_tokens
    m = bicubic_matrix(side, out_side)
    grid = grid_tokens.astype(np.float64).reshape(side, side, dim)
    out = np.einsum("oh,hwd->owd", m, grid)
    out = np.einsum("pw,owd->opd", m, out)
    return out.reshape(out_side * out_side, dim).astype(np.float32)


# --------------------------------------------------------------------------- weights
def _read_weights(directory: Path, network: str) -> tuple[dict[str, np.ndarray], str]:
    """name -> array from the directory's weights; ``(state, 'torch' | 'flax')``."""
    from safetensors.numpy import load_file

    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    try:
        if single.exists():
            return dict(load_file(str(require_regular_file(single, f"{network}: weight file")))), "torch"
        if index.exists():
            weight_map = load_json_file(index, f"{network}: weight index").get("weight_map")
            if not isinstance(weight_map, Mapping) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError(f"{index}: 'weight_map' must map tensor names to shard file names")
            shards = sorted(set(weight_map.values()))
            state: dict[str, np.ndarray] = {}
            for shard in shards:
                if "/" in shard or "\\" in shard or shard.startswith("."):
                    raise ValueError(f"bad shard name {shard!r}")
                state.update(load_file(str(require_regular_file(directory / shard, f"{network}: weight shard"))))
            return state, "torch"
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"{network}: cannot read the safetensors weights in {directory}: {exc}") from None
    except Exception as exc:  # safetensors' own error type
        raise ValueError(f"{network}: cannot read the safetensors weights in {directory}: {type(exc).__name__}: {exc}") from None
    msgpack = directory / "flax_model.msgpack"
    if msgpack.exists():
        require_regular_file(msgpack, f"{network}: weight file")
        from flax import serialization
        from flax.traverse_util import flatten_dict

        try:
            tree = serialization.msgpack_restore(msgpack.read_bytes())
        except Exception as exc:  # msgpack raises several types
            raise ValueError(f"{network}: cannot read {msgpack}: {type(exc).__name__}: {exc}") from None
        if isinstance(tree, Mapping) and "params" in tree and len(tree) == 1:
            tree = tree["params"]
        flat = flatten_dict(tree, sep="/") if isinstance(tree, Mapping) else {}
        return {k: np.asarray(v) for k, v in flat.items() if isinstance(v, np.ndarray)}, "flax"
    for name in ("pytorch_model.bin",):
        if (directory / name).exists():
            return read_state_dict(directory / name, network), "torch"
    raise FileNotFoundError(
        f"{network}: {directory} has no weights (expected model.safetensors, model.safetensors.index.json, "
        "flax_model.msgpack or pytorch_model.bin)"
    )


_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "embedding": "weight"}


def _to_flax(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel":
        return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    return value


def _torch_shape(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if leaf == "kernel":
        return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
    return shape


def _convert(
    kind: str, state: Mapping[str, np.ndarray], layout: str, module: nn.Module, config: Any, path: Any
) -> dict:
    """Fill the module's variables from a torch-named (or Flax msgpack) state, checking every tensor."""
    network = NETWORKS[kind]
    side = config.image_size
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, side, side, 3)))["params"]
    flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
    base = _BASE_PREFIX[kind]
    prefixes = ["", f"{base}.", f"{base}/"] if base else [""]
    out: dict = {}
    for var_path, abstract in flat:
        names = [p.key for p in var_path]
        if names[0] == "inner":  # _ClsEncoder wrapper
            names = names[1:]
        leaf = names[-1]
        if layout == "flax":
            candidates = [p + "/".join(names) for p in prefixes if not p.endswith(".")]
            want_shape = tuple(abstract.shape)
        else:
            tname = ".".join(names[:-1] + [_TORCH_LEAF.get(leaf, leaf)])
            candidates = [p + tname for p in prefixes if not p.endswith("/")]
            want_shape = _torch_shape(leaf, tuple(abstract.shape))
        key = next((c for c in candidates if c in state), None)
        if key is None:
            raise ValueError(f"{network}: {path} has no tensor {candidates[0]!r}; is this the right checkpoint?")
        value = np.asarray(state[key], np.float32)
        is_pos = names[-2:] in (["position_embedding", "embedding"], ["embeddings", "position_embeddings"])
        if is_pos:
            value = _resize_positions(value, want_shape, network, path, key)
        if tuple(value.shape) != want_shape:
            raise ValueError(f"{network}: {path}: tensor {key!r} has shape {tuple(value.shape)}, expected {want_shape}")
        if layout == "torch":
            value = _to_flax(leaf, value)
        if kind == "dinov2" and leaf == "lambda1":  # HF Flax multiplies the stored value by layerscale_value**2
            value = value / np.float32(config.layerscale_value) ** 2
        node = out
        for n in [p.key for p in var_path][:-1]:
            node = node.setdefault(n, {})
        node[var_path[-1].key] = np.ascontiguousarray(value)
    return {"params": out}


def _resize_positions(value: np.ndarray, want_shape: tuple, network: str, path: Any, key: str) -> np.ndarray:
    """[1?, 1 + g*g, D] -> the wanted number of tokens (CLS kept, patch grid resized bicubically)."""
    batched = value.ndim == 3
    tokens = value[0] if batched else value
    want_tokens = want_shape[-2]
    if tokens.shape[0] == want_tokens:
        return value
    out_side = int(round(math.sqrt(want_tokens - 1)))
    try:
        grid = resize_patch_grid(tokens[1:], out_side)
    except ValueError as exc:
        raise ValueError(f"{network}: {path}: tensor {key!r}: {exc}") from None
    resized = np.concatenate([tokens[:1], grid], axis=0)
    return resized[None] if batched else resized


def read_hf_vit_params(kind: str, directory: str | Path, *, image_size: int | None = None) -> tuple[dict, dict]:
    """A Hugging Face model directory -> (Flax variables, our JSON config) for ``kind``."""
    network = NETWORKS.get(kind)
    if network is None:
        raise ValueError(f"unknown ViT kind {kind!r}; expected one of {sorted(NETWORKS)}")
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{network}: model directory {directory} does not exist")
    if not directory.is_dir():
        raise ValueError(f"{network}: expected a Hugging Face model directory, got the file {directory}")
    cfg_path = directory / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{network}: {directory} has no config.json (expected a Hugging Face model directory)")
    # at most 1 MiB (the published ones are ~1-5 KB) and 32 levels deep, a JSON object
    raw = load_json_file(cfg_path, f"{network}: config", max_bytes=CONFIG_MAX_BYTES, max_depth=32)
    hf_config, extra = _hf_config(kind, raw, image_size, directory)
    config = {"hf_config": hf_config.to_dict(), "image_size": int(hf_config.image_size), **extra}
    module = build_module(kind, config)
    state, layout = _read_weights(directory, network)
    variables = _convert(kind, state, layout, module, hf_config, directory)
    return variables, config


def abstract_variables(kind: str, config: Mapping[str, Any]) -> Any:
    """Shapes of the Flax variables ``{'params': ...}`` of ``kind`` at ``config`` (nothing allocated)."""
    side = config["image_size"]
    module = build_module(kind, config)
    return {"params": jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, side, side, 3)))["params"]}


def vit_apply(variables: Any, images: jax.Array, *, kind: str, config: Mapping[str, Any], dtype: Any = jnp.float32) -> jax.Array:
    """Embed preprocessed images [N, S, S, 3] (S = config['image_size']) -> [N, D] float32."""
    size = config["image_size"]
    if images.ndim != 4 or images.shape[1:] != (size, size, 3):
        raise ValueError(f"{NETWORKS[kind]}: expected images [N, {size}, {size}, 3], got {tuple(images.shape)}")
    module = build_module(kind, config, dtype)
    return module.apply(variables, images.astype(dtype)).astype(jnp.float32)


def load_vit(kind: str, path: str | Path, *, image_size: int | None = None, dtype: Any = jnp.float32):
    """Registry loader for ``kind`` in {'clip_vit', 'dino_vit', 'dinov2'}: HF or converted dir -> LoadedNet."""
    from .loaded import LoadedNet

    if is_converted_dir(path):
        variables, config = load_converted(path, kind, NETWORKS[kind])
        config = check_config(kind, config, path)
        check_variables(variables, abstract_variables(kind, config), NETWORKS[kind], str(path))
        if image_size is not None and image_size != config["image_size"]:
            raise ValueError(
                f"{NETWORKS[kind]}: {path} was converted for {config['image_size']} px input, not {image_size}; "
                "convert again from the Hugging Face directory"
            )
    else:
        variables, config = read_hf_vit_params(kind, path, image_size=image_size)
    apply = partial(vit_apply, kind=kind, config=config, dtype=dtype)
    return LoadedNet(kind, variables, apply, config, str(path))


load_clip_vit = partial(load_vit, "clip_vit")
load_dino_vit = partial(load_vit, "dino_vit")
load_dinov2 = partial(load_vit, "dinov2")
