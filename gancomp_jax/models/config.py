"""Model descriptions: plain, JSON-serialisable dataclasses with explicit per-layer widths.

A pruned or narrowed student is an ordinary model whose width tuple differs from the teacher's,
so the same code builds, trains, converts and saves every network.

Generator widths (``GeneratorConfig.channels``) are per synthesis *layer*, in NVlabs order::

    (const, b4.conv1, b8.conv0, b8.conv1, b16.conv0, b16.conv1, ..., bR.conv0, bR.conv1)

``2 * log2(R) - 2`` entries, one per w of the W+ code (this is also CAGC's ``net_shape``).

Discriminator widths (``DiscriminatorConfig.channels``) are per *resolution*, from the image
resolution down to 4: the block at resolution r works at ``channels[r]`` and outputs
``channels[r/2]``; the 4×4 epilogue works at ``channels[4]``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from typing import Any

import jax.numpy as jnp

G_ARCHITECTURES = ("orig", "skip", "resnet")
D_ARCHITECTURES = ("orig", "skip", "resnet")
MIXED_DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16, "float32": jnp.float32}


def resolution_log2(resolution: int) -> int:
    log2 = int(round(math.log2(resolution))) if resolution > 0 else 0
    if resolution < 4 or 2 ** log2 != resolution:
        raise ValueError(f"img_resolution must be a power of two >= 4, got {resolution}")
    return log2


def block_resolutions(resolution: int) -> list[int]:
    """``[4, 8, ..., resolution]``."""
    return [2 ** i for i in range(2, resolution_log2(resolution) + 1)]


def nvlabs_channels(resolution: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """NVlabs' width schedule ``min(channel_base // res, channel_max)`` for res = 4..resolution."""
    return {r: min(channel_base // r, channel_max) for r in block_resolutions(resolution)}


def generator_layer_channels(per_res: dict[int, int]) -> tuple[int, ...]:
    """Per-layer generator widths from one width per resolution (NVlabs layout)."""
    res = sorted(per_res)
    chans = [per_res[4], per_res[4]]
    for r in res[1:]:
        chans += [per_res[r], per_res[r]]
    return tuple(chans)


def mixed_precision_resolution(resolution: int, num_mixed_res: int) -> int:
    """Lowest block resolution computed in the mixed dtype (NVlabs' ``fp16_resolution``)."""
    if num_mixed_res <= 0:
        return resolution * 2  # none
    return max(2 ** (resolution_log2(resolution) + 1 - num_mixed_res), 8)


# Bounds on a network description (far above every published StyleGAN2: 1024 px, widths 512,
# 8 mapping layers), checked before anything is built: a hostile or mistyped model.json
# ('mapping_layers': 1000000, 'channel_max': 1e9) is one error, not minutes or gigabytes.
# A larger experiment can raise them here.
LIMITS = {"img_resolution": 4096, "channels": 16384, "z_dim": 16384, "w_dim": 16384, "c_dim": 100_000,
          "img_channels": 16, "mapping_layers": 64, "mapping_layer_features": 16384, "embed_features": 16384,
          "cmap_dim": 16384, "mbstd_group_size": 1024, "mbstd_num_channels": 64, "num_mixed_res": 16}


def _check_limits(self) -> None:
    name = type(self).__name__
    for key, limit in LIMITS.items():
        value = getattr(self, key, None)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise ValueError(f"{name}.{key} must be an integer, got {v!r}")
            if v > limit:
                raise ValueError(f"{name}.{key}={v} is larger than {limit} (gancomp_jax.models.config.LIMITS)")


def _check_fields(cls, d: dict[str, Any]) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")


def _as_int(v, key: str) -> int:
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 62:
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{key} must hold integers, got {str(v)[:40]}")
    return v


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        _check_fields(cls, d)
        d = dict(d)
        if "channels" in d:
            if not isinstance(d["channels"], (list, tuple)) or len(d["channels"]) > 64:
                raise ValueError(f"{cls.__name__}.channels must be a list of per-layer widths, got "
                                 f"{str(d['channels'])[:60]}")
            d["channels"] = tuple(_as_int(c, "channels") for c in d["channels"])
        return cls(**d)  # type: ignore[call-arg]

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)  # type: ignore[type-var]


@dataclasses.dataclass(frozen=True)
class GeneratorConfig(_Serializable):
    """StyleGAN2 generator description.

    Attributes:
      img_resolution: output resolution R (power of two ≥ 4).
      channels: per-layer widths (see module docstring), ``2*log2(R) - 2`` entries.
      z_dim, w_dim: latent sizes; ``c_dim`` > 0 makes the generator class-conditional.
      img_channels: 3 for RGB.
      mapping_layers: depth of the mapping MLP.
      mapping_lr_multiplier: equalised-lr multiplier of the mapping layers (0.01).
      mapping_layer_features: hidden width of the mapping MLP (default: w_dim).
      embed_features: label-embedding width (default: w_dim when c_dim > 0).
      w_avg_beta: decay of the tracked average w (truncation centre).
      architecture: 'skip' (StyleGAN2 default), 'orig' or 'resnet'.
      conv_clamp: clamp synthesis activations to ±conv_clamp (None: off; 256 in NVlabs runs).
      num_mixed_res: number of highest-resolution blocks computed in ``mixed_dtype``.
      mixed_dtype: 'bfloat16' (default) or 'float16'.
      modconv_impl: 'auto', 'shared' or 'grouped' (see ``gancomp_jax.ops.modconv``).
    """

    img_resolution: int = 256
    channels: tuple[int, ...] = ()
    z_dim: int = 512
    w_dim: int = 512
    c_dim: int = 0
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_layer_features: int | None = None
    embed_features: int | None = None
    w_avg_beta: float = 0.995
    architecture: str = "skip"
    conv_clamp: float | None = None
    num_mixed_res: int = 0
    mixed_dtype: str = "bfloat16"
    modconv_impl: str = "auto"

    def __post_init__(self):
        _check_limits(self)
        log2 = resolution_log2(self.img_resolution)
        want = 2 * log2 - 2
        if len(self.channels) != want or any(int(c) < 1 for c in self.channels):
            raise ValueError(
                f"GeneratorConfig.channels must hold {want} positive per-layer widths for "
                f"{self.img_resolution}px (const, b4.conv1, b8.conv0, b8.conv1, ...), got {self.channels}")
        if self.architecture not in G_ARCHITECTURES:
            raise ValueError(f"generator architecture must be one of {G_ARCHITECTURES}, got {self.architecture!r}")
        if self.mixed_dtype not in MIXED_DTYPES:
            raise ValueError(f"mixed_dtype must be one of {sorted(MIXED_DTYPES)}, got {self.mixed_dtype!r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GeneratorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.c_dim < 0:
            raise ValueError(f"GeneratorConfig.c_dim must be >= 0, got {self.c_dim}")

    @property
    def num_ws(self) -> int:
        """Number of w vectors consumed by the synthesis network (W+ length)."""
        return 2 * resolution_log2(self.img_resolution) - 2

    def block_channels(self, res: int) -> tuple[int, int, int]:
        """(in, conv0 out, conv1 out) widths of block ``b{res}``; ``in`` is 0 for b4."""
        i = 2 * (resolution_log2(res) - 2)
        if res == 4:
            return 0, self.channels[0], self.channels[1]
        return self.channels[i - 1], self.channels[i], self.channels[i + 1]

    @classmethod
    def nvlabs(cls, img_resolution: int, channel_base: int = 32768, channel_max: int = 512,
               **kw) -> "GeneratorConfig":
        """NVlabs width schedule ``min(channel_base // res, channel_max)``."""
        per_res = nvlabs_channels(img_resolution, channel_base, channel_max)
        return cls(img_resolution=img_resolution, channels=generator_layer_channels(per_res), **kw)


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig(_Serializable):
    """StyleGAN2 discriminator description.

    Attributes:
      img_resolution: input resolution R.
      channels: per-resolution widths for R, R/2, ..., 4 (``log2(R) - 1`` entries).
      c_dim: label size (0: unconditional); ``cmap_dim`` is the projection width (default:
        ``channels[4]``) and ``mapping_layers`` the depth of the label mapping.
      img_channels: 3 for RGB.
      architecture: 'resnet' (StyleGAN2 default), 'skip' or 'orig'.
      conv_clamp: clamp conv outputs (None: off).
      mbstd_group_size: minibatch-std group size (None: whole batch).
      mbstd_num_channels: number of minibatch-std features (0 disables the layer).
      num_mixed_res: number of highest-resolution blocks computed in ``mixed_dtype``.
    """

    img_resolution: int = 256
    channels: tuple[int, ...] = ()
    c_dim: int = 0
    img_channels: int = 3
    cmap_dim: int | None = None
    mapping_layers: int = 8
    architecture: str = "resnet"
    conv_clamp: float | None = None
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    num_mixed_res: int = 0
    mixed_dtype: str = "bfloat16"

    def __post_init__(self):
        _check_limits(self)
        want = resolution_log2(self.img_resolution) - 1
        if len(self.channels) != want or any(int(c) < 1 for c in self.channels):
            raise ValueError(
                f"DiscriminatorConfig.channels must hold {want} positive widths for resolutions "
                f"{self.img_resolution}..4, got {self.channels}")
        if self.architecture not in D_ARCHITECTURES:
            raise ValueError(f"discriminator architecture must be one of {D_ARCHITECTURES}, got {self.architecture!r}")
        if self.mixed_dtype not in MIXED_DTYPES:
            raise ValueError(f"mixed_dtype must be one of {sorted(MIXED_DTYPES)}, got {self.mixed_dtype!r}")
        if self.mbstd_group_size is not None and self.mbstd_group_size < 1:
            raise ValueError(f"mbstd_group_size must be >= 1 or None, got {self.mbstd_group_size}")

    def width(self, res: int) -> int:
        """Working width at resolution ``res``."""
        return self.channels[resolution_log2(self.img_resolution) - resolution_log2(res)]

    @classmethod
    def nvlabs(cls, img_resolution: int, channel_base: int = 32768, channel_max: int = 512,
               **kw) -> "DiscriminatorConfig":
        per_res = nvlabs_channels(img_resolution, channel_base, channel_max)
        return cls(img_resolution=img_resolution,
                   channels=tuple(per_res[r] for r in sorted(per_res, reverse=True)), **kw)
