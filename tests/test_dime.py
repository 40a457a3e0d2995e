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


# ----------------------------------------------------------------------------- dime_stats

from gancomp_jax.losses import dime_stats as ds  # noqa: E402


def _tiny_embedder(seed, d):
    """A small random embedder (mean-pooled random 3→d projection + tanh), not pretrained."""
    w = np.random.RandomState(seed).randn(3, d).astype(np.float32)
    return jax.jit(lambda imgs: jnp.tanh(jnp.mean(jnp.asarray(imgs) @ w, axis=(1, 2))))


def test_compute_matches_direct_moments_and_resumes(tmp_path):
    get, total = ds.data_batches("digits", 16)
    emb = {"dino": _tiny_embedder(0, 5), "clip": _tiny_embedder(1, 3)}
    n = 70
    ref = ds.compute_global_stats(emb, get, n, 16, progress=False, keep_bank=True)
    imgs = np.concatenate([get(i) for i in range(5)])[:n]
    for e in emb:
        f = np.asarray(emb[e](imgs), np.float64)
        np.testing.assert_allclose(ref[f"global_{e}_first"], f.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ref[f"global_{e}_second"], (f ** 2).mean(0), rtol=1e-5, atol=1e-6)
        assert ref[f"bank_{e}"].shape == (n, f.shape[1])

    partial = tmp_path / "p.npz"

    def failing(i):
        if i == 3:
            raise KeyboardInterrupt
        return get(i)

    with pytest.raises(KeyboardInterrupt):
        ds.compute_global_stats(emb, failing, n, 16, partial, keep_bank=True, checkpoint_every=1,
                                progress=False, meta={"a": 1})
    assert partial.is_file()
    resumed = ds.compute_global_stats(emb, get, n, 16, partial, keep_bank=True, checkpoint_every=1,
                                      progress=False, meta={"a": 1})
    for k in ref:
        np.testing.assert_array_equal(resumed[k], ref[k])
    with pytest.raises(ValueError, match="different settings"):
        ds.compute_global_stats(emb, get, n, 16, partial, progress=False, meta={"a": 2})


def test_teacher_source_is_deterministic(tmp_path):
    from gancomp_jax.checkpoints import init_network, save_model
    from gancomp_jax.models import get_preset

    g_cfg = get_preset("tiny16").generator
    save_model(tmp_path / "m", {"G_ema": init_network("generator", g_cfg, jax.random.key(0))})
    get = ds.generator_batches(str(tmp_path / "m"), 4, seed=3)
    a, b = get(1), get(1)
    assert a.shape == (4, 16, 16, 3) and np.array_equal(a, b) and not np.array_equal(a, get(0))


@pytest.mark.parametrize("writer", ["builtin", "torch"])
def test_pt_layout_round_trips(tmp_path, writer):
    torch = pytest.importorskip("torch")
    rs = np.random.RandomState(0)
    stats = {f"global_{e}_{m}": rs.randn(d).astype(np.float32)
             for e, d in (("dino", 6), ("clip", 4)) for m in ("first", "second")}
    path = tmp_path / "g.pt"
    assert ds.save_stats(path, stats, writer) == writer
    loaded_torch = torch.load(path, weights_only=True)
    assert set(loaded_torch) == set(stats)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in loaded_torch.values())
    ours = ds.load_stats(path, ["dino", "clip"])
    for k, v in stats.items():
        np.testing.assert_array_equal(loaded_torch[k].numpy(), v)
        np.testing.assert_array_equal(ours[k], v)
    with pytest.raises(ValueError, match="global_foo_first"):
        ds.load_stats(path, ["foo"])
    ds.save_stats(tmp_path / "g.npz", stats)
    np.testing.assert_array_equal(ds.load_stats(tmp_path / "g.npz")["global_clip_second"], stats["global_clip_second"])
    with pytest.raises(FileNotFoundError):
        ds.load_stats(tmp_path / "missing.pt")


def test_cli_errors(tmp_path, capsys):
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "dime_stats_cli", pathlib.Path(__file__).resolve().parents[1] / "tools" / "dime_stats.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["--embedders", "clip_rn50", "--source", "nowhere:x", str(tmp_path / "o.pt")]) == 2
    assert "--source must be" in capsys.readouterr().err
    assert cli.main(["--embedders", "clip_rn50", "--source", "data:digits", str(tmp_path / "o.txt")]) == 2
    assert cli.family("clip_rn50") == "clip" and cli.family("dino_rn50") == "dino"
