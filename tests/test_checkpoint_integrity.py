"""Checkpoint integrity: sealed checkpoints, fallback past corrupt ones, only verified ones named good,
and the trainer's one-line errors (bad keys, Ctrl-C)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax.methods import stylegan2 as sg2_method
from gancomp_jax.train.checkpointing import (MANIFEST, TrainCheckpointer, UnsealedCheckpointsError, select_intact,
                                             verify)
from gancomp_jax.train.trainer import NonFiniteLossError, train

REPO = Path(__file__).resolve().parents[1]


def _tiny(**overrides):
    """test_train's tiny config, checkpointing every step and without sample grids."""
    from test_train import tiny_config
    return tiny_config(**{"log_every_steps": 1, "checkpoint_every_steps": 1, "sample_every_steps": 0,
                          "grid_rows": 0, "grid_cols": 0, **overrides})


def _largest_file(step_dir: Path) -> Path:
    files = [p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST]
    return max(files, key=lambda p: p.stat().st_size)


def _truncate(step_dir: Path) -> Path:
    f = _largest_file(step_dir)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    return f


def _flip(step_dir: Path) -> Path:
    f = _largest_file(step_dir)
    data = bytearray(f.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 8):
        data[i] ^= 0xFF
    f.write_bytes(bytes(data))
    return f


def _state_of(res):
    return jax.device_get({"params": res.state.params, "ema": res.state.ema, "opt": res.state.opt,
                           "extra": res.state.extra})


def _assert_equal(a, b):
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


# ---------------------------------------------------------------------------------------------
# Unit level: a small tree through the checkpointer


def _small_ckpts(tmp_path, steps=(1, 2, 3)):
    ck = TrainCheckpointer(tmp_path / "checkpoints", max_to_keep=5, async_save=True)
    for s in steps:
        ck.save(s, {"w": jnp.full((64, 64), float(s))}, {"pos": s}, {"step": s})
    ck.close()
    return tmp_path / "checkpoints"


def test_checkpoints_are_sealed_and_verified(tmp_path):
    d = _small_ckpts(tmp_path)
    for s in (1, 2, 3):
        assert (d / str(s) / MANIFEST).is_file() and verify(d / str(s)) is None
    _flip(d / "3")
    assert "does not match its checksum" in verify(d / "3")
    _truncate(d / "2")
    assert "bytes, expected" in verify(d / "2")
    (d / "1" / MANIFEST).unlink()
    assert "not sealed" in verify(d / "1")


def test_select_intact_moves_corrupt_ones_aside(tmp_path, capsys):
    d = _small_ckpts(tmp_path)
    _flip(d / "3")
    _truncate(d / "2")
    assert select_intact(d) == 1
    out = capsys.readouterr().err.strip().splitlines()
    assert len(out) == 2 and all(l.startswith("warning: checkpoint ") for l in out)
    assert str(d / "3") in out[0] and str(d / "2") in out[1]
    assert sorted(p.name for p in d.iterdir() if p.name.isdigit()) == ["1"]
    assert len(list((tmp_path / "checkpoints_rejected").iterdir())) == 2
    ck = TrainCheckpointer(d, max_to_keep=5, async_save=False)  # orbax sees only the intact one
    assert ck.all_steps() == [1] and ck.last_good_step() == 1
    ck.close()


def test_last_good_step_skips_a_checkpoint_corrupted_after_saving(tmp_path):
    ck = TrainCheckpointer(tmp_path / "checkpoints", max_to_keep=5, async_save=True)
    for s in (1, 2):
        ck.save(s, {"w": jnp.full((64, 64), float(s))}, {"pos": s}, {"step": s})
    ck.seal()
    _flip(tmp_path / "checkpoints" / "2")
    assert ck.last_good_step() == 1
    ck.close()


def test_all_unsealed_checkpoints_refuse_to_restart_silently(tmp_path, capsys):
    d = _small_ckpts(tmp_path)
    for s in (1, 2, 3):
        (d / str(s) / MANIFEST).unlink()
    with pytest.raises(UnsealedCheckpointsError, match=r"step\(s\) 3, 2, 1 are not sealed.*config.restart=True"):
        select_intact(d)
    assert sorted(p.name for p in d.iterdir()) == ["1", "2", "3"]  # nothing moved
    # The trainer refuses too, before touching anything (one error line from the command line).
    with pytest.raises(ValueError, match="holds no resumable checkpoint"):
        train(_tiny(total_steps=4), tmp_path)
    assert sorted(p.name for p in d.iterdir()) == ["1", "2", "3"]
    # Unsealed ones beside damaged ones: still refused, named as such.
    (d / "1" / MANIFEST).write_text('{"files": []}')
    with pytest.raises(UnsealedCheckpointsError, match=r"step\(s\) 3, 2 are not sealed.*others are damaged"):
        select_intact(d)
    # The explicit option: moved aside with a warning each, start from step 0.
    capsys.readouterr()
    assert select_intact(d, restart=True) is None
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all("starting from step 0 (restart)" in l for l in err)
    assert not any(p.name.isdigit() for p in d.iterdir())
    assert len(list((tmp_path / "checkpoints_rejected").iterdir())) == 3


@pytest.mark.parametrize("manifest,problem", [
    ('{"files": ["state/x"]}', "no 'files' mapping"),
    ('{"files": {"meta/metadata": "abcdef"}}', "is not [sha256, size]"),
    ('{"files": {"meta/metadata": "ab"}}', "is not [sha256, size]"),
    ('{"files": {"meta/metadata": ["' + "0" * 64 + '", true]}}', "is not [sha256, size]"),
    ('{"files": {"../../../etc/passwd": ["' + "0" * 64 + '", 1]}}', "path outside the checkpoint"),
    ('{"files": {"/dev/zero": ["' + "0" * 64 + '", 1]}}', "path outside the checkpoint"),
    ('{"files": ' + "[" * 100_000 + "]" * 100_000 + "}", "unreadable"),
    ("[" * 100_000 + "]" * 100_000, "unreadable"),
    ("[]", "no 'files' mapping"),
])
def test_hostile_checksum_manifests_are_damaged_not_tracebacks(tmp_path, capsys, manifest, problem):
    d = _small_ckpts(tmp_path, steps=(1, 2))
    (d / "2" / MANIFEST).write_text(manifest)
    assert problem in verify(d / "2")
    assert select_intact(d) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: checkpoint ") and problem in err[0]


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return train(_tiny(total_steps=4), tmp_path_factory.mktemp("ref"))


def test_resume_falls_back_past_corrupt_checkpoints_and_equals_uninterrupted(uninterrupted, tmp_path, capsys):
    train(_tiny(total_steps=3), tmp_path)
    _truncate(tmp_path / "checkpoints" / "3")
    _flip(tmp_path / "checkpoints" / "2")
    capsys.readouterr()
    resumed = train(_tiny(total_steps=4), tmp_path)
    warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning: checkpoint")]
    assert len(warnings) == 2 and "/checkpoints/3 is unusable" in warnings[0] \
        and "/checkpoints/2 is unusable" in warnings[1]
    assert resumed.step == 4
    _assert_equal(_state_of(resumed), _state_of(uninterrupted))
    steps = [json.loads(l)["step"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_nan_stop_names_only_a_verified_checkpoint(tmp_path, monkeypatch):
    train(_tiny(total_steps=2), tmp_path)
    _flip(tmp_path / "checkpoints" / "2")  # resume must not start from (or name) this one
    monkeypatch.setitem(sg2_method.G_TERMS, "poison", lambda logits: np.float32("nan") * logits.mean())
    cfg = _tiny(total_steps=6)
    cfg.loss.g = {"nonsaturating": 1.0, "poison": 1.0}
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at step 1: .*Last good checkpoint: step 1 in"):
        train(cfg, tmp_path)


@pytest.mark.parametrize("override,message", [
    ("--config.betas=1", "config.betas=(1,) must be two numbers in [0, 1)"),
    ("--config.total_kimg=inf", "config.total_kimg=inf must be a finite number"),
    ("--config.total_kimg=nan", "config.total_kimg=nan must be a finite number"),
    ("--config.keep_checkpoints=0", "config.keep_checkpoints=0 must be >= 1"),
])
def test_bad_training_keys_are_one_line_errors_and_leave_no_run_directory(tmp_path, override, message):
    work = tmp_path / "run"
    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "train_stylegan2.py"),
           "--workdir", str(work), "--config.model.preset=tiny16", "--config.total_steps=1", override]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = p.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[0].startswith("error: ") and message in lines[0], p.stderr[-2000:]
    assert not work.exists()


def _ctrl_c_command(workdir):
    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "train_stylegan2.py"),
           "--workdir", str(workdir), "--config.model.preset=tiny16", "--config.batch_size=8",
           "--config.total_steps=400", "--config.checkpoint_every_steps=1", "--config.sample_every_steps=0",
           "--config.progress=False", "--config.mesh_devices=1", "--config.mbstd_num_shards=4"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


# Start-up may take minutes on a busy machine (it is not what is tested); once Ctrl-C is pressed,
# control must come back within seconds: the trainer waits at most GRACE_S (10 s) for the step
# and the checkpoint in flight, then abandons them (gancomp_jax/train/interrupt.py). The bound
# below adds the process exit and a loaded machine's scheduling delays.
START_DEADLINE_S = 1200
EXIT_WITHIN_S = 30


def _interrupt_and_wait(proc):
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"no exit within {EXIT_WITHIN_S} s of SIGINT")
    return time.time() - t0, err


def test_ctrl_c_prints_step_checkpoint_and_how_to_resume(tmp_path):
    proc = _ctrl_c_command(tmp_path)
    deadline = time.time() + START_DEADLINE_S
    try:
        while time.time() < deadline:
            d = tmp_path / "checkpoints"
            if d.exists() and any(p.name.isdigit() and int(p.name) >= 2 for p in d.iterdir()):
                break
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read()[-2000:])
            time.sleep(0.05)
        else:
            pytest.fail(f"training did not reach step 2 within {START_DEADLINE_S} s")
        seconds, err = _interrupt_and_wait(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    line = [l for l in err.splitlines() if l.startswith("interrupted:")]
    assert len(line) == 1, err[-2000:]
    assert "stopped at step" in line[0] and "last checkpoint: step" in line[0] \
        and "re-run the same command to resume" in line[0]
    # The named checkpoint is sealed and verifies: resuming starts from it.
    step = int(line[0].split("last checkpoint: step ")[1].split()[0])
    assert verify(tmp_path / "checkpoints" / str(step)) is None


def test_ctrl_c_while_compiling_returns_at_once(tmp_path):
    """SIGINT while the first step compiles (the main thread is inside XLA, where a Python
    handler cannot run): nothing is worth waiting for, so the process ends within seconds, with
    one line, and the fresh run directory it created is removed."""
    work = tmp_path / "run"
    proc = _ctrl_c_command(work)
    lines = []
    try:
        deadline = time.time() + START_DEADLINE_S
        for l in proc.stderr:  # the trainer logs this line just before the first step
            lines.append(l)
            if "training stylegan2" in l or time.time() > deadline:
                break
        assert any("training stylegan2" in l for l in lines), "".join(lines)[-2000:]
        seconds, err = _interrupt_and_wait(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and seconds < 15, (seconds, err[-2000:])
    assert "Traceback" not in err
    line = [l for l in err.splitlines() if l.startswith("interrupted:")]
    assert len(line) == 1 and "before the first step" in line[0], err[-2000:]
    assert not work.exists()
