"""MMD² estimators equal a numpy reference, vanish for identical samples, grow with a shift."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax.losses.mmd import median_bandwidth, mmd2_unbiased, sample_bank


def _np_kernel(x, y, kernel, h=None, scales=(0.25, 0.5, 1.0, 2.0, 4.0)):
    if kernel == "gaussian":
        d2 = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
        return np.mean([np.exp(-d2 / (s * h)) for s in scales], axis=0)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _np_mmd2(x, y, kernel, paired=False):
    h = None
    if kernel == "gaussian":
        z = np.concatenate([x, y])
        d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
        h = np.median(d2[np.triu_indices(len(z), 1)])
    kxx, kyy, kxy = (_np_kernel(a, b, kernel, h) for a, b in ((x, x), (y, y), (x, y)))
    n, m = len(x), len(y)
    t_xx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    t_yy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    if paired:
        cross = 2 * (kxy.sum() - np.trace(kxy)) / (n * (n - 1))
    else:
        cross = 2 * kxy.mean()
    return t_xx + t_yy - cross


@pytest.mark.parametrize("kernel", ["gaussian", "polynomial"])
@pytest.mark.parametrize("paired", [False, True])
def test_matches_numpy_reference(kernel, paired):
    rs = np.random.RandomState(0)
    x, y = rs.randn(12, 5), rs.randn(12, 5) + 0.3
    got = float(mmd2_unbiased(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), kernel, paired=paired))
    np.testing.assert_allclose(got, _np_mmd2(x, y, kernel, paired), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kernel", ["gaussian", "polynomial"])
def test_unequal_sizes_against_a_bank(kernel):
    rs = np.random.RandomState(1)
    x, y = rs.randn(8, 4), rs.randn(30, 4)
    got = float(mmd2_unbiased(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), kernel))
    np.testing.assert_allclose(got, _np_mmd2(x, y, kernel), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kernel", ["gaussian", "polynomial"])
def test_zero_for_identical_and_grows_with_mean_shift(kernel):
    rs = np.random.RandomState(2)
    x = jnp.asarray(rs.randn(64, 6), jnp.float32)
    assert abs(float(mmd2_unbiased(x, x, kernel, paired=True))) < 1e-6
    y = jnp.asarray(rs.randn(64, 6), jnp.float32)
    values = [float(mmd2_unbiased(x, y + s, kernel)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert abs(values[0]) < 0.05 * values[-1]
    assert values[0] < values[1] < values[2] < values[3]


def test_gradient_flows_and_bandwidth_is_constant():
    rs = np.random.RandomState(3)
    x, y = jnp.asarray(rs.randn(8, 3), jnp.float32), jnp.asarray(rs.randn(8, 3) + 1, jnp.float32)
    g = jax.grad(lambda a: mmd2_unbiased(a, y))(x)
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).sum()) > 0
    assert float(jnp.abs(jax.grad(lambda a: median_bandwidth(a, y))(x)).sum()) == 0.0


def test_errors_and_bank_sampling():
    with pytest.raises(ValueError, match="unknown MMD kernel"):
        mmd2_unbiased(jnp.ones((4, 2)), jnp.ones((4, 2)), "laplace")
    with pytest.raises(ValueError, match="paired MMD"):
        mmd2_unbiased(jnp.ones((4, 2)), jnp.ones((5, 2)), paired=True)
    bank = jnp.arange(20.0).reshape(10, 2)
    rows = sample_bank(bank, jax.random.key(0), 4)
    assert rows.shape == (4, 2) and len(set(np.asarray(rows)[:, 0].tolist())) == 4
    with pytest.raises(ValueError, match="smaller than"):
        sample_bank(bank, jax.random.key(0), 11)
