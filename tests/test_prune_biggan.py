"""BigGAN generator pruning: ratio 0 is the identity; a pruned student equals the masked teacher."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from gancomp_jax.models.biggan import BigGANGenerator, BigGANGeneratorConfig, init_generator
from gancomp_jax.prune import biggan as pb


@pytest.fixture(scope="module")
def teacher():
    # attention after the 16 px block: res2 must stay; non-trivial BN statistics and SN vectors
    cfg = BigGANGeneratorConfig.biggan(32, ch=4, attention="16", dim_z=8, shared_dim=4, n_classes=5)
    # the real architecture's variable tree (shapes from tracing init, no compilation), random
    # values: weights, SN vectors u, non-trivial BN statistics, attention gamma ≠ 0
    shapes = jax.eval_shape(lambda k: init_generator(cfg, k), jax.random.key(0))
    rng = np.random.RandomState(0)

    def perturb(path, x):
        name = jax.tree_util.keystr(path)
        if name.endswith("['stored_mean']"):
            return rng.randn(*x.shape).astype(np.float32) * 0.3
        if name.endswith("['stored_var']"):
            return rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
        if name.endswith("['gamma']"):
            return np.float32(0.7)
        if "['sv" in name:
            return np.ones(x.shape, np.float32)
        return (rng.randn(*x.shape) * (0.3 if "['params']" in name else 1.0)).astype(np.float32)
    v = jax.tree_util.tree_map_with_path(perturb, shapes)
    z = np.random.RandomState(1).randn(6, cfg.z_dim).astype(np.float32)
    y = np.arange(6) % 5
    return cfg, v, z, y


def _run(cfg, v, z, y):
    return np.asarray(jax.jit(lambda v, z, y: BigGANGenerator(cfg).apply(v, z, y))(v, z, y))


def test_ratio_zero_is_identity(teacher):
    cfg, v, z, y = teacher
    cfg2, v2, keep = pb.prune_generator(v, cfg, ratio=0.0)
    assert cfg2.channels == cfg.channels
    np.testing.assert_array_equal(_run(cfg2, v2, z, y), _run(cfg, v, z, y))


def test_l1_student_equals_masked_teacher(teacher):
    cfg, v, z, y = teacher
    cfg2, v2, keep = pb.prune_generator(v, cfg, divisor=2)
    assert cfg2.channels == (8, 8, 16, 8) and cfg2.hidden == (8, 8, 8)  # res2 (attention) kept
    # ℓ1 picks what numpy picks: conv1 output filters; conv2 + conv_sc for a residual width
    w1 = np.asarray(v["params"]["blocks_1_0"]["conv1"]["weight"])
    want = np.sort(np.argsort(-np.abs(w1).sum(axis=(0, 1, 2)), kind="stable")[:8])
    np.testing.assert_array_equal(keep["hidden1"], want)
    p = v["params"]["blocks_2_0"]
    s = np.abs(np.asarray(p["conv2"]["weight"])).sum((0, 1, 2)) + np.abs(np.asarray(p["conv_sc"]["weight"])).sum((0, 1, 2))
    np.testing.assert_array_equal(keep["res3"], np.sort(np.argsort(-s, kind="stable")[:8]))
    lin = np.abs(np.asarray(v["params"]["linear"]["weight"])).sum(0).reshape(16, 16).sum(1)
    np.testing.assert_array_equal(keep["res0"], np.sort(np.argsort(-lin, kind="stable")[:8]))
    student = _run(cfg2, v2, z, y)
    masked = _run(cfg, pb.mask_generator(v, cfg, keep), z, y)
    teacher_out = _run(cfg, v, z, y)
    # float rounding only (tanh outputs in [-1, 1]; sums of at most a few hundred float32 terms)
    np.testing.assert_allclose(student, masked, atol=2e-5, rtol=0)
    assert np.abs(student - teacher_out).max() > 1e-2  # pruning really changed the function
    # 'first' keeps the leading channels
    _, _, keep_first = pb.prune_generator(v, cfg, ratio=0.5, criterion="first")
    np.testing.assert_array_equal(keep_first["hidden0"], np.arange(8))
    with pytest.raises(ValueError, match="ratio"):
        pb.prune_generator(v, cfg, ratio=1.0)


def test_pruned_model_directory_round_trip(teacher, tmp_path):
    """G and G_ema pruned alike (channels from G_ema), D kept; the saved directory loads back."""
    from gancomp_jax import checkpoints
    from gancomp_jax.models.network import Network

    cfg, v, z, y = teacher
    nets = {"G": Network("biggan_generator", cfg, v), "G_ema": Network("biggan_generator", cfg, v)}
    out, keep = pb.prune_networks(nets, divisor=2)
    _, v2, keep2 = pb.prune_generator(v, cfg, divisor=2)
    assert all(np.array_equal(keep[k], keep2[k]) for k in keep)
    checkpoints.save_model(tmp_path / "student", out, {"source": "test"})
    back = checkpoints.load_any(str(tmp_path / "student"))
    assert back["G_ema"].config == out["G_ema"].config
    np.testing.assert_array_equal(_run(back["G_ema"].config, back["G_ema"].variables, z, y),
                                  _run(out["G"].config, v2, z, y))
