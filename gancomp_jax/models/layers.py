"""Equalised-learning-rate layers shared by the generator and the discriminator.

Parameters are stored *raw* (initialised from N(0, 1) / lr_multiplier) and scaled at run time by
``lr_multiplier / sqrt(fan_in)``, as in NVlabs' StyleGAN2; parameter names follow NVlabs
(``weight``, ``bias``) so checkpoints map one to one. Dense weights are ``[in, out]``, conv
weights ``[kh, kw, in, out]``.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.ops import bias_act, conv2d_resample, setup_filter
from gancomp_jax.ops.bias_act import activation_gain

Dtype = Any
RESAMPLE_TAPS = (1, 3, 3, 1)


_HOST_DRAWS = contextvars.ContextVar("gancomp_jax_host_normal_draws", default=False)


@contextlib.contextmanager
def host_normal_draws():
    """Within this context (at trace time), :func:`draw_normal` draws on the host with numpy.

    For ``init_model``'s random-weight models only: XLA:CPU compiles every ``jax.random.normal``
    of a distinct shape into its own fused program (paper256's ~60 draws: ~20 s of compilation),
    while a host callback costs nothing to compile. The values are N(0, 1) like the jax draws
    (NVlabs draws ``torch.randn``) but not the same numbers: the trainer keeps the jax draws.
    """
    token = _HOST_DRAWS.set(True)
    try:
        yield
    finally:
        _HOST_DRAWS.reset(token)


def _numpy_normal(key_data, shape, scale):
    """N(0, scale^2) float32 draws from numpy's PCG64 seeded by the (uint32) key words."""
    rng = np.random.default_rng(np.asarray(key_data, dtype=np.uint32).ravel().tolist())
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def draw_normal(key, shape, dtype=jnp.float32, scale: float = 1.0):
    """``N(0, scale^2)`` of ``shape``: ``jax.random.normal`` unless inside :func:`host_normal_draws`."""
    shape = tuple(int(s) for s in shape)
    if not _HOST_DRAWS.get():
        x = jax.random.normal(key, shape, dtype)
        return x if scale == 1.0 else x * scale
    out = jax.ShapeDtypeStruct(shape, jnp.float32)
    drawn = jax.pure_callback(lambda kd: _numpy_normal(kd, shape, scale), out, jax.random.key_data(key))
    return drawn.astype(dtype)


def normal_init(scale: float = 1.0):
    """N(0, scale^2) initialiser (see :func:`draw_normal`)."""
    def init(key, shape, dtype=jnp.float32):
        return draw_normal(key, shape, dtype, scale)
    return init


def constant_init(value: float):
    def init(key, shape, dtype=jnp.float32):
        del key
        return jnp.full(shape, value, dtype)
    return init


class FullyConnected(nn.Module):
    """Dense layer with equalised learning rate: ``act(x @ (W * g) + b * lr_mul)``.

    Attributes:
      features: output width.
      activation: name in ``gancomp_jax.ops.bias_act.ACTIVATIONS``.
      lr_multiplier: learning-rate multiplier (0.01 in the mapping network).
      bias_init: initial bias value (1 for style affines, so styles start at 1).
      use_bias: add a bias.
    """

    features: int
    activation: str = "linear"
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        """``x [N, in]`` (float32) → ``[N, features]``."""
        in_features = x.shape[-1]
        w = self.param("weight", normal_init(1.0 / self.lr_multiplier), (in_features, self.features))
        x = x @ (w * (self.lr_multiplier / np.sqrt(in_features))).astype(x.dtype)
        b = None
        if self.use_bias:
            b = self.param("bias", constant_init(self.bias_init), (self.features,))
            b = b * self.lr_multiplier
        return bias_act(x, b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Convolution with equalised lr, optional FIR up/down-sampling, bias, activation, clamp.

    Attributes:
      features: output channels.
      kernel_size: square kernel size.
      use_bias: add a bias before the activation.
      activation: activation name.
      up, down: resampling factor (1 or 2).
      conv_clamp: clamp the output to ``±conv_clamp * gain`` (None: no clamp).
      lr_multiplier: learning-rate multiplier.
      dtype: compute dtype (parameters stay float32).
    """

    features: int
    kernel_size: int
    use_bias: bool = True
    activation: str = "linear"
    up: int = 1
    down: int = 1
    conv_clamp: float | None = None
    lr_multiplier: float = 1.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, gain: float = 1.0) -> jnp.ndarray:
        """``x [N, H, W, I]`` → ``[N, H*up/down, W*up/down, features]``."""
        in_ch = x.shape[-1]
        k = self.kernel_size
        w = self.param("weight", normal_init(1.0 / self.lr_multiplier), (k, k, in_ch, self.features))
        weight_gain = self.lr_multiplier / np.sqrt(in_ch * k * k)
        w = (w * weight_gain).astype(self.dtype)
        x = conv2d_resample(x.astype(self.dtype), w, setup_filter(RESAMPLE_TAPS),
                            up=self.up, down=self.down, padding=k // 2)
        b = None
        if self.use_bias:
            b = self.param("bias", nn.initializers.zeros_init(), (self.features,)) * self.lr_multiplier
        act_gain = activation_gain(self.activation) * gain
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=act_gain, clamp=act_clamp)
