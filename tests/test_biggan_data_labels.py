"""Class labels of folder/zip datasets (NVlabs dataset.json) reach the BigGAN method's D step;
unlabelled data or more classes than the networks have are refused before training."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from gancomp_jax import data
from gancomp_jax.methods import biggan
from gancomp_jax.methods.base import BuildEnv

from test_biggan_method import tiny_method_config  # noqa: E402

RES = 32


def _png(seed):
    img = np.random.RandomState(seed).randint(0, 256, (RES, RES, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _zip(path, n, labels):
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            zf.writestr(f"img{i:02d}.png", _png(i))
        if labels is not None:
            zf.writestr("dataset.json", json.dumps({"labels": [[f"img{i:02d}.png", int(labels[i])] for i in range(n)]}))
    return path


def _method(n_classes=3):
    cfg = tiny_method_config(n_classes=n_classes)
    return biggan.build(cfg, BuildEnv(batch_size=8, num_devices=1, mbstd_num_shards=1))


def test_zip_labels_reach_the_d_batch_and_are_checked(tmp_path):
    labels = np.arange(12) % 3
    src = data.build_source({"source": "zip", "path": str(_zip(tmp_path / "l.zip", 12, labels)), "resolution": RES})
    method = _method(3)
    method.check_source(src)  # 3 classes, all labelled: accepted
    batch = next(data.make_pipeline(src, global_batch_size=12, seed=0))
    # the batch's labels are those of dataset.json for the images it holds (the D step's ``dy``)
    by_image = {src[i]["image"].tobytes(): int(labels[i]) for i in range(12)}
    imgs = np.rint((np.asarray(batch["image"]) + 1) * 127.5).astype(np.uint8)  # float [-1, 1] -> uint8
    got = np.asarray(batch["label"])
    assert sorted(got.tolist()) == sorted(labels.tolist())
    assert [by_image[im.tobytes()] for im in imgs] == got.tolist()
    with pytest.raises(ValueError, match="n_classes=2"):
        _method(2).check_source(src)


def test_unlabelled_data_refused(tmp_path):
    src = data.build_source({"source": "zip", "path": str(_zip(tmp_path / "u.zip", 4, None)), "resolution": RES})
    with pytest.raises(ValueError, match="no class labels.*dataset.json"):
        _method(3).check_source(src)
