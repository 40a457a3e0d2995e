"""The notebook's input checks (gancomp_jax/accel/colab.py): checked downloads (file:// URLs, no
network), unreachable gs:// paths, a dataset zip with no images, SMOKE with real weight paths,
and a trainer workdir on another object store: one clear message each, nothing half-written."""

import hashlib
import zipfile

import ml_collections
import pytest

from gancomp_jax.accel import colab


def test_download_checks_sha256(tmp_path):
    src = tmp_path / "src" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(b"weights" * 1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "cache"
    got = colab.download(src.as_uri(), dest, sha256=digest)
    assert got.read_bytes() == src.read_bytes()
    assert colab.download(src.as_uri(), dest, sha256=digest[:8]) == got  # cached, prefix as pytorch-fid's
    other = tmp_path / "src" / "other.bin"
    other.write_bytes(b"not the published file")
    with pytest.raises(colab.NotebookInputError, match="has sha256 .* the publisher's is"):
        colab.download(other.as_uri(), dest, sha256=digest)
    assert sorted(p.name for p in dest.iterdir()) == ["weights.bin"]  # no other.bin, no .partial
    with pytest.raises(colab.NotebookInputError, match="download of .* failed"):
        colab.download((tmp_path / "missing.pt").as_uri(), dest)
    assert sorted(p.name for p in dest.iterdir()) == ["weights.bin"]


def test_official_sources_are_listed():
    assert colab.DOWNLOADS["clip_rn50"]["sha256"] in colab.DOWNLOADS["clip_rn50"]["url"]
    assert colab.DOWNLOADS["inception_fid"]["file"].endswith(colab.DOWNLOADS["inception_fid"]["sha256"] + ".pth")
    assert colab.DOWNLOADS["teacher"]["file"] == "ffhq-res256-mirror-paper256-noaug.pkl"


def test_bad_paths_and_data(tmp_path):
    with pytest.raises(colab.NotebookInputError, match="gs://no-such-bucket-x/run is not reachable"):
        colab.check_output_path("gs://no-such-bucket-x/run")
    assert colab.check_output_path(str(tmp_path / "out")) == str(tmp_path / "out")
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("dataset.json", "{}")
    with pytest.raises(colab.NotebookInputError, match="holds no images"):
        colab.check_dataset_zip(str(empty))
    with pytest.raises(colab.NotebookInputError, match="no such file"):
        colab.check_dataset_zip(str(tmp_path / "nope.zip"))
    colab.check_smoke(True, TEACHER_PKL="", CLIP_PT="")
    with pytest.raises(colab.NotebookInputError, match="SMOKE=True runs offline .* TEACHER_PKL=t.pkl"):
        colab.check_smoke(True, TEACHER_PKL="t.pkl")


def test_trainer_refuses_other_object_stores(tmp_path, monkeypatch):
    # gs:// run directories are supported (tests/test_gcs_runs.py, against an emulator)
    from gancomp_jax.train.trainer import train

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="a run directory is a file-system path or gs://bucket/prefix"):
        train(ml_collections.ConfigDict({"method": {"name": "stylegan2"}}), "s3://bucket/run")
    assert not any(tmp_path.iterdir())


def test_runtime_summary_cpu():
    s = colab.runtime_summary()
    assert s["device_count"] >= 1 and s["backend"] == "cpu" and "TPU v5e-1" in s["advice"]
