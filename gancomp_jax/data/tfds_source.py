"""Random access to prepared TensorFlow Datasets (optional dependency).

Uses ``builder.as_data_source(split)``, i.e. TFDS' ArrayRecord reader, which
decodes images with PIL and does NOT need TensorFlow. The dataset must have
been prepared in the ``array_record`` file format, e.g.
``tfds build NAME --data_dir=DIR --file_format=array_record``; datasets stored
as TFRecord only support sequential ``tf.data`` reading and are rejected with
an explanatory error. Nothing is downloaded unless ``download=True``.

``tensorflow_datasets`` is imported lazily, only when a ``TFDSSource`` is
constructed; install it with ``pip install "gancomp_jax[tfds]"``.

Datasets of varying image sizes (``imagenet2012``) are brought to ``resolution`` by
``preprocess`` (``data.preprocess``), as BigGAN-PyTorch's ImageNet loader (``utils.py``
``get_data_loaders`` without augmentation, also what its ``make_hdf5.py`` stores):

- ``'center_crop'``: ``CenterCropLongEdge`` — the centred square of side ``min(H, W)``, offsets
  as torchvision's ``center_crop`` (``int(round((H - s) / 2))``, Python's round half to even) —
  then ``transforms.Resize(resolution)``, i.e. PIL's bilinear (antialiased) resize to
  ``resolution × resolution`` (an image already of that size is returned as is);
- ``'biggan_hdf5'``: the same, then the pixel levels the released ``I128_hdf5`` files hold:
  ``make_hdf5.py`` undoes ``ToTensor`` + ``Normalize(0.5, 0.5)`` with ``(255·((x+1)/2)).byte()``
  in float32, which truncates 63 of the 256 levels to the level below (:data:`HDF5_LEVELS`);
  BigGAN-PyTorch's launch scripts train on these files;
- ``'none'`` (default): images must already be ``resolution`` pixels square.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

PIP_EXTRA = 'pip install "gancomp_jax[tfds]"'


def import_tfds():
    """Imports ``tensorflow_datasets`` or raises an ImportError saying how to get it."""
    try:
        import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    except ImportError as e:
        raise ImportError(
            "the TFDS data source needs the optional package tensorflow-datasets;"
            f" install it with: {PIP_EXTRA}  (or: pip install tensorflow-datasets)"
        ) from e
    return tfds


PREPROCESS = ("none", "center_crop", "biggan_hdf5")


def _hdf5_levels() -> np.ndarray:
    """uint8 [256]: level v after ToTensor (v/255), Normalize(0.5, 0.5) and make_hdf5.py's
    ``(255 * ((x + 1) / 2.0)).byte()``, every step in float32 as torch computes it."""
    v = np.arange(256, dtype=np.float32)
    x = (v / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    return (np.float32(255) * ((x + np.float32(1)) / np.float32(2.0))).astype(np.uint8)


HDF5_LEVELS = _hdf5_levels()


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """BigGAN-PyTorch's ``CenterCropLongEdge()`` then ``transforms.Resize(size)`` on a uint8
    ``[H, W, 3]`` image -> uint8 ``[size, size, 3]`` (module docstring)."""
    from PIL import Image  # pylint: disable=g-import-not-at-top

    h, w = image.shape[:2]
    s = min(h, w)
    top, left = int(round((h - s) / 2.0)), int(round((w - s) / 2.0))
    crop = np.ascontiguousarray(image[top:top + s, left:left + s])
    if s == size:
        return crop
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


def _to_rgb(image: np.ndarray, where: str) -> np.ndarray:
    """uint8 [H, W, C] with C in {1, 3, 4} (or [H, W]) -> uint8 [H, W, 3]."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{where}: expected an image of shape [H, W, 1|3|4], got {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 pixels, got {image.dtype}")
    if image.shape[-1] == 1:
        return np.repeat(image, 3, axis=-1)
    return image[:, :, :3]


class TFDSSource:
    """One split of a prepared TFDS dataset as a random-access image source.

    Elements are ``{'image': uint8 [R, R, 3], 'label': int}``; the label comes
    from ``label_key`` when that feature exists (a ClassLabel or integer
    scalar), otherwise it is -1. ``preprocess`` (module docstring) crops and
    resizes images of any size to ``resolution`` (which it then requires). Grayscale (1 channel) images are replicated to
    RGB and RGBA images lose their alpha channel; other channel counts,
    non-uint8 pixels, non-square images or images whose side differs from
    ``resolution`` raise ``ValueError`` (statically from the feature spec when
    the shape is fixed, otherwise when the offending element is read).

    Attributes:
      name, split, data_dir: what was loaded.
      resolution: image side length.
      num_skipped: always 0 (TFDS data are assumed readable).
      num_classes: number of classes of the label feature, or 0.
    """

    num_skipped = 0

    def __init__(
        self,
        name: str,
        *,
        split: str = "train",
        data_dir: str | os.PathLike[str] | None = None,
        resolution: int | None = None,
        image_key: str = "image",
        label_key: str | None = "label",
        download: bool = False,
        preprocess: str = "none",
    ):
        if preprocess not in PREPROCESS:
            raise ValueError(f"TFDS preprocess must be one of {PREPROCESS}, got {preprocess!r}")
        if preprocess != "none" and not resolution:
            raise ValueError(f"TFDS preprocess {preprocess!r} needs the target resolution (config.data.resolution)")
        self.preprocess = preprocess
        tfds = import_tfds()
        self.name, self.split = name, split
        self.data_dir = os.fspath(data_dir) if data_dir else None
        self.image_key = image_key
        where = f"TFDS dataset {name!r} (data_dir={self.data_dir!r})"
        try:
            builder = tfds.builder(name, data_dir=self.data_dir)
            if download:
                builder.download_and_prepare(file_format="array_record")
            source = builder.as_data_source(split=split)
        except Exception as e:  # pylint: disable=broad-exception-caught
            # DatasetNotFoundError, unknown split, TFRecord-only data, ...
            hint = (
                " Random access needs the data prepared in the array_record format,"
                f" e.g.: tfds build {name} --file_format=array_record"
                + (f" --data_dir={self.data_dir}" if self.data_dir else "")
            )
            raise ValueError(
                f"{where}, split {split!r}: cannot open a random-access data source"
                f" ({type(e).__name__}: {str(e)[:500]}).{hint}"
            ) from e

        features = builder.info.features
        if image_key not in features:
            raise ValueError(
                f"{where}: no feature {image_key!r}; features: {list(features.keys())}"
            )
        spec = features[image_key]
        shape = tuple(getattr(spec, "shape", ()) or ())
        dtype = np.dtype(getattr(spec, "np_dtype", np.uint8))
        if len(shape) != 3 or shape[-1] not in (1, 3, 4, None) or dtype != np.uint8:
            raise ValueError(
                f"{where}: feature {image_key!r} must be a uint8 image of shape"
                f" [H, W, 1|3|4], got shape {shape} dtype {dtype}"
            )
        h, w = shape[0], shape[1]
        if h is not None and w is not None and h != w and preprocess == "none":
            raise ValueError(f"{where}: images are {h}x{w} (HxW); only square images are supported")
        if len(source) == 0:
            raise ValueError(f"{where}: split {split!r} contains no examples")
        static_side = h if h is not None and h == w else None
        if resolution is None:
            resolution = static_side
            if resolution is None:  # variable-size feature: take the first image
                resolution = _to_rgb(np.asarray(source[0][image_key]), where).shape[0]
        elif static_side is not None and static_side != resolution and preprocess == "none":
            raise ValueError(
                f"{where}: images are {static_side}x{static_side} but the expected"
                f" resolution is {resolution}x{resolution}; prepare the data at the"
                " model resolution"
            )
        self.resolution = int(resolution)

        self.label_key = None
        self.num_classes = 0
        if label_key and label_key in features:
            label_spec = features[label_key]
            if tuple(getattr(label_spec, "shape", ())) == ():
                self.label_key = label_key
                self.num_classes = int(getattr(label_spec, "num_classes", 0) or 0)
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        example = self._source[index]
        where = f"TFDS {self.name!r} split {self.split!r} example {index}"
        image = _to_rgb(np.asarray(example[self.image_key]), where)
        if self.preprocess != "none":
            image = center_crop_resize(image, self.resolution)
            if self.preprocess == "biggan_hdf5":
                image = HDF5_LEVELS[image]
        if image.shape[:2] != (self.resolution, self.resolution):
            raise ValueError(
                f"{where}: image is {image.shape[1]}x{image.shape[0]} (WxH) but the"
                f" expected resolution is {self.resolution}x{self.resolution}"
            )
        label = int(example[self.label_key]) if self.label_key else -1
        return {"image": image, "label": label}

    def __repr__(self) -> str:
        return (
            f"TFDSSource({self.name!r}, split={self.split!r}, resolution="
            f"{self.resolution}, len={len(self)})"
        )
