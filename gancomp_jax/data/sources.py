"""Random-access image sources for StyleGAN2 training.

Every source has ``__len__`` and ``__getitem__(i)`` returning
``{'image': uint8 [R, R, 3] in 0..255, 'label': int}`` (``label == -1`` when
the data carry no labels), plus these attributes:

* ``resolution``: the side length ``R`` of every image.
* ``num_skipped``: how many files were left out because they could not be
  read (0 for sources that cannot contain unreadable files).
* ``num_classes``: ``max(label) + 1`` for labelled data, else 0.

Sources built from encoded files (image folders, zips, tfds.ImageFolder-style
directories) check every file once, when the index is built, and keep only the
readable ones; the index therefore never changes afterwards and element ``i``
is always the same image, whatever the number of reader threads or workers.
How thoroughly files are checked is set by ``check``:

* ``'header'``: open the file and read its size (fastest; a truncated body is
  only noticed when the image is decoded, which then raises an error).
* ``'verify'`` (default): additionally run PIL's ``Image.verify()`` (checks the
  PNG chunk CRCs, for example; little for JPEG).
* ``'decode'``: fully decode every image (slowest, catches everything).

Files are checked in a thread pool. Unreadable files are counted in
``num_skipped`` and reported once through ``absl.logging``.

Data must already be at the model resolution, as with NVlabs'
``dataset_tool.py``: an image that is not ``resolution x resolution`` raises a
``ValueError`` naming the file (pass ``resolution=None`` to take it from the
first readable image). Grayscale, palette and RGBA images are converted to RGB
(the alpha channel is dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
import concurrent.futures
import io
import json
import os
import threading
from typing import Any
import zipfile

from absl import logging
import ml_collections
import numpy as np
from PIL import Image

from gancomp_jax.data.digits import DigitsSource

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# tfds.ImageFolder only lists these.
TFDS_IMAGE_FOLDER_EXTENSIONS = (".png", ".jpg", ".jpeg")
CHECK_MODES = ("header", "verify", "decode")
LABELS_FILE = "dataset.json"
SOURCE_KINDS = ("digits", "folder", "zip", "tfds", "tfds_imagefolder")


def decode_rgb(data: bytes) -> np.ndarray:
    """Decodes an encoded image to a uint8 [H, W, 3] array (converted to RGB)."""
    with Image.open(io.BytesIO(data)) as img:
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        return np.asarray(rgb, dtype=np.uint8)


def _probe(data: bytes, check: str) -> tuple[int, int]:
    """Returns (width, height) of an encoded image; raises if it is unreadable."""
    with Image.open(io.BytesIO(data)) as img:
        size = img.size
        if check == "verify":
            img.verify()
        elif check == "decode":
            img.convert("RGB").load()
    return size


def parse_labels(text: str | bytes, where: str) -> dict[str, int] | None:
    """Parses an NVlabs ``dataset.json``: ``{"labels": [[relpath, int], ...]}``.

    Returns a dict from '/'-separated relative path to class index, or None if the
    file has ``"labels": null``. Only integer class labels are supported.
    """
    try:
        labels = json.loads(text).get("labels")
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{where}: not a valid NVlabs dataset.json ({e})") from e
    if labels is None:
        return None
    out = {}
    for entry in labels:
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2):
            raise ValueError(
                f"{where}: each label entry must be [relative_path, int], got {entry!r}"
            )
        name, label = entry
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise ValueError(
                f"{where}: only non-negative integer class labels are supported, got"
                f" {label!r} for {name!r}"
            )
        out[str(name).replace("\\", "/")] = label
    return out


class EncodedImageSource:
    """Base class for sources of encoded image files addressed by string keys.

    Subclasses list candidate keys, provide ``_read(key) -> bytes`` and
    ``_describe(key) -> str`` (a path for messages), and call ``_build_index``.
    """

    location: str
    resolution: int
    num_skipped: int
    num_classes: int
    check: str

    # --- to be provided by subclasses -------------------------------------
    def _read(self, key: str) -> bytes:
        raise NotImplementedError

    def _describe(self, key: str) -> str:
        return f"{self.location}/{key}"

    # --- index construction --------------------------------------------------
    def _build_index(
        self,
        keys: Sequence[str],
        *,
        resolution: int | None,
        check: str,
        num_threads: int | None,
        searched_for: str,
        label_of: Callable[[str], int] | None,
    ) -> None:
        """Checks every key once and keeps the readable ones (in ``keys`` order)."""
        if check not in CHECK_MODES:
            raise ValueError(f"check must be one of {CHECK_MODES}, got {check!r}")
        self.check = check

        def probe(key):
            try:
                return _probe(self._read(key), check)
            except Exception as e:  # pylint: disable=broad-exception-caught
                return e

        if num_threads is None:
            num_threads = min(32, 4 * (os.cpu_count() or 1))
        if num_threads > 1 and len(keys) > 1:
            with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
                results = list(pool.map(probe, keys, chunksize=64))
        else:
            results = [probe(k) for k in keys]

        good, bad = [], []
        for key, res in zip(keys, results):
            (bad if isinstance(res, Exception) else good).append((key, res))
        self.num_skipped = len(bad)
        if bad:
            key, err = bad[0]
            logging.warning(
                "skipped %d unreadable images in %s, e.g. %s (%s: %s)",
                len(bad),
                self.location,
                self._describe(key),
                type(err).__name__,
                err,
            )
        if not good:
            extra = f" ({len(bad)} unreadable files skipped)" if bad else ""
            raise ValueError(
                f"no readable images in {self.location}: searched for {searched_for}{extra}"
            )

        if resolution is None:
            key, (w, h) = good[0]
            if w != h:
                raise ValueError(
                    f"{self._describe(key)}: image is {w}x{h} but must be square;"
                    " prepare the data at the model resolution"
                )
            resolution = w
        resolution = int(resolution)
        for key, (w, h) in good:
            if (w, h) != (resolution, resolution):
                raise ValueError(
                    f"{self._describe(key)}: image is {w}x{h} (WxH) but the expected"
                    f" resolution is {resolution}x{resolution}; prepare the data at"
                    " the model resolution (e.g. NVlabs dataset_tool.py"
                    f" --resolution={resolution}x{resolution})"
                )
        self.resolution = resolution
        self._keys = [k for k, _ in good]
        if label_of is None:
            self._labels = np.full(len(self._keys), -1, np.int64)
            self.num_classes = 0
        else:
            self._labels = np.array([label_of(k) for k in self._keys], np.int64)
            self.num_classes = int(self._labels.max()) + 1

    # --- random access -------------------------------------------------------
    @property
    def keys(self) -> list[str]:
        """Keys (relative paths) of the readable images, in index order."""
        return list(self._keys)

    @property
    def labels(self) -> np.ndarray:
        """int64 [len(self)] class labels (-1 where unlabelled)."""
        return self._labels.copy()

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index: int) -> dict[str, Any]:
        key = self._keys[int(index)]
        try:
            image = decode_rgb(self._read(key))
        except Exception as e:
            raise OSError(
                f"{self._describe(key)}: failed to decode although it passed the"
                f" {self.check!r} check when the index was built (build the source"
                f' with check="decode" to skip such files): {e}'
            ) from e
        if image.shape != (self.resolution, self.resolution, 3):
            raise ValueError(
                f"{self._describe(key)}: decoded shape {image.shape}, expected"
                f" {(self.resolution, self.resolution, 3)}"
            )
        return {"image": image, "label": int(self._labels[int(index)])}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.location!r}, resolution="
            f"{self.resolution}, len={len(self)}, skipped={self.num_skipped})"
        )


def _label_lookup(labels: Mapping[str, int] | None, where: str) -> Callable[[str], int] | None:
    if labels is None:
        return None

    def label_of(key: str) -> int:
        try:
            return labels[key]
        except KeyError:
            raise ValueError(
                f"{where}: no label for {key!r} (every image needs an entry)"
            ) from None

    return label_of


def _has_ext(name: str, exts: Iterable[str]) -> bool:
    return name.lower().endswith(tuple(exts))


class ImageFolderSource(EncodedImageSource):
    """All images under a directory, recursively, in sorted relative-path order.

    Files with extensions png/jpg/jpeg/bmp/webp (any case) are used. If the
    directory contains an NVlabs ``dataset.json`` its integer labels are used
    (keys are '/'-separated paths relative to the directory), otherwise labels
    are -1.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        resolution: int | None = None,
        *,
        check: str = "verify",
        num_threads: int | None = None,
    ):
        self.location = root = os.fspath(path)
        if not os.path.isdir(root):
            raise ValueError(f"image folder does not exist or is not a directory: {root}")
        keys = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames.sort()
            for name in filenames:
                if _has_ext(name, IMAGE_EXTENSIONS):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    keys.append(rel.replace(os.sep, "/"))
        keys.sort()
        labels = None
        labels_path = os.path.join(root, LABELS_FILE)
        if os.path.isfile(labels_path):
            with open(labels_path, "rb") as f:
                labels = parse_labels(f.read(), labels_path)
        self._build_index(
            keys,
            resolution=resolution,
            check=check,
            num_threads=num_threads,
            searched_for=f'files ending in {"/".join(IMAGE_EXTENSIONS)} (any case, recursively)',
            label_of=_label_lookup(labels, labels_path),
        )

    def _describe(self, key: str) -> str:
        return os.path.join(self.location, *key.split("/"))

    def _read(self, key: str) -> bytes:
        with open(self._describe(key), "rb") as f:
            return f.read()


class ZipSource(EncodedImageSource):
    """Images inside a zip archive (e.g. made by NVlabs ``dataset_tool.py``).

    Members with image extensions (any depth, sorted by name) are used;
    ``__MACOSX/`` entries are ignored. A top-level ``dataset.json`` supplies
    labels as for :class:`ImageFolderSource`. Each thread (and each process after
    a fork) opens its own handle on the archive, so the source can be read
    concurrently and pickled.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        resolution: int | None = None,
        *,
        check: str = "verify",
        num_threads: int | None = None,
    ):
        self.location = self.path = os.fspath(path)
        self._local = threading.local()
        if not os.path.isfile(self.path):
            raise ValueError(f"zip file does not exist: {self.path}")
        try:
            names = self._zip().namelist()
        except zipfile.BadZipFile as e:
            raise ValueError(f"{self.path} is not a readable zip file: {e}") from e
        keys = sorted(
            n
            for n in names
            if not n.endswith("/")
            and not n.startswith("__MACOSX/")
            and _has_ext(n, IMAGE_EXTENSIONS)
        )
        labels = None
        if LABELS_FILE in names:
            labels = parse_labels(self._zip().read(LABELS_FILE), f"{self.path}:{LABELS_FILE}")
        self._build_index(
            keys,
            resolution=resolution,
            check=check,
            num_threads=num_threads,
            searched_for=f'members ending in {"/".join(IMAGE_EXTENSIONS)} (any case)',
            label_of=_label_lookup(labels, f"{self.path}:{LABELS_FILE}"),
        )

    def _zip(self) -> zipfile.ZipFile:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.zf = zipfile.ZipFile(self.path)
            local.pid = os.getpid()
        return local.zf

    def _describe(self, key: str) -> str:
        return f"{self.path}:{key}"

    def _read(self, key: str) -> bytes:
        return self._zip().read(key)

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()


class TFDSImageFolderSource(EncodedImageSource):
    """A ``tfds.ImageFolder``-style directory, read without TensorFlow.

    Layout: ``root/<split>/<label name>/<image>.{png,jpg,jpeg}``. As in
    ``tfds.ImageFolder``, the label names are the sorted union of the label
    directories over all splits and the label is the index into that list
    (available as ``label_names``). Unlike ``tfds.ImageFolder`` (which needs
    TensorFlow and only offers a ``tf.data`` pipeline) this gives random access;
    images are ordered by (label name, file name) instead of TFDS' fixed
    pseudo-random order, since the pipeline shuffles anyway.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        split: str = "train",
        resolution: int | None = None,
        *,
        check: str = "verify",
        num_threads: int | None = None,
    ):
        root = os.fspath(path)
        if not os.path.isdir(root):
            raise ValueError(f"image folder does not exist or is not a directory: {root}")

        def subdirs(d):
            return sorted(e for e in os.listdir(d) if os.path.isdir(os.path.join(d, e)))

        splits = subdirs(root)
        if split not in splits:
            raise ValueError(
                f"split {split!r} not found in {root}; available splits: {splits}"
                " (expected layout: <root>/<split>/<label>/<image>)"
            )
        self.split = split
        self.location = self.split_dir = os.path.join(root, split)
        self.label_names = sorted({lbl for s in splits for lbl in subdirs(os.path.join(root, s))})
        label_index = {name: i for i, name in enumerate(self.label_names)}
        keys = []
        for lbl in subdirs(self.split_dir):
            for name in sorted(os.listdir(os.path.join(self.split_dir, lbl))):
                full = os.path.join(self.split_dir, lbl, name)
                if _has_ext(name, TFDS_IMAGE_FOLDER_EXTENSIONS) and os.path.isfile(full):
                    keys.append(f"{lbl}/{name}")
        self._build_index(
            keys,
            resolution=resolution,
            check=check,
            num_threads=num_threads,
            searched_for=(
                f'<label>/<file> ending in {"/".join(TFDS_IMAGE_FOLDER_EXTENSIONS)}' " (any case)"
            ),
            label_of=lambda key: label_index[key.split("/", 1)[0]],
        )

    def _describe(self, key: str) -> str:
        return os.path.join(self.split_dir, *key.split("/"))

    def _read(self, key: str) -> bytes:
        with open(self._describe(key), "rb") as f:
            return f.read()


# ---------------------------------------------------------------------------
# Config-driven construction.
# ---------------------------------------------------------------------------


def default_data_config() -> ml_collections.ConfigDict:
    """Default data config: the built-in digits at 32x32, no augmentation.

    Fields: ``source`` (one of ``SOURCE_KINDS``), ``resolution`` (int),
    ``xflip`` (bool), ``path`` (folder/zip/tfds_imagefolder root), ``name``
    (TFDS dataset name, optionally with config/version), ``split``,
    ``data_dir`` (TFDS data dir; '' = TFDS default), ``worker_count`` (Grain
    worker processes; 0 = read in the main process with threads).
    """
    return ml_collections.ConfigDict(
        dict(
            source="digits",
            resolution=32,
            xflip=False,
            path="",
            name="",
            split="train",
            data_dir="",
            worker_count=0,
        )
    )


def _get(config: Any, key: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    try:
        return config.get(key, default)  # ConfigDict / FrozenConfigDict
    except AttributeError:
        return getattr(config, key, default)


def build_source(config: Any):
    """Builds the source described by ``config`` (see ``default_data_config``).

    Raises:
      ValueError: unknown ``config.source``, or a missing ``path``/``name``.
    """
    kind = _get(config, "source", "digits")
    resolution = _get(config, "resolution", None)
    resolution = int(resolution) if resolution else None
    path = _get(config, "path", "") or ""
    split = _get(config, "split", "train") or "train"

    def need(field, value):
        if not value:
            raise ValueError(f"data source {kind!r} needs config.{field} to be set")
        return value

    if kind == "digits":
        return DigitsSource(resolution or 32)
    if kind == "folder":
        return ImageFolderSource(need("path", path), resolution)
    if kind == "zip":
        return ZipSource(need("path", path), resolution)
    if kind == "tfds_imagefolder":
        return TFDSImageFolderSource(need("path", path), split, resolution)
    if kind == "tfds":
        from gancomp_jax.data.tfds_source import TFDSSource  # pylint: disable=g-import-not-at-top

        return TFDSSource(
            need("name", _get(config, "name", "")),
            split=split,
            data_dir=_get(config, "data_dir", "") or None,
            resolution=resolution,
        )
    raise ValueError(f'unknown data source {kind!r}; valid sources: {", ".join(SOURCE_KINDS)}')
