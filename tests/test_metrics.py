"""Metric formulas vs transcriptions of the reference code (NVlabs stylegan2-ada-pytorch
``metrics/*.py``, pytorch-fid ``fid_score.py``), feature statistics, streaming and caching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from gancomp_jax.metrics import fid, inception_score, kid, ppl, precision_recall
from gancomp_jax.metrics.runner import (Detector, GeneratorSpec, compute_feature_stats_for_dataset,
                                        compute_feature_stats_for_generator, generator_batches)
from gancomp_jax.metrics.stats_cache import FeatureStats
from gancomp_jax.models import Generator, get_preset
from gancomp_jax import checkpoints


def _features(seed, n, d, shift=0.0):
    rng = np.random.RandomState(seed)
    return (rng.randn(n, d) * rng.uniform(0.5, 2.0, size=d) + shift).astype(np.float32)


# ----------------------------------------------------------------------------- FeatureStats
def test_feature_stats_mean_cov_match_numpy_and_stream():
    x = _features(0, 103, 16, shift=3.0)
    s = FeatureStats(capture_all=True, capture_mean_cov=True, max_items=100)
    for i in range(0, 103, 7):  # batches; rows past max_items are dropped
        s.append(x[i:i + 7])
    assert s.num_items == 100 and s.is_full()
    mu, cov = s.get_mean_cov()
    x64 = x[:100].astype(np.float64)
    np.testing.assert_allclose(mu, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x64, rowvar=False, bias=True), rtol=1e-9, atol=1e-12)
    _, cov1 = s.get_mean_cov(ddof=1)
    np.testing.assert_allclose(cov1, np.cov(x64, rowvar=False), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(s.get_all(), x[:100])


def test_feature_stats_save_load(tmp_path):
    s = FeatureStats(capture_all=True, capture_mean_cov=True)
    s.append(_features(1, 20, 4))
    s.save(tmp_path / "s.npz")
    t = FeatureStats.load(tmp_path / "s.npz")
    assert t.num_items == 20 and t.max_items is None
    np.testing.assert_array_equal(t.get_all(), s.get_all())
    np.testing.assert_array_equal(t.get_mean_cov()[1], s.get_mean_cov()[1])
    with pytest.raises(FileNotFoundError):
        FeatureStats.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError):
        FeatureStats.load(tmp_path / "bad.npz")


# ----------------------------------------------------------------------------- FID
def _nvlabs_fid(mu_gen, sigma_gen, mu_real, sigma_real):
    # frechet_inception_distance.compute_fid
    m = np.square(mu_gen - mu_real).sum()
    s = scipy.linalg.sqrtm(np.dot(sigma_gen, sigma_real))
    return float(np.real(m + np.trace(sigma_gen + sigma_real - s * 2)))


def test_fid_nvlabs_formula_and_biased_covariance():
    a, b = _features(2, 300, 12), _features(3, 200, 12, shift=0.3)
    sa, sb = FeatureStats(capture_mean_cov=True), FeatureStats(capture_mean_cov=True)
    sa.append(a)
    sb.append(b)
    got = fid.fid_from_stats(sa, sb, "nvlabs")
    ma, ca = a.astype(np.float64).mean(0), np.cov(a.astype(np.float64), rowvar=False, bias=True)
    mb, cb = b.astype(np.float64).mean(0), np.cov(b.astype(np.float64), rowvar=False, bias=True)
    assert got == pytest.approx(_nvlabs_fid(ma, ca, mb, cb), rel=1e-10)
    # pytorch-fid: np.cov (unbiased) and its own distance function
    mu1, s1 = a.astype(np.float64).mean(0), np.cov(a.astype(np.float64), rowvar=False)
    mu2, s2 = b.astype(np.float64).mean(0), np.cov(b.astype(np.float64), rowvar=False)
    got_pt = fid.fid_from_stats(sa, sb, "pytorch_fid")
    assert got_pt == pytest.approx(_pytorch_fid_distance(mu1, s1, mu2, s2), rel=1e-9)
    assert got_pt != pytest.approx(got, rel=1e-6)  # the two conventions differ
    assert fid.frechet_distance(ma, ca, ma, ca) == pytest.approx(0.0, abs=1e-8)


def _pytorch_fid_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    try:  # the real function when pytorch-fid is installed (with a torchvision stand-in)
        import fid_reference
        _, fid_score = fid_reference.install()
        return float(fid_score.calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps))
    except ImportError:  # transcription of fid_score.calculate_frechet_distance
        diff = mu1 - mu2
        covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
        covmean = covmean.real
        return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_fid_rejects_bad_shapes():
    with pytest.raises(ValueError, match="mean vectors"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="convention"):
        fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3), convention="tf")


# ----------------------------------------------------------------------------- KID
def _nvlabs_kid(real_features, gen_features, num_subsets, max_subset_size, seed):
    np.random.seed(seed)  # NVlabs draws from the global numpy RNG
    n = real_features.shape[1]
    m = min(min(real_features.shape[0], gen_features.shape[0]), max_subset_size)
    t = 0
    for _subset_idx in range(num_subsets):
        x = gen_features[np.random.choice(gen_features.shape[0], m, replace=False)]
        y = real_features[np.random.choice(real_features.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


def test_kid_matches_nvlabs():
    real, gen = _features(4, 150, 32), _features(5, 120, 32, shift=1.0)
    got = kid.kernel_inception_distance(real, gen, num_subsets=10, max_subset_size=100, seed=3)
    assert got == pytest.approx(_nvlabs_kid(real, gen, 10, 100, 3), rel=1e-12)
    same = kid.kernel_inception_distance(real, real, 5, 100, seed=0)
    assert abs(same) < 0.1 * got


# ----------------------------------------------------------------------------- precision/recall
def _nvlabs_pr(real_features, gen_features, nhood_size, row_batch_size, col_batch_size):
    import torch
    real = torch.from_numpy(real_features).to(torch.float16)
    gen = torch.from_numpy(gen_features).to(torch.float16)

    def distances(rows, cols):  # torch.cdist on float16 (CUDA); CPU torch computes it in float32
        out = []
        for cb in cols.split(col_batch_size):
            out.append(torch.cdist(rows.float().unsqueeze(0), cb.float().unsqueeze(0))[0].to(torch.float16))
        return torch.cat(out, dim=1)

    results = {}
    for name, manifold, probes in [("precision", real, gen), ("recall", gen, real)]:
        kth = []
        for mb in manifold.split(row_batch_size):
            dist = distances(mb, manifold)
            kth.append(dist.to(torch.float32).kthvalue(nhood_size + 1).values.to(torch.float16))
        kth = torch.cat(kth)
        pred = []
        for pb in probes.split(row_batch_size):
            dist = distances(pb, manifold)
            pred.append((dist <= kth).any(dim=1))
        results[name] = float(torch.cat(pred).to(torch.float32).mean())
    return results["precision"], results["recall"]


def test_precision_recall_matches_nvlabs():
    pytest.importorskip("torch")
    real, gen = _features(6, 90, 24), _features(7, 70, 24, shift=0.8)
    got = precision_recall.precision_recall(real, gen, nhood_size=3, row_batch_size=32, col_batch_size=40)
    want = _nvlabs_pr(real, gen, 3, 32, 40)
    assert got[0] == pytest.approx(want[0], abs=1.5 / 70)  # at most one fp16 borderline flip
    assert got[1] == pytest.approx(want[1], abs=1.5 / 90)
    assert 0 < got[0] < 1 and 0 < got[1] < 1
    assert precision_recall.precision_recall(real, real, 3) == (1.0, 1.0)


# ----------------------------------------------------------------------------- IS
def test_inception_score_matches_nvlabs():
    pool = np.abs(_features(8, 50, 16))
    w = _features(9, 20, 16)
    probs = inception_score.softmax_no_bias(pool, w)
    logits = pool.astype(np.float64) @ w.astype(np.float64).T
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-10)
    scores = []
    for i in range(5):  # inception_score.compute_is
        part = probs[i * 50 // 5:(i + 1) * 50 // 5]
        k = part * (np.log(part) - np.log(np.mean(part, axis=0, keepdims=True)))
        scores.append(np.exp(np.mean(np.sum(k, axis=1))))
    assert inception_score.inception_score(probs, 5) == pytest.approx((np.mean(scores), np.std(scores)), rel=1e-12)


# ----------------------------------------------------------------------------- PPL
def test_ppl_trimmed_mean_matches_nvlabs():
    d = np.random.RandomState(0).gamma(2.0, size=1001) ** 3
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    assert ppl.trimmed_mean(d) == pytest.approx(np.extract(np.logical_and(d >= lo, d <= hi), d).mean(), rel=1e-12)


def _tiny_generator(seed=0):
    cfg = get_preset("tiny16").generator
    net = checkpoints.init_network("generator", cfg, jax.random.key(seed))
    return Generator(cfg), jax.tree.map(np.asarray, net.variables)


def _mse_lpips(params, x0, x1):
    """Stand-in perceptual distance for plumbing tests: per-image mean squared difference × params."""
    return params * jnp.mean(jnp.square(x0 - x1), axis=(1, 2, 3))


def test_ppl_sampler_matches_transcription():
    G, v = _tiny_generator()
    eps = 1e-2
    sample = ppl.make_ppl_sampler(G, _mse_lpips, epsilon=eps, space="w", sampling="full", crop=False)
    key = jax.random.key(7)
    n = 3
    got = np.asarray(sample(v, 2.0, None, key, n))
    # Transcription of PPLSampler.forward with the same draws.
    k_t, k_z, k_noise = jax.random.split(key, 3)
    t = np.asarray(jax.random.uniform(k_t, (n,)))
    z = jax.random.normal(k_z, (2 * n, G.config.z_dim))
    ws = np.asarray(jax.jit(lambda v, z: G.apply(v, z, None, method=Generator.map))(v, z))
    w0, w1 = ws[:n], ws[n:]
    wt0 = w0 + (w1 - w0) * t[:, None, None]
    wt1 = w0 + (w1 - w0) * (t[:, None, None] + eps)
    vv = ppl.randomize_noise_const(v, k_noise)
    img = np.asarray(jax.jit(lambda v, w: G.apply(v, w, "const", method=Generator.synthesize))(
        vv, jnp.concatenate([wt0, wt1])))
    want = 2.0 * np.mean((img[:n] - img[n:]) ** 2, axis=(1, 2, 3)) / eps ** 2
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # the noise buffers really are re-drawn
    flat_old = jax.tree_util.tree_leaves_with_path(v)
    changed = [p for (p, a), b in zip(flat_old, jax.tree.leaves(vv)) if not np.array_equal(a, b)]
    assert changed and all("noise_const" in jax.tree_util.keystr(p) for p in changed)


def test_box_downsample_and_compute_ppl_runs():
    x = jnp.arange(2 * 8 * 8 * 3, dtype=jnp.float32).reshape(2, 8, 8, 3)
    np.testing.assert_allclose(ppl.box_downsample(x, 4),
                               np.asarray(x).reshape(2, 4, 2, 4, 2, 3).mean((2, 4)))
    G, v = _tiny_generator()
    value = ppl.compute_ppl(G, v, _mse_lpips, 1.0, num_samples=8, batch_size=4, progress=False)
    assert np.isfinite(value) and value > 0
    cagc = ppl.compute_ppl(G, v, _mse_lpips, 1.0, num_samples=8, batch_size=4, variant="cagc", progress=False)
    assert np.isfinite(cagc) and cagc > 0


# ----------------------------------------------------------------------------- streaming, sharding, cache
def _mean_pool_detector():
    def fn(_, images):
        x = jnp.asarray(images, jnp.float32)
        return jnp.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=-1)
    return Detector("meanpool", fn, None, cache_key=("meanpool", 1))


def test_generator_stream_is_batch_independent_and_quantised():
    G, v = _tiny_generator()
    spec = GeneratorSpec(G, v, noise_mode="const")
    a = np.concatenate(list(generator_batches(spec, 10, batch_size=4, progress=False)))
    b = np.concatenate(list(generator_batches(spec, 10, batch_size=8, progress=False)))
    assert a.dtype == np.uint8 and a.shape == (10, 16, 16, 3)
    np.testing.assert_array_equal(a, b)
    z = np.random.RandomState(0).randn(10, G.config.z_dim).astype(np.float32)
    img = np.asarray(jax.jit(lambda v, z: G.apply(v, z, noise_mode="const"))(v, z))
    want = np.clip(img * 127.5 + 128, 0, 255).astype(np.uint8)  # NVlabs quantisation
    assert np.mean(a != want) < 0.01  # identical up to float rounding at level boundaries
    det = _mean_pool_detector()
    stats = compute_feature_stats_for_generator(spec, det, 10, batch_size=4, capture_all=True, progress=False)
    np.testing.assert_allclose(stats.get_all(), np.asarray(det.fn(None, a)), rtol=1e-5)


def test_dataset_stats_cached(tmp_path, monkeypatch):
    from gancomp_jax.data import DigitsSource
    monkeypatch.setenv("GANCOMP_CACHE_DIR", str(tmp_path))
    src = DigitsSource(16)
    det = _mean_pool_detector()
    s1 = compute_feature_stats_for_dataset(src, det, max_items=40, batch_size=16, capture_mean_cov=True, progress=False)
    files = list((tmp_path / "gan-metrics").glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("digits-meanpool-")
    images = np.stack([src[i]["image"] for i in range(40)])
    feats = np.asarray(det.fn(None, images), np.float64)
    np.testing.assert_allclose(s1.get_mean_cov()[0], feats.mean(0), rtol=1e-6)
    called = []
    det2 = Detector("meanpool", lambda p, x: called.append(1) or det.fn(p, x), None, cache_key=("meanpool", 1))
    s2 = compute_feature_stats_for_dataset(src, det2, max_items=40, batch_size=16, capture_mean_cov=True, progress=False)
    assert not called  # loaded from the cache
    np.testing.assert_array_equal(s2.get_mean_cov()[1], s1.get_mean_cov()[1])
    compute_feature_stats_for_dataset(src, det, max_items=20, batch_size=16, capture_mean_cov=True, progress=False)
    assert len(list((tmp_path / "gan-metrics").glob("*.npz"))) == 2  # options are part of the key


def test_dataset_stats_cache_keyed_by_content_and_verified(tmp_path, monkeypatch, capsys):
    """Images rewritten in place (same names, sizes and even mtimes) get new statistics; an
    edited, damaged or foreign cache file is not used (warning, recomputed, rewritten)."""
    import io as _io
    import os
    import zipfile
    from PIL import Image
    from gancomp_jax.data import ImageFolderSource
    monkeypatch.setenv("GANCOMP_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "imgs"
    root.mkdir()

    def write(seed):
        for k in range(6):
            buf = _io.BytesIO()
            Image.fromarray(np.full((16, 16, 3), (seed * 40 + k * 7) % 256, np.uint8)).save(buf, "BMP")
            p = root / f"{k}.bmp"
            st = p.stat() if p.exists() else None
            p.write_bytes(buf.getvalue())  # BMP: same size whatever the pixels
            if st is not None:
                os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    det = _mean_pool_detector()
    calls = []
    counting = Detector("meanpool", lambda p, x: calls.append(1) or np.asarray(det.fn(p, x)), None,
                        cache_key=("meanpool", 1), traceable=False)  # host callable: every call counted

    def stats():
        return compute_feature_stats_for_dataset(ImageFolderSource(root, 16), counting, batch_size=8,
                                                 capture_mean_cov=True, progress=False).get_mean_cov()[0]

    write(1)
    m1 = stats()
    assert len(calls) == 1
    calls.clear()
    np.testing.assert_array_equal(stats(), m1)
    assert not calls  # a cache hit
    first = set((tmp_path / "cache" / "gan-metrics").glob("*.npz"))
    write(2)  # rewritten in place, mtimes restored
    m2 = stats()
    assert len(calls) == 1 and not np.allclose(m2, m1)
    (cache_file,) = set((tmp_path / "cache" / "gan-metrics").glob("*.npz")) - first
    # Edit the cached mean (a valid .npz, arrays changed): refused, recomputed.
    with np.load(cache_file) as f:
        d = {k: f[k] for k in f.files}
    d["raw_mean"] = d["raw_mean"] * 2
    np.savez(cache_file, **d)
    calls.clear()
    capsys.readouterr()
    np.testing.assert_array_equal(stats(), m2)
    assert len(calls) == 1 and "do not match its checksum" in capsys.readouterr().err
    # Truncated / not an npz at all: recomputed too.
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    calls.clear()
    np.testing.assert_array_equal(stats(), m2)
    assert len(calls) == 1 and "is not used" in capsys.readouterr().err
    # A valid cache file of other statistics copied over this one: its key differs.
    other = compute_feature_stats_for_dataset(ImageFolderSource(root, 16), counting, max_items=3, batch_size=8,
                                              capture_mean_cov=True, progress=False)
    assert other.num_items == 3
    (other_file,) = set((tmp_path / "cache" / "gan-metrics").glob("*.npz")) - first - {cache_file}
    cache_file.write_bytes(other_file.read_bytes())
    calls.clear()
    capsys.readouterr()
    np.testing.assert_array_equal(stats(), m2)
    assert len(calls) == 1 and "different dataset" in capsys.readouterr().err
    assert zipfile.is_zipfile(cache_file)
