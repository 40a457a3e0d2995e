"""Content-aware scoring is resumable: running sums sealed per batch, a re-run continues from the
last complete batch with exactly the scores of an uninterrupted run; Ctrl-C returns at once
(issue 23, item 14)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.models import get_preset
from gancomp_jax.prune import criteria as crit
from gancomp_jax.prune.resume import ScoreAccumulator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def teacher():
    return checkpoints.init_network("generator", get_preset("tiny16").generator, jax.random.key(3))


def _inputs(teacher, acc=None, seed=0):
    inputs = crit.ScoringInputs(teacher.config, teacher.variables, n_sample=6, batch_size=2, seed=seed,
                                progress=False)
    inputs.accumulator = acc
    return inputs


def test_interrupted_scoring_resumes_to_the_uninterrupted_scores(teacher, tmp_path, capsys):
    """One uninterrupted run whose state file is copied right after batch 2 was sealed (what a
    kill at that moment leaves); resuming from the copy equals the uninterrupted scores."""
    state = tmp_path / "run" / ".scoring_state.npz"
    prepared, copies = [], {}
    acc = ScoreAccumulator(state, {"teacher": "t"}, prepare=lambda: prepared.append(state.parent.mkdir()))
    real_save = acc.save

    def save_and_copy(extra, done, sums):
        real_save(extra, done, sums)
        copies[done] = state.read_bytes()

    acc.save = save_and_copy
    reference = crit.compute_scores("content_aware", _inputs(teacher, acc))
    assert len(prepared) == 1 and sorted(copies) == [1, 2, 3]
    state.write_bytes(copies[2])
    # Re-run: resumes after batch 2, computes only batch 3, equals the uninterrupted scores.
    calls = []
    acc2 = ScoreAccumulator(state, {"teacher": "t"})
    real2 = acc2.save
    acc2.save = lambda extra, done, sums: calls.append(done) or real2(extra, done, sums)
    capsys.readouterr()
    resumed = crit.compute_scores("content_aware", _inputs(teacher, acc2))
    assert "resuming scoring after batch 2 of 3" in capsys.readouterr().err and calls == [3]
    assert "scoring stopped after batch 3 of 3" in acc2.describe()
    for name in reference:
        np.testing.assert_array_equal(resumed[name], reference[name])
    # A damaged state file, or one made with other settings: reported, scoring starts over.
    blob = bytearray(copies[2])
    blob[len(blob) // 2] ^= 0xFF
    state.write_bytes(bytes(blob))
    assert ScoreAccumulator(state, {"teacher": "t"}).load({}, {0: 4}, 3)[0] == 0
    assert "is not used" in capsys.readouterr().err
    state.write_bytes(copies[2])
    assert ScoreAccumulator(state, {"teacher": "other"}).load({}, {0: 4}, 3)[0] == 0
    assert "other settings or another teacher" in capsys.readouterr().err
    acc2.finish()
    assert not state.exists()


@pytest.mark.slow
def test_prune_job_ctrl_c_returns_at_once_and_rerun_resumes(teacher, tmp_path):
    model = checkpoints.save_model(tmp_path / "teacher", {"G_ema": teacher})
    work = tmp_path / "out"
    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "prune.py"),
           "--workdir", str(work), f"--config.teacher={model}", "--config.ratio=0.5", "--config.discriminator=fresh", "--config.n_sample=4000",
           "--config.batch_size=2", "--config.progress=False"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 1200
        while not (work / ".scoring_state.npz").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert (work / ".scoring_state.npz").exists(), proc.stderr.read()[-2000:] if proc.poll() is not None else ""
        t0 = time.time()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        seconds = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and seconds < 15 and "Traceback" not in err, (seconds, err[-2000:])
    line = [l for l in err.splitlines() if l.startswith("interrupted:")]
    assert len(line) == 1 and "scoring stopped after batch" in line[0] and "re-run the same command" in line[0]
    done = int(line[0].split("after batch ")[1].split()[0])
    p = subprocess.run(cmd[:-3] + ["--config.n_sample=" + str(2 * done + 2), "--config.batch_size=2",
                                   "--config.progress=False"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=1200)
    # n_sample changed: the state is for other settings, so scoring starts over and finishes.
    assert p.returncode == 0 and "is not used" in p.stderr, p.stderr[-2000:]
    assert (work / "scores.npz").is_file() and not (work / ".scoring_state.npz").exists()
