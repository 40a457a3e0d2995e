"""StyleGAN2 modulated convolution with demodulation, in two interchangeable forms.

For input ``x [N, H, W, I]``, raw weights ``W [kh, kw, I, O]`` and styles ``s [N, I]``,
every sample ``n`` is convolved with its own kernel

    W'_n[., ., i, o] = W[., ., i, o] * s[n, i] * d[n, o],
    d[n, o] = 1 / sqrt(sum_{kh, kw, i} (W[., ., i, o] * s[n, i])^2 + 1e-8)   (if demodulating)

Two exact formulations (they differ only in rounding):

* ``'grouped'`` (NVlabs' "fused" form): build all per-sample kernels and run one grouped
  convolution with ``N`` groups;
* ``'shared'``: scale the activations by ``s``, convolve with the shared ``W``, and scale the
  output by ``d``. It has plain-convolution cost and is what XLA runs fastest on a CPU.

``impl='auto'`` picks per backend from ``PREFERRED_IMPL``; ``tools/bench.py --what modconv`` measures
both forms so the table can be checked on new hardware.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gancomp_jax.ops.conv2d_resample import conv2d_resample

# Measured with `python tools/bench.py --what modconv` (batch 8, 256->256 channels, 64x64, 3x3,
# forward): on a 2-core x86 CPU the shared form takes 290 ms (590 ms with 2x upsampling) and the
# grouped form 1,186 ms (1,016 ms); grouped convolutions are slow in XLA:CPU, and its gradient
# is slower still. GPU and TPU have not been measured by this project yet: 'shared' (plain
# convolutions, no batch-sized groups) is the default there too until they are.
PREFERRED_IMPL = {"cpu": "shared", "gpu": "shared", "cuda": "shared", "rocm": "shared", "tpu": "shared"}
IMPLS = ("auto", "shared", "grouped")


def resolve_impl(impl: str) -> str:
    """Maps ``'auto'`` to the preferred form for the default JAX backend."""
    if impl not in IMPLS:
        raise ValueError(f"modulated conv impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return PREFERRED_IMPL.get(jax.default_backend(), "shared")
    return impl


def demodulation_coefficients(w: jnp.ndarray, styles: jnp.ndarray) -> jnp.ndarray:
    """``d [N, O]`` for raw weights ``w [kh, kw, I, O]`` and styles ``[N, I]`` (float32)."""
    w_sq = jnp.sum(jnp.square(w.astype(jnp.float32)), axis=(0, 1))  # [I, O]
    return jax.lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ w_sq + 1e-8)


def modulated_conv2d(
    x: jnp.ndarray,
    weight: jnp.ndarray,
    styles: jnp.ndarray,
    demodulate: bool = True,
    up: int = 1,
    padding: int = 0,
    resample_filter: np.ndarray | None = None,
    impl: str = "auto",
) -> jnp.ndarray:
    """Modulated (and optionally demodulated) convolution.

    Args:
      x: ``[N, H, W, I]`` activations (compute dtype).
      weight: ``[kh, kw, I, O]`` raw weights (no equalised-lr gain: demodulation cancels it;
        for ToRGB the caller folds the gain into ``styles``).
      styles: ``[N, I]`` per-sample input-channel scales.
      demodulate: normalise each output channel to unit expected magnitude.
      up: 1, or 2 for a transposed (upsampling) convolution followed by the FIR filter.
      padding: the convolution's zero padding (``k // 2``).
      resample_filter: FIR taps for ``up=2``.
      impl: ``'shared'``, ``'grouped'`` or ``'auto'``.

    Returns:
      ``[N, H * up, W * up, O]`` in the dtype of ``x``.
    """
    n, _, _, in_ch = x.shape
    kh, kw, w_in, out_ch = weight.shape
    if w_in != in_ch or styles.shape != (n, in_ch):
        raise ValueError(
            f"modulated_conv2d shape mismatch: x {x.shape}, weight {weight.shape}, styles {styles.shape}")
    dtype = x.dtype
    if demodulate and dtype == jnp.float16:
        # As NVlabs: pre-normalise by the largest magnitudes so float16 activations cannot
        # overflow; demodulation cancels these scales exactly.
        w32 = weight.astype(jnp.float32)
        weight = w32 / (np.sqrt(in_ch * kh * kw) * jnp.max(jnp.abs(w32), axis=(0, 1, 2), keepdims=True))
        s32 = styles.astype(jnp.float32)
        styles = s32 / jnp.max(jnp.abs(s32), axis=1, keepdims=True)
    dcoefs = demodulation_coefficients(weight, styles) if demodulate else None

    if resolve_impl(impl) == "shared":
        x = x * styles.astype(dtype)[:, None, None, :]
        x = conv2d_resample(x, weight.astype(dtype), resample_filter, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.astype(dtype)[:, None, None, :]
        return x

    # Grouped: one convolution with N groups over per-sample kernels.
    w = weight.astype(jnp.float32)[None] * styles.astype(jnp.float32)[:, None, None, :, None]
    if dcoefs is not None:
        w = w * dcoefs[:, None, None, None, :]
    w = jnp.transpose(w, (1, 2, 3, 0, 4)).reshape(kh, kw, in_ch, n * out_ch).astype(dtype)
    h, wd = x.shape[1:3]
    x = jnp.transpose(x, (1, 2, 0, 3)).reshape(1, h, wd, n * in_ch)
    x = conv2d_resample(x, w, resample_filter, up=up, padding=padding, groups=n)
    h2, w2 = x.shape[1:3]
    return jnp.transpose(x.reshape(h2, w2, n, out_ch), (2, 0, 1, 3))
