"""BigGAN-PyTorch's layers (``layers.py``) in Flax, NHWC: spectral norm, ccbn, attention.

Spectral norm (``SN.W_``): the weight as a matrix ``W [out, fan_in]`` is divided by its top
singular value, estimated with ``num_itrs`` power iterations from the stored left vectors
``u{i} [1, out]`` (``num_svs`` of them, Gram-Schmidt orthogonalised, ``F.normalize`` with
``eps``). In train mode the new ``u{i}`` and the estimate ``sv{i}`` are written back; in eval
mode one iteration runs from the stored ``u`` and nothing is written (every iteration starts
from the same ``u``, so ``num_itrs`` does not matter there). The singular value is
differentiable in ``W``; ``u``, ``v`` are constants, as in torch's ``no_grad`` block.

Variables: ``params`` (``weight``: conv ``[kh, kw, in, out]``, linear ``[in, out]``,
embedding ``[n, dim]``; ``bias``; ``gain``/``bias`` of the plain BN; attention ``gamma``) and
``buffers`` (``u{i}``, ``sv{i}``, ``stored_mean``, ``stored_var``, ``accumulation_counter``).

BatchNorm modes (``bn_mode``): ``'eval'`` stored statistics; ``'train'`` batch statistics,
stored ones updated with momentum 0.1 (``F.batch_norm``: unbiased running variance; ``myBN``:
biased, mean of squares minus squared mean); ``'standing'`` batch statistics, summed into the
stored ones and counted (``myBN``'s ``accumulate_standing``). Eval mode of a ``myBN`` layer
divides by ``accumulation_counter`` when it is > 0 (BigGAN-PyTorch keys this on a Python flag
that is not saved; the counter is 0 unless standing statistics were accumulated).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

BN_MODES = ("eval", "train", "standing")
BN_MOMENTUM = 0.1


def orthogonal_torch(rows: int, cols: int):
    """``torch.nn.init.orthogonal_`` on a ``[rows, cols]`` matrix (distribution, not stream)."""
    def init(key):
        return jax.nn.initializers.orthogonal()(key, (rows, cols), jnp.float32)
    return init


def _normalize(x, eps):
    """``F.normalize(x, eps=eps)`` on rows of ``x [1, n]``."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), eps)


def _gram_schmidt(x, ys):
    for y in ys:
        x = x - (y @ x.T) * y / (y @ y.T)
    return x


def power_iteration(W, us, eps):
    """One step over every singular vector: ``W [out, fan_in]``, ``us`` list of ``[1, out]``.

    Returns (svs [scalars, differentiable in W], new us, vs)."""
    Wc = jax.lax.stop_gradient(W)
    new_us, vs, svs = [], [], []
    for u in us:
        v = _normalize(_gram_schmidt(u @ Wc, vs), eps)
        vs.append(v)
        u = _normalize(_gram_schmidt(v @ Wc.T, new_us), eps)
        new_us.append(u)
        svs.append(jnp.squeeze((v @ W.T) @ u.T))
    return svs, new_us, vs


def spectral_normalize(mod: nn.Module, W_param, W_mat, out_dim: int, num_svs: int, num_itrs: int,
                       eps: float, train: bool):
    """``W_param / sv0`` with the ``u{i}``/``sv{i}`` buffers of ``mod`` (see module docstring)."""
    u_vars = [mod.variable("buffers", f"u{i}", lambda k=i: jax.random.normal(mod.make_rng("params"), (1, out_dim)))
              for i in range(num_svs)]
    sv_vars = [mod.variable("buffers", f"sv{i}", lambda: jnp.ones((1,), jnp.float32)) for i in range(num_svs)]
    us = [jax.lax.stop_gradient(v.value) for v in u_vars]
    svs = None
    for _ in range(num_itrs):
        svs, new_us, _ = power_iteration(W_mat, us, eps)
        if train:
            us = new_us
    if train and not mod.is_initializing():
        for var, u in zip(u_vars, us):
            var.value = u
        for var, sv in zip(sv_vars, svs):
            var.value = jax.lax.stop_gradient(sv).reshape(1)
    return W_param / svs[0]


class SNConv(nn.Module):
    """``SNConv2d``: 3×3 (padding 1) or 1×1 conv, ``x [N, H, W, I] -> [N, H, W, features]``."""

    features: int
    kernel_size: int = 3
    use_bias: bool = True
    num_svs: int = 1
    num_itrs: int = 1
    eps: float = 1e-12

    @nn.compact
    def __call__(self, x, train: bool = False):
        k, cin = self.kernel_size, x.shape[-1]
        fan_in = cin * k * k

        def winit(key, shape):
            m = orthogonal_torch(self.features, fan_in)(key)  # torch [out, in*k*k]
            return m.reshape(self.features, cin, k, k).transpose(2, 3, 1, 0)
        w = self.param("weight", winit, (k, k, cin, self.features))
        W_mat = w.transpose(3, 2, 0, 1).reshape(self.features, -1)
        w = spectral_normalize(self, w, W_mat, self.features, self.num_svs, self.num_itrs, self.eps, train)
        y = jax.lax.conv_general_dilated(x, w, (1, 1), [(k // 2, k // 2)] * 2,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=jax.lax.Precision.HIGHEST)
        if self.use_bias:
            bound = 1.0 / np.sqrt(fan_in)
            b = self.param("bias", lambda key, s: jax.random.uniform(key, s, jnp.float32, -bound, bound),
                           (self.features,))
            y = y + b
        return y


class SNLinear(nn.Module):
    """``SNLinear``: ``x [N, in] -> [N, features]``, weight stored ``[in, out]``."""

    features: int
    use_bias: bool = True
    num_svs: int = 1
    num_itrs: int = 1
    eps: float = 1e-12

    @nn.compact
    def __call__(self, x, train: bool = False):
        cin = x.shape[-1]
        w = self.param("weight", lambda key, s: orthogonal_torch(self.features, cin)(key).T, (cin, self.features))
        w = spectral_normalize(self, w, w.T, self.features, self.num_svs, self.num_itrs, self.eps, train)
        y = jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST)
        if self.use_bias:
            bound = 1.0 / np.sqrt(cin)
            b = self.param("bias", lambda key, s: jax.random.uniform(key, s, jnp.float32, -bound, bound),
                           (self.features,))
            y = y + b
        return y


class SNEmbedding(nn.Module):
    """``SNEmbedding`` (projection D's class embedding; ``u`` over the classes)."""

    num_embeddings: int
    features: int
    num_svs: int = 1
    num_itrs: int = 1
    eps: float = 1e-12

    @nn.compact
    def __call__(self, y, train: bool = False):
        w = self.param("weight", lambda key, s: orthogonal_torch(*s)(key), (self.num_embeddings, self.features))
        w = spectral_normalize(self, w, w, self.num_embeddings, self.num_svs, self.num_itrs, self.eps, train)
        return embed(w, y)


def embed(table, y):
    """Rows of ``table [n, d]`` for integer ``y [N]`` or one-hot/soft ``y [N, n]`` (exact for one-hot)."""
    if jnp.issubdtype(jnp.asarray(y).dtype, jnp.integer):
        return jnp.take(table, y, axis=0)
    return jnp.matmul(y, table, precision=jax.lax.Precision.HIGHEST)


def batch_moments(x, mybn: bool, axis_name: str | None):
    """Per-channel batch mean and biased variance of ``x [N, H, W, C]`` (float32)."""
    x = x.astype(jnp.float32)
    m = jnp.mean(x, axis=(0, 1, 2))
    if mybn:
        m2 = jnp.mean(jnp.square(x), axis=(0, 1, 2))
        if axis_name is not None:
            m, m2 = jax.lax.pmean((m, m2), axis_name)
        return m, m2 - jnp.square(m)
    if axis_name is not None:
        m = jax.lax.pmean(m, axis_name)
    var = jnp.mean(jnp.square(x - m), axis=(0, 1, 2))
    if axis_name is not None:
        var = jax.lax.pmean(var, axis_name)
    return m, var


class BatchStats(nn.Module):
    """The statistics part of BigGAN's BN layers: returns (mean, var) ``[C]`` to normalise with
    and keeps the stored statistics (``stored_mean``, ``stored_var`` [, ``accumulation_counter``])."""

    num_features: int
    mybn: bool = False
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, bn_mode: str):
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
        C = self.num_features
        mean_v = self.variable("buffers", "stored_mean", lambda: jnp.zeros((C,), jnp.float32))
        var_v = self.variable("buffers", "stored_var", lambda: jnp.ones((C,), jnp.float32))
        cnt_v = (self.variable("buffers", "accumulation_counter", lambda: jnp.zeros((1,), jnp.float32))
                 if self.mybn else None)
        if bn_mode == "eval":
            mean, var = mean_v.value, var_v.value
            if cnt_v is not None:
                c = cnt_v.value[0]
                safe = jnp.where(c > 0, c, 1.0)
                mean, var = mean / safe, var / safe
            return mean, var
        if bn_mode == "standing" and not self.mybn:
            raise ValueError("standing statistics need mybn=True (BigGAN-PyTorch's myBN)")
        m, var = batch_moments(x, self.mybn, self.axis_name)
        if not self.is_initializing():
            ms, vs = jax.lax.stop_gradient(m), jax.lax.stop_gradient(var)
            if bn_mode == "standing":
                mean_v.value = mean_v.value + ms
                var_v.value = var_v.value + vs
                cnt_v.value = cnt_v.value + 1.0
            else:
                if not self.mybn:
                    n = x.shape[0] * x.shape[1] * x.shape[2]
                    if self.axis_name is not None:
                        n = n * jax.lax.psum(1, self.axis_name)
                    vs = vs * (n / max(n - 1, 1))
                mean_v.value = mean_v.value * (1 - BN_MOMENTUM) + ms * BN_MOMENTUM
                var_v.value = var_v.value * (1 - BN_MOMENTUM) + vs * BN_MOMENTUM
        return m, var


def normalize(x, mean, var, gain, bias, eps: float, mybn: bool):
    """BN output ``(x - mean) / sqrt(var + eps) * gain + bias`` (gain/bias ``[N or 1, C]``).

    ``mybn``: BigGAN-PyTorch's fused form ``x * scale - (mean * scale - bias)``."""
    gain = gain[:, None, None, :]
    bias = bias[:, None, None, :]
    if mybn:
        scale = jax.lax.rsqrt(var + eps) * gain
        return x * scale - (mean * scale - bias)
    return (x - mean) * jax.lax.rsqrt(var + eps) * gain + bias


class CCBN(nn.Module):
    """Class-conditional BN (``ccbn``): gain ``1 + W_g y``, bias ``W_b y`` (SN linears, no bias)
    applied to the batch-normalised ``x``; ``y [N, shared_dim + z_chunk]``."""

    num_features: int
    mybn: bool = False
    eps: float = 1e-5
    num_svs: int = 1
    num_itrs: int = 1
    sn_eps: float = 1e-12
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, y, bn_mode: str = "eval", train: bool = False):
        lin = dict(features=self.num_features, use_bias=False, num_svs=self.num_svs, num_itrs=self.num_itrs,
                   eps=self.sn_eps)
        gain = 1.0 + SNLinear(**lin, name="gain")(y, train)
        bias = SNLinear(**lin, name="bias")(y, train)
        stats = BatchStats(self.num_features, self.mybn, self.axis_name, name="bn")
        mean, var = stats(x, bn_mode)
        return normalize(x, mean, var, gain, bias, self.eps, self.mybn)


class BN(nn.Module):
    """Unconditional BN (``layers.bn``) with learned ``gain``/``bias`` (G's output layer)."""

    num_features: int
    mybn: bool = False
    eps: float = 1e-5
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, bn_mode: str = "eval"):
        gain = self.param("gain", nn.initializers.ones_init(), (self.num_features,))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.num_features,))
        stats = BatchStats(self.num_features, self.mybn, self.axis_name, name="bn")
        mean, var = stats(x, bn_mode)
        return normalize(x, mean, var, gain[None], bias[None], self.eps, self.mybn)


def max_pool2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def avg_pool2(x):
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def upsample_nearest2(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Attention(nn.Module):
    """SA-GAN non-local block as released: theta/phi ``ch//8``, g ``ch//2`` (phi, g max-pooled
    2×2), ``x + gamma · o(g · softmax(thetaᵀ phi)ᵀ)``; ``gamma`` starts at 0."""

    num_svs: int = 1
    num_itrs: int = 1
    eps: float = 1e-12

    @nn.compact
    def __call__(self, x, train: bool = False):
        n, h, w, ch = x.shape
        conv = dict(kernel_size=1, use_bias=False, num_svs=self.num_svs, num_itrs=self.num_itrs, eps=self.eps)
        theta = SNConv(ch // 8, **conv, name="theta")(x, train).reshape(n, h * w, ch // 8)
        phi = max_pool2(SNConv(ch // 8, **conv, name="phi")(x, train)).reshape(n, h * w // 4, ch // 8)
        g = max_pool2(SNConv(ch // 2, **conv, name="g")(x, train)).reshape(n, h * w // 4, ch // 2)
        hp = jax.lax.Precision.HIGHEST
        beta = jax.nn.softmax(jnp.einsum("npc,nqc->npq", theta, phi, precision=hp), axis=-1)
        o_in = jnp.einsum("npq,nqc->npc", beta, g, precision=hp).reshape(n, h, w, ch // 2)
        o = SNConv(ch, **conv, name="o")(o_in, train)
        gamma = self.param("gamma", nn.initializers.zeros_init(), ())
        return gamma * o + x
