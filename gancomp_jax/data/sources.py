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

Only regular files are read: a FIFO, socket or device file with an image name is refused
with an error naming it (opening one could block forever), and symbolic links (to files or
folders) are never followed, so a link can neither lead out of the dataset root nor back into
it (no loops, no images counted twice); they are listed in one warning. A file or zip member
larger than ``max_file_mb`` (default 64 MiB, ``config.data.max_file_mb``) is skipped as
unreadable before anything is read or decompressed (a zip member's size is its declared
uncompressed size, which ``zipfile`` never reads past). ``dataset.json`` is checked
(an object with a list of ``[relative path, int]`` pairs, at most 128 MiB) before use.

Data must already be at the model resolution, as with NVlabs'
``dataset_tool.py``: an image that is not ``resolution x resolution`` raises a
``ValueError`` naming the file (pass ``resolution=None`` to take it from the
first readable image). Grayscale, palette and RGBA images are converted to RGB
(the alpha channel is dropped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
import concurrent.futures
import hashlib
import io
import json
import os
import stat
import threading
import time
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
SOURCE_KINDS = ("digits", "folder", "zip", "tfds", "tfds_imagefolder", "teacher")
MAX_FILE_MB = 64  # default per-image size limit (encoded bytes / declared zip member size)
MAX_LABELS_BYTES = 128 << 20  # dataset.json size limit
MAX_CLASSES = 1_000_000


_DIGESTS: dict[tuple, str] = {}  # content_digest's memo: (class, file, stamp) -> sha256


class TooLargeError(OSError):
    """A file or zip member is larger than the per-image limit (it is not read)."""


class DataReadError(OSError):
    """An image of the index could not be read or decoded while training (names the file)."""


def read_regular_file(path: str, limit: int) -> bytes:
    """The bytes of ``path`` if it is a regular file (not a link) of at most ``limit`` bytes.

    Opened without following a final symbolic link and without blocking, then checked with
    ``fstat`` on the open descriptor, so a FIFO or device swapped in meanwhile is refused too.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if os.path.islink(path):
            raise OSError(f"{path} is a symbolic link; links are not followed") from None
        raise e
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file; only regular files are read")
        if st.st_size > limit:
            raise TooLargeError(f"{path} is {st.st_size} bytes, more than the limit of {limit} bytes"
                                f" (config.data.max_file_mb)")
        blob = f.read(limit + 1)
    if len(blob) > limit:
        raise TooLargeError(f"{path} grew past the limit of {limit} bytes while being read")
    return blob


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
    file has ``"labels": null``. Only integer class labels are supported. Raises ValueError
    naming ``where`` for anything else (also for JSON nested too deep to parse).
    """
    if len(text) > MAX_LABELS_BYTES:
        raise ValueError(f"{where}: {len(text)} bytes, more than the limit of {MAX_LABELS_BYTES} for a dataset.json")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else e
        raise ValueError(f"{where}: not a valid NVlabs dataset.json ({reason})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where}: not a valid NVlabs dataset.json (expected an object with a 'labels' list,"
                         f" got a JSON {type(doc).__name__})")
    labels = doc.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, list):
        raise ValueError(f"{where}: 'labels' must be a list of [relative_path, int] pairs or null, got"
                         f" {str(labels)[:40]!r} ({type(labels).__name__})")
    out = {}
    for entry in labels:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(
                f"{where}: each label entry must be [relative_path, int], got {str(entry)[:60]}"
            )
        name, label = entry
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < MAX_CLASSES:
            raise ValueError(
                f"{where}: only integer class labels in [0, {MAX_CLASSES}) are supported, got"
                f" {str(label)[:40]} for {name[:200]!r}"
            )
        out[name.replace("\\", "/")] = label
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
    max_file_bytes: int = MAX_FILE_MB << 20

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

    # --- identity (metric statistics cache) ---------------------------------
    def _stamp(self, key: str) -> tuple | None:
        """Changes whenever the bytes of ``key`` may have changed (None: do not memoise)."""
        try:
            st = os.stat(self._describe(key), follow_symlinks=False)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def content_digest(self, num_items: int | None = None) -> str:
        """sha256 over the keys and file contents of the first ``num_items`` images (index order).

        Every file is hashed once per process while its (inode, size, mtime, ctime) stay the
        same; a file rewritten in place gets a new ctime, so its new bytes are hashed. As in git's
        "racy" rule, a hash is memoised only for files changed more than 2 s before it was taken
        (timestamps are coarser than a rewrite).
        """
        n = len(self) if num_items is None else min(int(num_items), len(self))

        def one(key):
            stamp = self._stamp(key)
            memo = (type(self).__name__, self._describe(key), stamp)
            digest = _DIGESTS.get(memo) if stamp is not None else None
            if digest is None:
                t0 = time.time_ns()
                digest = hashlib.sha256(self._read(key)).hexdigest()
                if stamp is not None and max(stamp[2], stamp[3]) < t0 - 2_000_000_000:
                    _DIGESTS[memo] = digest
            return digest

        h = hashlib.sha256(f"{type(self).__name__}|{n}|".encode())
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for key, digest in zip(self._keys[:n], pool.map(one, self._keys[:n])):
                h.update(key.encode("utf-8", "surrogateescape") + b"\0" + digest.encode() + b"\n")
        return h.hexdigest()

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
            raise DataReadError(
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


def _limit_bytes(max_file_mb: float) -> int:
    try:
        limit = float(max_file_mb)
    except (TypeError, ValueError):
        raise ValueError(f"config.data.max_file_mb={max_file_mb!r} is not a number") from None
    if not 0 < limit <= 1 << 20:
        raise ValueError(f"config.data.max_file_mb={max_file_mb!r} must be in (0, {1 << 20}] (MiB per image)")
    return int(limit * (1 << 20))


def _walk_regular(root: str, exts: Iterable[str]) -> tuple[list[str], list[str]]:
    """('/'-separated relative paths of files under ``root`` with an image extension, sorted;
    relative paths of the symbolic links met, which are not followed).

    Raises ValueError naming an image-named entry that is not a regular file (FIFO, socket,
    device): opening one could block forever.
    """
    keys, links = [], []
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise ValueError(f"cannot list {os.path.join(root, rel_dir)}: {e}") from None
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.is_symlink():
                links.append(rel)
            elif e.is_dir(follow_symlinks=False):
                stack.append(rel)
            elif _has_ext(e.name, exts):
                if not e.is_file(follow_symlinks=False):
                    raise ValueError(f"{e.path} is not a regular file (a FIFO, socket or device); only regular "
                                     f"files are read: remove it from the dataset")
                keys.append(rel)
    keys.sort()
    return keys, links


def _warn_links(links: Sequence[str], root: str) -> None:
    if links:
        logging.warning("ignored %d symbolic link(s) in %s, e.g. %s: links are not followed (a dataset must "
                        "hold its files; copy them in)", len(links), root, links[0])


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
        max_file_mb: float = MAX_FILE_MB,
    ):
        self.location = root = os.fspath(path)
        if not os.path.isdir(root):
            raise ValueError(f"image folder does not exist or is not a directory: {root}")
        self.max_file_bytes = _limit_bytes(max_file_mb)
        keys, links = _walk_regular(root, IMAGE_EXTENSIONS)
        _warn_links(links, root)
        labels = None
        labels_path = os.path.join(root, LABELS_FILE)
        if os.path.lexists(labels_path):
            try:
                text = read_regular_file(labels_path, MAX_LABELS_BYTES)
            except OSError as e:
                raise ValueError(f"{labels_path}: cannot be read as labels: {e}") from None
            labels = parse_labels(text, labels_path)
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
        return read_regular_file(self._describe(key), self.max_file_bytes)


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
        max_file_mb: float = MAX_FILE_MB,
    ):
        self.location = self.path = os.fspath(path)
        self._local = threading.local()
        self.max_file_bytes = _limit_bytes(max_file_mb)
        if os.path.islink(self.path) or (os.path.exists(self.path) and not os.path.isfile(self.path)):
            what = "a symbolic link" if os.path.islink(self.path) else "not a regular file"
            raise ValueError(f"zip file {self.path} is {what}; give the archive itself")
        if not os.path.isfile(self.path):
            raise ValueError(f"zip file does not exist: {self.path}")
        try:
            infos = self._zip().infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise ValueError(f"{self.path} is not a readable zip file: {e}") from e
        names = [i.filename for i in infos]
        keys = sorted(
            n
            for n in names
            if not n.endswith("/")
            and not n.startswith("__MACOSX/")
            and _has_ext(n, IMAGE_EXTENSIONS)
        )
        labels = None
        if LABELS_FILE in names:
            where = f"{self.path}:{LABELS_FILE}"
            size = self._zip().getinfo(LABELS_FILE).file_size
            if size > MAX_LABELS_BYTES:
                raise ValueError(f"{where}: {size} bytes, more than the limit of {MAX_LABELS_BYTES} for a"
                                 " dataset.json")
            try:
                text = self._zip().read(LABELS_FILE)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
                raise ValueError(f"{where}: cannot be read: {e}") from None
            labels = parse_labels(text, where)
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

    def _stamp(self, key: str) -> tuple | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        info = self._zip().getinfo(key)
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, info.CRC, info.file_size, key)

    def _read(self, key: str) -> bytes:
        info = self._zip().getinfo(key)
        if info.file_size > self.max_file_bytes:  # zipfile never decompresses past file_size
            raise TooLargeError(f"{self._describe(key)} is {info.file_size} bytes uncompressed, more than the"
                                f" limit of {self.max_file_bytes} bytes (config.data.max_file_mb)")
        return self._zip().read(info)

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
        max_file_mb: float = MAX_FILE_MB,
    ):
        root = os.fspath(path)
        if not os.path.isdir(root):
            raise ValueError(f"image folder does not exist or is not a directory: {root}")
        self.max_file_bytes = _limit_bytes(max_file_mb)
        links: list[str] = []

        def subdirs(d):
            out = []
            for e in sorted(os.listdir(d)):
                full = os.path.join(d, e)
                if os.path.islink(full):
                    links.append(os.path.relpath(full, root))
                elif os.path.isdir(full):
                    out.append(e)
            return out

        splits = subdirs(root)
        if split not in splits:
            raise ValueError(
                f"split {split!r} not found in {root}; available splits: {splits}"
                " (expected layout: <root>/<split>/<label>/<image>)"
            )
        self.split = split
        self.location = self.split_dir = os.path.join(root, split)
        links.clear()
        self.label_names = sorted({lbl for s in splits for lbl in subdirs(os.path.join(root, s))})
        label_index = {name: i for i, name in enumerate(self.label_names)}
        links.clear()
        keys = []
        for lbl in subdirs(self.split_dir):
            found, lbl_links = _walk_regular(os.path.join(self.split_dir, lbl), TFDS_IMAGE_FOLDER_EXTENSIONS)
            keys += [f"{lbl}/{name}" for name in found if "/" not in name]
            links += [f"{split}/{lbl}/{name}" for name in lbl_links]
        _warn_links(links, root)
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
        return read_regular_file(self._describe(key), self.max_file_bytes)


# ---------------------------------------------------------------------------
# Config-driven construction.
# ---------------------------------------------------------------------------


def default_data_config() -> ml_collections.ConfigDict:
    """Default data config: the built-in digits at 32x32, no augmentation.

    Fields: ``source`` (one of ``SOURCE_KINDS``), ``resolution`` (int),
    ``xflip`` (bool), ``path`` (folder/zip/tfds_imagefolder root), ``name``
    (TFDS dataset name, optionally with config/version), ``split``,
    ``data_dir`` (TFDS data dir; '' = TFDS default), ``preprocess`` (TFDS:
    crop/resize to ``resolution`` as BigGAN-PyTorch, ``tfds_source``), ``worker_count`` (Grain
    worker processes; 0 = read in the main process with threads), ``max_file_mb`` (largest
    image file or zip member read, MiB; larger ones are skipped unread).
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
            preprocess="none",  # source='tfds': none | center_crop | biggan_hdf5 (data/tfds_source.py)
            worker_count=0,
            max_file_mb=float(MAX_FILE_MB),
            # source='teacher' (gancomp_jax.data.teacher_source; path = the teacher)
            teacher_network="G_ema",
            truncation_psi=1.0,
            teacher_seed=0,
            num_images=50000,
            noise_mode="random",
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
    limit = _get(config, "max_file_mb", MAX_FILE_MB) or MAX_FILE_MB
    if kind == "folder":
        return ImageFolderSource(need("path", path), resolution, max_file_mb=limit)
    if kind == "zip":
        return ZipSource(need("path", path), resolution, max_file_mb=limit)
    if kind == "teacher":
        from gancomp_jax.data.teacher_source import TeacherSource  # pylint: disable=g-import-not-at-top

        if int(_get(config, "worker_count", 0) or 0) > 0:
            raise ValueError("data source 'teacher' generates on the accelerator in the main process: "
                             "set config.data.worker_count=0")
        return TeacherSource(need("path", path), _get(config, "teacher_network", "G_ema") or "G_ema",
                             num_images=int(_get(config, "num_images", 50000)),
                             seed=int(_get(config, "teacher_seed", 0)),
                             truncation_psi=float(_get(config, "truncation_psi", 1.0)),
                             noise_mode=_get(config, "noise_mode", "random") or "random", resolution=resolution)
    if kind == "tfds_imagefolder":
        return TFDSImageFolderSource(need("path", path), split, resolution, max_file_mb=limit)
    if kind == "tfds":
        from gancomp_jax.data.tfds_source import TFDSSource  # pylint: disable=g-import-not-at-top

        return TFDSSource(
            need("name", _get(config, "name", "")),
            split=split,
            data_dir=_get(config, "data_dir", "") or None,
            resolution=resolution,
            preprocess=_get(config, "preprocess", "none") or "none",
        )
    raise ValueError(f'unknown data source {kind!r}; valid sources: {", ".join(SOURCE_KINDS)}')
