"""Read a StyleGAN2 architecture off the tensor shapes of an NVlabs-named ``state_dict``.

Widths are never taken from ``channel_base``/``channel_max``: they come from the weights, so
pruned or hand-narrowed checkpoints describe themselves. Torch layouts throughout: dense
``[out, in]``, conv ``[O, I, kh, kw]``, ``synthesis.b4.const [C, 4, 4]``.

Generator evidence::

    mapping.fc{i}.weight      [out, in]    i = 0..L-1  -> mapping_layers L, w_dim = out of fc{L-1},
                                                          layer_features = out of fc0 (L > 1)
    mapping.embed.weight      [E, c_dim]   (conditional) -> c_dim, embed_features E;
                                                          z_dim = in of fc0 - E
    synthesis.b{r}.*          r = 4..R     -> img_resolution R
    synthesis.b4.const        [C0, 4, 4]   -> channels[0]
    synthesis.b{r}.conv{k}.weight [O, ...] -> per-layer widths (const, b4.conv1, b8.conv0, ...)
    synthesis.bR.torgb.weight [C, ...]     -> img_channels
    torgb below R / skip      present      -> architecture 'skip' / 'resnet' (else 'orig')

Discriminator evidence::

    b{r}.conv0.weight [W_r, ...]  r = R..8 -> widths; b4.conv.weight [W_4, W_4 + mbstd, 3, 3]
    bR.fromrgb.weight [W_R, C, 1, 1]       -> img_channels
    b{r}.skip / fromrgb below R            -> architecture 'resnet' / 'skip' (else 'orig')
    mapping.* and b4.out.weight [cmap, W_4] -> conditional D (c_dim, cmap_dim, mapping depth)
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping

import numpy as np

from gancomp_jax.convert.errors import UnsupportedNetworkError

__all__ = ["DiscriminatorShapes", "GeneratorShapes", "discriminator_shapes", "generator_shapes"]

_G_BLOCK = re.compile(r"^synthesis\.b(\d+)\.")
_D_BLOCK = re.compile(r"^b(\d+)\.")
_FC = re.compile(r"^mapping\.fc(\d+)\.weight$")


@dataclasses.dataclass(frozen=True)
class MappingShapes:
    """The mapping MLP: ``num_layers`` FCs, label embedding of ``embed_features`` (0: none)."""

    num_layers: int
    in_features: int  # fc0 input = z_dim + embed_features
    layer_features: int | None  # hidden width (None when num_layers == 1)
    out_features: int
    c_dim: int
    embed_features: int


@dataclasses.dataclass(frozen=True)
class GeneratorShapes:
    img_resolution: int
    img_channels: int
    z_dim: int
    w_dim: int
    c_dim: int
    mapping: MappingShapes
    channels: tuple[int, ...]  # per layer: const, b4.conv1, b8.conv0, b8.conv1, ...
    architecture: str | None  # None when it cannot be told (a 4x4 generator)
    has_w_avg: bool


@dataclasses.dataclass(frozen=True)
class DiscriminatorShapes:
    img_resolution: int
    img_channels: int
    channels: tuple[int, ...]  # per resolution R, R/2, ..., 4
    architecture: str
    mbstd_num_channels: int
    c_dim: int
    cmap_dim: int  # 0 when unconditional
    mapping: MappingShapes | None


def _shape(sd: Mapping[str, np.ndarray], name: str, where: str) -> tuple[int, ...]:
    if name not in sd:
        raise UnsupportedNetworkError(f"{where}: tensor '{name}' is missing; not a StyleGAN2 state_dict")
    return tuple(int(s) for s in np.shape(sd[name]))


def _resolutions(sd: Mapping[str, np.ndarray], pattern: re.Pattern, where: str) -> list[int]:
    found = sorted({int(m.group(1)) for name in sd if (m := pattern.match(name))})
    if not found:
        raise UnsupportedNetworkError(f"{where}: no StyleGAN2 blocks (b4, b8, ...) in the state_dict")
    want = [2 ** i for i in range(2, int(np.log2(found[-1])) + 1)]
    if found != want:
        raise UnsupportedNetworkError(
            f"{where}: blocks at resolutions {found}; expected every power of two from 4 to {found[-1]}")
    return found


def mapping_shapes(sd: Mapping[str, np.ndarray], where: str) -> MappingShapes | None:
    """The ``mapping.*`` MLP, or None when the state_dict has no ``mapping.fc*``."""
    indices = sorted(int(m.group(1)) for name in sd if (m := _FC.match(name)))
    if not indices:
        return None
    if indices != list(range(len(indices))):
        raise UnsupportedNetworkError(f"{where}: mapping layers fc{indices} are not numbered 0..{len(indices) - 1}")
    shapes = [_shape(sd, f"mapping.fc{i}.weight", where) for i in indices]
    for i, (prev, cur) in enumerate(zip(shapes, shapes[1:])):
        if cur[1] != prev[0]:
            raise UnsupportedNetworkError(
                f"{where}: mapping.fc{i + 1} takes {cur[1]} features but fc{i} gives {prev[0]}")
    hidden = {s[0] for s in shapes[:-1]}
    if len(hidden) > 1:
        raise UnsupportedNetworkError(
            f"{where}: mapping hidden widths {[s[0] for s in shapes[:-1]]} differ; only one hidden "
            "width (layer_features) is supported")
    c_dim = embed = 0
    if "mapping.embed.weight" in sd:
        embed, c_dim = _shape(sd, "mapping.embed.weight", where)
    return MappingShapes(num_layers=len(shapes), in_features=shapes[0][1],
                         layer_features=shapes[0][0] if len(shapes) > 1 else None,
                         out_features=shapes[-1][0], c_dim=c_dim, embed_features=embed)


def _architecture(has_skip: bool, lower_rgb: bool, rgb_name: str, where: str) -> str:
    if has_skip and lower_rgb:
        raise UnsupportedNetworkError(
            f"{where}: has both resnet skip layers and {rgb_name} layers below the top block; "
            "no StyleGAN2 architecture has both")
    return "resnet" if has_skip else "skip" if lower_rgb else "orig"


def generator_shapes(sd: Mapping[str, np.ndarray], where: str) -> GeneratorShapes:
    """Everything about a generator that its NVlabs-named tensors determine."""
    mapping = mapping_shapes(sd, where)
    if mapping is None:
        raise UnsupportedNetworkError(f"{where}: no mapping.fc* tensors; not a StyleGAN2 generator")
    res = _resolutions(sd, _G_BLOCK, where)
    top = res[-1]
    channels = [_shape(sd, "synthesis.b4.const", where)[0], _shape(sd, "synthesis.b4.conv1.weight", where)[0]]
    for r in res[1:]:
        channels += [_shape(sd, f"synthesis.b{r}.conv{k}.weight", where)[0] for k in (0, 1)]
    img_channels = _shape(sd, f"synthesis.b{top}.torgb.weight", where)[0]
    architecture = None
    if top > 4:
        architecture = _architecture(
            any(f"synthesis.b{r}.skip.weight" in sd for r in res[1:]),
            any(f"synthesis.b{r}.torgb.weight" in sd for r in res[:-1]), "torgb", where)
    z_dim = mapping.in_features - mapping.embed_features
    if z_dim < 1:
        raise UnsupportedNetworkError(f"{where}: mapping.fc0 takes {mapping.in_features} features, "
                                      f"no room for z after a {mapping.embed_features}-wide label embedding")
    return GeneratorShapes(
        img_resolution=top, img_channels=img_channels, z_dim=z_dim, w_dim=mapping.out_features,
        c_dim=mapping.c_dim, mapping=mapping, channels=tuple(channels), architecture=architecture,
        has_w_avg="mapping.w_avg" in sd)


def discriminator_shapes(sd: Mapping[str, np.ndarray], where: str) -> DiscriminatorShapes:
    """Everything about a discriminator that its NVlabs-named tensors determine."""
    res = _resolutions(sd, _D_BLOCK, where)
    top = res[-1]
    if top < 8:
        raise UnsupportedNetworkError(f"{where}: a discriminator needs blocks above 4x4 (found only b4)")
    widths = [_shape(sd, f"b{r}.conv0.weight", where)[0] for r in res[:0:-1]]
    conv4 = _shape(sd, "b4.conv.weight", where)
    widths.append(conv4[0])
    img_channels = _shape(sd, f"b{top}.fromrgb.weight", where)[1]
    architecture = _architecture(
        any(f"b{r}.skip.weight" in sd for r in res[1:]),
        any(f"b{r}.fromrgb.weight" in sd for r in res[:-1]), "fromrgb", where)
    mapping = mapping_shapes(sd, where)
    out_features = _shape(sd, "b4.out.weight", where)[0]
    c_dim = mapping.c_dim if mapping else 0
    if mapping is not None and (c_dim == 0 or mapping.in_features != mapping.embed_features):
        raise UnsupportedNetworkError(
            f"{where}: discriminator mapping must be label-only (mapping.embed feeding fc0)")
    if mapping is None and out_features != 1:
        raise UnsupportedNetworkError(f"{where}: b4.out gives {out_features} outputs but there is no label mapping")
    return DiscriminatorShapes(
        img_resolution=top, img_channels=img_channels, channels=tuple(widths), architecture=architecture,
        mbstd_num_channels=conv4[1] - conv4[0], c_dim=c_dim,
        cmap_dim=out_features if mapping else 0, mapping=mapping)
