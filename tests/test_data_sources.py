"""Tests for gancomp_jax.data sources (digits, folder, zip, ImageFolder layout)."""

import hashlib
import io
import json
import logging
import pickle
import sys
import zipfile

import ml_collections
import numpy as np
from PIL import Image
import pytest

from gancomp_jax import data

RES = 16


def _hashes(source):
    return [hashlib.sha1(source[i]["image"].tobytes()).hexdigest() for i in range(len(source))]


def _rgb(seed, res=RES):
    return np.random.default_rng(seed).integers(0, 256, (res, res, 3), np.uint8)


def _png_bytes(array, mode=None):
    buf = io.BytesIO()
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode)
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(array):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# Relative path -> (encoded bytes, expected RGB array or None for lossy JPEG).
def _tiny_files():
    a, b, c, d = _rgb(1), _rgb(2), _rgb(3), _rgb(4)
    grey = a.mean(axis=2).astype(np.uint8)
    return {
        "a.png": (_png_bytes(a), a),
        "sub/b.PNG": (_png_bytes(b), b),
        "sub/deeper/c.jpg": (_jpeg_bytes(c), None),
        "sub/deeper/d.jpeg": (_jpeg_bytes(d), None),
        "grey.png": (_png_bytes(grey), np.repeat(grey[:, :, None], 3, axis=2)),
        "rgba.png": (_png_bytes(b, "RGBA"), b),
    }


CORRUPT = b"\x89PNG\r\n" + np.random.default_rng(0).bytes(300)


def _write_folder(root, files, corrupt=True):
    for rel, (blob, _) in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    if corrupt:
        (root / "sub" / "corrupt.png").write_bytes(CORRUPT)
    (root / "notes.txt").write_text("not an image")
    return root


def _check_images(source, files):
    assert source.keys == sorted(files)
    for i, key in enumerate(source.keys):
        ex = source[i]
        assert ex["image"].dtype == np.uint8
        assert ex["image"].shape == (RES, RES, 3)
        expected = files[key][1]
        if expected is not None:
            np.testing.assert_array_equal(ex["image"], expected)


# --------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def digits():
    return data.DigitsSource(32)


def test_digits_shapes_and_distinct(digits):
    assert len(digits) >= 1000
    ex = digits[0]
    assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8
    assert 0 <= ex["label"] <= 9
    hashes = _hashes(digits)
    assert len(set(hashes)) >= 1000
    assert _hashes(data.DigitsSource(32)) == hashes  # deterministic rebuild
    assert {digits[i]["label"] for i in range(50)} == set(range(10))


def test_digits_other_resolution_and_grey():
    src = data.DigitsSource(64, tint=False)
    img = src[5]["image"]
    assert img.shape == (64, 64, 3)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])
    assert img.max() > 200  # strokes reach near-white after rescaling 0..16


# --------------------------------------------------------------------------
# image folder


def test_folder_reads_nested_and_skips_corrupt(tmp_path, caplog):
    files = _tiny_files()
    root = _write_folder(tmp_path / "imgs", files)
    with caplog.at_level(logging.WARNING):
        src = data.ImageFolderSource(root, RES)
    assert len(src) == len(files)
    assert src.num_skipped == 1
    assert "skipped 1 unreadable images" in caplog.text
    assert "corrupt.png" in caplog.text
    assert src.num_classes == 0
    assert all(src[i]["label"] == -1 for i in range(len(src)))
    _check_images(src, files)
    # Resolution inferred when not given.
    assert data.ImageFolderSource(root).resolution == RES


def test_folder_labels_from_dataset_json(tmp_path):
    files = _tiny_files()
    root = _write_folder(tmp_path / "imgs", files, corrupt=False)
    labels = {rel: i % 3 for i, rel in enumerate(sorted(files))}
    (root / "dataset.json").write_text(json.dumps({"labels": [[k, v] for k, v in labels.items()]}))
    src = data.ImageFolderSource(root, RES)
    assert [src[i]["label"] for i in range(len(src))] == [labels[k] for k in src.keys]
    assert src.num_classes == 3


def test_folder_empty_raises(tmp_path):
    empty = tmp_path / "empty_dir"
    (empty / "nested").mkdir(parents=True)
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="empty_dir") as err:
        data.ImageFolderSource(empty, RES)
    assert ".png" in str(err.value)
    # Only unreadable files -> also "empty".
    (empty / "bad.png").write_bytes(CORRUPT)
    with pytest.raises(ValueError, match="1 unreadable"):
        data.ImageFolderSource(empty, RES)
    with pytest.raises(ValueError, match="does not exist"):
        data.ImageFolderSource(tmp_path / "missing", RES)


def test_folder_wrong_size_raises(tmp_path):
    root = _write_folder(tmp_path / "imgs", _tiny_files(), corrupt=False)
    (root / "sub" / "big.png").write_bytes(_png_bytes(_rgb(9, res=24)))
    with pytest.raises(ValueError, match=r"big\.png.*24x24.*16x16"):
        data.ImageFolderSource(root, RES)


def test_truncated_jpeg_check_modes(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "ok.png").write_bytes(_png_bytes(_rgb(1, res=64)))
    blob = _jpeg_bytes(np.kron(_rgb(2), np.ones((4, 4, 1), np.uint8)))  # 64x64
    (root / "truncated.jpg").write_bytes(blob[: len(blob) // 2])
    # 'verify' cannot see a truncated JPEG body: reading it fails loudly.
    src = data.ImageFolderSource(root, 64, check="verify")
    assert src.num_skipped == 0
    with pytest.raises(OSError, match=r'truncated\.jpg.*check="decode"'):
        src[src.keys.index("truncated.jpg")]
    # 'decode' finds it when the index is built and skips it.
    src = data.ImageFolderSource(root, 64, check="decode")
    assert src.num_skipped == 1 and src.keys == ["ok.png"]
    with pytest.raises(ValueError, match="check must be one of"):
        data.ImageFolderSource(root, 64, check="bogus")


# --------------------------------------------------------------------------
# zip


def _write_zip(path, files, labels=None, corrupt=True):
    with zipfile.ZipFile(path, "w") as zf:
        for rel, (blob, _) in files.items():
            zf.writestr(rel, blob)
        zf.writestr("sub/", b"")  # directory entry
        if corrupt:
            zf.writestr("zz/corrupt.png", CORRUPT)
        if labels is not None:
            zf.writestr("dataset.json", json.dumps({"labels": [[k, v] for k, v in labels.items()]}))
    return path


def test_zip_with_labels(tmp_path):
    files = _tiny_files()
    labels = {rel: (7 * i) % 5 for i, rel in enumerate(sorted(files))}
    path = _write_zip(tmp_path / "ds.zip", files, labels)
    src = data.ZipSource(path, RES)
    assert len(src) == len(files) and src.num_skipped == 1
    _check_images(src, files)
    assert [src[i]["label"] for i in range(len(src))] == [labels[k] for k in src.keys]
    # Picklable (worker processes) and usable after unpickling.
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone[2]["image"], src[2]["image"])


def test_zip_without_labels_and_errors(tmp_path):
    src = data.ZipSource(_write_zip(tmp_path / "a.zip", _tiny_files()), RES)
    assert src[0]["label"] == -1
    with pytest.raises(ValueError, match="empty.zip"):
        data.ZipSource(_write_zip(tmp_path / "empty.zip", {}, corrupt=False), RES)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable zip"):
        data.ZipSource(tmp_path / "junk.zip", RES)
    files = _tiny_files()
    labels = {k: 0 for k in list(files)[1:]}  # first image has no label
    with pytest.raises(ValueError, match="no label for"):
        data.ZipSource(_write_zip(tmp_path / "l.zip", files, labels), RES)


# --------------------------------------------------------------------------
# tfds.ImageFolder layout (no TensorFlow needed)


def test_tfds_imagefolder_layout(tmp_path):
    root = tmp_path / "imf"
    for split, names in {"train": ("cat", "dog"), "test": ("ant", "cat")}.items():
        for j, name in enumerate(names):
            d = root / split / name
            d.mkdir(parents=True)
            for k in range(2):
                (d / f"{k}.png").write_bytes(_png_bytes(_rgb(100 + 10 * j + k)))
    src = data.TFDSImageFolderSource(root, "train", RES)
    assert src.label_names == ["ant", "cat", "dog"]  # sorted union over splits
    assert src.keys == ["cat/0.png", "cat/1.png", "dog/0.png", "dog/1.png"]
    assert [src[i]["label"] for i in range(4)] == [1, 1, 2, 2]
    with pytest.raises(ValueError, match="'val'.*available splits"):
        data.TFDSImageFolderSource(root, "val", RES)


# --------------------------------------------------------------------------
# config


def test_build_source_from_config(tmp_path):
    cfg = data.default_data_config()
    assert isinstance(cfg, ml_collections.ConfigDict)
    assert (cfg.source, cfg.resolution, cfg.xflip, cfg.split, cfg.worker_count) == (
        "digits",
        32,
        False,
        "train",
        0,
    )
    src = data.build_source(cfg)
    assert isinstance(src, data.DigitsSource) and src.resolution == 32

    files = _tiny_files()
    cfg.source, cfg.resolution = "folder", RES
    cfg.path = str(_write_folder(tmp_path / "f", files))
    assert len(data.build_source(cfg)) == len(files)
    cfg.source, cfg.path = "zip", str(_write_zip(tmp_path / "z.zip", files))
    assert len(data.build_source(cfg)) == len(files)

    cfg.source = "lmdb"
    with pytest.raises(ValueError, match="digits, folder, zip, tfds"):
        data.build_source(cfg)
    cfg.source, cfg.path = "folder", ""
    with pytest.raises(ValueError, match="config.path"):
        data.build_source(cfg)


def test_tfds_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"gancomp_jax\[tfds\]"):
        data.TFDSSource("mnist", split="train")
