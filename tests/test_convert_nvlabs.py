"""NVlabs network pickles → our checkpoints (gancomp_jax.convert, tools/convert_pt_weights.py).

The pickles are written by gancomp_jax.convert.fake_nvlabs (no NVlabs code, no torch) from the
tensors of tests/fixtures/nvlabs_tiny16.npz, so the converted networks must reproduce that
fixture's NVlabs outputs.
"""

from __future__ import annotations

import functools
import os
import pickle
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image

from gancomp_jax import checkpoints
from gancomp_jax.convert import ImportResult, UnsupportedNetworkError, import_torch
from gancomp_jax.convert.fake_nvlabs import FakeNetwork, write_nvlabs_pickle
from gancomp_jax.io import load_nvlabs_pkl
from gancomp_jax.models import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
from gancomp_jax.models.nvlabs_compat import from_nvlabs_state_dict, to_nvlabs_state_dict

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-3
G_KWARGS = dict(z_dim=32, w_dim=32, mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=0, conv_clamp=None,
                                      architecture="skip"),
                c_dim=0, img_resolution=16, img_channels=3)
D_KWARGS = dict(c_dim=0, img_resolution=16, img_channels=3, architecture="resnet", channel_base=512,
                channel_max=32, num_fp16_res=0, conv_clamp=None, block_kwargs={}, mapping_kwargs={},
                epilogue_kwargs=dict(mbstd_group_size=4))


def subprocess_env() -> dict[str, str]:
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))


@functools.lru_cache(maxsize=None)
def g_fn(config):
    """Jitted ``(variables, z, c, psi) -> images`` with const noise (compiled once per config)."""
    return jax.jit(lambda v, z, c, psi: Generator(config).apply(v, z, c, truncation_psi=psi, noise_mode="const"))


@functools.lru_cache(maxsize=None)
def d_fn(config):
    return jax.jit(lambda v, x, c: Discriminator(config).apply(v, x, c))


def nchw(x):
    return np.transpose(np.asarray(x), (0, 3, 1, 2))


def flat(variables):
    return traverse_util.flatten_dict(dict(variables), sep="/")


def assert_same_variables(a, b):
    fa, fb = flat(a), flat(b)
    assert sorted(fa) == sorted(fb)
    for k in fa:
        np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


def random_variables(kind, config, seed):
    """float32 N(0, 1) values for every variable of our ``kind`` network (no forward pass)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.standard_normal(a.shape, dtype=np.float32),
                        checkpoints.abstract_variables(kind, config))


@pytest.fixture(scope="module")
def ref(fixtures_dir):
    return dict(np.load(fixtures_dir / "nvlabs_tiny16.npz"))


@pytest.fixture(scope="module")
def fixture_sd(ref):
    return {net: {k[len(net) + 1:]: v for k, v in ref.items() if k.startswith(net + "/")} for net in ("G", "D")}


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, fixture_sd):
    """A network-snapshot-like pickle holding the fixture's G (as G and G_ema) and D."""
    path = tmp_path_factory.mktemp("nv") / "network-snapshot-000100.pkl"
    return write_nvlabs_pickle(path, {
        "G": FakeNetwork("Generator", G_KWARGS, fixture_sd["G"]),
        "D": FakeNetwork("Discriminator", D_KWARGS, fixture_sd["D"]),
        "G_ema": FakeNetwork("Generator", G_KWARGS, fixture_sd["G"]),
    }, extra=dict(augment_pipe=None, training_set_kwargs=dict(path="digits.zip", resolution=16)))


@pytest.fixture(scope="module")
def cli_out(snapshot, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tiny16_model"
    proc = subprocess.run([sys.executable, "tools/convert_pt_weights.py", str(snapshot), str(out)],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


@pytest.fixture(scope="module")
def imported(snapshot) -> ImportResult:
    return import_torch(snapshot)


def fixture_configs(ref):
    """Our descriptions built straight from the fixture's cfg/* (not through the converter)."""
    res, base, cmax = int(ref["cfg/res"]), int(ref["cfg/channel_base"]), int(ref["cfg/channel_max"])
    g = GeneratorConfig.nvlabs(res, base, cmax, z_dim=int(ref["cfg/z_dim"]), w_dim=int(ref["cfg/w_dim"]),
                               mapping_layers=int(ref["cfg/map_layers"]), architecture=str(ref["cfg/g_arch"]))
    d = DiscriminatorConfig.nvlabs(res, base, cmax, architecture=str(ref["cfg/d_arch"]),
                                   mbstd_group_size=int(ref["cfg/mbstd_group"]))
    return g, d


def test_fake_pickle_is_what_torch_reads(snapshot, fixture_sd):
    """The torch-free writer produces tensors real torch unpickles (with stand-in NVlabs modules)."""
    torch = pytest.importorskip("torch")
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    modules = {n: types.ModuleType(n) for n in names}
    modules["torch_utils.persistence"]._reconstruct_persistent_obj = lambda meta: meta
    modules["dnnlib.util"].EasyDict = type("EasyDict", (dict,), {})
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(modules)
    try:
        data = pickle.loads(snapshot.read_bytes())
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    conv0 = data["G"]["state"]["_modules"]["synthesis"]["state"]["_modules"]["b8"]["state"]["_modules"]["conv0"]
    assert conv0["class_name"] == "SynthesisLayer"
    weight = conv0["state"]["_parameters"]["weight"]
    assert isinstance(weight, torch.nn.Parameter)
    assert torch.equal(weight.data, torch.from_numpy(fixture_sd["G"]["synthesis.b8.conv0.weight"]))
    assert torch.equal(conv0["state"]["_buffers"]["noise_const"],
                       torch.from_numpy(fixture_sd["G"]["synthesis.b8.conv0.noise_const"]))
    assert data["G"]["state"]["_init_kwargs"]["mapping_kwargs"] == {"num_layers": 2}


def test_inferred_descriptions(imported, ref):
    g, d = fixture_configs(ref)
    assert list(imported) == ["G_ema", "G", "D"]
    assert imported["G_ema"].config == g and imported["G"].config == g
    assert imported["D"].config == d
    meta = imported.metadata
    assert meta["source"]["format"] == "nvlabs-pkl" and not meta["warnings"]
    facts = meta["networks"]["G_ema"]
    assert facts["class_name"] == "Generator" and facts["w_avg_present"] and facts["widths_follow_channel_base"]
    assert facts["num_fp16_res"] == 0 and facts["config"]["channels"] == list(g.channels)
    assert meta["training_set_kwargs"] == {"path": "digits.zip", "resolution": 16}


def test_cli_writes_the_same_model(cli_out, imported, snapshot):
    import hashlib

    out, stdout = cli_out
    loaded = checkpoints.load_model(out)
    assert sorted(loaded) == ["D", "G", "G_ema"]
    for name, net in imported.items():
        assert loaded[name].config == net.config
        assert_same_variables(loaded[name].variables, net.variables)
    meta = checkpoints.read_description(out)["metadata"]
    assert meta["source"]["sha256"] == hashlib.sha256(snapshot.read_bytes()).hexdigest()
    for text in ("NVlabs stylegan2-ada-pytorch network pickle", "G_ema  generator", "57,614 params",
                 "widths per layer (const, b4.conv1, b8.conv0, ...): 32 32 32 32 32 32", "arch resnet",
                 "mbstd group 4 x 1", "warnings : none", "time     :",
                 "read by  : gancomp_jax restricted unpickler (no torch, nothing executed)"):
        assert text in stdout, text


def test_converted_networks_reproduce_nvlabs(cli_out, ref):
    nets = checkpoints.load_model(cli_out[0])
    G, gv = g_fn(nets["G_ema"].config), nets["G_ema"].variables
    z = jnp.asarray(ref["in/z"])
    assert np.abs(nchw(G(gv, z, None, 1.0)) - ref["out/img_const"]).max() <= TOL
    assert np.abs(nchw(G(gv, z, None, 0.7)) - ref["out/img_trunc07_const"]).max() <= TOL
    D, dv = d_fn(nets["D"].config), nets["D"].variables
    for x, want in (("out/img_const", "out/d_logits_on_img_const"), ("in/x_real", "out/d_logits_on_x_real")):
        logits = D(dv, jnp.asarray(np.transpose(ref[x], (0, 2, 3, 1))), None)
        assert np.abs(np.asarray(logits) - ref[want]).max() <= TOL


def test_generate_job_on_converted_checkpoint(cli_out, ref, fixture_sd, tmp_path):
    seeds = list(range(8))
    proc = subprocess.run(
        [sys.executable, "-m", "gancomp_jax.main", "--config", "experiments/generate.py",
         f"--workdir={tmp_path}", f"--config.checkpoint={cli_out[0]}", "--config.seeds=0-7",
         "--config.truncation_psi=0.7", "--config.noise_mode=const"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Independently of the converter: the fixture's tensors straight into our model.
    gcfg, _ = fixture_configs(ref)
    gv = from_nvlabs_state_dict(fixture_sd["G"], checkpoints.abstract_variables("generator", gcfg), "G")
    z = np.stack([np.random.RandomState(s).randn(gcfg.z_dim) for s in seeds]).astype(np.float32)
    img = np.asarray(g_fn(gcfg)(gv, jnp.asarray(z), None, 0.7))
    want = np.clip(img * 127.5 + 128, 0, 255).astype(np.uint8)
    for i, s in enumerate(seeds):
        png = np.asarray(Image.open(tmp_path / f"seed{s:04d}.png"))
        assert png.shape == want[i].shape
        assert np.abs(png.astype(int) - want[i].astype(int)).max() <= 1, s


def _write(tmp_path, name, networks):
    return write_nvlabs_pickle(tmp_path / name, networks)


def test_pruned_widths_come_from_shapes(tmp_path):
    """A non-uniform (pruned) NVlabs-format G/D converts to exactly the same variables."""
    gcfg = GeneratorConfig(img_resolution=16, channels=(40, 24, 24, 16, 12, 8), z_dim=16, w_dim=24,
                           mapping_layers=3, conv_clamp=256.0)
    dcfg = DiscriminatorConfig(img_resolution=16, channels=(8, 20, 28), conv_clamp=256.0, mbstd_group_size=2)
    gv, dv = random_variables("generator", gcfg, 0), random_variables("discriminator", dcfg, 1)
    gk = dict(G_KWARGS, z_dim=16, w_dim=24, mapping_kwargs=dict(num_layers=3),
              synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=2, conv_clamp=256))
    dk = dict(D_KWARGS, conv_clamp=256, num_fp16_res=2, epilogue_kwargs=dict(mbstd_group_size=2))
    path = _write(tmp_path, "pruned.pkl", {"G_ema": FakeNetwork("Generator", gk, to_nvlabs_state_dict(gv, "G")),
                                           "D": FakeNetwork("Discriminator", dk, to_nvlabs_state_dict(dv, "D"))})
    nets = import_torch(path)
    assert nets["G_ema"].config == gcfg and nets["D"].config == dcfg
    assert_same_variables(nets["G_ema"].variables, gv)
    assert_same_variables(nets["D"].variables, dv)
    facts = nets.metadata["networks"]
    assert not facts["G_ema"]["widths_follow_channel_base"] and facts["G_ema"]["num_fp16_res"] == 2
    z = jnp.asarray(np.random.RandomState(0).randn(2, 16), jnp.float32)
    G = g_fn(gcfg)
    np.testing.assert_array_equal(np.asarray(G(nets["G_ema"].variables, z, None, 1.0)),
                                  np.asarray(G(gv, z, None, 1.0)))


@pytest.mark.parametrize("g_arch,d_arch", [("resnet", "skip"), ("orig", "orig")])
def test_other_architectures_round_trip(tmp_path, g_arch, d_arch):
    gcfg = GeneratorConfig(img_resolution=16, channels=(16, 16, 12, 12, 8, 8), z_dim=8, w_dim=8,
                           mapping_layers=1, architecture=g_arch)
    dcfg = DiscriminatorConfig(img_resolution=16, channels=(8, 12, 16), architecture=d_arch,
                               mbstd_group_size=None, mbstd_num_channels=2)
    gv, dv = random_variables("generator", gcfg, 4), random_variables("discriminator", dcfg, 5)
    gk = dict(z_dim=8, w_dim=8, c_dim=0, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=1),
              synthesis_kwargs=dict(architecture=g_arch))
    dk = dict(c_dim=0, img_resolution=16, img_channels=3, architecture=d_arch,
              epilogue_kwargs=dict(mbstd_group_size=None, mbstd_num_channels=2))
    path = _write(tmp_path, "arch.pkl", {"G_ema": FakeNetwork("Generator", gk, to_nvlabs_state_dict(gv, "G")),
                                         "D": FakeNetwork("Discriminator", dk, to_nvlabs_state_dict(dv, "D"))})
    nets = import_torch(path)
    assert nets["G_ema"].config == gcfg and nets["D"].config == dcfg
    assert_same_variables(nets["G_ema"].variables, gv)
    assert_same_variables(nets["D"].variables, dv)
    assert not nets.warnings


def test_conditional_round_trip(tmp_path):
    gcfg = GeneratorConfig(img_resolution=8, channels=(16, 16, 12, 8), z_dim=12, w_dim=16, c_dim=5,
                           mapping_layers=2, mapping_layer_features=20, embed_features=10)
    dcfg = DiscriminatorConfig(img_resolution=8, channels=(12, 16), c_dim=5, cmap_dim=6, mapping_layers=3)
    gv, dv = random_variables("generator", gcfg, 2), random_variables("discriminator", dcfg, 3)
    gk = dict(z_dim=12, w_dim=16, c_dim=5, img_resolution=8, img_channels=3,
              mapping_kwargs=dict(num_layers=2, layer_features=20, embed_features=10),
              synthesis_kwargs=dict(channel_base=128, channel_max=16))
    dk = dict(c_dim=5, img_resolution=8, img_channels=3, cmap_dim=6, channel_base=128, channel_max=16,
              mapping_kwargs=dict(num_layers=3))
    path = _write(tmp_path, "cond.pkl", {"G": FakeNetwork("Generator", gk, to_nvlabs_state_dict(gv, "G")),
                                         "D": FakeNetwork("Discriminator", dk, to_nvlabs_state_dict(dv, "D"))})
    nets = import_torch(path, which="G,D")
    assert nets["G"].config == gcfg and nets["D"].config == dcfg, (nets["G"].config, nets["D"].config)
    assert_same_variables(nets["G"].variables, gv)
    assert_same_variables(nets["D"].variables, dv)
    assert not nets.warnings
    c = jnp.eye(5)[:2]
    z = jnp.ones((2, 12))
    img = g_fn(gcfg)(nets["G"].variables, z, c, 1.0)
    np.testing.assert_array_equal(np.asarray(img), np.asarray(g_fn(gcfg)(gv, z, c, 1.0)))
    logits = d_fn(dcfg)(nets["D"].variables, img, c)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(d_fn(dcfg)(dv, img, c)))


def test_kwargs_are_checked_against_shapes(tmp_path, fixture_sd):
    sd = fixture_sd["G"]
    bad = dict(G_KWARGS, z_dim=64)
    path = _write(tmp_path, "bad.pkl", {"G_ema": FakeNetwork("Generator", bad, sd)})
    with pytest.raises(UnsupportedNetworkError, match=r"init_kwargs say z_dim=64 but the tensors show 32"):
        import_torch(path)
    arch = dict(G_KWARGS, synthesis_kwargs=dict(G_KWARGS["synthesis_kwargs"], architecture="resnet"))
    path = _write(tmp_path, "arch.pkl", {"G_ema": FakeNetwork("Generator", arch, sd)})
    with pytest.raises(UnsupportedNetworkError, match=r"architecture='resnet' but the tensors show 'skip'"):
        import_torch(path)
    path = _write(tmp_path, "swapped.pkl", {"D": FakeNetwork("Generator", G_KWARGS, sd)})
    with pytest.raises(UnsupportedNetworkError, match=r"network 'D' holds a Generator; expected a discriminator"):
        import_torch(path)
    # Missing kwargs fall back to NVlabs defaults; where the shapes disagree they win, with a warning.
    # Positional init_args and stylegan3-repo style flattened synthesis kwargs are understood.
    flat_kwargs = dict(w_dim=32, img_resolution=16, img_channels=3, channel_base=512, channel_max=32,
                       conv_clamp=128, some_new_option=True)
    path = _write(tmp_path, "defaults.pkl",
                  {"G_ema": FakeNetwork("Generator", flat_kwargs, sd, init_args=(32, 0))})
    nets = import_torch(path)
    assert nets["G_ema"].config.mapping_layers == 2 and nets["G_ema"].config.conv_clamp == 128.0
    assert any("lack mapping_kwargs.num_layers; its NVlabs default 8" in w for w in nets.warnings)
    assert any("ignored unrecognised init_kwargs ['synthesis_kwargs.some_new_option']" in w for w in nets.warnings)


def test_load_any_accepts_directories_and_files(cli_out, snapshot):
    from_dir = checkpoints.load_any(cli_out[0], ["G_ema"])
    from_file = checkpoints.load_any(snapshot, ["G_ema"])
    assert list(from_dir) == list(from_file) == ["G_ema"]
    assert from_file.metadata["source"]["format"] == "nvlabs-pkl"
    assert_same_variables(from_dir["G_ema"].variables, from_file["G_ema"].variables)


def test_loader_sees_the_fake_like_a_snapshot(snapshot, fixture_sd):
    records = load_nvlabs_pkl(snapshot)
    assert list(records) == ["G", "D", "G_ema"]
    assert records["D"].module_classes["b4.mbstd"] == "MinibatchStdLayer"
    assert records["G"].state_dict.keys() == fixture_sd["G"].keys()
