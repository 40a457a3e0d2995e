"""The JAX Haar transform equals PyWavelets (``pywt.dwt2(..., 'haar', mode='zero')``)."""

import jax.numpy as jnp
import numpy as np
import pytest

pywt = pytest.importorskip("pywt")

from gancomp_jax.losses.haar import haar_dwt2, haar_highband_mse, haar_wavedec2  # noqa: E402
from gancomp_jax.losses.nickel import nickel_feature_matching  # noqa: E402


def _pywt_levels(x2d, levels):
    highs, ll = [], x2d
    for _ in range(levels):
        ll, hi = pywt.dwt2(ll, "haar", mode="zero")
        highs.append(hi)
    return ll, highs


@pytest.mark.parametrize("size", [(16, 16), (7, 5), (1, 1), (6, 9)])
def test_one_level_matches_pywt(size):
    x = np.random.RandomState(0).randn(2, *size, 3).astype(np.float64)
    ll, (h, v, d) = haar_dwt2(jnp.asarray(x, jnp.float32))
    for n in range(2):
        for c in range(3):
            ref_ll, (ref_h, ref_v, ref_d) = pywt.dwt2(x[n, :, :, c], "haar", mode="zero")
            np.testing.assert_allclose(np.asarray(ll)[n, :, :, c], ref_ll, atol=1e-6)
            np.testing.assert_allclose(np.asarray(h)[n, :, :, c], ref_h, atol=1e-6)
            np.testing.assert_allclose(np.asarray(v)[n, :, :, c], ref_v, atol=1e-6)
            np.testing.assert_allclose(np.asarray(d)[n, :, :, c], ref_d, atol=1e-6)


def test_four_levels_match_recursive_pywt():
    x = np.random.RandomState(1).randn(2, 64, 64, 4)
    ll, highs = haar_wavedec2(jnp.asarray(x, jnp.float32), 4)
    assert [hi[0].shape[1] for hi in highs] == [32, 16, 8, 4]
    for n in range(2):
        for c in range(4):
            ref_ll, ref_highs = _pywt_levels(x[n, :, :, c], 4)
            np.testing.assert_allclose(np.asarray(ll)[n, :, :, c], ref_ll, atol=1e-5)
            for ours, ref in zip(highs, ref_highs):
                for band, ref_band in zip(ours, ref):
                    np.testing.assert_allclose(np.asarray(band)[n, :, :, c], ref_band, atol=1e-6)


def test_highband_mse_matches_pywt_reference_and_ignores_low_band():
    rs = np.random.RandomState(2)
    a, b = rs.randn(2, 16, 16, 3), rs.randn(2, 16, 16, 3)
    ref = 0.0
    for j in range(4):
        diffs = []
        for n in range(2):
            for c in range(3):
                ha = _pywt_levels(a[n, :, :, c], j + 1)[1][j]
                hb = _pywt_levels(b[n, :, :, c], j + 1)[1][j]
                diffs.append(np.stack(ha) - np.stack(hb))
        ref += np.mean(np.square(diffs))
    got = float(haar_highband_mse(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), 4))
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # A constant offset lives only in the low band (4 levels of 16 px leave a 1×1 LL).
    shifted = jnp.asarray(a + 3.0, jnp.float32)
    assert float(haar_highband_mse(jnp.asarray(a, jnp.float32), shifted, 4)) < 1e-9


def test_feature_matching_shape_error_and_adapter():
    t = jnp.ones((2, 8, 8, 4))
    with pytest.raises(ValueError, match="NICKEL feature shapes differ"):
        nickel_feature_matching(t, jnp.ones((2, 8, 8, 6)))
    adapter = {"weight": jnp.ones((6, 4)) / 6.0, "bias": jnp.zeros((4,))}
    assert float(nickel_feature_matching(t, jnp.ones((2, 8, 8, 6)), adapter, levels=3)) < 1e-9
