"""SVS against a direct transcription of the released scaling (torch, NVlabs parameter names)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import traverse_util

from gancomp_jax import checkpoints
from gancomp_jax.models import GeneratorConfig
from gancomp_jax.prune import svs

torch = pytest.importorskip("torch")

CFG = GeneratorConfig(img_resolution=8, channels=(32, 30, 24, 24), z_dim=16, w_dim=16, mapping_layers=2)
ROOT = Path(__file__).resolve().parents[1]


def random_generator(seed=0):
    rng = np.random.default_rng(seed)
    v = jax.tree.map(lambda a: rng.standard_normal(a.shape, dtype=np.float32),
                     checkpoints.abstract_variables("generator", CFG))
    return checkpoints.Network("generator", CFG, v)


def to_nvlabs(params):
    """Our synthesis params -> NVlabs names and layouts (torch tensors)."""
    out = {}
    for k, a in traverse_util.flatten_dict(params["synthesis"], sep=".").items():
        a = np.asarray(a, np.float64)
        if a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)
        elif a.ndim == 2:
            a = a.T
        out[k] = torch.from_numpy(a.copy())
    return out


def released_scaling(named, initialize=True, initialize_torgb=True):
    """The loops of training_loop_stylekd_scaling.py, transcribed on a dict of named tensors."""
    named = {k: v.clone() for k, v in named.items()}
    for name in list(named):
        if ("torgb" in name and not initialize_torgb) or ("torgb" not in name and not initialize):
            continue
        if "weight" in name:
            W = named[name].numpy()
            ndim = W.ndim
            if ndim == 4:
                co, ci, k, k = W.shape
                W = W.reshape(co, -1)
            U, S, Vt = np.linalg.svd(W, full_matrices=False)
            W_sqrt = np.dot(U, np.dot(np.diag(np.sqrt(S)), Vt))
            if ndim == 4:
                W_sqrt = W_sqrt.reshape(co, ci, k, k)
            named[name] = torch.from_numpy(W_sqrt)
        if "bias" in name:
            named[name] = named[name] * (named[name].norm() + 1e-8).rsqrt()
    return named


@pytest.mark.parametrize("synthesis,torgb", [(True, True), (True, False), (False, True)])
def test_svs_equals_released(synthesis, torgb):
    g = random_generator()
    got = to_nvlabs(svs.svs_network(g, synthesis=synthesis, torgb=torgb).variables["params"])
    want = released_scaling(to_nvlabs(g.variables["params"]), synthesis, torgb)
    before = to_nvlabs(g.variables["params"])
    changed = 0
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=2e-5, atol=2e-6, err_msg=k)
        changed += not np.array_equal(got[k].numpy(), before[k].numpy())
    assert changed > 0
    for k in ("b4.const", "b8.conv0.noise_strength"):
        np.testing.assert_array_equal(got[k].numpy(), before[k].numpy())
    np.testing.assert_array_equal(svs.svs_network(g).variables["params"]["mapping"]["fc0"]["weight"],
                                  g.variables["params"]["mapping"]["fc0"]["weight"])


def test_singular_values_are_square_rooted():
    w = np.random.default_rng(3).standard_normal((5, 4, 3, 3))
    s = np.linalg.svd(w.reshape(5, -1), compute_uv=False)
    s2 = np.linalg.svd(svs.sqrt_singular_values(w).reshape(5, -1), compute_uv=False)
    np.testing.assert_allclose(s2, np.sqrt(s), rtol=1e-12)
    b = np.array([3.0, 4.0])
    np.testing.assert_allclose(svs.scale_bias(b), b / np.sqrt(5.0 + 1e-8))


def test_svs_model_dir_and_tool(tmp_path):
    g = random_generator(1)
    d = checkpoints.Network("discriminator", *_tiny_d())
    checkpoints.save_model(tmp_path / "pruned", {"G": g, "G_ema": g, "D": d}, {"pruning": {"criterion": "first"}})
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "svs.py"), str(tmp_path / "pruned"), str(tmp_path / "svs")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = checkpoints.load_model(tmp_path / "svs")
    want = svs.svs_network(g).variables["params"]
    for n in ("G", "G_ema"):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), out[n].variables["params"], want)
    jax.tree.map(np.testing.assert_array_equal, out["D"].variables, jax.tree.map(np.asarray, d.variables))
    meta = checkpoints.read_description(tmp_path / "svs")["metadata"]
    assert meta["pruning"] == {"criterion": "first"} and meta["svs"]["torgb"] is True
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "svs.py"), str(tmp_path / "pruned"), str(tmp_path / "svs")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "already exists" in r.stderr


def _tiny_d():
    from gancomp_jax.models.config import DiscriminatorConfig
    cfg = DiscriminatorConfig(img_resolution=8, channels=(16, 16), mbstd_group_size=2)
    rng = np.random.default_rng(2)
    return cfg, jax.tree.map(lambda a: rng.standard_normal(a.shape, dtype=np.float32),
                             checkpoints.abstract_variables("discriminator", cfg))


def test_prune_job_svs_option(tmp_path):
    from gancomp_jax.jobs import prune as prune_job
    g = random_generator(4)
    checkpoints.save_model(tmp_path / "teacher", {"G_ema": g, "D": checkpoints.Network("discriminator", *_tiny_d())})
    results = {}
    for flag in (False, True):
        c = prune_job.default_config()
        c.teacher, c.criterion, c.ratio, c.svs, c.progress = str(tmp_path / "teacher"), "first", 0.5, flag, False
        c.grid_seeds = "0-1"
        results[flag] = prune_job.run(c, str(tmp_path / f"out{flag}"))
    plain = checkpoints.load_model(results[False]["model"])["G_ema"]
    scaled = checkpoints.load_model(results[True]["model"])
    want = svs.svs_network(plain).variables["params"]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), scaled["G"].variables["params"], want)
    assert checkpoints.read_description(results[True]["model"])["metadata"]["pruning"]["svs"]["torgb"] is True
