"""Our G and D against NVlabs stylegan2-ada-pytorch outputs (tests/fixtures/nvlabs_tiny16.npz).

Tolerances from the fixtures README: |Δ| ≤ 1e-4 on ws, ≤ 1e-3 on images and logits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from gancomp_jax.models.nvlabs_compat import from_nvlabs_state_dict, to_nvlabs_state_dict

WS_TOL, IMG_TOL = 1e-4, 1e-3


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    return dict(np.load(fixtures_dir / "nvlabs_tiny16.npz"))


def configs_from_fixture(ref, impl="auto"):
    res = int(ref["cfg/res"])
    clamp = int(ref["cfg/conv_clamp"])
    clamp = None if clamp < 0 else float(clamp)
    g = GeneratorConfig.nvlabs(res, int(ref["cfg/channel_base"]), int(ref["cfg/channel_max"]),
                               z_dim=int(ref["cfg/z_dim"]), w_dim=int(ref["cfg/w_dim"]),
                               mapping_layers=int(ref["cfg/map_layers"]), conv_clamp=clamp,
                               architecture=str(ref["cfg/g_arch"]), modconv_impl=impl)
    d = DiscriminatorConfig.nvlabs(res, int(ref["cfg/channel_base"]), int(ref["cfg/channel_max"]),
                                   architecture=str(ref["cfg/d_arch"]), conv_clamp=clamp,
                                   mbstd_group_size=int(ref["cfg/mbstd_group"]))
    return g, d


def load_vars(ref, prefix, kind, config):
    sd = {k[len(prefix) + 1:]: v for k, v in ref.items() if k.startswith(prefix + "/")}
    return from_nvlabs_state_dict(sd, checkpoints.abstract_variables(kind, config), prefix), sd


def nchw(x):
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def nhwc(x):
    return np.transpose(np.asarray(x), (0, 2, 3, 1))


@pytest.fixture(scope="module")
def nets(ref):
    gcfg, dcfg = configs_from_fixture(ref)
    gv, gsd = load_vars(ref, "G", "generator", gcfg)
    dv, dsd = load_vars(ref, "D", "discriminator", dcfg)
    return gcfg, dcfg, gv, dv, gsd, dsd


def test_mapping_ws(ref, nets):
    gcfg, _, gv, *_ = nets
    ws = Generator(gcfg).apply(gv, jnp.asarray(ref["in/z"]), method=Generator.map)
    assert ws.shape == ref["out/ws"].shape
    assert np.abs(np.asarray(ws) - ref["out/ws"]).max() <= WS_TOL
    ws07 = Generator(gcfg).apply(gv, jnp.asarray(ref["in/z"]), truncation_psi=0.7, method=Generator.map)
    assert np.abs(np.asarray(ws07) - ref["out/ws_trunc07"]).max() <= WS_TOL


@pytest.mark.parametrize("impl", ["shared", "grouped"])
@pytest.mark.parametrize("noise_mode,key", [("const", "out/img_const"), ("none", "out/img_nonoise")])
def test_synthesis_images(ref, nets, impl, noise_mode, key):
    gcfg, _, gv, *_ = nets
    G = Generator(gcfg.replace(modconv_impl=impl))
    img = G.apply(gv, jnp.asarray(ref["out/ws"]), noise_mode, method=Generator.synthesize)
    assert nchw(img).shape == ref[key].shape
    assert np.abs(nchw(img) - ref[key]).max() <= IMG_TOL


def test_full_generator_truncated(ref, nets):
    gcfg, _, gv, *_ = nets
    img = jax.jit(lambda v, z: Generator(gcfg).apply(v, z, truncation_psi=0.7, noise_mode="const"))(
        gv, jnp.asarray(ref["in/z"]))
    assert np.abs(nchw(img) - ref["out/img_trunc07_const"]).max() <= IMG_TOL


@pytest.mark.parametrize("x_key,out_key", [("out/img_const", "out/d_logits_on_img_const"),
                                           ("in/x_real", "out/d_logits_on_x_real")])
def test_discriminator_logits(ref, nets, x_key, out_key):
    _, dcfg, _, dv, *_ = nets
    logits = Discriminator(dcfg).apply(dv, jnp.asarray(nhwc(ref[x_key])))
    assert logits.shape == ref[out_key].shape
    assert np.abs(np.asarray(logits) - ref[out_key]).max() <= IMG_TOL


def test_state_dict_round_trip(nets):
    _, _, gv, dv, gsd, dsd = nets
    for vars_, sd, name in ((gv, gsd, "G"), (dv, dsd, "D")):
        back = to_nvlabs_state_dict(vars_, name)
        assert sorted(back) == sorted(sd)
        for k in sd:
            np.testing.assert_array_equal(back[k], sd[k], err_msg=k)


def test_state_dict_errors_name_the_tensor(ref):
    gcfg, _ = configs_from_fixture(ref)
    sd = {k[2:]: v for k, v in ref.items() if k.startswith("G/")}
    template = checkpoints.abstract_variables("generator", gcfg)
    broken = dict(sd)
    del broken["synthesis.b8.conv1.weight"]
    with pytest.raises(ValueError, match=r"missing tensors \['synthesis.b8.conv1.weight'\]"):
        from_nvlabs_state_dict(broken, template, "G")
    broken = dict(sd, **{"synthesis.b8.conv1.bias": np.zeros(7, np.float32)})
    with pytest.raises(ValueError, match=r"synthesis.b8.conv1.bias: file \(7,\)"):
        from_nvlabs_state_dict(broken, template, "G")
    broken = dict(sd, **{"synthesis.b8.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="unexpected tensors"):
        from_nvlabs_state_dict(broken, template, "G")
    broken = dict(sd, **{"synthesis.b8.resample_filter": np.ones((4, 4), np.float32)})
    with pytest.raises(ValueError, match="resample_filter is not the"):
        from_nvlabs_state_dict(broken, template, "G")
