"""BigGAN-deep generator as released by DeepMind on TF-Hub and ported to PyTorch by
``pytorch-pretrained-biggan`` (huggingface/pytorch-pretrained-BigGAN, files
``pytorch_model.bin`` + ``config.json``): a variant of the BigGAN family, eval mode only.

It differs from BigGAN-PyTorch's generator (:mod:`.networks`) in every block, so it is its own
module rather than an option of that one:

* class embedding: ``embed = one_hot(y) @ E.T`` with ``E = embeddings.weight [z_dim, n_classes]``
  (no spectral norm); the condition vector is ``cond = concat(z, embed)`` ``[B, 2*z_dim]`` and
  feeds the first linear and every conditional BatchNorm (no hierarchical z chunks).
* ``gen_z``: SN linear ``2*z_dim -> 4*4*16*ch``, reshaped to ``[B, 4, 4, 16*ch]`` (TF's NHWC order).
* ``GenBlock`` (BigGAN-deep's bottleneck residual block), channels ``cin -> cin//4 -> cout``:
  ``bn_0, relu, conv_0 (1x1) / bn_1, relu, [nearest x2], conv_1 (3x3) / bn_2, relu, conv_2 (3x3) /
  bn_3, relu, conv_3 (1x1)``; skip: the first ``cin//2`` channels when ``cin != cout``, nearest x2
  when upsampling; output ``h + skip``. All convolutions are SN with a bias.
* conditional BatchNorm: ``(x - mean) / sqrt(var + eps) * (1 + scale(cond)) + offset(cond)``,
  ``scale``/``offset`` SN linears without bias; ``mean``/``var`` are *standing statistics*
  ``running_means/vars [n_stats, C]`` tabulated for ``n_stats`` truncation values on
  ``[0, 1]`` (step ``1/(n_stats-1)``) and picked by the truncation value given to the network.
* self-attention (SAGAN: theta/phi ``C//8``, g ``C//2``, phi and g 2x2 max-pooled, o_conv,
  ``x + gamma * o``, all 1x1 SN convs without bias) before the ``GenBlock`` at
  ``attention_layer_position``.
* output: unconditional BatchNorm (standing statistics, learned ``weight``/``bias``), ReLU,
  SN 3x3 ``conv_to_rgb`` ``ch -> ch`` of which channels ``[:3]`` are kept, tanh.
* spectral norm in eval mode (torch's ``nn.utils.spectral_norm``, no power iteration):
  ``W = weight_orig / (u . (W_mat v))`` with the stored ``weight_u``, ``weight_v``.

Standing-statistics interpolation, faithful by default: the package computes
``coef, i = modf(truncation / step)`` and uses ``stats[i] * coef + stats[i+1] * (1 - coef)``
(the weights are swapped relative to linear interpolation, so e.g. truncation 0.41 with 51 stats
uses 0.5*s[20] + 0.5*s[21], and 0.402 uses 0.1*s[20] + 0.9*s[21]); ``stats_interp='linear'``
uses ``stats[i] * (1 - coef) + stats[i+1] * coef`` instead. Both agree on the tabulated values.
The truncation must lie in ``(0, 1]`` (the package asserts it).

Variables (torch state-dict names, ``generator.`` dropped, ``layers.K`` -> ``layers_K``; torch
layouts, OIHW convolutions and ``[out, in]`` linears): ``params`` hold ``weight_orig``, ``bias``,
``gamma``, ``weight`` (embeddings, final BN), ``buffers`` hold ``weight_u``, ``weight_v``,
``running_means``, ``running_vars``. Images: ``[B, R, R, 3]`` NHWC in ``[-1, 1]``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

BUFFER_NAMES = ("weight_u", "weight_v", "running_means", "running_vars")


@dataclasses.dataclass(frozen=True)
class PretrainedBigGANConfig:
    """``pytorch-pretrained-biggan``'s ``BigGANConfig`` (its ``config.json`` keys).

    resolution: output side ``R`` in pixels (``output_dim``; ``4 * 2**#upsampling blocks``).
    z_dim: latent width; also the class-embedding width (the condition vector is ``2*z_dim``).
    channel_width: ``ch``; a block's widths are ``ch * layers[k][1] -> ch * layers[k][2]``.
    n_classes: number of classes (``num_classes``).
    layers: per ``GenBlock`` ``(upsample, in multiplier, out multiplier)``.
    attention_layer_position: index of the block that self-attention precedes.
    eps: spectral-norm and BatchNorm epsilon (the package uses ``config.eps`` for both).
    n_stats: number of tabulated standing-statistics truncation values.
    """

    resolution: int = 128
    z_dim: int = 128
    channel_width: int = 128
    n_classes: int = 1000
    layers: tuple = ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
                     (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1))
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    def __post_init__(self):
        layers = tuple((bool(u), int(a), int(b)) for u, a, b in self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise ValueError("PretrainedBigGANConfig: layers is empty")
        for k, (_, a, b) in enumerate(layers):
            if a < 1 or b < 1 or (a != b and b * 2 != a):
                raise ValueError(f"PretrainedBigGANConfig: layer {k} multipliers ({a}, {b}): the output must equal "
                                 f"the input or half of it")
            if self.channel_width * a % 4:
                raise ValueError(f"PretrainedBigGANConfig: layer {k} width {self.channel_width * a} not divisible by 4")
        if layers[0][1] != 16:
            raise ValueError("PretrainedBigGANConfig: the first layer's input multiplier must be 16 (gen_z gives 16*ch)")
        if layers[-1][2] != 1:
            raise ValueError("PretrainedBigGANConfig: the last layer's output multiplier must be 1 (conv_to_rgb is ch)")
        for k in range(1, len(layers)):
            if layers[k][1] != layers[k - 1][2]:
                raise ValueError(f"PretrainedBigGANConfig: layer {k} input multiplier {layers[k][1]} != layer {k - 1} "
                                 f"output {layers[k - 1][2]}")
        if 4 * 2 ** sum(u for u, _, _ in layers) != self.resolution:
            raise ValueError(f"PretrainedBigGANConfig: {sum(u for u, _, _ in layers)} upsampling layers give "
                             f"{4 * 2 ** sum(u for u, _, _ in layers)} px, not resolution {self.resolution}")
        if not 0 <= self.attention_layer_position < len(layers):
            raise ValueError(f"PretrainedBigGANConfig: attention_layer_position {self.attention_layer_position} "
                             f"outside [0, {len(layers)})")
        if self.channel_width * layers[self.attention_layer_position][1] < 8:
            raise ValueError("PretrainedBigGANConfig: the attention width must be >= 8")
        if self.ch < 3 or self.z_dim < 1 or self.n_classes < 1 or self.n_stats < 2 or not self.eps > 0:
            raise ValueError(f"PretrainedBigGANConfig: invalid values {self}")

    @property
    def ch(self) -> int:
        return int(self.channel_width)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = [list(x) for x in self.layers]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")
        return cls(**d)

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)


def stats_weights(truncation: float, n_stats: int, interp: str = "released") -> tuple[int, float, float]:
    """``(i, w_i, w_i+1)`` so that the statistics are ``w_i * s[i] + w_i+1 * s[i+1]`` (host floats)."""
    truncation = float(truncation)
    if not 0 < truncation <= 1:
        raise ValueError(f"truncation must lie in (0, 1], got {truncation}")
    coef, start = math.modf(truncation / (1.0 / (n_stats - 1)))
    start = int(start)
    if coef == 0.0:
        return start, 1.0, 0.0
    if interp == "released":
        return start, coef, 1.0 - coef
    if interp == "linear":
        return start, 1.0 - coef, coef
    raise ValueError(f"stats_interp must be 'released' or 'linear', got {interp!r}")


def _sn(weight_orig, u, v):
    w = weight_orig.reshape(weight_orig.shape[0], -1)
    sigma = jnp.dot(u, jnp.dot(w, v))
    return weight_orig / sigma


class _SN(nn.Module):
    """Spectral-normalised weight ``[out, *rest]`` (eval mode) plus an optional bias."""
    shape: tuple
    use_bias: bool = True

    def setup(self):
        self.weight_orig = self.param("weight_orig", nn.initializers.normal(0.05), self.shape)
        n_in = int(math.prod(self.shape[1:]))
        self.weight_u = self.variable("buffers", "weight_u", lambda: _unit(self.shape[0], 1))
        self.weight_v = self.variable("buffers", "weight_v", lambda: _unit(n_in, 2))
        if self.use_bias:
            self.bias = self.param("bias", nn.initializers.zeros, (self.shape[0],))

    def weight(self):
        return _sn(self.weight_orig, self.weight_u.value, self.weight_v.value)

    def linear(self, x):
        y = x @ self.weight().T
        return y + self.bias if self.use_bias else y

    def conv(self, x):
        w = jnp.transpose(self.weight(), (2, 3, 1, 0))  # OIHW -> HWIO
        pad = (w.shape[0] - 1) // 2
        y = jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                         precision=jax.lax.Precision.HIGHEST)
        return y + self.bias if self.use_bias else y


def _unit(n, seed):
    x = jax.random.normal(jax.random.key(seed), (n,))
    return x / jnp.linalg.norm(x)


class _BN(nn.Module):
    """Standing-statistics BatchNorm; conditional (SN ``scale``/``offset`` of ``cond``) or affine."""
    features: int
    cond_dim: int | None
    n_stats: int
    eps: float

    def setup(self):
        self.running_means = self.variable("buffers", "running_means", jnp.zeros, (self.n_stats, self.features))
        self.running_vars = self.variable("buffers", "running_vars", jnp.ones, (self.n_stats, self.features))
        if self.cond_dim is not None:
            self.scale = _SN((self.features, self.cond_dim), use_bias=False)
            self.offset = _SN((self.features, self.cond_dim), use_bias=False)
        else:
            self.weight = self.param("weight", nn.initializers.ones, (self.features,))
            self.bias = self.param("bias", nn.initializers.zeros, (self.features,))

    def __call__(self, x, stats, cond=None):
        i, wa, wb = stats
        mean, var = self.running_means.value[i] * wa, self.running_vars.value[i] * wa
        if wb:
            mean = mean + self.running_means.value[i + 1] * wb
            var = var + self.running_vars.value[i + 1] * wb
        xn = (x - mean) / jnp.sqrt(var + self.eps)
        if self.cond_dim is not None:
            gain = 1 + self.scale.linear(cond)
            return xn * gain[:, None, None, :] + self.offset.linear(cond)[:, None, None, :]
        return xn * self.weight + self.bias


def _up(x):
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class _GenBlock(nn.Module):
    cin: int
    cout: int
    up: bool
    cond_dim: int
    n_stats: int
    eps: float

    @nn.compact
    def __call__(self, x, cond, stats):
        mid = self.cin // 4
        h = x
        for k, (ci, co, ks) in enumerate(((self.cin, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, self.cout, 1))):
            h = _BN(ci, self.cond_dim, self.n_stats, self.eps, name=f"bn_{k}")(h, stats, cond)
            h = jax.nn.relu(h)
            if k == 1 and self.up:
                h = _up(h)
            h = _SN((co, ci, ks, ks), name=f"conv_{k}").conv(h)
        if self.cin != self.cout:
            x = x[..., :self.cin // 2]
        if self.up:
            x = _up(x)
        return h + x


class _SelfAttn(nn.Module):
    ch: int

    @nn.compact
    def __call__(self, x):
        b, hh, ww, c = x.shape
        conv = lambda name, co, ci: _SN((co, ci, 1, 1), use_bias=False, name=name)  # noqa: E731
        pool = lambda t: nn.max_pool(t, (2, 2), (2, 2))  # noqa: E731
        hp = jax.lax.Precision.HIGHEST
        theta = conv("snconv1x1_theta", c // 8, c).conv(x).reshape(b, hh * ww, c // 8)
        phi = pool(conv("snconv1x1_phi", c // 8, c).conv(x)).reshape(b, hh * ww // 4, c // 8)
        attn = jax.nn.softmax(jnp.einsum("bic,bjc->bij", theta, phi, precision=hp), axis=-1)
        g = pool(conv("snconv1x1_g", c // 2, c).conv(x)).reshape(b, hh * ww // 4, c // 2)
        o = jnp.einsum("bij,bjc->bic", attn, g, precision=hp).reshape(b, hh, ww, c // 2)
        o = conv("snconv1x1_o_conv", c, c // 2).conv(o)
        gamma = self.param("gamma", nn.initializers.zeros, (1,))
        return x + gamma * o


class _Embed(nn.Module):
    z_dim: int
    n_classes: int

    @nn.compact
    def __call__(self):
        return self.param("weight", nn.initializers.normal(0.05), (self.z_dim, self.n_classes))


class PretrainedBigGANGenerator(nn.Module):
    """``G(z [B, z_dim], y [B] int class, truncation) -> [B, R, R, 3]`` in eval mode (see module doc).

    ``truncation`` (a Python float in ``(0, 1]``, static) selects the standing statistics; the
    caller scales ``z`` by it (the package's ``truncation * truncnorm(-2, 2)`` latents).
    """
    config: PretrainedBigGANConfig

    @nn.compact
    def __call__(self, z, y, truncation: float = 1.0, stats_interp: str = "released"):
        cfg = self.config
        ch, cond_dim = cfg.ch, 2 * cfg.z_dim
        stats = stats_weights(truncation, cfg.n_stats, stats_interp)
        emb = _Embed(cfg.z_dim, cfg.n_classes, name="embeddings")()
        cond = jnp.concatenate([z.astype(jnp.float32), jnp.take(emb.T, y, axis=0)], axis=1)
        h = _SN((16 * ch * 16, cond_dim), name="gen_z").linear(cond).reshape(-1, 4, 4, 16 * ch)
        k = 0
        for i, (up, a, b) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                h = _SelfAttn(ch * a, name=f"layers_{k}")(h)
                k += 1
            h = _GenBlock(ch * a, ch * b, up, cond_dim, cfg.n_stats, cfg.eps, name=f"layers_{k}")(h, cond, stats)
            k += 1
        h = jax.nn.relu(_BN(ch, None, cfg.n_stats, cfg.eps, name="bn")(h, stats))
        h = _SN((ch, ch, 3, 3), name="conv_to_rgb").conv(h)
        return jnp.tanh(h[..., :3])


def generator_macs(cfg: PretrainedBigGANConfig) -> int:
    """Multiply-accumulates of one image, counted as :mod:`.cost` does for BigGAN-PyTorch (convs
    ``H·W·k²·C_in·C_out``, linears ``in·out``, the attention products; element-wise ops, pooling
    and the class-embedding lookup free). ``conv_to_rgb`` counts all ``ch`` outputs, as computed."""
    ch, cond = cfg.ch, 2 * cfg.z_dim
    macs = cond * 16 * ch * 16  # gen_z
    res = 4
    for i, (up, a, b) in enumerate(cfg.layers):
        cin, cout = ch * a, ch * b
        mid = cin // 4
        if i == cfg.attention_layer_position:
            hw, c = res * res, cin
            macs += hw * c * (c // 8) * 2 + hw * c * (c // 2) + hw * (c // 2) * c  # theta, phi, g, o_conv
            macs += hw * (hw // 4) * (c // 8) + hw * (hw // 4) * (c // 2)  # theta·phi, attn·g
        macs += 2 * cond * (cin + 3 * mid)  # scale/offset linears of bn_0..bn_3
        macs += res * res * cin * mid  # conv_0 (1x1) before upsampling
        res = res * 2 if up else res
        macs += res * res * (9 * mid * mid * 2 + mid * cout)  # conv_1, conv_2 (3x3), conv_3 (1x1)
    return int(macs + res * res * 9 * ch * ch)  # conv_to_rgb
