"""Model directories and sampling settings that would cost minutes or gigabytes before any check
(issue 23): shapes and sizes are checked from model.json and the Orbax metadata before array data
is read; architecture fields, seed counts and batch sizes are bounded."""

import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.models import get_preset
from gancomp_jax.utils.ranges import check_batch_size, parse_seeds

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    g = checkpoints.init_network("generator", get_preset("tiny16").generator, jax.random.key(0))
    return checkpoints.save_model(tmp_path_factory.mktemp("m") / "model", {"G_ema": g})


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_stored_array_of_another_shape_is_refused_before_it_is_read(tiny_model, tmp_path, monkeypatch):
    """An Orbax array larger than model.json implies (here 4 MB standing in for 10^9 zeros) is
    refused from the metadata: nothing is restored."""
    bad = _copy(tiny_model, tmp_path / "bad")
    tree = jax.tree.map(np.asarray, checkpoints._local_checkpointer().restore(tiny_model / "variables"))
    tree["G_ema"]["params"]["mapping"]["fc0"]["weight"] = np.zeros((1000, 1000), np.float32)
    import shutil
    shutil.rmtree(bad / "variables")
    ck = checkpoints._local_checkpointer()
    ck.save(bad / "variables", tree)
    ck.wait_until_finished()
    restores = []
    real = ocp.StandardCheckpointer.restore
    monkeypatch.setattr(ocp.StandardCheckpointer, "restore",
                        lambda self, *a, **k: restores.append(a) or real(self, *a, **k))
    with pytest.raises(ValueError, match=r"does not match model.json: wrong shapes .*fc0.*weight.*\(1000, 1000\)"):
        checkpoints.load_model(bad)
    assert not restores
    # An undeclared extra array, and a declared one missing: also before reading.
    tree["G_ema"]["params"]["mapping"]["fc0"]["weight"] = np.zeros((32, 32), np.float32)
    tree["G_ema"]["params"]["huge"] = np.zeros((8,), np.float32)
    shutil.rmtree(bad / "variables")
    ck.save(bad / "variables", tree)
    ck.wait_until_finished()
    with pytest.raises(ValueError, match="arrays not declared in model.json"):
        checkpoints.load_model(bad)
    assert not restores
    # The intact model still loads (through the checked target) and equals what was saved.
    monkeypatch.undo()
    net = checkpoints.load_model(tiny_model)["G_ema"]
    assert isinstance(jax.tree.leaves(net.variables)[0], np.ndarray)


@pytest.mark.parametrize("key,value,message", [
    ("mapping_layers", 1_000_000, "mapping_layers=1000000 is larger than 64"),
    ("channels", [10 ** 9] * 8, "channels=1000000000 is larger than 16384"),
    ("channels", 5, "channels must be a list"),
    ("channels", [1e400] * 8, "must hold integers"),
    ("z_dim", "512", "z_dim must be an integer"),
    ("img_resolution", 2 ** 20, "img_resolution=1048576 is larger than 4096"),
])
def test_model_json_bounds_are_one_error_at_once(tiny_model, tmp_path, key, value, message):
    d = _copy(tiny_model, tmp_path / "m")
    desc = json.loads((d / "model.json").read_text())
    desc["networks"]["G_ema"]["config"][key] = value
    (d / "model.json").write_text(json.dumps(desc))
    t0 = time.time()
    with pytest.raises(ValueError, match=message):
        checkpoints.load_model(d)
    assert time.time() - t0 < 10


def test_total_size_limit(tiny_model, monkeypatch):
    monkeypatch.setenv("GANCOMP_MAX_MODEL_GIB", "0.0001")
    with pytest.raises(ValueError, match="more than the limit of .*GANCOMP_MAX_MODEL_GIB"):
        checkpoints.load_model(tiny_model)


def test_seed_counts_and_batch_sizes_are_bounded():
    t0 = time.time()
    with pytest.raises(ValueError, match="10000000001 seeds, more than 1000000"):
        parse_seeds("0-10000000000")
    with pytest.raises(ValueError, match="more than 10"):
        parse_seeds("0-5,7-12", max_count=10)
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    for bad in (100_000_000, 1e8, 0, 2.5, "8", True):
        with pytest.raises(ValueError, match="batch_size"):
            check_batch_size(bad)
    assert check_batch_size(64) == 64
    assert time.time() - t0 < 5


def test_generate_rejects_huge_batch_and_seed_ranges_before_loading(tmp_path):
    import subprocess
    for override, message in (("--config.batch_size=100000000", "config.batch_size must be in [1, 4096]"),
                              ("--config.seeds=0-10000000000", "10000000001 seeds")):
        cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "generate.py"),
               "--workdir", str(tmp_path / "out"), "--config.checkpoint", str(tmp_path / "nope"), override]
        t0 = time.time()
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                           env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and message in lines[0], p.stderr[-2000:]
        assert time.time() - t0 < 120
        assert not (tmp_path / "out").exists()
