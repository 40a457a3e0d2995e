"""Hostile or odd training data: bounded reads, regular files only, links never followed, checked
dataset.json, and an image that fails to decode mid-training (issue 23)."""

import io
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gancomp_jax import data
from gancomp_jax.data.sources import DataReadError, parse_labels

REPO = Path(__file__).resolve().parents[1]
RES = 16


def _png(seed, res=RES):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (res, res, 3), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def undecodable_png(seed, res=RES):
    """A PNG whose chunks all have valid CRCs (passes ``Image.verify()``) but whose IDAT stream is
    not zlib data, so decoding fails."""
    blob = _png(seed, res)
    i = blob.index(b"IDAT") - 4
    (n,) = struct.unpack(">I", blob[i:i + 4])
    junk = bytes(range(7, 7 + n % 200)) * (n // max(n % 200, 1) + 1)
    junk = junk[:n]
    chunk = struct.pack(">I", n) + b"IDAT" + junk + struct.pack(">I", zlib.crc32(b"IDAT" + junk))
    return blob[:i] + chunk + blob[i + 12 + n:]


def _folder(root, n=4):
    root.mkdir(parents=True)
    for k in range(n):
        (root / f"{k}.png").write_bytes(_png(k))
    return root


def test_oversized_zip_members_are_skipped_without_decompressing(tmp_path):
    """A member of 1 GiB of zeros after a valid 16 px PNG, and members larger than the limit read
    by several threads: skipped from their declared size in well under the time a read takes."""
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("ok.png", _png(0))
        with zf.open("bomb.png", "w", force_zip64=True) as f:
            f.write(_png(1))
            zeros = bytes(1 << 20)
            for _ in range(1024):
                f.write(zeros)
        for k in range(8):
            zf.writestr(f"big{k}.png", _png(2 + k) + bytes(3 << 20), compresslevel=1)
    assert path.stat().st_size < 8 << 20
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.time()
    src = data.ZipSource(path, RES, max_file_mb=2, num_threads=8)
    assert time.time() - t0 < 10
    assert src.keys == ["ok.png"] and src.num_skipped == 9
    with pytest.raises(OSError, match=r"bomb\.png is 1073\d+ bytes uncompressed.*max_file_mb"):
        src._read("bomb.png")
    # The default limit (64 MiB) still skips the 1 GiB member; the 3 MiB ones are read.
    src = data.ZipSource(path, RES, num_threads=8)
    assert "bomb.png" not in src.keys and len(src) == 9
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) < 512 << 10  # KiB: < 512 MiB
    with pytest.raises(ValueError, match="max_file_mb"):
        data.ZipSource(path, RES, max_file_mb=0)


def test_folder_reads_regular_files_only_and_never_follows_links(tmp_path):
    root = _folder(tmp_path / "imgs")
    outside = _folder(tmp_path / "outside", 2)
    (root / "sub").mkdir()
    (root / "sub" / "loop").symlink_to(root)                 # back into the root
    (root / "self").symlink_to(".")                          # a link to '.'
    (root / "out").symlink_to(outside)                       # out of the root
    (root / "leak.png").symlink_to(outside / "0.png")        # a file outside
    (root / "dup.png").symlink_to(root / "0.png")            # the same image twice
    src = data.ImageFolderSource(root, RES)
    assert src.keys == ["0.png", "1.png", "2.png", "3.png"] and src.num_skipped == 0
    # A large file is skipped unread; a FIFO named like an image is refused by name, at once.
    (root / "big.png").write_bytes(_png(9) + bytes(3 << 20))
    src = data.ImageFolderSource(root, RES, max_file_mb=1)
    assert len(src) == 4 and src.num_skipped == 1
    os.mkfifo(root / "sub" / "f.png")
    t0 = time.time()
    with pytest.raises(ValueError, match=r"sub/f\.png is not a regular file"):
        data.ImageFolderSource(root, RES)
    assert time.time() - t0 < 10
    # tfds.ImageFolder layout: the same rules.
    tf_root = tmp_path / "imf"
    _folder(tf_root / "train" / "cat", 2)
    (tf_root / "train" / "dog").symlink_to(outside)
    (tf_root / "train" / "cat" / "x.png").symlink_to(outside / "1.png")
    src = data.TFDSImageFolderSource(tf_root, "train", RES)
    assert src.keys == ["cat/0.png", "cat/1.png"] and src.label_names == ["cat"]
    os.mkfifo(tf_root / "train" / "cat" / "f.png")
    with pytest.raises(ValueError, match=r"f\.png is not a regular file"):
        data.TFDSImageFolderSource(tf_root, "train", RES)


@pytest.mark.parametrize("text,message", [
    ('{"labels": 5}', "'labels' must be a list"),
    ('[1, 2]', "got a JSON list"),
    ('{"labels": [["a.png", 1e400]]}', "integer class labels"),
    ('{"labels": [["a.png", 10000000000]]}', "integer class labels"),
    ('{"labels": [5]}', "each label entry must be"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"labels": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
])
def test_bad_dataset_json_is_one_value_error(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        parse_labels(text, "x/dataset.json")
    root = _folder(tmp_path / "imgs", 2)
    (root / "dataset.json").write_text(text)
    with pytest.raises(ValueError, match=r"dataset\.json"):
        data.ImageFolderSource(root, RES)
    with zipfile.ZipFile(tmp_path / "d.zip", "w") as zf:
        zf.writestr("0.png", _png(0))
        zf.writestr("dataset.json", text)
    with pytest.raises(ValueError, match=r"d\.zip:dataset\.json"):
        data.ZipSource(tmp_path / "d.zip", RES)


def test_bad_dataset_json_fails_before_a_run_directory_exists(tmp_path):
    root = _folder(tmp_path / "imgs", 8)
    (root / "dataset.json").write_text('{"labels": ' + "[" * 100_000 + "]" * 100_000 + "}")
    work = tmp_path / "run"
    cmd = [sys.executable, "-m", "gancomp_jax.main", "--config", str(REPO / "experiments" / "train_stylegan2.py"),
           "--workdir", str(work), "--config.model.preset=tiny16", "--config.total_steps=1",
           "--config.data.source=folder", f"--config.data.path={root}"]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-2000:]
    assert "dataset.json" in lines[0] and "nested too deeply" in lines[0]
    assert not work.exists()


def test_image_that_fails_to_decode_is_named(tmp_path):
    root = _folder(tmp_path / "imgs", 2)
    (root / "broken.png").write_bytes(undecodable_png(5))
    Image.open(root / "broken.png").verify()  # the check at index time passes
    src = data.ImageFolderSource(root, RES)
    assert len(src) == 3
    with pytest.raises(DataReadError, match=r"broken\.png: failed to decode"):
        src[src.keys.index("broken.png")]


@pytest.mark.slow
def test_undecodable_image_mid_training_keeps_a_resumable_run(tmp_path):
    """The first batch reads fine; the second holds an image that passes verify() but cannot be
    decoded: the run stops naming it, a checkpoint of step 1 is written, and once the file is
    replaced the same command resumes there and finishes."""
    from test_train import tiny_config
    from gancomp_jax.train.trainer import TrainingDataError, train

    root = _folder(tmp_path / "imgs", 16)
    cfg = tiny_config(total_steps=3, checkpoint_every_steps=0, sample_every_steps=0, log_every_steps=1)
    cfg.grid_rows = cfg.grid_cols = 0
    cfg.data.source, cfg.data.path = "folder", str(root)
    src = data.build_source(cfg.data)
    first = next(iter(data.make_pipeline(src, global_batch_size=8, seed=cfg.seed)))["image"]
    first = {np.round((x + 1) * 127.5).astype(np.uint8).tobytes() for x in first}
    victim = next(k for i, k in enumerate(src.keys) if src[i]["image"].tobytes() not in first)
    good = (root / victim).read_bytes()
    (root / victim).write_bytes(undecodable_png(99))
    work = tmp_path / "run"
    with pytest.raises(TrainingDataError, match=rf"stopped at step 1: .*{victim}: failed to decode.*"
                                                r"Last checkpoint: step 1 in .*re-run the same command"):
        train(cfg, work)
    assert sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]
    (root / victim).write_bytes(good)
    res = train(cfg, work)
    assert res.step == 3
    assert [json.loads(l)["step"] for l in (work / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
