"""FIR resampling of NHWC images: upsample, pad, filter, downsample (upfirdn2d).

Semantics follow NVlabs' ``upfirdn2d`` exactly, in NHWC layout:

1. upsample by zero insertion (``up - 1`` zeros after every sample, also after the last),
2. pad with zeros (negative padding crops),
3. convolve with the FIR filter ``f`` (a true convolution; ``flip_filter=True`` gives
   correlation, which is the same thing for the symmetric filters StyleGAN2 uses),
4. keep every ``down``-th sample.

Filters are small numpy constants (e.g. the normalised ``[1, 3, 3, 1]``), so the filtering is
unrolled into shifted slices that XLA fuses into a single loop: no depthwise convolution, fast
on CPU, GPU and TPU, and twice differentiable. A 1-D filter is applied separably (rows, then
columns); a 2-D filter directly.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = int | Sequence[int]


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1), normalize: bool = True) -> np.ndarray:
    """1-D FIR filter taps as float32, normalised to sum 1 by default.

    The separable 2-D filter is the outer product of these taps with themselves; NVlabs'
    ``setup_filter([1,3,3,1])`` gives the same 2-D filter (its outer product / 64).
    """
    f = np.asarray(taps, dtype=np.float64)
    if f.ndim != 1 or f.size == 0:
        raise ValueError(f"FIR taps must be a non-empty 1-D sequence, got shape {f.shape}")
    if normalize:
        f = f / f.sum()
    return f.astype(np.float32)


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Padding as NVlabs orders it: (x0, x1, y0, y1); an int pads all four sides."""
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return p, p, p, p
    padding = tuple(int(p) for p in padding)
    if len(padding) == 2:
        return padding[0], padding[0], padding[1], padding[1]
    if len(padding) != 4:
        raise ValueError(f"padding must be an int, (px, py) or (x0, x1, y0, y1), got {padding}")
    return padding  # type: ignore[return-value]


def _fir_1d(x: jnp.ndarray, taps: np.ndarray, axis: int, down: int) -> jnp.ndarray:
    """Valid-mode true convolution of ``x`` with ``taps`` along ``axis``, then stride ``down``.

    Output length ``(L - len(taps)) // down + 1``. Only the kept outputs are computed.
    """
    k = len(taps)
    length = x.shape[axis]
    out_len = (length - k) // down + 1
    if out_len <= 0:
        raise ValueError(f"FIR input of length {length} is shorter than the filter ({k} taps)")
    taps = taps[::-1]  # true convolution == correlation with the reversed taps
    out = None
    for i, t in enumerate(taps):
        start = [0] * x.ndim
        limit = list(x.shape)
        strides = [1] * x.ndim
        start[axis] = i
        limit[axis] = i + down * (out_len - 1) + 1
        strides[axis] = down
        term = lax.slice(x, start, limit, strides) * jnp.asarray(t, x.dtype)
        out = term if out is None else out + term
    return out


def _fir_2d(x: jnp.ndarray, f: np.ndarray, down: int) -> jnp.ndarray:
    """Valid-mode true 2-D convolution over axes (1, 2) of NHWC ``x``, then stride ``down``."""
    kh, kw = f.shape
    out_h = (x.shape[1] - kh) // down + 1
    out_w = (x.shape[2] - kw) // down + 1
    f = f[::-1, ::-1]
    out = None
    for i in range(kh):
        for j in range(kw):
            if f[i, j] == 0:
                continue
            term = lax.slice(
                x,
                (0, i, j, 0),
                (x.shape[0], i + down * (out_h - 1) + 1, j + down * (out_w - 1) + 1, x.shape[3]),
                (1, down, down, 1),
            ) * jnp.asarray(f[i, j], x.dtype)
            out = term if out is None else out + term
    if out is None:
        raise ValueError("FIR filter is all zeros")
    return out


def upfirdn2d(
    x: jnp.ndarray,
    f: np.ndarray,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = 1.0,
    flip_filter: bool = False,
) -> jnp.ndarray:
    """Upsample, pad, FIR-filter and downsample a batch of NHWC images.

    Args:
      x: ``[N, H, W, C]``.
      f: numpy FIR filter, 1-D (separable, applied to rows and columns) or 2-D ``[fh, fw]``.
      up: integer upsampling factor (same for both axes).
      down: integer downsampling factor.
      padding: ``int`` or ``(x0, x1, y0, y1)`` in pixels of the upsampled image; negative
        values crop.
      gain: overall scaling of the signal magnitude (``up**2`` keeps brightness when
        upsampling).
      flip_filter: correlate instead of convolve.

    Returns:
      ``[N, (H*up + y0 + y1 - fh) // down + 1, (W*up + x0 + x1 - fw) // down + 1, C]``.

    The gradient is itself an ``upfirdn2d`` (up and down swapped, filter flipped, padding
    adjusted), as in NVlabs' CUDA op: the backward pass costs what the forward pass costs, and
    gradients of gradients work.
    """
    f = np.asarray(f, dtype=np.float32)
    if f.ndim not in (1, 2):
        raise ValueError(f"FIR filter must be 1-D or 2-D, got shape {f.shape}")
    spec = _Spec(f.tobytes(), f.shape, int(up), int(down), _parse_padding(padding), float(gain), bool(flip_filter))
    return _upfirdn2d(x, spec)


class _Spec(tuple):
    """Hashable static description of one upfirdn2d call (filter bytes, shape, factors, ...)."""

    def __new__(cls, f_bytes, f_shape, up, down, pad, gain, flip):
        return super().__new__(cls, (f_bytes, tuple(f_shape), up, down, tuple(pad), gain, flip))

    @property
    def filter(self) -> np.ndarray:
        return np.frombuffer(self[0], np.float32).reshape(self[1])

    up = property(lambda self: self[2])
    down = property(lambda self: self[3])
    pad = property(lambda self: self[4])
    gain = property(lambda self: self[5])
    flip = property(lambda self: self[6])


def _upfirdn2d_impl(x: jnp.ndarray, spec: _Spec) -> jnp.ndarray:
    f = spec.filter
    up, down = spec.up, spec.down
    px0, px1, py0, py1 = spec.pad
    if spec.flip:
        f = f[::-1] if f.ndim == 1 else f[::-1, ::-1]
    zero = jnp.zeros((), x.dtype)
    x = lax.pad(x, zero, [(0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1), (0, 0, 0)])
    if f.ndim == 1:
        f = f * np.float32(spec.gain) ** 0.5
        x = _fir_1d(x, f, axis=2, down=down)
        x = _fir_1d(x, f, axis=1, down=down)
    else:
        x = _fir_2d(x, f * np.float32(spec.gain), down=down)
    return x


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _upfirdn2d(x: jnp.ndarray, spec: _Spec) -> jnp.ndarray:
    return _upfirdn2d_impl(x, spec)


def _upfirdn2d_fwd(x, spec):
    return _upfirdn2d_impl(x, spec), x.shape


def _upfirdn2d_bwd(spec, in_shape, dy):
    fh, fw = (spec.filter.shape * 2)[:2] if spec.filter.ndim == 1 else spec.filter.shape
    in_h, in_w = in_shape[1:3]
    out_h, out_w = dy.shape[1:3]
    px0, _, py0, _ = spec.pad
    up, down = spec.up, spec.down
    pad = (fw - px0 - 1, in_w * up - out_w * down + px0 - up + 1,
           fh - py0 - 1, in_h * up - out_h * down + py0 - up + 1)
    grad_spec = _Spec(spec[0], spec[1], down, up, pad, spec.gain, not spec.flip)
    return (_upfirdn2d(dy, grad_spec),)


_upfirdn2d.defvjp(_upfirdn2d_fwd, _upfirdn2d_bwd)


def upsample2d(x: jnp.ndarray, f: np.ndarray, up: int = 2, padding: Padding = 0,
               gain: float = 1.0) -> jnp.ndarray:
    """Upsample by ``up`` with FIR interpolation; output ``[N, H*up, W*up, C]`` for padding 0."""
    f = np.asarray(f)
    fw = f.shape[-1]
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = (px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2,
           py0 + (fw + up - 1) // 2, py1 + (fw - up) // 2)
    return upfirdn2d(x, f, up=up, padding=pad, gain=gain * up * up)


def downsample2d(x: jnp.ndarray, f: np.ndarray, down: int = 2, padding: Padding = 0,
                 gain: float = 1.0) -> jnp.ndarray:
    """Downsample by ``down`` after FIR anti-aliasing; output ``[N, H/down, W/down, C]``."""
    f = np.asarray(f)
    fw = f.shape[-1]
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = (px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2,
           py0 + (fw - down + 1) // 2, py1 + (fw - down) // 2)
    return upfirdn2d(x, f, down=down, padding=pad, gain=gain)
