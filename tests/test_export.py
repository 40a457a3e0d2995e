"""Export to PyTorch formats (gancomp_jax.export, tools/export_pt.py) and back.

Round trips: our model → rosinality ``.pt`` (torch.save and the torch-free zip writer) →
our converter (torch and built-in readers) and → NVlabs-layout safetensors → our loader must
give bit-identical variables, the same description and identical images, for the committed
CAGC-style pruned fixture (non-uniform widths) and for a randomly initialised non-uniform
student. The exported rosinality state dicts must equal the fixture's own, tensor for tensor.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util

from gancomp_jax import checkpoints
from gancomp_jax.convert import import_torch
from gancomp_jax.export import export_model
from gancomp_jax.export.nvlabs_safetensors import load_nvlabs_safetensors, save_nvlabs_safetensors
from gancomp_jax.export.rosinality import (generator_to_rosinality, rosinality_compat_warnings,
                                          save_rosinality_pt)
from gancomp_jax.export.torch_zip import write_torch_zip
from gancomp_jax.io import load_rosinality_pt
from gancomp_jax.models import Generator, GeneratorConfig

REPO = Path(__file__).resolve().parents[1]
NONUNIFORM = GeneratorConfig(img_resolution=16, channels=(20, 17, 13, 11, 9, 7), z_dim=32, w_dim=32,
                             mapping_layers=2)


def flat(variables):
    return traverse_util.flatten_dict(dict(variables), sep="/")


def assert_same_variables(a, b):
    fa, fb = flat(a), flat(b)
    assert sorted(fa) == sorted(fb)
    for k in fa:
        assert np.asarray(fa[k]).dtype == np.asarray(fb[k]).dtype == np.float32, k
        assert np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])), k


@functools.lru_cache(maxsize=None)
def _g_fn(config):
    return jax.jit(lambda v, z: Generator(config).apply(v, z, truncation_psi=0.7, noise_mode="const"))


def images(net, seed=0, n=3):
    z = jnp.asarray(np.random.RandomState(seed).randn(n, net.config.z_dim), jnp.float32)
    return np.asarray(_g_fn(net.config)(net.variables, z))


def random_generator(cfg, seed=0):
    """The real architecture's variables (shapes from the module) filled with random values at
    a natural scale: every tensor, noise strengths and w_avg included, is non-trivial."""
    rng = np.random.RandomState(seed)
    shapes = flat(checkpoints.abstract_variables("generator", cfg))
    values = {k: np.asarray(rng.randn(*v.shape) * (0.1 if k.endswith(("noise_strength", "bias")) else 1.0),
                            np.float32) for k, v in shapes.items()}
    return checkpoints.Network("generator", cfg, traverse_util.unflatten_dict(values, sep="/"))


@pytest.fixture(scope="module")
def fixture_pt(fixtures_dir):
    return fixtures_dir / "rosinality_ros16.pt"


@pytest.fixture(scope="module")
def source(fixture_pt):
    return checkpoints.load_any(fixture_pt)


@pytest.mark.parametrize("writer", ["zip", "torch"])
def test_rosinality_round_trip_fixture(fixture_pt, source, tmp_path, writer):
    summary = export_model(fixture_pt, tmp_path / "out", writer=writer)
    pt = tmp_path / "out" / "rosinality.pt"
    assert summary["files"]["rosinality.pt"]["writer"] == writer
    for reader in ("torch", "builtin"):
        back = import_torch(pt, reader=reader)
        assert sorted(back) == sorted(source)
        for name in source:
            assert back[name].config == source[name].config
            assert_same_variables(back[name].variables, source[name].variables)
    np.testing.assert_array_equal(images(back["G_ema"]), images(source["G_ema"]))


def test_exported_state_dicts_equal_the_fixture(fixture_pt, tmp_path):
    """Our inverse mapping reproduces rosinality's own state dicts: names, order, shapes, values
    (blur kernels included)."""
    export_model(fixture_pt, tmp_path / "out", writer="zip")
    original = torch.load(fixture_pt, weights_only=True)
    exported = torch.load(tmp_path / "out" / "rosinality.pt", weights_only=True, mmap=True)
    assert sorted(exported) == sorted(original)
    torch.testing.assert_close(exported["latent_avg"], original["latent_avg"], rtol=0, atol=0)
    for key in ("g", "g_ema", "d"):
        assert isinstance(exported[key], OrderedDict)
        if key != "d":
            assert list(exported[key]) == list(original[key])  # rosinality's state_dict order
        assert sorted(exported[key]) == sorted(original[key])
        for name, value in original[key].items():
            assert exported[key][name].dtype == value.dtype and exported[key][name].shape == value.shape, name
            assert torch.equal(exported[key][name], value), name


def test_images_match_rosinality_reference(fixtures_dir, fixture_pt, tmp_path):
    """The re-imported export still computes what rosinality's code computed (fixture outputs)."""
    ref = dict(np.load(fixtures_dir / "rosinality_ros16.npz"))
    export_model(fixture_pt, tmp_path / "out", which=["G_ema"], writer="zip")
    net = import_torch(tmp_path / "out" / "rosinality.pt")["G_ema"]
    z = jnp.asarray(ref["in/z"])
    img = jax.jit(lambda v, z: Generator(net.config).apply(v, z, noise_mode="const"))(net.variables, z)
    np.testing.assert_allclose(np.transpose(np.asarray(img), (0, 3, 1, 2)), ref["out/img_const_noise"], atol=1e-3)


def test_safetensors_round_trip_fixture(source, fixture_pt, tmp_path):
    export_model(fixture_pt, tmp_path / "out", formats=("safetensors",))
    assert not (tmp_path / "out" / "rosinality.pt").exists()
    for name in source:
        back = load_nvlabs_safetensors(tmp_path / "out" / f"{name}.nvlabs.safetensors")
        assert back.kind == source[name].kind and back.config == source[name].config
        assert_same_variables(back.variables, source[name].variables)


def test_safetensors_is_an_nvlabs_state_dict(source, tmp_path):
    """Names/shapes as NVlabs' state_dict; without our config metadata the NVlabs converter
    path infers the same description from the shapes."""
    from safetensors.numpy import load_file, save_file

    path = save_nvlabs_safetensors(tmp_path / "g.safetensors", source["G_ema"], "G_ema")
    sd = load_file(str(path))
    assert sd["synthesis.b4.const"].shape == (48, 4, 4)
    assert sd["synthesis.b8.conv0.weight"].shape == (40, 48, 3, 3)
    assert sd["synthesis.b8.conv0.affine.weight"].shape == (48, 32)
    assert sd["synthesis.b4.conv1.noise_strength"].shape == ()
    assert sd["mapping.w_avg"].shape == (32,) and "synthesis.b8.resample_filter" in sd
    bare = tmp_path / "bare.safetensors"
    save_file(sd, str(bare))  # no metadata at all, as another tool might write it
    back = load_nvlabs_safetensors(bare, kind="generator")
    assert back.config.channels == source["G_ema"].config.channels
    assert_same_variables(back.variables, source["G_ema"].variables)


def test_nonuniform_student_round_trip(tmp_path):
    """A freshly initialised student with widths that follow no schedule, saved as our model
    directory, exported both ways and read back: identical variables and images."""
    net = random_generator(NONUNIFORM, seed=3)
    model = checkpoints.save_model(tmp_path / "student", {"G_ema": net})
    summary = export_model(model, tmp_path / "out")
    assert summary["networks"]["G_ema"]["widths"] == list(NONUNIFORM.channels)
    from_pt = import_torch(tmp_path / "out" / "rosinality.pt")["G_ema"]
    from_st = load_nvlabs_safetensors(tmp_path / "out" / "G_ema.nvlabs.safetensors")
    for back in (from_pt, from_st):
        assert back.config.channels == NONUNIFORM.channels
        assert_same_variables(back.variables, net.variables)
        np.testing.assert_array_equal(images(back), images(net))
    # rosinality state dict widths, as CAGC's Get_Network_Shape reads them
    sd = load_rosinality_pt(tmp_path / "out" / "rosinality.pt", reader="builtin")["g_ema"]
    conv_keys = ["conv1.conv.weight"] + [k for k in sd if "convs" in k and "conv.weight" in k]
    assert [sd[k].shape[2] for k in conv_keys] + [sd[conv_keys[-1]].shape[1]] == list(NONUNIFORM.channels)


def test_zip_writer_matches_torch_save(tmp_path):
    """The torch-free writer and torch.save give the same objects under torch.load."""
    rng = np.random.RandomState(1)
    obj = {"g_ema": OrderedDict([("a.weight", rng.randn(3, 4, 5).astype(np.float32)),
                                 ("a.scalar", np.asarray(rng.randn(), np.float32)),
                                 ("b", np.arange(70000, dtype=np.int64))]),
           "latent_avg": rng.randn(8).astype(np.float32), "note": "x", "n": 2 ** 40, "none": None}
    write_torch_zip(tmp_path / "ours.pt", obj)
    save_rosinality_pt(tmp_path / "torch.pt", obj, writer="torch")
    a = torch.load(tmp_path / "ours.pt", weights_only=True)
    b = torch.load(tmp_path / "torch.pt", weights_only=True)
    assert list(a) == list(b) and list(a["g_ema"]) == list(b["g_ema"])
    for k in a["g_ema"]:
        assert torch.equal(a["g_ema"][k], b["g_ema"][k]) and a["g_ema"][k].shape == b["g_ema"][k].shape
    assert torch.equal(a["latent_avg"], b["latent_avg"])
    assert (a["note"], a["n"], a["none"]) == ("x", 2 ** 40, None)


def test_unrepresentable_generators(tmp_path):
    resnet = NONUNIFORM.replace(architecture="resnet")
    net = random_generator(resnet)
    with pytest.raises(ValueError, match="architecture 'resnet'"):
        generator_to_rosinality(net.variables, resnet)
    model = checkpoints.save_model(tmp_path / "resnet", {"G_ema": net})
    with pytest.raises(ValueError, match="cannot be written as a rosinality checkpoint"):
        export_model(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written
    export_model(model, tmp_path / "out", formats=("safetensors",))  # the NVlabs layout works
    warnings = rosinality_compat_warnings(NONUNIFORM.replace(conv_clamp=256.0, mapping_lr_multiplier=0.1))
    assert any("conv_clamp" in w for w in warnings) and any("lr_mlp=0.1" in w for w in warnings)
    assert rosinality_compat_warnings(NONUNIFORM) == []


def run_tool(*args):
    return subprocess.run([sys.executable, str(REPO / "tools" / "export_pt.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def load_tool():
    spec = importlib.util.spec_from_file_location("export_pt_tool", REPO / "tools" / "export_pt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_cli(fixture_pt, tmp_path, capsys):
    out = tmp_path / "exp"
    r = run_tool(fixture_pt, out, "--writer", "zip")  # the real command line, once
    assert r.returncode == 0, r.stderr
    assert "rosinality.pt" in r.stdout and "[48, 48, 40, 40, 24, 24]" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        ".gancomp_jax_output.json", "D.nvlabs.safetensors", "G.nvlabs.safetensors", "G_ema.nvlabs.safetensors", "export.json", "rosinality.pt"]
    assert json.loads((out / "export.json").read_text())["networks"]["G_ema"]["widths"] == [48, 48, 40, 40, 24, 24]
    # back through the converter's command line into a model directory: identical variables
    spec = importlib.util.spec_from_file_location("convert_tool", REPO / "tools" / "convert_pt_weights.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    assert convert.main([str(out / "rosinality.pt"), str(tmp_path / "model")]) == 0
    back, source = checkpoints.load_model(tmp_path / "model"), checkpoints.load_any(fixture_pt)
    for name in source:
        assert back[name].config == source[name].config
        assert_same_variables(back[name].variables, source[name].variables)
    tool = load_tool()
    for args, msg, target in (
            ((fixture_pt, out), "already exists", None),
            ((tmp_path / "missing.pt", tmp_path / "x"), "does not exist", tmp_path / "x"),
            ((fixture_pt, tmp_path / "y", "--which", "G_ema,Q"), "not in the model", tmp_path / "y"),
            ((fixture_pt, tmp_path / "z", "--format", "onnx"), "unknown export format", tmp_path / "z")):
        assert tool.main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and msg in err and err.count("\n") == 1, err
        assert target is None or not target.exists()


def test_nvlabs_pickle_profile_and_export(tmp_path, capsys):
    """End to end from an NVlabs network pickle (train.py's conv_clamp=256, minibatch-std group
    8): profile it, export it, read the exports back."""
    from gancomp_jax.convert.fake_nvlabs import FakeNetwork, write_nvlabs_pickle
    from gancomp_jax.models import DiscriminatorConfig
    from gancomp_jax.models.nvlabs_compat import to_nvlabs_state_dict

    gcfg = GeneratorConfig.nvlabs(16, 512, 32, z_dim=32, w_dim=32, mapping_layers=2)
    dcfg = DiscriminatorConfig.nvlabs(16, 512, 32)
    common = dict(c_dim=0, img_resolution=16, img_channels=3)
    gk = dict(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=0, conv_clamp=256), **common)
    dk = dict(block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=8), channel_base=512,
              channel_max=32, num_fp16_res=0, conv_clamp=256, **common)
    g = random_generator(gcfg, seed=5)
    rng = np.random.RandomState(6)
    d_vars = jax.tree.map(lambda a: np.asarray(rng.randn(*a.shape), np.float32),
                          checkpoints.abstract_variables("discriminator", dcfg))
    pkl = write_nvlabs_pickle(tmp_path / "snapshot.pkl", {
        "G_ema": FakeNetwork("Generator", gk, to_nvlabs_state_dict(g.variables, "G_ema")),
        "D": FakeNetwork("Discriminator", dk, to_nvlabs_state_dict(d_vars, "D"))})

    spec = importlib.util.spec_from_file_location("profile_tool_e", REPO / "tools" / "profile.py")
    profile = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(profile)
    finally:
        sys.path[:] = saved
    assert profile.main([str(pkl), "--json", str(tmp_path / "p.json")]) == 0
    prof = json.loads((tmp_path / "p.json").read_text())
    assert prof["generator"]["widths"] == list(gcfg.channels) and prof["discriminator"]["widths"] == [32, 32, 32]

    summary = export_model(pkl, tmp_path / "out", writer="zip")
    assert any("conv_clamp" in w for w in summary["warnings"])
    assert any("group size 8" in w for w in summary["warnings"])
    source = checkpoints.load_any(pkl)
    back = import_torch(tmp_path / "out" / "rosinality.pt")
    assert sorted(back) == ["D", "G_ema"]
    assert_same_variables(back["G_ema"].variables, source["G_ema"].variables)
    assert_same_variables(back["D"].variables, source["D"].variables)
    for name in ("G_ema", "D"):
        st = load_nvlabs_safetensors(tmp_path / "out" / f"{name}.nvlabs.safetensors")
        assert st.config == source[name].config  # conv_clamp and mbstd group kept here
        assert_same_variables(st.variables, source[name].variables)
    # the safetensors file profiles too
    assert profile.main([str(tmp_path / "out" / "G_ema.nvlabs.safetensors"), "--json", str(tmp_path / "q.json")]) == 0
    assert json.loads((tmp_path / "q.json").read_text())["generator"]["widths"] == list(gcfg.channels)
    capsys.readouterr()
