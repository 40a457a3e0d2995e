"""The released DiME moment loss equals a hand computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax.losses.dime import dime_loss, moment_loss, released_preprocess


def test_moment_loss_by_hand():
    f = jnp.array([[1.0, 2.0], [3.0, -2.0]])
    # mean f = [2, 0]; mean f² = [5, 4]
    l1, l2 = moment_loss(f, jnp.array([1.0, 1.0]), jnp.array([5.0, 2.0]))
    assert float(l1) == pytest.approx((1 + 1) / 2)
    assert float(l2) == pytest.approx((0 + 2) / 2)


def test_groups_average_per_chunk_losses():
    f = jnp.array([[1.0], [3.0], [0.0], [4.0]])
    g1, g2 = jnp.array([1.0]), jnp.array([0.0])
    l1, l2 = moment_loss(f, g1, g2, groups=2)
    # chunk means 2 and 2 → |1|,|1|; chunk second moments 5 and 8
    assert float(l1) == pytest.approx(1.0)
    assert float(l2) == pytest.approx(6.5)
    with pytest.raises(ValueError, match="moment groups"):
        moment_loss(f, g1, g2, groups=3)


def test_dime_loss_weights_and_keys():
    rs = np.random.RandomState(0)
    feats = {"dino": jnp.asarray(rs.randn(4, 3), jnp.float32), "clip": jnp.asarray(rs.randn(4, 2), jnp.float32)}
    stats = {f"global_{e}_{m}": jnp.asarray(rs.randn(d), jnp.float32)
             for e, d in (("dino", 3), ("clip", 2)) for m in ("first", "second")}
    total, terms = dime_loss(feats, stats)
    ref = 0.0
    for e, lam in (("dino", 20.0), ("clip", 15.0)):
        f = np.asarray(feats[e], np.float64)
        ref += lam * (np.mean(np.abs(f.mean(0) - np.asarray(stats[f"global_{e}_first"])))
                      + np.mean(np.abs((f ** 2).mean(0) - np.asarray(stats[f"global_{e}_second"]))))
    assert float(total) == pytest.approx(ref, rel=1e-5)
    assert set(terms) == {"dino_first", "dino_second", "clip_first", "clip_second"}
    with pytest.raises(ValueError, match="global statistics lack"):
        dime_loss(feats, {k: v for k, v in stats.items() if "clip" not in k})


def test_released_preprocess_clip_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    x = np.random.RandomState(1).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    ours = np.asarray(released_preprocess(jnp.asarray(x), "clip"))
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=224,
                                          mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    big = np.random.RandomState(2).uniform(-1, 1, (1, 256, 256, 3)).astype(np.float32)
    ours = np.asarray(released_preprocess(jnp.asarray(big), "clip"))
    ref = torch.nn.functional.interpolate(torch.from_numpy(big).permute(0, 3, 1, 2), size=224,
                                          mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert released_preprocess(jnp.asarray(x), "dino") is not None
    assert jax.numpy.array_equal(released_preprocess(jnp.asarray(x), "dino"), jnp.asarray(x))
