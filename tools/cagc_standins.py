"""Plain-torch stand-ins that let the released CAGC code (lychenyoko/content-aware-gan-compression)
import and run on a CPU-only machine, for ``tools/bench_prune_scoring.py``.

Nothing here is CAGC's code; each function is written from the definition of what it computes:

* ``op`` package (CAGC's ``op/fused_act.py`` and ``op/upfirdn2d.py`` JIT-compile CUDA extensions
  at import time, which fails without nvcc):

  - :func:`fused_leaky_relu` ``(x [N, C, ...], bias [C]) -> leaky_relu(x + bias, 0.2) * sqrt(2)``;
  - :class:`FusedLeakyReLU`: the same with a learned ``bias`` parameter (state-dict key
    ``activate.bias``, zeros at init);
  - :func:`upfirdn2d` ``(x [N, C, H, W], kernel [kh, kw], up, down, pad=(p0, p1))``: insert
    ``up - 1`` zeros after every sample on both axes, pad by ``p0`` before and ``p1`` after on both
    axes (negative values crop), convolve with ``kernel`` (true convolution: the kernel is
    flipped), keep every ``down``-th sample. Output ``[N, C, (H*up + p0 + p1 - kh) // down + 1,
    (W*up + p0 + p1 - kw) // down + 1]``. Differentiable through torch's autograd.

* ``torchvision`` (PyPI's torchvision wheel does not import beside this torch; CAGC also calls
  ``make_grid(..., range=...)``, a keyword newer torchvision removed): ``utils.make_grid`` (the
  old signature: ``normalize`` with ``range=(lo, hi)`` clamps to the range and maps it to [0, 1];
  one image comes back as ``[C, H, W]`` without padding), ``transforms.Compose``,
  ``transforms.ToTensor`` (PIL/uint8 HWC -> float CHW in [0, 1]) and ``transforms.Normalize``.

* :func:`no_download_load_url`: CAGC's BiSeNet backbone fetches ImageNet ResNet-18 weights from
  the network in its constructor; the bench replaces that fetch by an empty state dict (the
  backbone keeps its random init; all BiSeNet weights are then loaded from one file anyway).

CAGC's ``inplace_abn`` (``Util/face_parsing/modules``) needs no stand-in: the BiSeNet used for
pruning imports plain ``nn.BatchNorm2d`` (its ``InPlaceABNSync`` import is commented out).
"""

from __future__ import annotations

import builtins
import math
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------- CAGC's op package


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``; ``bias [C]`` is added along axis 1."""
    if bias is not None:
        x = x + bias.reshape((1, -1) + (1,) * (x.ndim - 2))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU + gain with a learned per-channel ``bias`` (zeros at init)."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = SQRT2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x):
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad/crop, FIR-convolve and subsample ``x [N, C, H, W]`` (see module doc)."""
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = int(pad[0]), int(pad[1])
    y = x.reshape(n * c, 1, h, w)
    if up > 1:
        # zeros between samples: [.., h, 1, w, 1] padded to [.., h, up, w, up] then flattened
        y = F.pad(y.reshape(n * c, 1, h, 1, w, 1), (0, up - 1, 0, 0, 0, up - 1))
        y = y.reshape(n * c, 1, h * up, w * up)
    y = F.pad(y, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    hh, ww = y.shape[-2:]
    y = y[:, :, max(-p0, 0):hh - max(-p1, 0), max(-p0, 0):ww - max(-p1, 0)]
    taps = torch.flip(kernel, (0, 1)).to(y.dtype).reshape(1, 1, kh, kw)
    y = F.conv2d(y, taps)[:, :, ::down, ::down]
    return y.reshape(n, c, y.shape[-2], y.shape[-1])


# --------------------------------------------------------------------------- torchvision pieces


def make_grid(tensor, nrow: int = 8, padding: int = 2, normalize: bool = False, range=None,  # noqa: A002
              scale_each: bool = False, pad_value: float = 0.0, value_range=None):
    """``[N, C, H, W]`` -> one ``[C, H', W']`` image grid (torchvision's old ``make_grid``)."""
    t = tensor.detach().clone() if isinstance(tensor, torch.Tensor) else torch.stack(list(tensor))
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1).clone()
    bounds = value_range if value_range is not None else range
    if normalize:
        def norm(img):
            lo, hi = (float(img.min()), float(img.max())) if bounds is None else bounds
            img.clamp_(min=lo, max=hi)
            img.sub_(lo).div_(max(hi - lo, 1e-5))
        if scale_each:
            for img in t:
                norm(img)
        else:
            norm(t)
    if t.shape[0] == 1:
        return t.squeeze(0)
    n, c, h, w = t.shape
    cols = min(nrow, n)
    rows = int(math.ceil(n / cols))
    grid = t.new_full((c, rows * (h + padding) + padding, cols * (w + padding) + padding), pad_value)
    for k in builtins.range(n):
        r, q = divmod(k, cols)
        top, left = r * (h + padding) + padding, q * (w + padding) + padding
        grid[:, top:top + h, left:left + w] = t[k]
    return grid



class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for f in self.transforms:
            x = f(x)
        return x


class ToTensor:
    """PIL image or uint8 ``[H, W, C]`` array -> float32 ``[C, H, W]`` in [0, 1]."""

    def __call__(self, pic):
        a = np.array(pic)  # a writable copy
        if a.ndim == 2:
            a = a[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
        return t.float().div(255.0) if a.dtype == np.uint8 else t.float()


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel of ``[C, H, W]``."""

    def __init__(self, mean, std):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, t):
        mean = torch.tensor(self.mean, dtype=t.dtype).reshape(-1, 1, 1)
        std = torch.tensor(self.std, dtype=t.dtype).reshape(-1, 1, 1)
        return (t - mean) / std


def no_download_load_url(*args, **kwargs):
    """Stands in for ``torch.utils.model_zoo.load_url``: nothing is downloaded, an empty state dict."""
    return {}


# --------------------------------------------------------------------------- installation


def install() -> None:
    """Puts the stand-ins into ``sys.modules`` as ``op``, ``op.fused_act``, ``op.upfirdn2d``,
    ``torchvision``, ``torchvision.utils`` and ``torchvision.transforms`` (replacing whatever is
    there, including a ``None`` placeholder), before CAGC's ``model.py`` / ``Util`` are imported."""
    op = types.ModuleType("op")
    fused_act = types.ModuleType("op.fused_act")
    fused_act.FusedLeakyReLU, fused_act.fused_leaky_relu = FusedLeakyReLU, fused_leaky_relu
    up_mod = types.ModuleType("op.upfirdn2d")
    up_mod.upfirdn2d = upfirdn2d
    op.fused_act, op.upfirdn2d_module = fused_act, up_mod
    op.FusedLeakyReLU, op.fused_leaky_relu, op.upfirdn2d = FusedLeakyReLU, fused_leaky_relu, upfirdn2d
    op.__path__ = []  # a package, so `from op.fused_act import ...` resolves to the entries below
    tv = types.ModuleType("torchvision")
    tv.__path__ = []
    tv.__version__ = "0.0-cagc-bench-standin"
    utils = types.ModuleType("torchvision.utils")
    utils.make_grid = make_grid
    transforms = types.ModuleType("torchvision.transforms")
    transforms.Compose, transforms.ToTensor, transforms.Normalize = Compose, ToTensor, Normalize
    tv.utils, tv.transforms = utils, transforms
    sys.modules.update({"op": op, "op.fused_act": fused_act, "op.upfirdn2d": up_mod, "torchvision": tv,
                        "torchvision.utils": utils, "torchvision.transforms": transforms})
