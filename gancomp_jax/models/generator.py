"""StyleGAN2 generator (NVlabs stylegan2-ada-pytorch numerics) as Flax linen modules, NHWC.

Variable collections:
  ``params``  — trainable weights, NVlabs names (``mapping/fc0/weight``, ``synthesis/b8/conv0/...``).
  ``buffers`` — non-trainable state: ``mapping/w_avg`` (truncation centre, updated with
                ``update_emas=True``) and per-layer ``noise_const`` maps.
RNG streams: ``noise`` (per-pixel noise when ``noise_mode='random'``).

Images are float32 ``[N, R, R, img_channels]``, nominally in [-1, 1] (not clamped).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.models.config import (MIXED_DTYPES, GeneratorConfig, block_resolutions,
                                       mixed_precision_resolution)
from gancomp_jax.models.layers import RESAMPLE_TAPS, Conv2dLayer, FullyConnected, draw_normal, normal_init
from gancomp_jax.ops import bias_act, modulated_conv2d, setup_filter, upsample2d
from gancomp_jax.ops.bias_act import activation_gain

Dtype = Any
NOISE_MODES = ("random", "const", "none")


def normalize_2nd_moment(x: jnp.ndarray, eps: float = 1e-8) -> jnp.ndarray:
    """Scales each row of ``x [N, D]`` to unit mean square."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def truncate(ws: jnp.ndarray, w_avg: jnp.ndarray, psi: float | jnp.ndarray,
             cutoff: int | None = None) -> jnp.ndarray:
    """Truncation trick: ``w_avg + psi * (w - w_avg)`` on the first ``cutoff`` ws (all if None).

    ``ws`` is ``[N, num_ws, w_dim]`` (or ``[N, w_dim]`` with ``cutoff=None``).
    """
    if isinstance(psi, (int, float)) and psi == 1:
        return ws
    t = w_avg + psi * (ws - w_avg)
    if cutoff is None or ws.ndim == 2:
        return t
    layer = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, t, ws)


def mix_styles(ws: jnp.ndarray, ws_other: jnp.ndarray, cutoff: jnp.ndarray | int) -> jnp.ndarray:
    """Style mixing: layers ``< cutoff`` from ``ws``, the rest from ``ws_other`` (both ``[N, L, D]``).

    ``cutoff`` is a scalar (NVlabs draws one per batch) or ``[N]`` (one per sample).
    """
    cutoff = jnp.asarray(cutoff)
    layer = jnp.arange(ws.shape[1])
    keep = layer[None, :] < (cutoff[:, None] if cutoff.ndim else cutoff)
    return jnp.where(keep[..., None], ws, ws_other)


def sample_mixing_cutoff(key: jax.Array, num_ws: int, prob: float) -> jnp.ndarray:
    """NVlabs' per-batch crossover layer: U{1, num_ws-1} with probability ``prob``, else num_ws."""
    k1, k2 = jax.random.split(key)
    cutoff = jax.random.randint(k1, (), 1, num_ws)
    return jnp.where(jax.random.uniform(k2, ()) < prob, cutoff, num_ws)


class MappingNetwork(nn.Module):
    """z (and optional label c) → w, replicated ``num_ws`` times; tracks ``w_avg``.

    Attributes:
      z_dim, c_dim, w_dim: sizes (``z_dim`` may be 0 for the label-only D mapping).
      num_ws: number of w copies to output (None: return ``[N, w_dim]``).
      num_layers: MLP depth.
      layer_features: hidden width (default ``w_dim``).
      embed_features: label-embedding width (default ``w_dim``).
      lr_multiplier: equalised-lr multiplier of the MLP.
      w_avg_beta: decay of ``w_avg`` (None: no tracking).
    """

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int | None
    num_layers: int = 8
    layer_features: int | None = None
    embed_features: int | None = None
    lr_multiplier: float = 0.01
    w_avg_beta: float | None = 0.995

    @nn.compact
    def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_emas=False):
        """``z [N, z_dim]``, ``c [N, c_dim]`` → ``ws [N, num_ws, w_dim]`` (float32)."""
        embed_features = 0 if self.c_dim == 0 else (self.embed_features or self.w_dim)
        layer_features = self.layer_features or self.w_dim
        x = None
        if self.z_dim > 0:
            if z is None or z.shape[-1] != self.z_dim:
                raise ValueError(f"mapping expects z of shape [N, {self.z_dim}], got {None if z is None else z.shape}")
            x = normalize_2nd_moment(z.astype(jnp.float32))
        if self.c_dim > 0:
            if c is None or c.shape[-1] != self.c_dim:
                raise ValueError(f"mapping expects a label c of shape [N, {self.c_dim}], got {None if c is None else c.shape}")
            y = FullyConnected(embed_features, name="embed")(c.astype(jnp.float32))
            y = normalize_2nd_moment(y)
            x = y if x is None else jnp.concatenate([x, y], axis=1)

        for idx in range(self.num_layers):
            out = self.w_dim if idx == self.num_layers - 1 else layer_features
            x = FullyConnected(out, activation="lrelu", lr_multiplier=self.lr_multiplier,
                               name=f"fc{idx}")(x)

        w_avg = None
        if self.w_avg_beta is not None and self.num_ws is not None:
            w_avg = self.variable("buffers", "w_avg", jnp.zeros, (self.w_dim,), jnp.float32)
            if update_emas and not self.is_initializing():
                batch_mean = jnp.mean(jax.lax.stop_gradient(x), axis=0)
                w_avg.value = batch_mean + self.w_avg_beta * (w_avg.value - batch_mean)
        if self.num_ws is None:
            return x
        ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], self.num_ws, self.w_dim))
        if not (isinstance(truncation_psi, (int, float)) and truncation_psi == 1):
            if w_avg is None:
                raise ValueError("truncation needs a tracked w_avg (w_avg_beta is None)")
            ws = truncate(ws, w_avg.value, truncation_psi, truncation_cutoff)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3×3 conv (+ optional 2× upsampling) → noise → bias → lrelu → clamp.

    Attributes:
      features: output channels.
      resolution: output resolution (size of the noise map).
      up: 1 or 2.
      use_noise: add per-pixel noise scaled by the learned ``noise_strength``.
      conv_clamp: activation clamp (None: off).
      modconv_impl: modulated-conv formulation.
      dtype: compute dtype.
    """

    features: int
    resolution: int
    kernel_size: int = 3
    up: int = 1
    use_noise: bool = True
    activation: str = "lrelu"
    conv_clamp: float | None = None
    modconv_impl: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, w, noise_mode="random", gain=1.0):
        """``x [N, H, W, I]``, ``w [N, w_dim]`` → ``[N, H*up, W*up, features]``."""
        in_ch = x.shape[-1]
        k = self.kernel_size
        styles = FullyConnected(in_ch, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", normal_init(), (k, k, in_ch, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))

        x = modulated_conv2d(x.astype(self.dtype), weight, styles, demodulate=True, up=self.up,
                             padding=k // 2, resample_filter=setup_filter(RESAMPLE_TAPS),
                             impl=self.modconv_impl)
        if self.use_noise:
            strength = self.param("noise_strength", nn.initializers.zeros_init(), ())
            shape = (self.resolution, self.resolution)
            noise_const = self.variable(
                "buffers", "noise_const",
                lambda: draw_normal(self.make_rng("params"), shape, jnp.float32))
            if noise_mode == "random":
                noise = jax.random.normal(self.make_rng("noise"), (x.shape[0], *shape, 1), jnp.float32)
                x = x + (noise * strength).astype(x.dtype)
            elif noise_mode == "const":
                x = x + (noise_const.value[None, :, :, None] * strength).astype(x.dtype)
            elif noise_mode != "none":
                raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

        act_gain = activation_gain(self.activation) * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, bias, act=self.activation, gain=act_gain, clamp=act_clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1×1 conv to RGB (no demodulation), bias, optional clamp."""

    features: int
    conv_clamp: float | None = None
    modconv_impl: str = "auto"
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, w):
        """``x [N, H, W, I]``, ``w [N, w_dim]`` → ``[N, H, W, features]`` (float32)."""
        in_ch = x.shape[-1]
        styles = FullyConnected(in_ch, bias_init=1.0, name="affine")(w) * (1.0 / np.sqrt(in_ch))
        weight = self.param("weight", normal_init(), (1, 1, in_ch, self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        x = modulated_conv2d(x.astype(self.dtype), weight, styles, demodulate=False,
                             impl=self.modconv_impl)
        return bias_act(x.astype(jnp.float32), bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (const | up-conv0), conv1, ToRGB.

    Attributes:
      in_channels: input width (0 for the 4×4 block, which starts from a learned constant).
      conv0_channels, conv1_channels: output widths of conv0 (or the constant) and conv1.
      resolution: block resolution.
      img_channels: image channels.
      is_last: the final block (always has a ToRGB).
      architecture: 'orig', 'skip' or 'resnet'.
    """

    in_channels: int
    conv0_channels: int
    conv1_channels: int
    resolution: int
    img_channels: int
    is_last: bool
    architecture: str = "skip"
    conv_clamp: float | None = None
    modconv_impl: str = "auto"
    dtype: Dtype = jnp.float32

    @property
    def num_conv(self) -> int:
        return 1 if self.in_channels == 0 else 2

    @property
    def has_torgb(self) -> bool:
        return self.is_last or self.architecture == "skip"

    @nn.compact
    def __call__(self, x, img, ws, noise_mode="random"):
        """``x [N, r/2, r/2, in]`` (None for b4), ``img [N, r/2, r/2, C]`` or None,
        ``ws [N, num_conv + 1, w_dim]`` → ``(x [N, r, r, conv1_channels], img [N, r, r, C] | None)``.
        """
        layer = dict(resolution=self.resolution, conv_clamp=self.conv_clamp,
                     modconv_impl=self.modconv_impl, dtype=self.dtype)
        w_iter = iter(jnp.moveaxis(ws, 1, 0))
        if self.in_channels == 0:
            const = self.param("const", normal_init(), (self.resolution, self.resolution, self.conv0_channels))
            x = jnp.broadcast_to(const[None].astype(self.dtype), (ws.shape[0], *const.shape))
            x = SynthesisLayer(self.conv1_channels, name="conv1", **layer)(x, next(w_iter), noise_mode)
        elif self.architecture == "resnet":
            y = Conv2dLayer(self.conv1_channels, 1, use_bias=False, up=2, dtype=self.dtype,
                            name="skip")(x, gain=np.sqrt(0.5))
            x = SynthesisLayer(self.conv0_channels, up=2, name="conv0", **layer)(x, next(w_iter), noise_mode)
            x = SynthesisLayer(self.conv1_channels, name="conv1", **layer)(
                x, next(w_iter), noise_mode, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = SynthesisLayer(self.conv0_channels, up=2, name="conv0", **layer)(x, next(w_iter), noise_mode)
            x = SynthesisLayer(self.conv1_channels, name="conv1", **layer)(x, next(w_iter), noise_mode)

        if img is not None:
            img = upsample2d(img, setup_filter(RESAMPLE_TAPS))
        if self.has_torgb:
            y = ToRGBLayer(self.img_channels, conv_clamp=self.conv_clamp, modconv_impl=self.modconv_impl,
                           dtype=self.dtype, name="torgb")(x, next(w_iter))
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[N, num_ws, w_dim]`` → image ``[N, R, R, C]`` through blocks b4 … bR."""

    config: GeneratorConfig

    @nn.compact
    def __call__(self, ws, noise_mode="random", return_features=False):
        """Returns the image, or ``(image, features)`` with features ``{'b{r}': block output x,
        'img{r}': partial RGB image}`` for each resolution r."""
        cfg = self.config
        if ws.ndim != 3 or ws.shape[1] != cfg.num_ws or ws.shape[2] != cfg.w_dim:
            raise ValueError(f"synthesis expects ws of shape [N, {cfg.num_ws}, {cfg.w_dim}], got {ws.shape}")
        mixed_from = mixed_precision_resolution(cfg.img_resolution, cfg.num_mixed_res)
        x = img = None
        features = {}
        w_idx = 0
        for res in block_resolutions(cfg.img_resolution):
            in_ch, c0, c1 = cfg.block_channels(res)
            block = SynthesisBlock(
                in_ch, c0, c1, resolution=res, img_channels=cfg.img_channels,
                is_last=res == cfg.img_resolution, architecture=cfg.architecture,
                conv_clamp=cfg.conv_clamp, modconv_impl=cfg.modconv_impl,
                dtype=MIXED_DTYPES[cfg.mixed_dtype] if res >= mixed_from else jnp.float32,
                name=f"b{res}")
            n = block.num_conv + int(block.has_torgb)
            x, img = block(x, img, ws[:, w_idx:w_idx + n], noise_mode)
            w_idx += block.num_conv
            features[f"b{res}"] = x
            if img is not None:
                features[f"img{res}"] = img
        img = img.astype(jnp.float32)
        return (img, features) if return_features else img


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network + synthesis network.

    ``G.apply(variables, z, c, truncation_psi=..., noise_mode=..., rngs={'noise': key})``
    returns images ``[N, R, R, C]``; ``method=Generator.map`` / ``Generator.synthesize`` run
    the two halves.
    """

    config: GeneratorConfig

    def setup(self):
        cfg = self.config
        self.mapping = MappingNetwork(
            z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_ws=cfg.num_ws,
            num_layers=cfg.mapping_layers, layer_features=cfg.mapping_layer_features,
            embed_features=cfg.embed_features, lr_multiplier=cfg.mapping_lr_multiplier,
            w_avg_beta=cfg.w_avg_beta)
        self.synthesis = SynthesisNetwork(cfg)

    def map(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, update_emas=False):
        """``z [N, z_dim]`` → ``ws [N, num_ws, w_dim]``."""
        return self.mapping(z, c, truncation_psi, truncation_cutoff, update_emas)

    def synthesize(self, ws, noise_mode="random", return_features=False):
        """``ws [N, num_ws, w_dim]`` → images ``[N, R, R, C]`` (and features)."""
        return self.synthesis(ws, noise_mode=noise_mode, return_features=return_features)

    def __call__(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None, noise_mode="random",
                 update_emas=False, return_features=False):
        ws = self.map(z, c, truncation_psi, truncation_cutoff, update_emas)
        return self.synthesize(ws, noise_mode, return_features)
