"""Generation job and CLI: NVlabs seed/quantisation conventions, determinism, clear errors."""

import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from gancomp_jax import checkpoints
from gancomp_jax.main import run_job
from gancomp_jax.models import Generator, get_preset

REPO = Path(__file__).resolve().parents[1]


def load_config(name: str) -> ml_collections.ConfigDict:
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config("init_model")
    cfg.preset = "tiny16"
    cfg.seed = 3
    path = tmp_path_factory.mktemp("model") / "m"
    run_job(cfg, str(path))
    return path


def generate(model_dir, out, **kw):
    cfg = load_config("generate")
    cfg.checkpoint = str(model_dir)
    for k, v in kw.items():
        cfg[k] = v
    return run_job(cfg, str(out))


def test_pngs_follow_nvlabs_conventions(model_dir, tmp_path):
    paths = generate(model_dir, tmp_path, seeds="0-2,7", truncation_psi=0.7, noise_mode="const", batch_size=3)
    assert [p.name for p in paths] == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0007.png"]
    assert (tmp_path / "grid.png").is_file()
    net = checkpoints.load_model(model_dir)["G_ema"]
    G = Generator(net.config)
    for seed, path in zip([0, 1, 2, 7], paths):
        z = np.random.RandomState(seed).randn(1, net.config.z_dim).astype(np.float32)
        img = np.asarray(G.apply(net.variables, z, truncation_psi=0.7, noise_mode="const"))[0]
        want = np.clip(img * 127.5 + 128, 0, 255).astype(np.uint8)
        got = np.asarray(Image.open(path))
        assert got.shape == (16, 16, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_same_seeds_give_byte_identical_pngs(model_dir, tmp_path):
    for mode in ("const", "random"):
        a = generate(model_dir, tmp_path / f"a_{mode}", seeds="0-4", noise_mode=mode)
        b = generate(model_dir, tmp_path / f"b_{mode}", seeds="0-4", noise_mode=mode)
        for pa, pb in zip(a, b):
            assert pa.read_bytes() == pb.read_bytes()
    # random noise differs from const noise (the noise strengths are zero at init, so give them weight)
    assert (tmp_path / "a_const" / "seed0000.png").is_file()


def test_bad_inputs_are_clear_errors(model_dir, tmp_path):
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        generate(model_dir, tmp_path, noise_mode="fixed")
    with pytest.raises(ValueError, match="invalid seed list '3-1'"):
        generate(model_dir, tmp_path, seeds="3-1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        generate(tmp_path / "nope", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a gancomp_jax model checkpoint"):
        generate(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(KeyError, match="network 'D2' not in"):
        generate(model_dir, tmp_path / "o", network="D2")


def test_cli_rejects_unknown_keys_and_bad_values(model_dir, tmp_path):
    base = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "generate.py"),
            "--workdir", str(tmp_path / "out"), f"--config.checkpoint={model_dir}"]
    r = subprocess.run(base + ["--config.bogus=3"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0 and "unknown config key 'bogus'" in r.stderr
    r = subprocess.run(base + ["--config.truncation_psi=abc"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0 and "truncation_psi" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(base + ["--config.seeds=0-1"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".gancomp_jax_output.json", "grid.png", "seed0000.png", "seed0001.png"]


def test_model_checkpoint_errors(tmp_path):
    p = get_preset("tiny16")
    g = checkpoints.init_network("generator", p.generator, jax.random.key(0))
    checkpoints.save_model(tmp_path / "m", {"G": g})
    with pytest.raises(FileExistsError):
        checkpoints.save_model(tmp_path / "m", {"G": g})
    bad = checkpoints.Network("generator", p.generator.replace(channels=(8,) * 6), g.variables)
    with pytest.raises(ValueError, match="wrong shapes"):
        checkpoints.save_model(tmp_path / "m2", {"G": bad})
    assert not (tmp_path / "m2").exists() and not list(tmp_path.glob(".m2*"))
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        checkpoints.load_model(tmp_path / "m")


def test_readme_commands_match_ci():
    readme = (REPO / "README.md").read_text().splitlines()
    commands = [l for l in readme if l.startswith("python3.11 -m venv")]
    assert len(commands) >= 2 and "gancomp_jax.main --config experiments/quickstart.py" in commands[0]
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1].replace("pip install -r", "pip install -q -r", 1) in ci
