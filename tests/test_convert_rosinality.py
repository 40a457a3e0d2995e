"""rosinality (CAGC-pruned) checkpoints → our networks, against tests/fixtures/rosinality_ros16.*

Tolerances from the fixtures README: ≤ 1e-4 on w, ≤ 1e-3 on images and logits.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from gancomp_jax.convert import ConversionError, UnsupportedNetworkError, import_torch
from gancomp_jax.convert.rosinality import convert_rosinality, generator_to_nvlabs, make_kernel
from gancomp_jax.io import load_rosinality_pt
from gancomp_jax.models import Discriminator, Generator

W_TOL, TOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def paths(fixtures_dir):
    return fixtures_dir / "rosinality_ros16.pt", fixtures_dir / "rosinality_ros16.npz"


@pytest.fixture(scope="module")
def ref(paths):
    return dict(np.load(paths[1]))


@pytest.fixture(scope="module")
def nets(paths):
    return import_torch(paths[0])


@functools.lru_cache(maxsize=None)
def g_fn(config):
    return jax.jit(lambda v, z, psi: Generator(config).apply(v, z, truncation_psi=psi, noise_mode="const"))


def nchw(x):
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def test_widths_and_description(nets, ref):
    g, d = nets["G_ema"].config, nets["D"].config
    assert sorted(nets) == ["D", "G", "G_ema"] and nets.format == "rosinality-pt"
    assert g.channels == (48, 48, 40, 40, 24, 24) and d.channels == (16, 24, 32)
    assert g.img_resolution == d.img_resolution == int(ref["cfg/size"])
    assert g.z_dim == g.w_dim == int(ref["cfg/style_dim"]) and g.mapping_layers == int(ref["cfg/n_mlp"])
    assert (g.architecture, g.conv_clamp, g.mapping_lr_multiplier, g.c_dim) == ("skip", None, 0.01, 0)
    assert (d.architecture, d.conv_clamp, d.mbstd_group_size, d.mbstd_num_channels) == ("resnet", None, 4, 1)
    assert nets.metadata["networks"]["G_ema"]["source_key"] == "g_ema"
    assert nets.metadata["networks"]["G_ema"]["w_avg_present"]


def test_mapping_and_images(nets, ref):
    g = nets["G_ema"]
    z = jnp.asarray(ref["in/z"])
    ws = Generator(g.config).apply(g.variables, z, method=Generator.map)
    assert np.abs(np.asarray(ws[:, 0]) - ref["out/w"]).max() <= W_TOL
    np.testing.assert_array_equal(g.variables["buffers"]["mapping"]["w_avg"], ref["in/latent_avg"])
    G = g_fn(g.config)
    assert np.abs(nchw(G(g.variables, z, 1.0)) - ref["out/img_const_noise"]).max() <= TOL
    assert np.abs(nchw(G(g.variables, z, 0.7)) - ref["out/img_trunc07_const_noise"]).max() <= TOL


def test_up_conv_needs_no_flip(nets, ref):
    """Flipping the up-conv kernels (as TF→torch conversion must) breaks the match by far."""
    g = nets["G_ema"]
    flat = traverse_util.flatten_dict(g.variables, sep="/")
    flipped = {k: (np.asarray(v)[::-1, ::-1] if k.endswith("conv0/weight") else v) for k, v in flat.items()}
    img = g_fn(g.config)(traverse_util.unflatten_dict(flipped, sep="/"), jnp.asarray(ref["in/z"]), 1.0)
    assert np.abs(nchw(img) - ref["out/img_const_noise"]).max() > 0.1


@pytest.mark.parametrize("x_key,out_key", [("out/img_const_noise", "out/d_logits_on_img"),
                                           ("in/x_real", "out/d_logits_on_x_real")])
def test_discriminator_logits(nets, ref, x_key, out_key):
    d = nets["D"]
    logits = jax.jit(Discriminator(d.config).apply)(d.variables, jnp.asarray(np.transpose(ref[x_key], (0, 2, 3, 1))))
    assert np.abs(np.asarray(logits) - ref[out_key]).max() <= TOL


def test_g_and_g_ema_are_both_converted(nets, paths):
    raw = load_rosinality_pt(paths[0])
    g = nets["G"].variables["params"]
    np.testing.assert_array_equal(g["mapping"]["fc0"]["weight"], raw["g"]["style.1.weight"].T)
    np.testing.assert_array_equal(g["synthesis"]["b4"]["const"], raw["g"]["input.input"][0].transpose(1, 2, 0))
    assert any("latent_avg" in w for w in nets.warnings)


def test_missing_latent_avg_warns_and_zeroes(paths):
    raw = load_rosinality_pt(paths[0])
    out = convert_rosinality(raw["g_ema"], "generator", "G_ema", "x.pt", latent_avg=None)
    assert not out.facts["w_avg_present"]
    np.testing.assert_array_equal(out.network.variables["buffers"]["mapping"]["w_avg"], np.zeros(32))
    assert any("no latent_avg" in w and "truncation" in w for w in out.warnings)


def test_blur_kernels_are_checked(paths):
    raw = load_rosinality_pt(paths[0])
    np.testing.assert_allclose(raw["g_ema"]["convs.0.conv.blur.kernel"], make_kernel() * 4)
    np.testing.assert_allclose(raw["d"]["convs.1.conv2.0.kernel"], make_kernel())
    bad = dict(raw["g_ema"], **{"convs.0.conv.blur.kernel": make_kernel()})  # gain 1 instead of 4
    with pytest.raises(UnsupportedNetworkError, match=r"convs.0.conv.blur.kernel is not make_kernel"):
        generator_to_nvlabs(bad, None, "G")
    extra = dict(raw["g_ema"], **{"convs.9.conv.weight": np.zeros(3, np.float32)})
    with pytest.raises(UnsupportedNetworkError, match="up/plain pairs|unexpected tensors"):
        generator_to_nvlabs(extra, None, "G")


def test_content_not_extension_decides(paths, tmp_path):
    disguised = tmp_path / "weights.pkl"
    disguised.write_bytes(paths[0].read_bytes())
    nets = import_torch(disguised, which="D")
    assert list(nets) == ["D"] and nets.format == "rosinality-pt"


def test_both_readers_convert_identically(paths, nets):
    """torch.load(weights_only=True) (what auto picks with torch installed) and the built-in reader agree bit for bit."""
    pytest.importorskip("torch")
    builtin = import_torch(paths[0], reader="builtin")
    assert nets.metadata["source"]["reader"] == "torch"
    assert builtin.metadata["source"]["reader"] == "builtin"
    assert list(builtin) == list(nets)
    for name in nets:
        assert builtin[name].config == nets[name].config
        a, b = jax.tree_util.tree_leaves_with_path(builtin[name].variables), jax.tree_util.tree_leaves(nets[name].variables)
        assert len(a) == len(b)
        for (key, x), y in zip(a, b):
            assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), (name, key)
    with pytest.raises(ConversionError, match="unknown reader 'fast'"):
        import_torch(paths[0], reader="fast")
