"""BigGAN model descriptions (BigGAN-PyTorch's ``Generator``/``Discriminator``) with per-block widths.

BigGAN-PyTorch derives every width from one multiplier ``ch`` through fixed tables (``G_arch``,
``D_arch``); here the widths are explicit tuples, so a narrow (channel divisor) or pruned student
is an ordinary config. :meth:`BigGANGeneratorConfig.biggan` / :meth:`BigGANDiscriminatorConfig.biggan`
reproduce the released tables.

Generator widths ``channels``: ``(c0, c1, ..., cB)`` for ``B = log2(R) - 2`` up-sampling
blocks: ``c0`` is the width of the first linear layer's 4×4 output (block 0's input) and ``ci``
the output of block ``i-1``. ``hidden[i]`` is the width of block i's first conv (default: its
output width, as released).

Discriminator widths ``channels``: block outputs ``(d1, ..., dB)`` (``B = 4`` at 32 px, else
``log2(R) - 1``: every block halves the resolution except the last, and at 32 px the last two);
``hidden[i]`` is the width of block i's first conv (default: the output width, BigGAN's "wide" D).

512 px discriminators are not in BigGAN-PyTorch's table; :meth:`BigGANDiscriminatorConfig.biggan`
uses the BigGAN paper's table (widths ``ch·(1, 1, 2, 4, 8, 8, 16, 16)``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

RESOLUTIONS = (32, 64, 128, 256, 512)

# BigGAN-PyTorch's width tables (multiples of ch).
_G_TABLE = {32: (4, 4, 4, 4), 64: (16, 16, 8, 4, 2), 128: (16, 16, 8, 4, 2, 1),
            256: (16, 16, 8, 8, 4, 2, 1), 512: (16, 16, 8, 8, 4, 2, 1, 1)}
_D_TABLE = {32: (4, 4, 4, 4), 64: (1, 2, 4, 8, 16), 128: (1, 2, 4, 8, 16, 16),
            256: (1, 2, 4, 8, 8, 16, 16), 512: (1, 1, 2, 4, 8, 8, 16, 16)}


def _resolution_check(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"BigGAN resolution must be one of {RESOLUTIONS}, got {resolution}")


def g_num_blocks(resolution: int) -> int:
    _resolution_check(resolution)
    return int(round(math.log2(resolution))) - 2


def d_downsample(resolution: int) -> tuple[bool, ...]:
    """Which D blocks halve the resolution (BigGAN-PyTorch's ``D_arch[...]['downsample']``)."""
    _resolution_check(resolution)
    if resolution == 32:
        return (True, True, False, False)
    n = int(round(math.log2(resolution))) - 2
    return (True,) * n + (False,)


def d_block_resolutions(resolution: int) -> tuple[int, ...]:
    """The resolution key of each D block in ``D_arch[...]['resolution']`` (attention placement).

    As released: at 32 px every block is keyed 16 (so ``D_attn='16'`` puts attention after every
    block); elsewhere it is the block's output resolution.
    """
    if resolution == 32:
        return (16, 16, 16, 16)
    out, r = [], resolution
    for down in d_downsample(resolution):
        r = r // 2 if down else r
        out.append(r)
    return tuple(out)


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")
        d = dict(d)
        for k in ("channels", "hidden", "attention"):
            if k in d and d[k] is not None:
                d[k] = tuple(int(c) for c in d[k])
        return cls(**d)  # type: ignore[call-arg]

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)  # type: ignore[type-var]


def _check_common(name, num_svs, num_itrs, sn_eps, n_classes):
    if int(num_svs) < 1 or int(num_itrs) < 1:
        raise ValueError(f"{name}: num_svs and num_itrs must be >= 1, got {num_svs}, {num_itrs}")
    if not sn_eps > 0:
        raise ValueError(f"{name}: sn_eps must be > 0, got {sn_eps}")
    if int(n_classes) < 1:
        raise ValueError(f"{name}: n_classes must be >= 1, got {n_classes}")


@dataclasses.dataclass(frozen=True)
class BigGANGeneratorConfig(_Serializable):
    """BigGAN-PyTorch ``Generator`` (``G_shared=True``, ``G_param='SN'``, ``norm_style='bn'``).

    Attributes:
      resolution: output resolution (32, 64, 128, 256, 512).
      channels: ``log2(R) - 1`` widths (see module docstring).
      hidden: per-block width of ``conv1`` (empty: the block's output width).
      dim_z: latent size as given; with ``hier`` it is rounded down to a multiple of the number
        of slots (``num_blocks + 1``) as BigGAN-PyTorch does (:attr:`z_dim` is the effective size).
      shared_dim: width of the shared class embedding ``G.shared``.
      hier: hierarchical z (one chunk to the linear layer, one per block's ccbn).
      n_classes: classes of the shared embedding.
      attention: resolutions after whose block a self-attention layer sits (``G_attn='64'``).
      mybn: BigGAN-PyTorch's ``myBN`` (mean-of-squares statistics, biased running variance,
        standing statistics); False: ``F.batch_norm`` (unbiased running variance), the default.
      bn_eps, sn_eps, num_svs, num_itrs: BatchNorm and spectral-norm settings (released: 1e-5,
        1e-12 (1e-6 in the ImageNet launch scripts), 1, 1).
      img_channels: 3.
      bn_axis_name: a mapped axis name for cross-device batch statistics inside ``shard_map``/
        ``pmap`` (None: statistics over the array's batch axis, which under ``jax.jit`` with a
        sharded batch already spans every device).
    """

    resolution: int = 128
    channels: tuple[int, ...] = ()
    hidden: tuple[int, ...] = ()
    dim_z: int = 120
    shared_dim: int = 128
    hier: bool = True
    n_classes: int = 1000
    attention: tuple[int, ...] = (64,)
    mybn: bool = False
    bn_eps: float = 1e-5
    sn_eps: float = 1e-6
    num_svs: int = 1
    num_itrs: int = 1
    img_channels: int = 3
    bn_axis_name: str | None = None

    def __post_init__(self):
        nb = g_num_blocks(self.resolution)
        if len(self.channels) != nb + 1 or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"BigGANGeneratorConfig.channels must hold {nb + 1} positive widths for "
                             f"{self.resolution}px (linear output, then each block's output), got {self.channels}")
        if self.hidden and (len(self.hidden) != nb or any(int(c) < 1 for c in self.hidden)):
            raise ValueError(f"BigGANGeneratorConfig.hidden must be empty or hold {nb} positive widths, "
                             f"got {self.hidden}")
        _check_common("BigGANGeneratorConfig", self.num_svs, self.num_itrs, self.sn_eps, self.n_classes)
        if self.z_dim < 1 or self.shared_dim < 1:
            raise ValueError(f"BigGANGeneratorConfig: dim_z ({self.dim_z}) must give at least one unit "
                             f"per slot ({self.num_slots}) and shared_dim must be >= 1")
        for a in self.attention:
            if a not in self.block_resolutions:
                raise ValueError(f"G attention resolution {a} is not a block output resolution "
                                 f"{self.block_resolutions}")
        for c in self.attention_channels():
            if c < 8:
                raise ValueError(f"G attention needs a block width >= 8, got {c}")

    @property
    def num_blocks(self) -> int:
        return len(self.channels) - 1

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(8 * 2 ** i for i in range(self.num_blocks))

    @property
    def num_slots(self) -> int:
        return self.num_blocks + 1 if self.hier else 1

    @property
    def z_chunk_size(self) -> int:
        return self.dim_z // self.num_slots if self.hier else 0

    @property
    def z_dim(self) -> int:
        """The effective latent size (BigGAN-PyTorch's ``G.dim_z`` after hier rounding)."""
        return self.z_chunk_size * self.num_slots if self.hier else self.dim_z

    @property
    def cond_dim(self) -> int:
        """Input width of every ccbn gain/bias linear: ``shared_dim + z_chunk_size``."""
        return self.shared_dim + self.z_chunk_size

    def block_hidden(self, i: int) -> int:
        return int(self.hidden[i]) if self.hidden else int(self.channels[i + 1])

    def attention_channels(self) -> list[int]:
        return [self.channels[i + 1] for i, r in enumerate(self.block_resolutions) if r in self.attention]

    @classmethod
    def biggan(cls, resolution: int, ch: int = 64, attention: str | tuple[int, ...] = "64", **kw):
        """BigGAN-PyTorch's ``G_arch(ch, attention)[resolution]`` (``attention`` as '32_64')."""
        mult = _G_TABLE[resolution] if resolution in _G_TABLE else _resolution_check(resolution)
        att = _parse_attention(attention)
        nb = g_num_blocks(resolution)
        att = tuple(a for a in att if a in tuple(8 * 2 ** i for i in range(nb)))
        return cls(resolution=resolution, channels=tuple(ch * m for m in mult), attention=att, **kw)


@dataclasses.dataclass(frozen=True)
class BigGANDiscriminatorConfig(_Serializable):
    """BigGAN-PyTorch ``Discriminator`` (projection D, ``D_param='SN'``, ``output_dim=1``).

    Attributes:
      resolution: input resolution.
      channels: block output widths (see module docstring).
      hidden: per-block width of ``conv1`` (empty: the output width, ``D_wide=True``).
      n_classes: classes of the projection embedding.
      attention: ``D_attn`` resolutions, matched against :func:`d_block_resolutions`.
      sn_eps, num_svs, num_itrs: spectral-norm settings.
      img_channels: 3.
    """

    resolution: int = 128
    channels: tuple[int, ...] = ()
    hidden: tuple[int, ...] = ()
    n_classes: int = 1000
    attention: tuple[int, ...] = (64,)
    sn_eps: float = 1e-6
    num_svs: int = 1
    num_itrs: int = 1
    img_channels: int = 3

    def __post_init__(self):
        nb = len(d_downsample(self.resolution))
        if len(self.channels) != nb or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"BigGANDiscriminatorConfig.channels must hold {nb} positive block widths for "
                             f"{self.resolution}px, got {self.channels}")
        if self.hidden and (len(self.hidden) != nb or any(int(c) < 1 for c in self.hidden)):
            raise ValueError(f"BigGANDiscriminatorConfig.hidden must be empty or hold {nb} positive widths, "
                             f"got {self.hidden}")
        _check_common("BigGANDiscriminatorConfig", self.num_svs, self.num_itrs, self.sn_eps, self.n_classes)
        for i in self.attention_blocks():
            if self.channels[i] < 8:
                raise ValueError(f"D attention needs a block width >= 8, got {self.channels[i]}")

    @property
    def num_blocks(self) -> int:
        return len(self.channels)

    def block_hidden(self, i: int) -> int:
        return int(self.hidden[i]) if self.hidden else int(self.channels[i])

    def attention_blocks(self) -> list[int]:
        return [i for i, r in enumerate(d_block_resolutions(self.resolution)) if r in self.attention]

    @classmethod
    def biggan(cls, resolution: int, ch: int = 64, attention: str | tuple[int, ...] = "64",
               wide: bool = True, **kw):
        """BigGAN-PyTorch's ``D_arch(ch, attention)[resolution]`` (``wide=False``: SN-GAN's skinny D)."""
        _resolution_check(resolution)
        chans = tuple(ch * m for m in _D_TABLE[resolution])
        hidden = () if wide else tuple([kw.get("img_channels", 3)] + list(chans[:-1]))
        return cls(resolution=resolution, channels=chans, hidden=hidden, attention=_parse_attention(attention), **kw)


def _parse_attention(attention) -> tuple[int, ...]:
    if isinstance(attention, str):
        return tuple(int(a) for a in attention.split("_") if a and a != "0")
    return tuple(int(a) for a in attention)


__all__ = ["BigGANDiscriminatorConfig", "BigGANGeneratorConfig", "RESOLUTIONS", "d_block_resolutions",
           "d_downsample", "g_num_blocks"]
