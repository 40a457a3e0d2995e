"""Ops against direct numpy references (zero insertion + FIR + crop, explicit loops)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax.ops import (bias_act, conv2d_resample, downsample2d, minibatch_std, modulated_conv2d,
                             setup_filter, upfirdn2d, upsample2d)


def np_conv2d_valid(x, f):
    """True 2-D convolution ('valid') of each channel of NHWC x with 2-D f."""
    kh, kw = f.shape
    fr = f[::-1, ::-1]
    n, h, w, c = x.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, c), np.float64)
    for i in range(kh):
        for j in range(kw):
            out += fr[i, j] * x[:, i:i + h - kh + 1, j:j + w - kw + 1, :]
    return out


def np_upfirdn2d(x, f, up, down, pad, gain):
    """Reference: explicit zero insertion, zero pad / crop, FIR convolution, decimation."""
    x = np.asarray(x, np.float64)
    f = np.asarray(f, np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)
    n, h, w, c = x.shape
    up_x = np.zeros((n, h * up, w * up, c))
    up_x[:, ::up, ::up, :] = x
    x0, x1, y0, y1 = pad
    padded = np.pad(up_x, ((0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0)), (0, 0)))
    hh, ww = padded.shape[1:3]
    padded = padded[:, max(-y0, 0):hh - max(-y1, 0), max(-x0, 0):ww - max(-x1, 0), :]
    y = np_conv2d_valid(padded, f * gain)
    return y[:, ::down, ::down, :]


@pytest.mark.parametrize("up,down,pad,gain,separable", [
    (1, 1, (0, 0, 0, 0), 1.0, True),
    (2, 1, (2, 1, 2, 1), 4.0, True),
    (1, 2, (1, 1, 1, 1), 1.0, True),
    (1, 1, (2, 2, 2, 2), 1.0, False),
    (2, 1, (1, 1, 1, 1), 4.0, False),
    (1, 2, (-1, 2, 0, 1), 1.0, False),
    (2, 2, (1, 0, 3, -1), 2.0, True),
])
def test_upfirdn2d_matches_reference(up, down, pad, gain, separable):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 9, 10, 3).astype(np.float32)
    f1 = setup_filter((1, 3, 3, 1))
    f = f1 if separable else np.outer(f1, f1) + rng.rand(4, 4).astype(np.float32) * 0.1 * (not separable)
    got = np.asarray(upfirdn2d(jnp.asarray(x), f, up=up, down=down, padding=pad, gain=gain))
    want = np_upfirdn2d(x, f, up, down, pad, gain)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_upfirdn2d_asymmetric_filter_is_true_convolution():
    x = np.zeros((1, 5, 5, 1), np.float32)
    x[0, 2, 2, 0] = 1  # impulse
    f = np.array([[1, 2], [3, 4]], np.float32)
    y = np.asarray(upfirdn2d(jnp.asarray(x), f, padding=(1, 0, 1, 0)))[0, :, :, 0]
    # Convolving an impulse reproduces the filter, not its mirror image.
    np.testing.assert_array_equal(y[2:4, 2:4], f)
    y_flip = np.asarray(upfirdn2d(jnp.asarray(x), f, padding=(1, 0, 1, 0), flip_filter=True))[0, :, :, 0]
    np.testing.assert_array_equal(y_flip[2:4, 2:4], f[::-1, ::-1])


def test_resample_shapes_and_dc_gain():
    f = setup_filter()
    x = jnp.ones((1, 8, 8, 2))
    up = upsample2d(x, f)
    down = downsample2d(x, f)
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    # Interior pixels of a constant image keep their value (unit DC gain).
    np.testing.assert_allclose(np.asarray(up)[0, 2:-2, 2:-2], 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(down)[0, 1:-1, 1:-1], 1.0, atol=1e-6)


def test_bias_act_matches_numpy():
    rng = np.random.RandomState(1)
    x = rng.randn(4, 5, 6).astype(np.float32) * 3
    b = rng.randn(6).astype(np.float32)
    y = np.asarray(bias_act(jnp.asarray(x), jnp.asarray(b), act="lrelu", clamp=2.5))
    t = x + b
    want = np.clip(np.where(t >= 0, t, 0.2 * t) * np.sqrt(2), -2.5, 2.5)
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bias_act(jnp.asarray(x), act="linear")), x)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(jnp.asarray(x), act="gelu2")


def np_conv_transpose_stride2(x, w):
    """torch.conv_transpose2d(x, w_torch, stride=2) for HWIO w of the forward conv, by scattering."""
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    out = np.zeros((n, 2 * (h - 1) + kh, 2 * (wd - 1) + kw, o))
    for i in range(h):
        for j in range(wd):
            out[:, 2 * i:2 * i + kh, 2 * j:2 * j + kw, :] += np.einsum("nc,hwco->nhwo", x[:, i, j, :], w)
    return out


def np_corr(x, w, stride=1, pad=0):
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw, _, o = w.shape
    n, h, wd, _ = x.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, oh, ow, o))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", x[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride], w[i, j])
    return out


def test_conv2d_resample_against_numpy():
    rng = np.random.RandomState(2)
    f = setup_filter()
    x = rng.randn(2, 6, 6, 3).astype(np.float32)
    w3 = rng.randn(3, 3, 3, 4).astype(np.float32)
    w1 = rng.randn(1, 1, 3, 4).astype(np.float32)
    # plain
    np.testing.assert_allclose(conv2d_resample(x, w3, padding=1), np_corr(x, w3, pad=1), atol=1e-4)
    # up: transposed conv + FIR(pad 1, gain 4)
    want = np_upfirdn2d(np_conv_transpose_stride2(x, w3), f, 1, 1, (1, 1, 1, 1), 4.0)
    got = conv2d_resample(x, w3, f, up=2, padding=1)
    assert got.shape == (2, 12, 12, 4)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # down: FIR(pad 2) + stride-2 correlation
    want = np_corr(np_upfirdn2d(x, f, 1, 1, (2, 2, 2, 2), 1.0), w3, stride=2)
    got = conv2d_resample(x, w3, f, down=2, padding=1)
    assert got.shape == (2, 3, 3, 4)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # 1x1 down (FIR first) and 1x1 up (conv first)
    want = np_corr(np_upfirdn2d(x, f, 1, 2, (1, 1, 1, 1), 1.0), w1)
    np.testing.assert_allclose(conv2d_resample(x, w1, f, down=2), want, atol=1e-4)
    want = np_upfirdn2d(np_corr(x, w1), f, 2, 1, (2, 1, 2, 1), 4.0)
    np.testing.assert_allclose(conv2d_resample(x, w1, f, up=2), want, atol=1e-4)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_forms_match_per_sample_reference(up, demodulate):
    rng = np.random.RandomState(3)
    f = setup_filter()
    x = rng.randn(3, 5, 5, 4).astype(np.float32)
    w = rng.randn(3, 3, 4, 6).astype(np.float32)
    s = rng.randn(3, 4).astype(np.float32)
    ref = []
    for i in range(3):
        wi = w * s[i][None, None, :, None]
        if demodulate:
            wi = wi / np.sqrt(np.sum(wi.astype(np.float64) ** 2, axis=(0, 1, 2)) + 1e-8)
        ref.append(np.asarray(conv2d_resample(x[i:i + 1], wi.astype(np.float32), f, up=up, padding=1))[0])
    ref = np.stack(ref)
    for impl in ("shared", "grouped"):
        got = np.asarray(modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), demodulate=demodulate,
                                          up=up, padding=1, resample_filter=f, impl=impl))
        np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-4, err_msg=impl)


def test_minibatch_std_matches_numpy_grouping():
    rng = np.random.RandomState(4)
    x = rng.randn(8, 3, 3, 6).astype(np.float32)
    got = np.asarray(minibatch_std(jnp.asarray(x), group_size=4, num_channels=2))
    assert got.shape == (8, 3, 3, 8)
    np.testing.assert_array_equal(got[..., :6], x)
    for i in range(8):
        group = x[i % 2::2]  # strided groups: {0,2,4,6} and {1,3,5,7}
        for f in range(2):
            sl = group[..., f * 3:(f + 1) * 3]
            want = np.sqrt(sl.var(axis=0) + 1e-8).mean()
            np.testing.assert_allclose(got[i, :, :, 6 + f], want, rtol=1e-5)
    with pytest.raises(ValueError, match="not divisible"):
        minibatch_std(jnp.zeros((6, 2, 2, 4)), group_size=4)


def test_ops_are_twice_differentiable():
    f = setup_filter()
    rng = np.random.RandomState(5)
    x = jnp.asarray(rng.randn(2, 4, 4, 3).astype(np.float32))
    w = jnp.asarray(rng.randn(3, 3, 3, 3).astype(np.float32))
    s = jnp.asarray(rng.rand(2, 3).astype(np.float32) + 0.5)

    def net(x):
        y = modulated_conv2d(x, w, s, up=2, padding=1, resample_filter=f)
        y = bias_act(y, act="lrelu")
        y = conv2d_resample(y, w, f, down=2, padding=1)
        return jnp.sum(minibatch_std(y, 2) ** 2)

    def grad_norm(x):
        return jnp.sum(jax.grad(net)(x) ** 2)

    g2 = jax.grad(grad_norm)(x)
    assert g2.shape == x.shape and bool(jnp.all(jnp.isfinite(g2))) and float(jnp.abs(g2).sum()) > 0
    # Finite-difference check of the second-order gradient along a random direction.
    d = jnp.asarray(rng.randn(*x.shape).astype(np.float32))
    eps = 1e-2
    fd = (grad_norm(x + eps * d) - grad_norm(x - eps * d)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(g2 * d)), float(fd), rtol=5e-2)


@pytest.mark.parametrize("up,down,pad,separable", [
    (1, 1, (1, 1, 1, 1), True), (2, 1, (2, 1, 2, 1), True), (1, 2, (1, 1, 1, 1), True),
    (2, 1, (1, 1, 1, 1), False), (1, 2, (-1, 2, 0, 1), False), (2, 2, (1, 0, 3, -1), True),
])
def test_upfirdn2d_custom_gradient_equals_autodiff(up, down, pad, separable):
    """The FIR's hand-written gradient (another upfirdn2d) equals JAX's own derivative."""
    from gancomp_jax.ops.upfirdn2d import _Spec, _upfirdn2d_impl

    rng = np.random.RandomState(6)
    f1 = setup_filter((1, 3, 3, 1))
    f = f1 if separable else np.outer(f1, f1) + rng.rand(4, 4).astype(np.float32) * 0.1
    x = jnp.asarray(rng.randn(2, 7, 8, 3).astype(np.float32))
    spec = _Spec(np.asarray(f, np.float32).tobytes(), f.shape, up, down, pad, 1.5, False)
    y, vjp_custom = jax.vjp(lambda x: upfirdn2d(x, f, up, down, pad, gain=1.5), x)
    y_ref, vjp_auto = jax.vjp(lambda x: _upfirdn2d_impl(x, spec), x)
    np.testing.assert_array_equal(y, y_ref)
    dy = jnp.asarray(rng.randn(*y.shape).astype(np.float32))
    np.testing.assert_allclose(vjp_custom(dy)[0], vjp_auto(dy)[0], atol=1e-5)
