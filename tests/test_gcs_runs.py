"""Training runs with ``--workdir gs://...`` against a local Cloud Storage emulator (offline):
Orbax/TensorStore and gcsfs both pointed at it, anonymous/test credentials. Checkpoints sealed
on the bucket, tamper detection, exact resume, ownership of the prefix, and one-line errors for
unreachable buckets and for jobs that cannot write to gs://."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from gcs_emulator import free_port, start

REPO = Path(__file__).resolve().parents[1]
BUCKET = "test-bucket"


@pytest.fixture(scope="module")
def emulator():
    """An in-memory GCS emulator (tests/gcs_emulator.py) on a free port, with the clients' env."""
    server, url = start(BUCKET)
    env = {"STORAGE_EMULATOR_HOST": url, "TENSORSTORE_GCS_HTTP_URL": url, "TENSORSTORE_GCS_HTTP_VERSION": "1",
           "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator", "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        server.stop()
        import fsspec.config

        from gancomp_jax.io import cloud_storage as gcs
        fsspec.config.conf.pop("gs", None)  # configure_clients made gcsfs anonymous for the emulator
        gcs._FS.clear()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _tiny(**overrides):
    from test_checkpoint_integrity import _tiny as tiny
    return tiny(**overrides)


def _objects(url):
    from gancomp_jax.io import cloud_storage as gcs
    return gcs.list_files(url)


def _flip_largest(step_url):
    from gancomp_jax.io import cloud_storage as gcs
    files = {k: v for k, v in gcs.list_files(step_url).items() if k != "checksums.json"}
    rel = max(files, key=files.get)
    data = bytearray(gcs.read_bytes(gcs.join(step_url, rel)))
    for i in range(len(data) // 2, len(data) // 2 + 8):
        data[i] ^= 0xFF
    gcs.write_bytes(gcs.join(step_url, rel), bytes(data))
    return rel


def test_checkpointer_on_gcs_seals_and_detects_tampering(emulator, capsys):
    import jax.numpy as jnp

    from gancomp_jax.io import cloud_storage as gcs
    from gancomp_jax.train.checkpointing import MANIFEST, TrainCheckpointer, select_intact, verify

    d = f"gs://{BUCKET}/unit/checkpoints"
    ck = TrainCheckpointer(d, max_to_keep=5, async_save=True)
    for s in (1, 2, 3):
        ck.save(s, {"w": jnp.full((64, 64), float(s))}, {"pos": s}, {"step": s})
    ck.close()
    for s in (1, 2, 3):
        assert verify(gcs.join(d, str(s))) is None and gcs.exists(gcs.join(d, str(s), MANIFEST))
    manifest = json.loads(gcs.read_bytes(gcs.join(d, "3", MANIFEST)))["files"]
    assert "commit_success.txt" in manifest  # sealed after Orbax committed the step
    _flip_largest(gcs.join(d, "3"))
    assert "does not match its checksum" in verify(gcs.join(d, "3"))
    doc = json.loads(gcs.read_bytes(gcs.join(d, "2", MANIFEST)))
    rel = sorted(doc["files"])[0]
    doc["files"][rel][0] = "0" * 64  # a tampered checksum
    gcs.write_bytes(gcs.join(d, "2", MANIFEST), json.dumps(doc).encode())
    assert verify(gcs.join(d, "2")) == f"file {rel} does not match its checksum"
    capsys.readouterr()
    assert select_intact(d) == 1
    err = capsys.readouterr().err.strip().splitlines()
    err = [l for l in err if l.startswith("warning: checkpoint")]
    assert len(err) == 2 and f"{d}/3 is unusable" in err[0] and f"{d}/2 is unusable" in err[1]
    assert gcs.list_dirs(d) == ["1"] and len(gcs.list_dirs(f"gs://{BUCKET}/unit/checkpoints_rejected")) == 2
    ck = TrainCheckpointer(d, max_to_keep=5, async_save=False)
    assert ck.all_steps() == [1] and ck.last_good_step() == 1
    ck.close()


def test_gcs_run_writes_sealed_checkpoints_and_its_files(emulator):
    from gancomp_jax.io import cloud_storage as gcs
    from gancomp_jax.train.checkpointing import verify
    from gancomp_jax.train.trainer import train

    url = f"gs://{BUCKET}/run_fast"
    res = train(_tiny(total_steps=2), url)
    assert res.workdir == url and res.model_dir == f"{url}/model" and res.step == 2
    objs = _objects(url)
    for s in (1, 2):
        assert f"checkpoints/{s}/checksums.json" in objs and f"checkpoints/{s}/commit_success.txt" in objs
        assert verify(f"{url}/checkpoints/{s}") is None
    for rel in ("config.json", "metrics.jsonl", ".gancomp_jax_output.json", "model/model.json"):
        assert rel in objs, rel
    assert any(k.startswith("model/variables/") for k in objs) and any(k.startswith("tb/events") for k in objs)
    assert not any(k.startswith(".gancomp_jax_probe") for k in objs)
    steps = [json.loads(l)["step"] for l in gcs.read_bytes(f"{url}/metrics.jsonl").decode().splitlines()]
    assert steps == [1, 2]
    assert json.loads(gcs.read_bytes(f"{url}/.gancomp_jax_output.json"))["tool"] == "train"


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    from gancomp_jax.train.trainer import train
    return train(_tiny(total_steps=4), tmp_path_factory.mktemp("local_ref"))


@pytest.mark.slow
def test_gcs_run_resumes_exactly_past_a_damaged_checkpoint(emulator, local_reference, capsys):
    from gancomp_jax.io import cloud_storage as gcs
    from gancomp_jax.train.trainer import train
    from test_checkpoint_integrity import _assert_equal, _state_of

    url = f"gs://{BUCKET}/run"
    train(_tiny(total_steps=3), url)
    # the newest checkpoint damaged on the bucket: the resume falls back to step 2 and still
    # ends equal to an uninterrupted local run
    _flip_largest(f"{url}/checkpoints/3")
    capsys.readouterr()
    resumed = train(_tiny(total_steps=4), url)
    warnings = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning: checkpoint")]
    assert len(warnings) == 1 and f"{url}/checkpoints/3 is unusable" in warnings[0]
    assert resumed.step == 4 and resumed.model_dir == f"{url}/model"
    _assert_equal(_state_of(resumed), _state_of(local_reference))
    steps = [json.loads(l)["step"] for l in gcs.read_bytes(f"{url}/metrics.jsonl").decode().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert len(gcs.list_dirs(f"{url}/checkpoints_rejected")) == 1


@pytest.mark.slow
def test_ctrl_c_on_a_gcs_run_then_resume(emulator, tmp_path):
    """SIGINT mid-run: exit 130 with one line naming a sealed checkpoint on the bucket; the run's
    files are uploaded; the same command resumes from it and finishes."""
    import signal
    import time

    from gancomp_jax.io import cloud_storage as gcs
    from gancomp_jax.train.checkpointing import verify

    url = f"gs://{BUCKET}/ctrl_c"

    def command(steps):
        cmd = [sys.executable, "-m", "gancomp_jax.main", "--config",
               str(REPO / "experiments" / "train_stylegan2.py"), "--workdir", url,
               "--config.model.preset=tiny16", "--config.batch_size=8", f"--config.total_steps={steps}",
               "--config.checkpoint_every_steps=1", "--config.log_every_steps=1", "--config.sample_every_steps=0",
               "--config.progress=False",
               "--config.mesh_devices=1", "--config.mbstd_num_shards=4"]
        env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1", **emulator)
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)

    proc = command(400)
    try:
        deadline = time.time() + 1200
        while time.time() < deadline:
            if any(d.isdigit() and int(d) >= 2 for d in gcs.list_dirs(f"{url}/checkpoints")):
                break
            if proc.poll() is not None:
                pytest.fail(proc.stderr.read()[-2000:])
            time.sleep(0.5)
        else:
            pytest.fail("training did not reach step 2")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    line = [l for l in err.splitlines() if l.startswith("interrupted:")]
    assert len(line) == 1 and f"in {url}/checkpoints" in line[0], err[-2000:]
    step = int(line[0].split("last checkpoint: step ")[1].split()[0])
    assert verify(f"{url}/checkpoints/{step}") is None
    logged = [json.loads(l)["step"] for l in gcs.read_bytes(f"{url}/metrics.jsonl").decode().splitlines()]
    assert logged and max(logged) >= step
    proc = command(step + 2)
    _, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err[-2000:]
    logged = [json.loads(l)["step"] for l in gcs.read_bytes(f"{url}/metrics.jsonl").decode().splitlines()]
    assert logged == list(range(1, step + 3))
    assert gcs.exists(f"{url}/model/model.json") and verify(f"{url}/checkpoints/{step + 2}") is None


def _dgl_config(teacher, steps1, steps2):
    from gancomp_jax.methods import dgl_gan
    from gancomp_jax.train.config import default_train_config

    c = default_train_config()
    c.job = "dgl_gan"
    c.model.preset = "tiny16"
    c.batch_size = 8
    c.log_every_steps = c.checkpoint_every_steps = 1
    c.sample_every_steps = 0
    c.grid_rows, c.grid_cols = 0, 0
    c.progress = False
    c.r1_interval, c.pl_interval = 2, 2
    c.lr, c.r1_gamma, c.pl_weight, c.ema_kimg = 0.002, 10.0, 2.0, 1.0
    c.mesh_devices = 1
    c.mbstd_num_shards = 4
    c.method = dgl_gan.default_config()
    c.method.teacher = teacher
    c.method.stage1_kimg = steps1 * 8 / 1000
    c.method.stage2_kimg = steps2 * 8 / 1000
    return c


@pytest.mark.slow
def test_dgl_gan_job_on_gcs_equals_local(emulator, tmp_path, monkeypatch):
    import distil_harness as H
    from gancomp_jax import checkpoints
    from gancomp_jax.jobs import dgl_gan as job

    monkeypatch.setenv("GANCOMP_JAX_CACHE", str(tmp_path / "cache"))
    teacher, _ = H.make_models(tmp_path / "models", divisor=2, pruned_d_divisor=2)
    local = job.run(_dgl_config(teacher, 2, 2), str(tmp_path / "local"))
    url = f"gs://{BUCKET}/dgl"
    job.run(_dgl_config(teacher, 2, 1), url)  # stopped after one stage-2 step, then resumed
    out = job.run(_dgl_config(teacher, 2, 2), url)
    assert out["model"] == f"{url}/stage2/model"
    a = checkpoints.load_model(local["model"])
    b = checkpoints.load_model(job.local_copy_of_model(out["model"]))
    assert set(a) == set(b) == {"G", "G_ema", "D"}
    for name in a:
        for x, y in zip(jax.tree.leaves(a[name].variables), jax.tree.leaves(b[name].variables)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_foreign_prefix_and_bad_urls_are_refused(emulator):
    from gancomp_jax.io import cloud_storage as gcs
    from gancomp_jax.train.trainer import train

    gcs.write_bytes(f"gs://{BUCKET}/foreign/notes.txt", b"someone else's")
    with pytest.raises(ValueError, match=r"holds objects that are not outputs of gancomp_jax \(notes.txt"):
        train(_tiny(total_steps=1), f"gs://{BUCKET}/foreign")
    assert _objects(f"gs://{BUCKET}/foreign") == {"notes.txt": 14}
    with pytest.raises(ValueError, match="give a bucket and a folder inside it"):
        train(_tiny(total_steps=1), f"gs://{BUCKET}")
    with pytest.raises(ValueError, match="file-system path or gs://bucket/prefix"):
        train(_tiny(total_steps=1), "s3://bucket/run")


def test_bad_input_on_new_gcs_prefix_leaves_nothing(emulator):
    from gancomp_jax.train.trainer import train

    url = f"gs://{BUCKET}/bad_input"
    with pytest.raises(ValueError, match="keep_checkpoints=0"):
        train(_tiny(total_steps=1, keep_checkpoints=0), url)
    assert _objects(url) == {}


def test_unreachable_bucket_is_one_error_line(emulator, tmp_path):
    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "train_stylegan2.py"),
           "--workdir", "gs://no-such-bucket/run", "--config.model.preset=tiny16", "--config.total_steps=1"]
    env = dict(os.environ, JAX_PLATFORMS="cpu", **emulator)
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [l for l in p.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "gs://no-such-bucket/run is not reachable or not writable" in lines[0], p.stderr
    assert "nothing was written" in lines[0] and not any(tmp_path.iterdir())


def test_no_network_and_no_answer_are_one_message(emulator, monkeypatch):
    import socket

    from gancomp_jax.io import cloud_storage as gcs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(gcs.StorageUnreachable, match=r"cannot connect to 127\.0\.0\.1:\d+ .*nothing was written"):
        gcs.probe(f"gs://{BUCKET}/run", timeout=2)
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(gcs.StorageUnreachable, match=r"no answer from Cloud Storage within 2 s.*nothing was written"):
            gcs.probe(f"gs://{BUCKET}/run", timeout=2)
    finally:
        silent.close()


def test_jobs_without_gcs_support_say_so(emulator):
    import ml_collections

    from gancomp_jax.main import UsageError, run_job

    with pytest.raises(UsageError, match=r"job 'generate' writes its outputs into a local folder .*train, dgl_gan "
                                         r"accept gs://.* gcsfuse"):
        run_job(ml_collections.ConfigDict({"job": "generate"}), f"gs://{BUCKET}/gen")
