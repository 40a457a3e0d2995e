"""Architectural behaviour of G and D beyond the NVlabs fixture: widths, variants, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.models import (Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, get_preset,
                                mix_styles, sample_mixing_cutoff)
from gancomp_jax.models.config import nvlabs_channels


def small_g(**kw):
    base = dict(img_resolution=16, channels=(32, 32, 24, 24, 16, 16), z_dim=16, w_dim=16, mapping_layers=2)
    base.update(kw)
    return GeneratorConfig(**base)


def small_d(**kw):
    base = dict(img_resolution=16, channels=(16, 24, 32), mbstd_group_size=2)
    base.update(kw)
    return DiscriminatorConfig(**base)


def init(cfg, kind="generator", seed=0):
    return checkpoints.init_network(kind, cfg, jax.random.key(seed)).variables


@pytest.mark.parametrize("arch", ["skip", "orig", "resnet"])
def test_generator_architectures_and_pruned_widths(arch):
    cfg = small_g(architecture=arch, channels=(12, 20, 9, 7, 5, 3))
    v = init(cfg)
    assert v["params"]["synthesis"]["b4"]["const"].shape == (4, 4, 12)
    assert v["params"]["synthesis"]["b8"]["conv0"]["weight"].shape == (3, 3, 20, 9)
    assert v["params"]["synthesis"]["b16"]["conv1"]["weight"].shape == (3, 3, 5, 3)
    assert ("torgb" in v["params"]["synthesis"]["b8"]) == (arch == "skip")
    assert ("skip" in v["params"]["synthesis"]["b8"]) == (arch == "resnet")
    z = jax.random.normal(jax.random.key(1), (4, 16))
    img, feats = Generator(cfg).apply(v, z, noise_mode="random", return_features=True,
                                      rngs={"noise": jax.random.key(2)})
    assert img.shape == (4, 16, 16, 3) and img.dtype == jnp.float32
    assert feats["b8"].shape == (4, 8, 8, 7) and feats["b16"].shape == (4, 16, 16, 3)
    assert bool(jnp.all(jnp.isfinite(img)))


@pytest.mark.parametrize("arch", ["resnet", "skip", "orig"])
def test_discriminator_architectures(arch):
    cfg = small_d(architecture=arch)
    v = init(cfg, "discriminator")
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
    logits, feats = Discriminator(cfg).apply(v, x, return_features=True)
    assert logits.shape == (4, 1)
    assert feats["b16"].shape == (4, 8, 8, 24) and feats["b8"].shape == (4, 4, 4, 32)
    assert ("fromrgb" in v["params"]["b8"]) == (arch == "skip")


def test_nvlabs_width_schedule_and_presets():
    assert nvlabs_channels(256, 16384, 512) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
    p = get_preset("paper256")
    assert p.generator.num_ws == 14 and len(p.generator.channels) == 14
    assert p.generator.channels[-2:] == (64, 64) and p.discriminator.channels[0] == 64
    assert p.discriminator.mbstd_group_size == 8
    assert get_preset("stylegan2").generator.img_resolution == 1024
    with pytest.raises(ValueError, match="unknown model preset"):
        get_preset("nope")


def test_config_validation_messages():
    with pytest.raises(ValueError, match="must hold 6 positive per-layer widths"):
        small_g(channels=(8, 8, 8))
    with pytest.raises(ValueError, match="power of two"):
        small_g(img_resolution=24)
    with pytest.raises(ValueError, match="architecture"):
        small_d(architecture="fancy")
    with pytest.raises(ValueError, match=r"unknown GeneratorConfig keys \['bogus'\]"):
        GeneratorConfig.from_dict({**small_g().to_dict(), "bogus": 1})
    cfg = small_g(conv_clamp=256.0)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg


def test_conditional_generator_and_discriminator():
    g = small_g(c_dim=5)
    d = small_d(c_dim=5, mapping_layers=2)
    gv, dv = init(g), init(d, "discriminator")
    z = jax.random.normal(jax.random.key(0), (2, 16))
    c = jax.nn.one_hot(jnp.array([1, 3]), 5)
    img = Generator(g).apply(gv, z, c, noise_mode="const")
    logits = Discriminator(d).apply(dv, img, c)
    assert logits.shape == (2, 1)
    other = Generator(g).apply(gv, z, jax.nn.one_hot(jnp.array([0, 0]), 5), noise_mode="const")
    assert float(jnp.abs(other - img).max()) > 1e-4
    with pytest.raises(ValueError, match="expects a label c"):
        Generator(g).apply(gv, z, None)


def test_noise_modes():
    cfg = small_g()
    v = init(cfg)
    # give noise a visible strength
    v = jax.tree_util.tree_map_with_path(
        lambda p, x: jnp.ones_like(x) if "noise_strength" in jax.tree_util.keystr(p) else x, v)
    z = jax.random.normal(jax.random.key(0), (2, 16))
    G = Generator(cfg)
    a = G.apply(v, z, noise_mode="random", rngs={"noise": jax.random.key(1)})
    b = G.apply(v, z, noise_mode="random", rngs={"noise": jax.random.key(1)})
    c = G.apply(v, z, noise_mode="random", rngs={"noise": jax.random.key(2)})
    k = G.apply(v, z, noise_mode="const")
    n = G.apply(v, z, noise_mode="none")
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - c).max()) > 1e-3
    assert float(jnp.abs(k - n).max()) > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        G.apply(v, z, noise_mode="fixed")


def test_truncation_cutoff_and_w_avg_update():
    cfg = small_g()
    v = init(cfg)
    v["buffers"]["mapping"]["w_avg"] = jnp.ones((16,))
    z = jax.random.normal(jax.random.key(0), (3, 16))
    G = Generator(cfg)
    ws = G.apply(v, z, method=Generator.map)
    wt = G.apply(v, z, truncation_psi=0.5, truncation_cutoff=2, method=Generator.map)
    np.testing.assert_allclose(wt[:, :2], 1 + 0.5 * (ws[:, :2] - 1), atol=1e-6)
    np.testing.assert_array_equal(wt[:, 2:], ws[:, 2:])
    _, upd = G.apply(v, z, update_emas=True, method=Generator.map, mutable=["buffers"])
    want = ws[:, 0].mean(0) + 0.995 * (1 - ws[:, 0].mean(0))
    np.testing.assert_allclose(upd["buffers"]["mapping"]["w_avg"], want, atol=1e-6)


def test_style_mixing():
    a = jnp.zeros((2, 6, 3))
    b = jnp.ones((2, 6, 3))
    m = mix_styles(a, b, 2)
    np.testing.assert_array_equal(m[:, :2], 0)
    np.testing.assert_array_equal(m[:, 2:], 1)
    m = mix_styles(a, b, jnp.array([1, 5]))
    assert float(m[0, 1:].min()) == 1 and float(m[1, :5].max()) == 0 and float(m[1, 5].min()) == 1
    cuts = np.array([int(sample_mixing_cutoff(jax.random.key(i), 6, 0.9)) for i in range(200)])
    assert cuts.min() >= 1 and cuts.max() <= 6
    assert 0.8 < np.mean(cuts < 6) < 0.97  # mixing happens with probability ~0.9 (cutoff<6)
    assert np.all(sample_mixing_cutoff(jax.random.key(0), 6, 0.0) == 6)


def test_mixed_precision_close_to_float32():
    cfg = small_g(conv_clamp=256.0)
    v = init(cfg)
    z = jax.random.normal(jax.random.key(0), (2, 16))
    ref = Generator(cfg).apply(v, z, noise_mode="const")
    mixed = Generator(cfg.replace(num_mixed_res=2)).apply(v, z, noise_mode="const")
    assert mixed.dtype == jnp.float32
    err = float(jnp.abs(mixed - ref).max())
    assert 0 < err < 0.1 * float(jnp.abs(ref).max())


def test_r1_penalty_second_order_gradients_through_d():
    """R1 = |∇_x D(x)|²; its gradient w.r.t. D's parameters needs grad-of-grad."""
    cfg = small_d()
    v = init(cfg, "discriminator")
    D = Discriminator(cfg)
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))

    def r1(params):
        grad_x = jax.grad(lambda x: jnp.sum(D.apply({"params": params}, x)))(x)
        return jnp.mean(jnp.sum(jnp.square(grad_x), axis=(1, 2, 3)))

    val, grads = jax.jit(jax.value_and_grad(r1))(v["params"])
    assert float(val) > 0
    leaves = jax.tree.leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert float(jnp.abs(grads["b16"]["conv0"]["weight"]).sum()) > 0
    # Directional finite difference of R1 w.r.t. one weight tensor.
    d = jax.random.normal(jax.random.key(2), v["params"]["b4"]["fc"]["weight"].shape)
    eps = 1e-3  # small enough not to cross many lrelu kinks, large enough for float32

    def shifted(s):
        p = jax.tree.map(lambda a: a, v["params"])
        p["b4"]["fc"]["weight"] = p["b4"]["fc"]["weight"] + s * d
        return r1(p)
    fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(grads["b4"]["fc"]["weight"] * d)), float(fd), rtol=5e-2)


def test_path_length_second_order_gradients_through_g():
    """Path-length regularisation differentiates J^T y w.r.t. G's parameters."""
    cfg = small_g()
    v = init(cfg)
    G = Generator(cfg)
    ws = jax.random.normal(jax.random.key(0), (2, cfg.num_ws, 16))
    y = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))

    def pl(params):
        def out(ws):
            return jnp.sum(G.apply({"params": params, "buffers": v["buffers"]}, ws, "const",
                                   method=Generator.synthesize) * y)
        g = jax.grad(out)(ws)
        return jnp.mean(jnp.sqrt(jnp.mean(jnp.sum(g ** 2, axis=2), axis=1)))

    grads = jax.jit(jax.grad(pl))(v["params"])
    assert float(jnp.abs(grads["synthesis"]["b8"]["conv0"]["weight"]).sum()) > 0
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_float16_blocks_match_float32_with_prenormalisation():
    """NVlabs-style fp16 blocks (pre-normalised modulated convs, conv_clamp 256)."""
    cfg = small_g(conv_clamp=256.0)
    v = init(cfg)
    z = jax.random.normal(jax.random.key(0), (2, 16))
    ref = Generator(cfg).apply(v, z, noise_mode="const")
    half = Generator(cfg.replace(num_mixed_res=2, mixed_dtype="float16")).apply(v, z, noise_mode="const")
    assert half.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(half)))
    assert float(jnp.abs(half - ref).max()) < 0.02 * float(jnp.abs(ref).max())
    # Huge styles would overflow float16 without the pre-normalisation.
    big = jax.tree_util.tree_map_with_path(
        lambda p, x: x * 1e4 if "affine" in jax.tree_util.keystr(p) and "bias" in jax.tree_util.keystr(p) else x, v)
    out = Generator(cfg.replace(num_mixed_res=2, mixed_dtype="float16")).apply(big, z, noise_mode="const")
    assert bool(jnp.all(jnp.isfinite(out)))
