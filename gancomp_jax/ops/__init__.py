"""Numerical building blocks of StyleGAN2 (NHWC, jit-able, twice differentiable)."""

from gancomp_jax.ops.bias_act import activation_gain, bias_act
from gancomp_jax.ops.conv2d_resample import conv2d_resample
from gancomp_jax.ops.mbstd import minibatch_std
from gancomp_jax.ops.modconv import modulated_conv2d
from gancomp_jax.ops.upfirdn2d import downsample2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "activation_gain", "bias_act", "conv2d_resample", "minibatch_std", "modulated_conv2d",
    "downsample2d", "setup_filter", "upfirdn2d", "upsample2d",
]
