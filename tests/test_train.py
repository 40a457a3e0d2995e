"""Trainer: sharded equality, exact resume (also after SIGKILL), NaN stop, outputs on disk."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.methods import stylegan2 as sg2_method
from gancomp_jax.train.config import default_train_config
from gancomp_jax.train.trainer import NonFiniteLossError, train

REPO = Path(__file__).resolve().parents[1]


def tiny_config(**overrides):
    c = default_train_config()
    c.model.preset = "tiny16"
    c.batch_size = 8
    c.total_steps = 4
    c.log_every_steps = 2
    c.checkpoint_every_steps = 2
    c.sample_every_steps = 2
    c.grid_rows, c.grid_cols = 2, 4
    c.progress = False
    c.r1_interval = 2
    c.pl_interval = 2
    c.ema_rampup = 0.05
    c.mesh_devices = 1
    c.mbstd_num_shards = 4
    for k, v in overrides.items():
        node = c
        *path, leaf = k.split(".")
        for p in path:
            node = node[p]
        node[leaf] = v
    return c


def params_of(result):
    return jax.device_get({"g": result.state.params["G"], "g_ema": result.state.ema["G"],
                           "d": result.state.params["D"], "extra": result.state.extra, "opt": result.state.opt})


def assert_trees_equal(a, b):
    flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
    flat_b = dict(jax.tree_util.tree_flatten_with_path(b)[0])
    for path, x in flat_a:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(flat_b[path]), err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted 6-step run (shared by the resume tests)."""
    work = tmp_path_factory.mktemp("uninterrupted")
    return train(tiny_config(total_steps=6), work)


def test_outputs_on_disk(reference_run):
    w = reference_run.workdir
    cfg = json.loads((w / "config.json").read_text())
    assert cfg["batch_size"] == 8 and cfg["lr"] == 0.002  # preset default resolved
    lines = [json.loads(l) for l in (w / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [2, 4, 6]
    assert {"G/loss", "D/loss", "D/r1_penalty", "G/pl_penalty", "Timing/img_per_sec"} <= set(lines[-1])
    assert list((w / "tb").glob("events.out.tfevents.*"))
    assert (w / "samples" / "reals.png").is_file() and (w / "samples" / "fakes000002.png").is_file()
    assert reference_run.grid_path == w / "samples" / "fakes_final.png" and reference_run.grid_path.is_file()
    assert sorted(int(p.name) for p in (w / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4, 6]
    nets = checkpoints.load_model(w / "model")
    assert set(nets) == {"G", "G_ema", "D"}
    np.testing.assert_array_equal(nets["G_ema"].variables["params"]["synthesis"]["b4"]["const"],
                                  np.asarray(reference_run.state.ema["G"]["params"]["synthesis"]["b4"]["const"]))


def test_stop_and_resume_equals_uninterrupted(reference_run, tmp_path):
    first = train(tiny_config(total_steps=3, checkpoint_every_steps=3), tmp_path)
    assert first.step == 3
    resumed = train(tiny_config(total_steps=6), tmp_path)
    assert resumed.step == 6
    assert_trees_equal(params_of(resumed), params_of(reference_run))
    steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated log records after the resume


def test_sigkill_then_resume_equals_uninterrupted(reference_run, tmp_path):
    """Kill -9 a run while it writes checkpoints every step, resume, compare with the reference."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "train_stylegan2.py"),
           "--workdir", str(tmp_path), "--config.model.preset=tiny16", "--config.batch_size=8",
           "--config.total_steps=400", "--config.checkpoint_every_steps=1", "--config.keep_checkpoints=2",
           "--config.log_every_steps=2", "--config.sample_every_steps=0", "--config.grid_rows=2",
           "--config.grid_cols=4", "--config.progress=False", "--config.r1_interval=2", "--config.pl_interval=2",
           "--config.ema_rampup=0.05", "--config.mesh_devices=1", "--config.mbstd_num_shards=4"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt_dir = tmp_path / "checkpoints"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            done = [int(p.name) for p in ckpt_dir.glob("*") if p.name.isdigit()] if ckpt_dir.exists() else []
            if done and max(done) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"training exited early: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        else:
            pytest.fail("no checkpoint appeared in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "model").exists()  # it was killed before finishing
    resumed = train(tiny_config(total_steps=6), tmp_path)  # lower target: must resume from <= 6
    if resumed.step == 6:
        assert_trees_equal(params_of(resumed), params_of(reference_run))
    else:  # the kill came after step 6: the resumed state is that later checkpoint, just check it loads
        assert resumed.step > 6


@pytest.fixture(scope="module")
def four_device_run(tmp_path_factory):
    assert jax.device_count() >= 4, "conftest sets --xla_force_host_platform_device_count=4"
    return train(tiny_config(total_steps=2, mesh_devices=4), tmp_path_factory.mktemp("four"))


def test_four_devices_equal_one_device(tmp_path, four_device_run):
    one = train(tiny_config(total_steps=2, mesh_devices=1), tmp_path / "one")
    four = four_device_run
    a, b = params_of(one), params_of(four)
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=2e-5,
                                   err_msg=jax.tree_util.keystr(path))
    # The batch really was split: the step ran on 4 devices.
    assert len(four.state.params["G"]["params"]["synthesis"]["b4"]["const"].sharding.device_set) == 4


def test_fsdp_sharding_runs_and_matches(tmp_path):
    rep = train(tiny_config(total_steps=1, mesh_devices=4), tmp_path / "rep")
    fsdp = train(tiny_config(total_steps=1, mesh_devices=4, sharding="fsdp"), tmp_path / "fsdp")
    w = fsdp.state.params["G"]["params"]["synthesis"]["b16"]["conv1"]["weight"]
    assert not w.sharding.is_fully_replicated
    np.testing.assert_allclose(np.asarray(w), np.asarray(rep.state.params["G"]["params"]["synthesis"]["b16"]["conv1"]["weight"]),
                               rtol=1e-4, atol=2e-5)


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    train(tiny_config(total_steps=2), tmp_path)
    monkeypatch.setitem(sg2_method.G_TERMS, "poison", lambda logits: np.float32("nan") * logits.mean())
    cfg = tiny_config(total_steps=6)
    cfg.loss.g = {"nonsaturating": 1.0, "poison": 1.0}
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 2: .*G/loss.*Last good checkpoint: step 2"):
        train(cfg, tmp_path)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2]


def test_bad_configs_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="multiple of the 4 devices"):
        train(tiny_config(batch_size=6, mesh_devices=4), tmp_path / "a")
    with pytest.raises(ValueError, match="does not match the model resolution 16"):
        train(tiny_config(**{"data.resolution": 32}), tmp_path / "b")
    cfg = tiny_config()
    cfg.loss.g = {"mystery": 1.0}
    with pytest.raises(ValueError, match="unknown generator loss term 'mystery'"):
        train(cfg, tmp_path / "c")
    train(tiny_config(total_steps=1), tmp_path / "d")
    with pytest.raises(ValueError, match="different model"):
        train(tiny_config(total_steps=2, **{"model.preset": "small32"}), tmp_path / "d")


def test_two_processes_equal_one_process(tmp_path, four_device_run):
    """Multi-host path on the CPU: 2 processes × 2 devices (gloo collectives), each feeding only
    its own half of every batch, train the same parameters as one process with 4 devices."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = []
    for pid in range(2):
        cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "train_stylegan2.py"),
               "--workdir", str(tmp_path), "--config.model.preset=tiny16", "--config.batch_size=8",
               "--config.total_steps=2", "--config.log_every_steps=2", "--config.checkpoint_every_steps=2",
               "--config.sample_every_steps=2", "--config.grid_rows=2", "--config.grid_cols=4",
               "--config.progress=False", "--config.r1_interval=2", "--config.pl_interval=2",
               "--config.ema_rampup=0.05", "--config.mbstd_num_shards=4", "--config.distributed=True",
               f"--config.coordinator_address=localhost:{port}", "--config.num_processes=2",
               f"--config.process_id={pid}"]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    nets = checkpoints.load_model(tmp_path / "model")
    ref = jax.device_get({"G_ema": four_device_run.state.ema["G"], "D": four_device_run.state.params["D"]})
    for name in ("G_ema", "D"):
        got = nets[name].variables
        for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(ref[name])[0], jax.tree.leaves(got)):
            np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-4, atol=2e-5,
                                       err_msg=name + jax.tree_util.keystr(path))


def test_mixed_precision_training_step(tmp_path):
    res = train(tiny_config(total_steps=2, **{"model.mixed_precision": True, "model.conv_clamp": 256.0}), tmp_path)
    cfg = checkpoints.load_model(tmp_path / "model")["G"].config
    assert cfg.num_mixed_res == 4 and cfg.conv_clamp == 256.0
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(v) for l in lines for v in l.values())
    # parameters (and their updates) stay float32
    assert res.state.params["G"]["params"]["synthesis"]["b16"]["conv1"]["weight"].dtype == np.float32
