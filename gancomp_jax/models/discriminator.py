"""StyleGAN2 discriminator (NVlabs stylegan2-ada-pytorch numerics) as Flax linen modules, NHWC.

Parameters use NVlabs names (``b256/fromrgb``, ``b256/conv0``, ``b256/conv1``, ``b256/skip``,
``b4/conv``, ``b4/fc``, ``b4/out``, ``mapping/...`` for conditional D).
``b4/fc/weight`` is ``[C*4*4, C]`` over the NCHW flattening (as NVlabs), so checkpoints map
without permutation.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from gancomp_jax.models.config import (MIXED_DTYPES, DiscriminatorConfig, block_resolutions,
                                       mixed_precision_resolution)
from gancomp_jax.models.generator import MappingNetwork
from gancomp_jax.models.layers import RESAMPLE_TAPS, Conv2dLayer, FullyConnected
from gancomp_jax.ops import downsample2d, minibatch_std, setup_filter

Dtype = Any


def grouped_minibatch_std(x: jnp.ndarray, group_size: int | None, num_channels: int,
                          num_shards: int = 1) -> jnp.ndarray:
    """Minibatch std with groups formed inside each of ``num_shards`` contiguous batch shards.

    With the batch sharded over ``num_shards`` devices this reproduces NVlabs' per-GPU grouping
    (each GPU forms groups from its local batch) without cross-device traffic.
    """
    n = x.shape[0]
    if num_shards <= 1:
        return minibatch_std(x, group_size, num_channels)
    if n % num_shards:
        raise ValueError(f"batch {n} is not divisible into {num_shards} minibatch-std shards")
    xs = x.reshape(num_shards, n // num_shards, *x.shape[1:])
    ys = [minibatch_std(xs[i], group_size, num_channels) for i in range(num_shards)]
    return jnp.concatenate(ys, axis=0)


class DiscriminatorBlock(nn.Module):
    """One resolution: (fromrgb), conv0, down-conv1, (+ resnet skip)."""

    in_channels: int
    tmp_channels: int
    out_channels: int
    resolution: int
    architecture: str = "resnet"
    conv_clamp: float | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, img):
        """``x [N, r, r, in]`` (None for the first block), ``img [N, r, r, C]`` →
        ``(x [N, r/2, r/2, out], img [N, r/2, r/2, C] | None)``."""
        conv = dict(conv_clamp=self.conv_clamp, dtype=self.dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            y = Conv2dLayer(self.tmp_channels, 1, activation="lrelu", name="fromrgb", **conv)(img)
            x = y if x is None else x + y
            img = downsample2d(img, setup_filter(RESAMPLE_TAPS)) if self.architecture == "skip" else None

        if self.architecture == "resnet":
            y = Conv2dLayer(self.out_channels, 1, use_bias=False, down=2, dtype=self.dtype,
                            name="skip")(x, gain=np.sqrt(0.5))
            x = Conv2dLayer(self.tmp_channels, 3, activation="lrelu", name="conv0", **conv)(x)
            x = Conv2dLayer(self.out_channels, 3, activation="lrelu", down=2, name="conv1", **conv)(
                x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = Conv2dLayer(self.tmp_channels, 3, activation="lrelu", name="conv0", **conv)(x)
            x = Conv2dLayer(self.out_channels, 3, activation="lrelu", down=2, name="conv1", **conv)(x)
        return x, img


class DiscriminatorEpilogue(nn.Module):
    """4×4 head: (fromrgb), minibatch std, conv, fc, out (+ label projection)."""

    in_channels: int
    cmap_dim: int
    architecture: str = "resnet"
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    mbstd_num_shards: int = 1
    conv_clamp: float | None = None

    @nn.compact
    def __call__(self, x, img, cmap=None):
        """``x [N, 4, 4, in]`` → logits ``[N, 1]`` (float32)."""
        if self.architecture == "skip":
            x = x + Conv2dLayer(self.in_channels, 1, activation="lrelu", name="fromrgb")(img)
        x = x.astype(jnp.float32)
        if self.mbstd_num_channels > 0:
            x = grouped_minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels,
                                      self.mbstd_num_shards)
        x = Conv2dLayer(self.in_channels, 3, activation="lrelu", conv_clamp=self.conv_clamp, name="conv")(x)
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # NCHW flattening, as NVlabs
        x = FullyConnected(self.in_channels, activation="lrelu", name="fc")(x)
        x = FullyConnected(1 if self.cmap_dim == 0 else self.cmap_dim, name="out")(x)
        if self.cmap_dim > 0:
            x = jnp.sum(x * cmap, axis=1, keepdims=True) * (1.0 / np.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """StyleGAN2 discriminator: blocks b{R} … b8, then the b4 epilogue.

    Attributes:
      config: the architecture.
      mbstd_num_shards: minibatch-std groups are formed within this many contiguous batch
        shards (set it to the data-parallel device count to match NVlabs' per-GPU groups).
    """

    config: DiscriminatorConfig
    mbstd_num_shards: int = 1

    @nn.compact
    def __call__(self, img, c=None, return_features=False):
        """``img [N, R, R, C]`` (float32, [-1, 1]) → logits ``[N, 1]``; with
        ``return_features`` also ``{'b{r}': block output}``."""
        cfg = self.config
        want = (cfg.img_resolution, cfg.img_resolution, cfg.img_channels)
        if img.ndim != 4 or tuple(img.shape[1:]) != want:
            raise ValueError(f"discriminator expects images [N, {want[0]}, {want[1]}, {want[2]}], got {img.shape}")
        mixed_from = mixed_precision_resolution(cfg.img_resolution, cfg.num_mixed_res)
        x = None
        features = {}
        resolutions = block_resolutions(cfg.img_resolution)[::-1]
        for res in resolutions[:-1]:
            block = DiscriminatorBlock(
                in_channels=0 if res == cfg.img_resolution else cfg.width(res),
                tmp_channels=cfg.width(res), out_channels=cfg.width(res // 2), resolution=res,
                architecture=cfg.architecture, conv_clamp=cfg.conv_clamp,
                dtype=MIXED_DTYPES[cfg.mixed_dtype] if res >= mixed_from else jnp.float32,
                name=f"b{res}")
            x, img = block(x, img)
            features[f"b{res}"] = x

        cmap = None
        cmap_dim = 0
        if cfg.c_dim > 0:
            cmap_dim = cfg.cmap_dim or cfg.width(4)
            if c is None or c.shape[-1] != cfg.c_dim:
                raise ValueError(f"conditional discriminator expects c [N, {cfg.c_dim}], got {None if c is None else c.shape}")
            cmap = MappingNetwork(z_dim=0, c_dim=cfg.c_dim, w_dim=cmap_dim, num_ws=None,
                                  num_layers=cfg.mapping_layers, w_avg_beta=None, name="mapping")(None, c)
        logits = DiscriminatorEpilogue(
            cfg.width(4), cmap_dim, architecture=cfg.architecture,
            mbstd_group_size=cfg.mbstd_group_size, mbstd_num_channels=cfg.mbstd_num_channels,
            mbstd_num_shards=self.mbstd_num_shards, conv_clamp=cfg.conv_clamp, name="b4")(x, img, cmap)
        return (logits, features) if return_features else logits
