"""2-D convolution with optional FIR up/down-sampling by 2 (NVlabs ``conv2d_resample``), NHWC.

Weights are ``[kh, kw, in, out]`` (HWIO). Three cases, each the cheapest exact formulation:

* plain: a correlation (``torch.conv2d`` semantics) with symmetric zero padding;
* ``up=2``: a transposed convolution with stride 2 (``torch.conv_transpose2d`` of the same
  weights, i.e. a *true* convolution of the zero-inserted input, which is what NVlabs computes
  for ``flip_weight=False``), then the FIR filter with gain 4. The transposed conv runs in
  polyphase form at the coarse resolution (see ``_conv_transpose_stride2``);
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

    Output ``[N, 2H + kh - 2, 2W + kw - 2, O * groups]``: the full transposed-conv output.

    Computed in polyphase form: output pixel ``2m + p`` only sees kernel taps ``j ≡ p (mod 2)``,
    so the four output phases are four small correlations of the *coarse* input, done as one
    convolution with ``4 * O`` output channels followed by a depth-to-space shuffle. This costs
    what a conv at the input resolution costs in both passes (XLA:CPU differentiates a
    ``lhs_dilation`` convolution very slowly).
    """
    kh, kw, in_ch, out_total = w.shape
    out_ch = out_total // groups
    out_h, out_w = 2 * (x.shape[1] - 1) + kh, 2 * (x.shape[2] - 1) + kw
    dy, dx = (kh - 1) // 2, (kw - 1) // 2  # taps per phase - 1

    def phase_kernel(k: int, d: int, phase: int, axis_len: int):
        """Indices into the original kernel for polyphase taps e = 0..d (None: zero tap)."""
        idx = []
        for e in range(d + 1):
            j = 2 * (d - e) + phase
            idx.append(j if j < axis_len else None)
        return idx

    wg = w.reshape(kh, kw, in_ch, groups, out_ch)
    zero = jnp.zeros_like(wg[0, 0])
    phases = []
    for py in (0, 1):
        rows = phase_kernel(kh, dy, py, kh)
        for px in (0, 1):
            cols = phase_kernel(kw, dx, px, kw)
            phases.append(jnp.stack([jnp.stack([zero if (r is None or c is None) else wg[r, c] for c in cols])
                                     for r in rows]))
    k = jnp.stack(phases, axis=-2)  # [dy+1, dx+1, I, groups, 4, O]
    k = k.reshape(dy + 1, dx + 1, in_ch, groups * 4 * out_ch)
    # Explicit zero padding: XLA:CPU differentiates a padded ("full") convolution slowly.
    x = jnp.pad(x, ((0, 0), (dy, dy), (dx, dx), (0, 0)))
    y = lax.conv_general_dilated(x, k, window_strides=(1, 1), padding="VALID",
                                 dimension_numbers=_DN, feature_group_count=groups)
    n, h, wd, _ = y.shape
    y = y.reshape(n, h, wd, groups, 2, 2, out_ch)
    y = jnp.transpose(y, (0, 1, 4, 2, 5, 3, 6)).reshape(n, 2 * h, 2 * wd, groups * out_ch)
    return y[:, :out_h, :out_w]


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
