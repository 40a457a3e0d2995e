"""2-D convolution with optional FIR up/down-sampling by 2 (NVlabs ``conv2d_resample``), NHWC.

Weights are ``[kh, kw, in, out]`` (HWIO). Three cases, each the cheapest exact formulation:

* plain: a correlation (``torch.conv2d`` semantics) with symmetric zero padding;
* ``up=2``: a transposed convolution with stride 2 (``torch.conv_transpose2d`` of the same
  weights, i.e. a *true* convolution of the zero-inserted input, which is what NVlabs computes
  for ``flip_weight=False``), then the FIR filter with gain 4. XLA's ``lhs_dilation`` skips the
  inserted zeros, so the conv costs what the coarse-resolution conv costs;
* ``down=2``: FIR filter first, then a stride-2 correlation; a 1×1 kernel downsamples first.

``groups`` > 1 gives a grouped convolution (used by the fused modulated convolution).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from gancomp_jax.ops.upfirdn2d import upfirdn2d

_DN = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, stride=1, padding=(0, 0), groups=1):
    """Correlation with symmetric padding ``(py, px)``."""
    py, px = padding
    return lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=[(py, py), (px, px)],
        dimension_numbers=_DN, feature_group_count=groups)


def _conv_transpose_stride2(x, w, groups=1):
    """``torch.conv_transpose2d(x, w_torch, stride=2)`` for HWIO ``w`` of a forward conv.

    Output ``[N, 2H + kh - 2, 2W + kw - 2, O]``: the full transposed-conv output.
    """
    kh, kw = w.shape[:2]
    return lax.conv_general_dilated(
        x, w[::-1, ::-1], window_strides=(1, 1),
        padding=[(kh - 1, kh - 1), (kw - 1, kw - 1)], lhs_dilation=(2, 2),
        dimension_numbers=_DN, feature_group_count=groups)


def conv2d_resample(
    x: jnp.ndarray,
    w: jnp.ndarray,
    f: np.ndarray | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> jnp.ndarray:
    """Convolves NHWC ``x`` with HWIO ``w``, optionally up- or down-sampling by 2.

    Args:
      x: ``[N, H, W, I * groups]``.
      w: ``[kh, kw, I, O * groups]``.
      f: FIR filter (``setup_filter``) for resampling; required when ``up`` or ``down`` is 2.
      up, down: 1 or 2 (not both 2).
      padding: the conv's own zero padding (``kernel_size // 2`` for 'same' convolutions).
      groups: feature groups.

    Returns:
      ``[N, H * up // down, W * up // down, O * groups]`` for odd square kernels with
      ``padding = k // 2``.
    """
    if up not in (1, 2) or down not in (1, 2) or (up > 1 and down > 1):
        raise ValueError(f"conv2d_resample supports up=2 or down=2 (not both), got up={up}, down={down}")
    kh, kw = w.shape[:2]
    if up == 1 and down == 1:
        return _conv(x, w, padding=(padding, padding), groups=groups)
    if f is None:
        raise ValueError("a resampling filter is required when up or down is 2")
    fw = np.asarray(f).shape[-1]

    p0 = p1 = padding
    if up > 1:
        p0 += (fw + up - 1) // 2
        p1 += (fw - up) // 2
    if down > 1:
        p0 += (fw - down + 1) // 2
        p1 += (fw - down) // 2

    if kh == 1 and kw == 1 and down > 1:
        x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
        return _conv(x, w, groups=groups)
    if kh == 1 and kw == 1 and up > 1:
        x = _conv(x, w, groups=groups)
        return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)
    if down > 1:
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return _conv(x, w, stride=down, groups=groups)

    # up == 2 with a k×k kernel: transposed conv, then FIR on the (2H + k - 2)² output.
    q0, q1 = p0 - (kw - 1), p1 - (kw - up)
    x = _conv_transpose_stride2(x, w, groups=groups)
    return upfirdn2d(x, f, padding=(q0, q1, q0, q1), gain=up * up)
