"""ImageNet via TFDS for BigGAN: BigGAN-PyTorch's centre crop + resize (and the released I128_hdf5
pixel levels), and ``imagenet2012``'s labels reaching the ``biggan`` method's D batch.

Offline: ``tfds.testing.mock_data`` (works without TensorFlow for ``as_data_source``) serves
random examples of the real ``imagenet2012`` builder's features (images of varying size, a
1000-class ``label``).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from gancomp_jax import data  # noqa: E402
from gancomp_jax.data.tfds_source import HDF5_LEVELS, center_crop_resize  # noqa: E402
from gancomp_jax.methods import biggan  # noqa: E402
from gancomp_jax.methods.base import BuildEnv  # noqa: E402

from test_biggan_method import tiny_method_config  # noqa: E402


def test_center_crop_is_torchvisions_then_pil_bilinear():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (9, 4, 3)).astype(np.uint8)
    # torchvision center_crop: top = int(round((9 - 4) / 2)) = round(2.5) = 2 (half to even), left 0
    np.testing.assert_array_equal(center_crop_resize(img, 4), img[2:6])
    wide = rng.randint(0, 256, (5, 8, 3)).astype(np.uint8)  # left = round(1.5) = 2
    np.testing.assert_array_equal(center_crop_resize(wide, 5), wide[:, 2:7])
    want = np.asarray(Image.fromarray(np.ascontiguousarray(wide[:, 2:7])).resize((3, 3), Image.BILINEAR))
    np.testing.assert_array_equal(center_crop_resize(wide, 3), want)  # transforms.Resize on PIL: PIL bilinear


def test_hdf5_levels_are_make_hdf5s():
    torch = pytest.importorskip("torch")
    v = torch.arange(256, dtype=torch.uint8)
    x = (v.float().div(255) - 0.5) / 0.5            # ToTensor, Normalize(0.5, 0.5)
    want = (255 * ((x + 1) / 2.0)).byte().numpy()  # make_hdf5.py
    np.testing.assert_array_equal(HDF5_LEVELS, want)
    assert (HDF5_LEVELS != np.arange(256)).sum() == 63 and HDF5_LEVELS[255] == 255


def test_imagenet2012_labels_reach_the_biggan_d_batch():
    cfg = {"source": "tfds", "name": "imagenet2012", "resolution": 32, "preprocess": "biggan_hdf5"}
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        raw = tfds.builder("imagenet2012").as_data_source(split="train")
        src = data.build_source(cfg)
        assert len(src) == 8 and src.num_classes == 1000
        sizes = {np.asarray(raw[i]["image"]).shape[:2] for i in range(8)}
        assert any(h != w for h, w in sizes)  # varying, non-square sizes: cropped and resized
        for i in range(8):
            item = src[i]
            want = HDF5_LEVELS[center_crop_resize(np.asarray(raw[i]["image"]), 32)]
            np.testing.assert_array_equal(item["image"], want)
            assert item["label"] == int(raw[i]["label"])
        cfg2 = dict(cfg, preprocess="center_crop")
        np.testing.assert_array_equal(data.build_source(cfg2)[3]["image"],
                                      center_crop_resize(np.asarray(raw[3]["image"]), 32))
        method = biggan.build(tiny_method_config(n_classes=1000), BuildEnv(batch_size=8, num_devices=1,
                                                                           mbstd_num_shards=1))
        method.check_source(src)  # 1000 classes: accepted
        with pytest.raises(ValueError, match="1000 classes but the BigGAN networks have n_classes=10"):
            biggan.build(tiny_method_config(n_classes=10),
                         BuildEnv(batch_size=8, num_devices=1, mbstd_num_shards=1)).check_source(src)
        batch = next(data.make_pipeline(src, global_batch_size=8, seed=0))
        by_image = {src[i]["image"].tobytes(): src[i]["label"] for i in range(8)}
        imgs = np.rint((np.asarray(batch["image"]) + 1) * 127.5).astype(np.uint8)
        assert [by_image[im.tobytes()] for im in imgs] == np.asarray(batch["label"]).tolist()
        with pytest.raises(ValueError, match="preprocess 'center_crop' needs the target resolution"):
            data.build_source(dict(cfg2, resolution=0))
        with pytest.raises(ValueError, match="preprocess must be one of"):
            data.build_source(dict(cfg, preprocess="resize"))
        with pytest.raises(ValueError, match="expected resolution is 32x32"):  # no preprocess: sizes must match
            data.build_source(dict(cfg, preprocess="none"))[0]
