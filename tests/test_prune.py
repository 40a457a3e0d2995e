"""Pruning: width rules, criteria against independent references, exact surgery, the job.

Models are tiny (16 px, widths <= 32) with random values in *every* variable (biases, noise
strengths, affine biases), so zeroed channels would show if the surgery were not exact.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gancomp_jax import checkpoints
from gancomp_jax.models import Generator, GeneratorConfig
from gancomp_jax.models.config import DiscriminatorConfig
from gancomp_jax.prune import criteria as crit
from gancomp_jax.prune.surgery import select_kept, slice_generator
from gancomp_jax.prune.widths import layer_names, ratio_for_reduction, student_widths

CFG = GeneratorConfig(img_resolution=16, channels=(32, 30, 24, 24, 20, 16), z_dim=16, w_dim=16,
                      mapping_layers=2)
DCFG = DiscriminatorConfig(img_resolution=16, channels=(16, 24, 32), mbstd_group_size=2)


def random_variables(kind, config, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.standard_normal(a.shape, dtype=np.float32),
                        checkpoints.abstract_variables(kind, config))


@functools.lru_cache(maxsize=None)
def g_fn(config, noise_mode):
    return jax.jit(lambda v, z, key: Generator(config).apply(v, z, noise_mode=noise_mode, rngs={"noise": key}))


@pytest.fixture(scope="module")
def teacher():
    return checkpoints.Network("generator", CFG, random_variables("generator", CFG, 0))


@pytest.fixture(scope="module")
def all_scores(teacher):
    inputs = crit.ScoringInputs(CFG, teacher.variables, n_sample=8, batch_size=8, seed=3, progress=False)
    return {name: crit.compute_scores(name, inputs) for name in sorted(crit.CRITERIA)}


# --------------------------------------------------------------------------- widths


def test_width_rule_paper256():
    cfg = GeneratorConfig.nvlabs(256, channel_base=16384)
    assert sorted(set(cfg.channels)) == [64, 128, 256, 512]
    for ratio, want in ((0.9, {512: 52, 256: 26, 128: 13, 64: 7}), (0.7, {512: 154, 256: 77, 128: 39, 64: 20})):
        widths = student_widths(cfg, ratio=ratio)
        assert widths == tuple(want[c] for c in cfg.channels)
    assert student_widths(cfg, ratio=0.0) == cfg.channels
    assert layer_names(cfg)[:4] == ["b4.const", "b4.conv1", "b8.conv0", "b8.conv1"]
    assert layer_names(cfg)[-1] == "b256.conv1" and len(layer_names(cfg)) == len(cfg.channels)


def test_channel_multiplier_and_overrides():
    cfg = GeneratorConfig.nvlabs(256, channel_base=16384)
    assert student_widths(cfg, channel_multiplier=2) == tuple(c // 2 for c in cfg.channels)
    w = student_widths(cfg, channel_multiplier=2, overrides="b4.const=512, b256.conv1=5")
    assert w[0] == 512 and w[-1] == 5 and w[1] == 256
    assert student_widths(cfg, ratio=0.5, overrides={"b8.conv0": 3})[2] == 3
    with pytest.raises(ValueError, match="unknown generator layer 'b8.conv2'"):
        student_widths(cfg, ratio=0.5, overrides="b8.conv2=3")
    with pytest.raises(ValueError, match=r"b4.const=0 must be in \[1, 512\]"):
        student_widths(cfg, ratio=0.5, overrides="b4.const=0")
    with pytest.raises(ValueError, match="0 channels"):
        student_widths(CFG, channel_multiplier=17)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            student_widths(cfg, ratio=bad)


def test_target_reduction_picks_the_closest_ratio():
    from gancomp_jax.metrics.cost import generator_cost
    cfg = GeneratorConfig.nvlabs(256, channel_base=16384)
    macs = lambda c: generator_cost(c)["macs"]
    teacher = macs(cfg)
    r, achieved = ratio_for_reduction(cfg, 0.9573)
    assert achieved == pytest.approx(1 - macs(cfg.replace(channels=student_widths(cfg, ratio=r))) / teacher)
    # no other width step is closer: check the neighbouring candidates
    for other in (r - 1 / 512, r + 1 / 512):
        red = 1 - macs(cfg.replace(channels=student_widths(cfg, ratio=other))) / teacher
        assert abs(red - 0.9573) >= abs(achieved - 0.9573) - 1e-12
    assert abs(achieved - 0.9573) < 0.002


# --------------------------------------------------------------------------- criteria


def test_registry_rejects_unknown_and_duplicates():
    with pytest.raises(ValueError, match="unknown pruning criterion 'nope'; available: .*content_aware"):
        crit.get_criterion("nope")
    with pytest.raises(ValueError, match="already registered"):
        crit.register_criterion("random")(lambda inputs: {})


def test_batches_follow_cagc():
    assert crit.batch_sizes(400, 10) == [10] * 40
    assert crit.batch_sizes(23, 10) == [10, 13]
    assert crit.batch_sizes(3, 10) == [3]


def test_content_aware_matches_per_sample_reference(teacher):
    """Batched scores == per-sample gradients summed within each batch, |.| averaged, batches summed."""
    mask_fn = lambda imgs: np.asarray(imgs[..., 0] > -0.2)  # any callable images -> masks
    inputs = crit.ScoringInputs(CFG, teacher.variables, n_sample=10, batch_size=4, noise_prob=0.3,
                                mask_fn=mask_fn, noise_mode="const", seed=1, progress=False)
    got = crit.compute_scores("content_aware", inputs)

    G = Generator(CFG)
    names = layer_names(CFG)
    consumers = [n.replace(".", "/") for n in names[1:]] + ["b16/torgb"]

    def sample_loss(params, z, content, hit_u, sign):
        img = G.apply({**teacher.variables, "params": params}, z[None], noise_mode="const")[0]
        hit = content & (hit_u < 0.3)
        return jnp.sum(jnp.where(hit[..., None], jnp.abs(sign[..., None] - img), 0.0))

    grad_fn = jax.jit(jax.grad(sample_loss))
    ref = {n: np.zeros(c) for n, c in zip(names, CFG.channels)}
    batches = list(crit.sample_batches(inputs))
    assert [len(b.z) for b in batches] == [4, 6]
    for b in batches:
        imgs = np.asarray(G.apply(teacher.variables, b.z, noise_mode="const"))
        content = mask_fn(imgs)
        acc = {}
        for i in range(len(b.z)):
            g = traverse_util.flatten_dict(grad_fn(teacher.variables["params"], b.z[i], content[i], b.uniform[i],
                                                   b.sign[i]), sep="/")
            for n, cons in zip(names, consumers):
                acc[n] = acc.get(n, 0) + np.asarray(g[f"synthesis/{cons}/weight"], np.float64)
        for n in names:
            ref[n] += np.abs(acc[n]).mean(axis=(0, 1, 3))
    for n in names:
        np.testing.assert_allclose(got[n], ref[n], rtol=1e-4, atol=1e-6, err_msg=n)
        assert got[n].std() > 0


def _numpy_styles(teacher, inputs):
    """Per layer the consumer styles [n_sample, C] in numpy, from w = mapping(z)."""
    p = traverse_util.flatten_dict(teacher.variables["params"], sep="/")
    names = layer_names(CFG)
    consumers = [n.replace(".", "/") for n in names[1:]] + ["b16/torgb"]
    ws = np.concatenate([np.asarray(Generator(CFG).apply(teacher.variables, b.z, method=Generator.map))[:, 0]
                         for b in crit.sample_batches(inputs)]).astype(np.float64)
    out = {}
    for n, cons in zip(names, consumers):
        A = p[f"synthesis/{cons}/affine/weight"].astype(np.float64)
        bias = p[f"synthesis/{cons}/affine/bias"].astype(np.float64)
        out[n] = (ws @ A / np.sqrt(CFG.w_dim) + bias, p[f"synthesis/{cons}/weight"].astype(np.float64), cons)
    return out


def test_gan_slimming_and_l1_out_match_numpy(teacher):
    inputs = crit.ScoringInputs(CFG, teacher.variables, n_sample=7, batch_size=3, seed=2, progress=False)
    gs = crit.compute_scores("gan_slimming", inputs)
    l1 = crit.compute_scores("l1_out", inputs)
    l1_raw = crit.compute_scores("l1_out", crit.ScoringInputs(CFG, teacher.variables, l1_weights="raw",
                                                                progress=False))
    for n, (s, W, cons) in _numpy_styles(teacher, inputs).items():
        np.testing.assert_allclose(gs[n], np.abs(s).mean(axis=0), rtol=1e-5, err_msg=n)
        np.testing.assert_allclose(l1_raw[n], np.abs(W).sum(axis=(0, 1, 3)), rtol=1e-6, err_msg=n)
        # CAGC's effective weights: per sample W*s (and demodulated for convs), mean over samples
        eff = []
        for sn in s:
            w = W * sn[None, None, :, None]
            if cons.endswith("torgb"):
                w = w / np.sqrt(W.shape[2])
            else:
                w = w / np.sqrt((w ** 2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
            eff.append(w)
        np.testing.assert_allclose(l1[n], np.abs(np.mean(eff, axis=0)).sum(axis=(0, 1, 3)), rtol=1e-5, err_msg=n)


def test_ablation_criteria(all_scores):
    first = all_scores["first"]
    kept = select_kept(first, CFG, student_widths(CFG, ratio=0.5))
    assert all(list(kept[n]) == list(range(len(kept[n]))) for n in kept)
    inputs = crit.ScoringInputs(CFG, {}, seed=3, progress=False)
    again = crit.compute_scores("random", inputs)
    assert all(np.array_equal(again[n], all_scores["random"][n]) for n in again)


def test_scoring_is_deterministic(teacher, all_scores):
    inputs = crit.ScoringInputs(CFG, teacher.variables, n_sample=8, batch_size=8, seed=3, progress=False)
    again = crit.compute_scores("content_aware", inputs)
    for n in again:
        np.testing.assert_array_equal(again[n], all_scores["content_aware"][n])


# --------------------------------------------------------------------------- surgery


def zero_removed(variables, cfg, kept):
    """The teacher with every removed channel's weights zeroed (const, conv in/out, affine, ToRGB)."""
    flat = {k: np.array(v) for k, v in traverse_util.flatten_dict(variables, sep="/").items()}
    names = layer_names(cfg)
    removed = {n: np.setdiff1d(np.arange(c), kept[n]) for n, c in zip(names, cfg.channels)}
    flat["params/synthesis/b4/const"][..., removed["b4.const"]] = 0
    for i, n in enumerate(names[1:], start=1):
        blk, layer = n.split(".")
        pre = f"params/synthesis/{blk}/{layer}"
        r_in, r_out = removed[names[i - 1]], removed[n]
        flat[f"{pre}/weight"][:, :, r_in] = 0
        flat[f"{pre}/weight"][..., r_out] = 0
        flat[f"{pre}/affine/weight"][:, r_in] = 0
        flat[f"{pre}/affine/bias"][r_in] = 0
        if layer == "conv1":
            if f"params/synthesis/{blk}/torgb/weight" in flat:
                flat[f"params/synthesis/{blk}/torgb/weight"][:, :, r_out] = 0
                flat[f"params/synthesis/{blk}/torgb/affine/weight"][:, r_out] = 0
                flat[f"params/synthesis/{blk}/torgb/affine/bias"][r_out] = 0
            if f"params/synthesis/{blk}/skip/weight" in flat:
                flat[f"params/synthesis/{blk}/skip/weight"][:, :, removed[names[i - 2]]] = 0
                flat[f"params/synthesis/{blk}/skip/weight"][..., r_out] = 0
    return traverse_util.unflatten_dict(flat, sep="/")


def _images(cfg, variables, noise_mode, n=3):
    z = jax.random.normal(jax.random.key(7), (n, cfg.z_dim))
    return np.asarray(g_fn(cfg, noise_mode)(variables, z, jax.random.key(11)))


@pytest.mark.parametrize("criterion", sorted(crit.CRITERIA))
def test_surgery_is_exact(teacher, all_scores, criterion):
    for ratio in (0.3, 0.7, 0.9):
        kept = select_kept(all_scores[criterion], CFG, student_widths(CFG, ratio=ratio))
        student = slice_generator(teacher, kept, exact=True)
        assert student.config.channels == student_widths(CFG, ratio=ratio)
        zeroed = zero_removed(teacher.variables, CFG, kept)
        for noise_mode in ("const", "random"):
            want = _images(CFG, zeroed, noise_mode)
            got = _images(student.config, student.variables, noise_mode)
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=f"{ratio} {noise_mode}")
            assert np.abs(want - _images(CFG, teacher.variables, noise_mode)).max() > 1e-2  # pruning matters


def test_as_released_keeps_torgb_weights(teacher, all_scores):
    kept = select_kept(all_scores["l1_out"], CFG, student_widths(CFG, ratio=0.7))
    exact, released = slice_generator(teacher, kept, True), slice_generator(teacher, kept, False)
    t = teacher.variables["params"]["synthesis"]["b16"]["torgb"]["weight"]
    np.testing.assert_array_equal(released.variables["params"]["synthesis"]["b16"]["torgb"]["weight"],
                                  t[:, :, kept["b16.conv1"]])
    np.testing.assert_allclose(exact.variables["params"]["synthesis"]["b16"]["torgb"]["weight"],
                               t[:, :, kept["b16.conv1"]] * np.sqrt(len(kept["b16.conv1"]) / 16), rtol=1e-6)
    # mapping, noise strengths and noise buffers are untouched
    np.testing.assert_array_equal(released.variables["params"]["mapping"]["fc0"]["weight"],
                                  teacher.variables["params"]["mapping"]["fc0"]["weight"])
    np.testing.assert_array_equal(exact.variables["buffers"]["synthesis"]["b8"]["conv0"]["noise_const"],
                                  teacher.variables["buffers"]["synthesis"]["b8"]["conv0"]["noise_const"])


def test_ratio_zero_is_bit_for_bit(teacher, all_scores):
    kept = select_kept(all_scores["content_aware"], CFG, student_widths(CFG, ratio=0.0))
    student = slice_generator(teacher, kept)
    assert student.config == CFG
    a = traverse_util.flatten_dict(student.variables, sep="/")
    b = traverse_util.flatten_dict(teacher.variables, sep="/")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for noise_mode in ("const", "random"):
        np.testing.assert_array_equal(_images(CFG, student.variables, noise_mode),
                                      _images(CFG, teacher.variables, noise_mode))


@pytest.mark.parametrize("arch", ["resnet", "orig"])
def test_surgery_is_exact_other_architectures(arch):
    cfg = CFG.replace(architecture=arch)
    net = checkpoints.Network("generator", cfg, random_variables("generator", cfg, 5))
    scores = crit.compute_scores("random", crit.ScoringInputs(cfg, {}, seed=0, progress=False))
    kept = select_kept(scores, cfg, student_widths(cfg, ratio=0.7))
    student = slice_generator(net, kept)
    np.testing.assert_allclose(_images(student.config, student.variables, "const"),
                               _images(cfg, zero_removed(net.variables, cfg, kept), "const"), atol=1e-5, rtol=0)
