"""TFDSSource on tiny datasets prepared locally (array_record, no TensorFlow).

Skipped only when tensorflow_datasets is not installed. The datasets are built
from PNG bytes: encoding numpy arrays would need TensorFlow, encoded bytes and
reading through ``as_data_source`` do not.
"""

import io

import numpy as np
from PIL import Image
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from gancomp_jax import data  # pylint: disable=g-import-not-at-top

RES = 16
NUM_TRAIN, NUM_TEST = 6, 3


def _image(i, shape):
    return np.random.default_rng(i).integers(0, 256, shape, np.uint8)


def _png(array):
    buf = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buf, format="PNG")
    return buf.getvalue()


class _TinyBase(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    SHAPE = (RES, RES, 3)

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=self.SHAPE),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {
            "train": self._generate_examples(0, NUM_TRAIN),
            "test": self._generate_examples(100, NUM_TEST),
        }

    def _generate_examples(self, start, n):
        for i in range(start, start + n):
            yield i, {"image": _png(_image(i, self.SHAPE)), "label": i % 3}


class GancompTinyRgb(_TinyBase):
    pass


class GancompTinyGrey(_TinyBase):
    SHAPE = (RES, RES, 1)


class GancompTinyWide(_TinyBase):
    SHAPE = (RES, 2 * RES, 3)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    for cls in (GancompTinyRgb, GancompTinyGrey, GancompTinyWide):
        cls(data_dir=str(root), file_format="array_record").download_and_prepare()
    return str(root)


def test_reads_rgb_dataset(data_dir):
    src = data.TFDSSource("gancomp_tiny_rgb", split="train", data_dir=data_dir, resolution=RES)
    assert len(src) == NUM_TRAIN and src.num_classes == 3
    got = {}
    for i in range(len(src)):
        ex = src[i]
        assert ex["image"].dtype == np.uint8 and ex["image"].shape == (RES, RES, 3)
        got[ex["image"].tobytes()] = ex["label"]
    # TFDS stores examples in its own order; compare as a set.
    assert got == {_image(i, (RES, RES, 3)).tobytes(): i % 3 for i in range(NUM_TRAIN)}

    test = data.TFDSSource("gancomp_tiny_rgb", split="test", data_dir=data_dir)
    assert len(test) == NUM_TEST and test.resolution == RES  # inferred


def test_build_source_and_pipeline(data_dir):
    cfg = data.default_data_config()
    cfg.source, cfg.name, cfg.data_dir, cfg.resolution = ("tfds", "gancomp_tiny_rgb", data_dir, RES)
    src = data.build_source(cfg)
    batch = next(data.make_pipeline(src, global_batch_size=4, seed=0))
    assert batch["image"].shape == (4, RES, RES, 3)
    assert batch["image"].min() >= -1 and batch["image"].max() <= 1


def test_grey_converted_to_rgb(data_dir):
    src = data.TFDSSource("gancomp_tiny_grey", split="train", data_dir=data_dir, resolution=RES)
    img = src[0]["image"]
    assert img.shape == (RES, RES, 3)
    np.testing.assert_array_equal(img[..., 0], img[..., 1])


def test_errors(data_dir):
    with pytest.raises(ValueError, match=r"16x16.*expected resolution is 32x32"):
        data.TFDSSource("gancomp_tiny_rgb", data_dir=data_dir, resolution=32)
    with pytest.raises(ValueError, match="only square"):
        data.TFDSSource("gancomp_tiny_wide", data_dir=data_dir, resolution=RES)
    with pytest.raises(ValueError, match="gancomp_tiny_rgb.*validation"):
        data.TFDSSource("gancomp_tiny_rgb", split="validation", data_dir=data_dir)
    with pytest.raises(ValueError, match="no_such_dataset_xyz"):
        data.TFDSSource("no_such_dataset_xyz", data_dir=data_dir)
