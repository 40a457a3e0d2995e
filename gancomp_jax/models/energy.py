"""Spectral normalisation and ITGC's spectral-norm ResNet energy network (pure functions).

**Spectral normalisation** (Miyato et al. 2018; the SN-GAN layers ITGC's released code borrows
from ``godisboy/SN-GAN``): a weight ``W`` is reshaped to ``W_mat [out, in·kh·kw]`` and divided
by its largest singular value, estimated by power iteration from a persistent vector
``u [out]``::

    v ← normalize(W_matᵀ u);  u ← normalize(W_mat v);  σ = uᵀ W_mat v;  W_SN = W / σ

(one iteration per forward pass; ``u`` is state carried between passes). This is the
computation of ``torch.nn.utils.spectral_norm`` in training mode (``u`` and ``v`` are
constants for differentiation); ``sigma_grad=True`` differentiates σ through ``W`` as torch
does, ``False`` (the released SN-GAN code, which reads ``W.data``) treats σ as a constant.
``lower_bound`` (the released ``SNConv2d(lower_bound=True)``): ``W / (σ + 1e-6) · min(σ + 1e-6, 1)``.

**Energy network** (``ResnetEBM(input_nc=64, n_blocks=7)`` of the released ITGC code,
``training/networks_CAGC_with_VEM.py`` in NICKEL & DiME): ``E(t, s) [N]`` for teacher-like
images ``t`` and student images ``s`` (NHWC, ``[-1, 1]``)::

    t, s ← avgpool3x3/2(t), avgpool3x3/2(s)          (zero padding 1, counted: /9)
    x = lrelu(SNConv3x3(concat(t, s)) : 6 → C)                    C = base_channels (32)
    blocks i = 0..n_blocks-1 (C → 2C → 4C → 4C …):
        x = lrelu(avgpool2(shortcut(x) + SNConv_lb(lrelu(SNConv(x)))))
        shortcut = SNConv3x3 when the width changes, identity otherwise
    E = SNLinear(mean_hw(relu(x))) : 4C → 1

LeakyReLU slope 0.01 (torch's default). Initialisation as released: convolution weights
``N(0, 1)`` (the second conv of each block ``N(0, 1e-10)``), biases 0; the linear layer torch's
default ``U(±1/√in)``; ``u ~ N(0, 1)``. Parameters use the NHWC/HWIO layout; ``u`` is kept
separately (``init_energy`` returns ``(params, u)``) and returned updated by
:func:`energy_apply`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

LRELU_SLOPE = 0.01


def l2normalize(v: jnp.ndarray, eps: float = 1e-12) -> jnp.ndarray:
    return v / (jnp.linalg.norm(v) + eps)


def weight_matrix(w: jnp.ndarray) -> jnp.ndarray:
    """``[out, -1]`` view of a conv (``[kh, kw, in, out]``) or dense (``[in, out]``) weight.

    (Columns are ordered differently from torch's ``[out, in, kh, kw]`` view; σ and ``u`` do not
    depend on the column order and ``v`` is internal.)"""
    return w.reshape(-1, w.shape[-1]).T


def spectral_sigma(w: jnp.ndarray, u: jnp.ndarray, n_power_iterations: int = 1, sigma_grad: bool = False,
                   eps: float = 1e-12) -> tuple[jnp.ndarray, jnp.ndarray]:
    """σ estimate and the updated ``u [out]`` for weight ``w`` (see the module docstring)."""
    mat = weight_matrix(w.astype(jnp.float32))
    const = jax.lax.stop_gradient(mat)
    u = jax.lax.stop_gradient(u)
    v = None
    for _ in range(int(n_power_iterations)):
        v = l2normalize(const.T @ u, eps)
        u = l2normalize(const @ v, eps)
    sigma = u @ ((mat if sigma_grad else const) @ v)
    return sigma, u


def spectral_normalize(w: jnp.ndarray, u: jnp.ndarray, n_power_iterations: int = 1, sigma_grad: bool = False,
                       lower_bound: bool = False) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(W / σ, new u)``; with ``lower_bound`` ``W / σ' · min(σ', 1)``, ``σ' = σ + 1e-6``."""
    sigma, u = spectral_sigma(w, u, n_power_iterations, sigma_grad)
    if lower_bound:
        sigma = sigma + 1e-6
        return w / sigma * jnp.minimum(sigma, 1.0), u
    return w / sigma, u


def avg_pool(x: jnp.ndarray, k: int, stride: int, pad: int = 0) -> jnp.ndarray:
    """torch ``AvgPool2d(k, stride, pad)`` with ``count_include_pad=True`` on NHWC."""
    s = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, k, k, 1), (1, stride, stride, 1),
                              ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return s / (k * k)


def _conv(x, w, b):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + b


def block_widths(base_channels: int, n_blocks: int) -> list[tuple[int, int]]:
    """``[(in, out)]`` of the residual blocks (C→2C, 2C→4C, then 4C→4C)."""
    out, c = [], base_channels
    for i in range(n_blocks):
        nxt = 2 * c if i < 2 else c
        out.append((c, nxt))
        c = nxt
    return out


def init_energy(key: jax.Array, base_channels: int = 32, n_blocks: int = 7, in_channels: int = 3
                ) -> tuple[dict[str, Any], dict[str, jnp.ndarray]]:
    """Released initialisation: ``(params, u)``; ``u`` maps layer names to ``[out]`` vectors."""
    keys = iter(jax.random.split(key, 6 * n_blocks + 8))
    params, u = {}, {}

    def conv(name, cin, cout, std):
        params[name] = {"weight": std * jax.random.normal(next(keys), (3, 3, cin, cout), jnp.float32),
                        "bias": jnp.zeros((cout,), jnp.float32)}
        u[name] = jax.random.normal(next(keys), (cout,), jnp.float32)

    conv("fromRGB", 2 * in_channels, base_channels, 1.0)
    for i, (cin, cout) in enumerate(block_widths(base_channels, n_blocks)):
        conv(f"primal_{i}/conv1", cin, cin, 1.0)
        conv(f"primal_{i}/conv2", cin, cout, 1e-10)
        if cin != cout:
            conv(f"primal_{i}/shortcut", cin, cout, 1.0)
    c = block_widths(base_channels, n_blocks)[-1][1] if n_blocks else base_channels
    bound = 1.0 / jnp.sqrt(c)
    params["linear"] = {"weight": jax.random.uniform(next(keys), (c, 1), jnp.float32, -bound, bound),
                        "bias": jax.random.uniform(next(keys), (1,), jnp.float32, -bound, bound)}
    u["linear"] = jax.random.normal(next(keys), (1,), jnp.float32)
    return params, u


def energy_apply(params: dict[str, Any], u: dict[str, jnp.ndarray], t: jnp.ndarray, s: jnp.ndarray, *,
                 sigma_grad: bool = False) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """``(E(t, s) [N], updated u)`` for images ``t, s [N, H, W, C]``."""
    new_u = {}

    def sn(name, lower_bound=False):
        w, new_u[name] = spectral_normalize(params[name]["weight"], u[name], sigma_grad=sigma_grad,
                                            lower_bound=lower_bound)
        return w, params[name]["bias"]

    lrelu = lambda x: jax.nn.leaky_relu(x, LRELU_SLOPE)  # noqa: E731
    x = jnp.concatenate([avg_pool(t.astype(jnp.float32), 3, 2, 1), avg_pool(s.astype(jnp.float32), 3, 2, 1)], -1)
    x = lrelu(_conv(x, *sn("fromRGB")))
    i = 0
    while f"primal_{i}/conv1" in params:
        p = f"primal_{i}"
        h = _conv(lrelu(_conv(x, *sn(f"{p}/conv1"))), *sn(f"{p}/conv2", lower_bound=True))
        short = _conv(x, *sn(f"{p}/shortcut")) if f"{p}/shortcut" in params else x
        x = lrelu(avg_pool(short + h, 2, 2))
        i += 1
    x = jnp.mean(jax.nn.relu(x), axis=(1, 2))
    w, b = sn("linear")
    return (x @ w + b)[:, 0], new_u


__all__ = ["avg_pool", "block_widths", "energy_apply", "init_energy", "l2normalize", "spectral_normalize",
           "spectral_sigma", "weight_matrix"]
