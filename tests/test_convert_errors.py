"""Bad input to tools/convert_pt_weights.py: one clear `error: ...` line and exit code 2."""

from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gancomp_jax.convert import (NetworkNotFoundError, UnrecognizedFileError, UnsupportedNetworkError,
                                 import_torch)
from gancomp_jax.convert.fake_nvlabs import FakeNetwork, write_nvlabs_pickle

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli():
    spec = importlib.util.spec_from_file_location("convert_pt_weights", REPO / "tools" / "convert_pt_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def g_only(tmp_path_factory, fixtures_dir):
    """An NVlabs-style pickle holding just G_ema (the fixture's generator)."""
    ref = np.load(fixtures_dir / "nvlabs_tiny16.npz")
    sd = {k[2:]: ref[k] for k in ref.files if k.startswith("G/")}
    kwargs = dict(z_dim=32, w_dim=32, c_dim=0, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=512, channel_max=32))
    path = tmp_path_factory.mktemp("err") / "g_only.pkl"
    return write_nvlabs_pickle(path, {"G_ema": FakeNetwork("Generator", kwargs, sd)}), kwargs, sd


def run_cli(cli, capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_random_bytes(cli, capsys, tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x13" + np.random.default_rng(0).bytes(4095))
    with pytest.raises(UnrecognizedFileError):
        import_torch(path)
    code, out, err = run_cli(cli, capsys, path, tmp_path / "out")
    assert_one_error(code, err, str(path), "neither an NVlabs network pickle (.pkl) nor a rosinality checkpoint (.pt)")
    assert not (tmp_path / "out").exists() and not out


def test_pickle_of_something_else(cli, capsys, tmp_path):
    path = tmp_path / "stats.pkl"
    path.write_bytes(pickle.dumps({"mu": [0.0], "sigma": [1.0]}, protocol=4))
    code, _, err = run_cli(cli, capsys, path, tmp_path / "out")
    assert_one_error(code, err, str(path), "neither an NVlabs network pickle", "keys: ['mu', 'sigma']")


@pytest.mark.parametrize("source,reader", [("rosinality", "auto"), ("rosinality", "builtin"), ("nvlabs", "auto")])
def test_truncated_file(cli, capsys, tmp_path, fixtures_dir, g_only, source, reader):
    full = (fixtures_dir / "rosinality_ros16.pt") if source == "rosinality" else g_only[0]
    path = tmp_path / f"cut_{full.name}"
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(cli, capsys, path, tmp_path / "out", "--reader", reader)
    assert_one_error(code, err, str(path), "truncated")
    assert not (tmp_path / "out").exists()


def test_stylegan3_is_refused(cli, capsys, tmp_path, g_only):
    _, kwargs, sd = g_only
    sd = dict(sd, **{"synthesis.input.freqs": np.zeros((32, 2), np.float32)})
    path = write_nvlabs_pickle(tmp_path / "sg3.pkl", {"G_ema": FakeNetwork(
        "Generator", kwargs, sd, module_classes={"synthesis.input": "SynthesisInput"})})
    with pytest.raises(UnsupportedNetworkError, match="StyleGAN3"):
        import_torch(path)
    code, _, err = run_cli(cli, capsys, path, tmp_path / "out")
    assert_one_error(code, err, str(path), "StyleGAN3 network")


def test_other_classes_are_refused(cli, capsys, tmp_path, g_only):
    _, kwargs, sd = g_only
    path = write_nvlabs_pickle(tmp_path / "other.pkl", {"G_ema": FakeNetwork("StyleEncoder", kwargs, sd)})
    code, _, err = run_cli(cli, capsys, path, tmp_path / "out")
    assert_one_error(code, err, str(path), "class 'StyleEncoder' is not a StyleGAN2 Generator or Discriminator")


def test_requested_network_missing(cli, capsys, tmp_path, g_only):
    with pytest.raises(NetworkNotFoundError, match=r"network D not in the file \(found: G_ema\)"):
        import_torch(g_only[0], which="D")
    code, _, err = run_cli(cli, capsys, g_only[0], tmp_path / "out", "--which", "D")
    assert_one_error(code, err, str(g_only[0]), "network D not in the file (found: G_ema)")
    assert not (tmp_path / "out").exists()


def test_existing_out_dir_is_left_alone(cli, capsys, tmp_path, g_only):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run_cli(cli, capsys, g_only[0], out)
    assert_one_error(code, err, str(out), "already exists", "--overwrite")
    # --overwrite replaces only a model directory of ours: foreign files stay untouched
    code, _, err = run_cli(cli, capsys, g_only[0], out, "--overwrite")
    assert_one_error(code, err, str(out), "only replaces a model directory", "keep.txt", "nothing was changed")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "precious"


def test_overwrite_replaces_a_previous_output(cli, capsys, tmp_path, g_only):
    out = tmp_path / "model"
    code, stdout, _ = run_cli(cli, capsys, g_only[0], out)
    assert code == 0 and "wrote    :" in stdout
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stdout, _ = run_cli(cli, capsys, g_only[0], out, "--overwrite")
    assert code == 0 and "wrote    :" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "variables"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no temporary leftovers
    # an output folder that gained a foreign file is no longer replaced
    (out / "notes.txt").write_text("mine")
    code, _, err = run_cli(cli, capsys, g_only[0], out, "--overwrite")
    assert_one_error(code, err, "notes.txt")
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("layout", ["out_is_src_dir", "out_is_src_parent", "out_is_src"])
def test_overwrite_never_touches_the_source(cli, capsys, tmp_path, g_only, layout):
    """Issue 8.1: `convert SRC_DIR/x.pkl SRC_DIR --overwrite` used to delete SRC_DIR with the source."""
    src_dir = tmp_path / "downloads" / "weights"
    src_dir.mkdir(parents=True)
    src = src_dir / "x.pkl"
    src.write_bytes(g_only[0].read_bytes())
    (src_dir / "other.txt").write_text("keep")
    out = {"out_is_src_dir": src_dir, "out_is_src_parent": src_dir.parent, "out_is_src": src}[layout]
    snapshot = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, _, err = run_cli(cli, capsys, src, out, "--overwrite")
    assert_one_error(code, err, "must not be or contain the source file")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == snapshot


def test_overwrite_refuses_files_and_links(cli, capsys, tmp_path, g_only):
    target = tmp_path / "model.bin"
    target.write_text("not a model")
    code, _, err = run_cli(cli, capsys, g_only[0], target, "--overwrite")
    assert_one_error(code, err, "not a directory")
    assert target.read_text() == "not a model"
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    code, _, err = run_cli(cli, capsys, g_only[0], link, "--overwrite")
    assert_one_error(code, err, "symbolic link")
    assert link.is_symlink() and real.is_dir()


def test_max_alloc_flag(cli, capsys, tmp_path, g_only):
    code, _, err = run_cli(cli, capsys, g_only[0], tmp_path / "out", "--max-alloc", "64K")
    assert_one_error(code, err, str(g_only[0]), "memory limit of 64.0 KiB", "--max-alloc")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        cli.parse_args([str(g_only[0]), str(tmp_path / "out"), "--max-alloc", "lots"])
    assert cli.parse_size("8G") == 8 << 30 and cli.parse_size("512MiB") == 512 << 20 and cli.parse_size("100") == 100


def test_cli_process_error_has_no_traceback(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    proc = subprocess.run([sys.executable, "tools/convert_pt_weights.py", str(path), str(tmp_path / "out")],
                          cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert_one_error(proc.returncode, proc.stderr, "neither an NVlabs network pickle")
