"""Cost accounting (gancomp_jax.metrics.cost) and tools/profile.py.

* CAGC's two published constants, and CAGC's counting code (re-implemented here from
  ``Util/Calculators.py``, operating on a rosinality state dict as theirs does) on a pruned,
  non-uniform checkpoint;
* the analytic executed MACs against XLA's own cost analysis (``flops`` = 2 × MACs) of the
  compiled forward pass, lowered from abstract inputs only (nothing is run);
* parameter and buffer counts against the variables of the real modules.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.io import load_rosinality_pt
from gancomp_jax.metrics.cost import (compression_rate, discriminator_cost, generator_cost,
                                      rosinality_channels)
from gancomp_jax.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig, get_preset

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ CAGC convention

def cagc_flops_from_state_dict(sd: dict) -> int:
    """CAGC's ``StyleGAN2_FLOPCal`` on a rosinality generator state dict (shapes only)."""
    map_size = [2 ** i for i in range(2, 11) for _ in (0, 1)]
    conv_keys = ["conv1.conv.weight"] + [k for k in sd if "convs" in k and "conv.weight" in k]
    shape = [sd[k].shape[2] for k in conv_keys] + [sd[conv_keys[-1]].shape[1]]
    styled = sum(shape[i] * shape[i + 1] * 9 * map_size[i] ** 2 for i in range(len(shape) - 1))
    torgb = sum(shape[2 * i + 1] * 3 * map_size[2 * i + 1] ** 2 for i in range(len(shape) // 2))
    mapping = sum(int(np.prod(v.shape)) for k, v in sd.items() if "style" in k and "weight" in k)
    modulation = sum(int(np.prod(v.shape)) for k, v in sd.items() if "modulation.weight" in k)
    return styled + torgb + mapping + modulation


@pytest.mark.parametrize("size,expected", [(256, 45_124_673_536), (1024, 74_266_894_336)])
def test_cagc_constants_exact(size, expected):
    channels = rosinality_channels(size, channel_multiplier=2)
    if size == 256:
        assert channels == (512,) * 10 + (256, 256, 128, 128)  # CAGC's GENERATOR_SHAPE_256PX
    cfg = GeneratorConfig(img_resolution=size, channels=channels, z_dim=512, w_dim=512, mapping_layers=8)
    assert generator_cost(cfg)["macs_cagc"] == expected


def test_cagc_convention_on_pruned_rosinality_state_dict(fixtures_dir):
    """Their counting code applied to a non-uniform (CAGC-style pruned) checkpoint."""
    data = load_rosinality_pt(fixtures_dir / "rosinality_ros16.pt", reader="builtin")
    net = checkpoints.load_any(fixtures_dir / "rosinality_ros16.pt")["G_ema"]
    assert net.config.channels == (48, 48, 40, 40, 24, 24)
    assert generator_cost(net.config)["macs_cagc"] == cagc_flops_from_state_dict(data["g_ema"])


def test_pruned_student_cagc_reduction():
    """CAGC: 70 % channel pruning of the 256 px net reduces 45.1 G to about 4.1 G (their README)."""
    teacher = GeneratorConfig(img_resolution=256, channels=rosinality_channels(256, 2))
    student = teacher.replace(channels=tuple(c - math.floor(0.7 * c) for c in teacher.channels))
    s = generator_cost(student)["macs_cagc"]
    assert round(s / 1e9, 1) == 4.1
    assert compression_rate(s, generator_cost(teacher)["macs_cagc"]) == pytest.approx(1 - s / 45_124_673_536)


# ------------------------------------------------------------------------------ XLA cross-check

def _flops(compiled) -> float:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca["flops"])


def xla_generator_flops(cfg: GeneratorConfig) -> float:
    variables = checkpoints.abstract_variables("generator", cfg)
    z = jax.ShapeDtypeStruct((1, cfg.z_dim), jnp.float32)
    c = jax.ShapeDtypeStruct((1, cfg.c_dim), jnp.float32) if cfg.c_dim else None
    fn = lambda v, z, c: Generator(cfg).apply(v, z, c, noise_mode="const")
    return _flops(jax.jit(fn).lower(variables, z, c).compile())


def xla_discriminator_flops(cfg: DiscriminatorConfig) -> float:
    variables = checkpoints.abstract_variables("discriminator", cfg)
    img = jax.ShapeDtypeStruct((1, cfg.img_resolution, cfg.img_resolution, cfg.img_channels), jnp.float32)
    c = jax.ShapeDtypeStruct((1, cfg.c_dim), jnp.float32) if cfg.c_dim else None
    fn = lambda v, x, c: Discriminator(cfg).apply(v, x, c)
    return _flops(jax.jit(fn).lower(variables, img, c).compile())


def prune(cfg, ratio):
    return cfg.replace(channels=tuple(c - math.floor(ratio * c) for c in cfg.channels))


@pytest.mark.parametrize("ratio", [0.0, 0.7])
def test_generator_macs_match_xla_paper256(ratio):
    """paper256 and its r = 0.7 student (widths 512→154, 256→77, 128→39, 64→20)."""
    cfg = prune(get_preset("paper256").generator, ratio)
    cost = generator_cost(cfg)
    xla = xla_generator_flops(cfg)
    assert abs(xla / (2 * cost["macs"]) - 1) < 0.02, (xla, 2 * cost["macs"])
    assert cost["macs"] == cost["macs_mapping"] + cost["macs_synthesis"]
    assert cost["macs"] == sum(l["macs"] for l in cost["layers"])


@pytest.mark.parametrize("arch,impl", [("skip", "shared"), ("skip", "grouped"), ("resnet", "shared"),
                                       ("orig", "grouped")])
def test_generator_macs_match_xla_small(arch, impl):
    cfg = GeneratorConfig(img_resolution=32, channels=(96, 80, 72, 64, 64, 56, 48, 40), z_dim=64, w_dim=64,
                          c_dim=5, mapping_layers=2, architecture=arch, modconv_impl=impl)
    xla = xla_generator_flops(cfg)
    assert abs(xla / (2 * generator_cost(cfg)["macs"]) - 1) < 0.02


@pytest.mark.parametrize("arch,c_dim", [("resnet", 0), ("skip", 0), ("orig", 4)])
def test_discriminator_macs_match_xla(arch, c_dim):
    cfg = DiscriminatorConfig(img_resolution=64, channels=(64, 96, 128, 128, 160), architecture=arch, c_dim=c_dim)
    xla = xla_discriminator_flops(cfg)
    assert abs(xla / (2 * discriminator_cost(cfg)["macs"]) - 1) < 0.02


# ------------------------------------------------------------------------------ parameters

def _count(tree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize("cfg", [
    get_preset("paper256").generator,
    GeneratorConfig(img_resolution=16, channels=(20, 17, 13, 11, 9, 7), z_dim=24, w_dim=32, c_dim=3,
                    mapping_layers=3, mapping_layer_features=40, architecture="resnet"),
], ids=["paper256", "nonuniform_resnet"])
def test_generator_params_match_variables(cfg):
    v = checkpoints.abstract_variables("generator", cfg)
    cost = generator_cost(cfg)
    assert cost["params"] == _count(v["params"])
    assert cost["params_mapping"] == _count(v["params"]["mapping"])
    assert cost["buffers"] == _count(v["buffers"])
    assert cost["widths"] == list(cfg.channels)


def test_paper256_numbers():
    """NVlabs' own summary of the paper256 networks: G 24,767,458 and D 24,001,089 parameters."""
    p = get_preset("paper256")
    assert generator_cost(p.generator)["params"] == 24_767_458
    assert discriminator_cost(p.discriminator)["params"] == 24_001_089
    assert discriminator_cost(p.discriminator)["params"] == _count(
        checkpoints.abstract_variables("discriminator", p.discriminator)["params"])


def test_layer_names_and_widths():
    cfg = GeneratorConfig(img_resolution=16, channels=(20, 17, 13, 11, 9, 7), z_dim=32, w_dim=32, mapping_layers=2)
    layers = {l["name"]: l for l in generator_cost(cfg)["layers"]}
    assert [n for n in layers if not n.startswith("mapping")] == [
        "b4.const", "b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.img_upsample", "b8.torgb",
        "b16.conv0", "b16.conv1", "b16.img_upsample", "b16.torgb"]
    assert (layers["b4.const"]["out"], layers["b4.conv1"]["in"], layers["b4.conv1"]["out"]) == (20, 20, 17)
    assert (layers["b8.conv0"]["in"], layers["b8.conv0"]["out"], layers["b8.conv1"]["out"]) == (17, 13, 11)
    assert (layers["b16.torgb"]["in"], layers["b16.torgb"]["out"]) == (7, 3)
    # XLA's convention: taps on the zero padding are not counted (3·8 − 2 valid taps per row of
    # an 8-px 3×3 conv); the polyphase up-conv runs 16 taps (7 of them zero) per input pixel.
    assert layers["b8.conv1"]["macs_detail"]["conv"] == (3 * 8 - 2) ** 2 * 13 * 11
    assert layers["b8.conv0"]["macs_detail"]["conv"] == 16 * 4 * 4 * 17 * 13
    assert layers["b8.conv0"]["macs_cagc"] == 9 * 17 * 13 * 4 * 4 + 17 * 32  # conv at input res + affine


def test_compression_rate_and_errors():
    assert compression_rate(10, 100) == pytest.approx(0.9)
    assert compression_rate(100, 100) == 0.0
    with pytest.raises(ValueError, match="teacher MACs"):
        compression_rate(1, 0)
    with pytest.raises(ValueError, match="GeneratorConfig"):
        generator_cost(get_preset("tiny16").discriminator)
    with pytest.raises(ValueError, match="DiscriminatorConfig"):
        discriminator_cost(get_preset("tiny16").generator)


# ------------------------------------------------------------------------------ tools/profile.py

def run_profile(*args):
    """The real command line (a subprocess)."""
    return subprocess.run([sys.executable, str(REPO / "tools" / "profile.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def profile_tool():
    """tools/profile.py imported in-process (its main() takes argv)."""
    spec = importlib.util.spec_from_file_location("profile_tool", REPO / "tools" / "profile.py")
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def test_profile_pruned_rosinality_pt(fixtures_dir, tmp_path):
    """A CAGC-style pruned rosinality .pt (non-uniform widths) profiles with its widths."""
    out = tmp_path / "p.json"
    r = run_profile(fixtures_dir / "rosinality_ros16.pt", "--json", out, "--xla")
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    g = d["generator"]
    assert g["widths"] == [48, 48, 40, 40, 24, 24]
    layers = {l["name"]: l for l in g["layers"]}
    assert [(layers[n]["in"], layers[n]["out"]) for n in ("b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0",
                                                          "b16.conv1", "b16.torgb")] == [
        (48, 48), (48, 40), (40, 40), (40, 24), (24, 24), (24, 3)]
    assert isinstance(g["params"], int) and isinstance(g["macs"], int) and isinstance(g["macs_cagc"], int)
    net = checkpoints.load_any(fixtures_dir / "rosinality_ros16.pt")["G_ema"]
    assert g["params"] == _count(net.variables["params"])
    assert d["discriminator"]["widths"] == [16, 24, 32]
    assert "b8.conv0" in r.stdout and "total" in r.stdout and "XLA cost analysis" in r.stdout
    assert abs(d["discriminator"]["xla_flops_over_2macs"] - 1) < 0.05  # tiny widths: elementwise ops show


def test_profile_preset_ratio_and_latency(tmp_path, profile_tool, capsys):
    out = tmp_path / "p.json"
    assert profile_tool.main(["preset:tiny16", "--ratio", "0.5", "--json", str(out), "--latency",
                              "--batch", "2", "--repeats", "1"]) == 0
    assert "images/s" in capsys.readouterr().out
    d = json.loads(out.read_text())
    assert d["generator"]["widths"] == [16] * 6
    assert 0 < d["compression"]["rate"] < 1
    assert set(d["latency"]["batches"]) == {"2"}
    assert d["latency"]["batches"]["2"]["images_per_second"] > 0


def test_profile_width_rule_paper256(tmp_path, profile_tool):
    """r removes floor(r·C) channels: 512→154/52, 256→77/26, 128→39/13, 64→20/7."""
    for ratio, want in ((0.7, {512: 154, 256: 77, 128: 39, 64: 20}), (0.9, {512: 52, 256: 26, 128: 13, 64: 7})):
        out = tmp_path / f"p{ratio}.json"
        assert profile_tool.main(["preset:paper256", "--ratio", str(ratio), "--json", str(out)]) == 0
        teacher = get_preset("paper256").generator.channels
        assert json.loads(out.read_text())["generator"]["widths"] == [want[c] for c in teacher]


@pytest.mark.parametrize("args,msg", [
    (("/nonexistent/model.pt",), "does not exist"),
    (("preset:tiny16", "--ratio", "1.0"), "--ratio must be in"),
    (("preset:nope",), "unknown model preset"),
])
def test_profile_bad_input(args, msg, profile_tool, capsys):
    assert profile_tool.main(list(args)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and msg in err and err.count("\n") == 1, err
