"""Feature statistics (NVlabs ``metric_utils.FeatureStats``) and their on-disk cache.

:class:`FeatureStats` accumulates detector features batch by batch: either every feature
vector (``capture_all``, for KID / precision-recall / IS) or only the float64 running sums
``Σx`` and ``Σxᵀx`` (``capture_mean_cov``, for FID), so FID over any number of images holds
one batch of features at a time. ``get_mean_cov`` returns the *biased* covariance
``Σxᵀx/N − μμᵀ``, exactly as NVlabs; ``get_mean_cov(ddof=1)`` gives ``np.cov``'s unbiased one
(pytorch-fid).

Dataset statistics are cached like NVlabs' ``~/.cache/dnnlib/gan-metrics``: one ``.npz`` per
(dataset, detector, options), named ``{dataset}-{detector}-{md5 of the sorted options}.npz``
under ``$GANCOMP_CACHE_DIR/gan-metrics`` (default ``~/.cache/gancomp_jax/gan-metrics``).
Files are written atomically (temporary file + rename) and hold plain arrays (no pickle).

Unlike NVlabs (which keys by the dataset's path), the dataset part of the key covers the
*contents* of the images used (:meth:`EncodedImageSource.content_digest`: sha256 of every
file), so images rewritten in place never give stale statistics. A cache file also stores its
own key and a sha256 of its arrays; :meth:`FeatureStats.load_cached` reads it through
:func:`gancomp_jax.io.safe_files.read_npz` (headers checked before any data) and accepts it
only if the checksum, the key, the shapes and the finiteness all hold — otherwise it warns and
the statistics are recomputed (and the file rewritten).
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from gancomp_jax.io.safe_files import arrays_digest


class FeatureStats:
    """Running feature statistics (transcribes NVlabs ``metric_utils.FeatureStats``).

    Args:
      capture_all: keep every feature vector (float32) for :meth:`get_all`.
      capture_mean_cov: keep float64 ``Σx`` ``[D]`` and ``Σxᵀx`` ``[D, D]`` for :meth:`get_mean_cov`.
      max_items: stop accepting features after this many rows (``None``: unlimited).
    """

    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False,
                 max_items: int | None = None):
        self.capture_all = bool(capture_all)
        self.capture_mean_cov = bool(capture_mean_cov)
        self.max_items = None if max_items is None else int(max_items)
        self.num_items = 0
        self.num_features: int | None = None
        self.all_features: list[np.ndarray] | None = None
        self.raw_mean: np.ndarray | None = None
        self.raw_cov: np.ndarray | None = None

    def set_num_features(self, num_features: int) -> None:
        if self.num_features is not None:
            if num_features != self.num_features:
                raise ValueError(f"feature size changed from {self.num_features} to {num_features}")
            return
        self.num_features = int(num_features)
        self.all_features = []
        self.raw_mean = np.zeros([num_features], dtype=np.float64)
        self.raw_cov = np.zeros([num_features, num_features], dtype=np.float64)

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def remaining(self) -> int | None:
        return None if self.max_items is None else max(self.max_items - self.num_items, 0)

    def append(self, x: Any) -> None:
        """Adds features ``x [B, D]`` (cast to float32 first, as NVlabs; rows past ``max_items``
        are dropped)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {x.shape}")
        if self.max_items is not None and self.num_items + x.shape[0] > self.max_items:
            if self.num_items >= self.max_items:
                return
            x = x[:self.max_items - self.num_items]
        self.set_num_features(x.shape[1])
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def get_all(self) -> np.ndarray:
        """float32 ``[N, D]``: every captured feature vector, in order."""
        if not self.capture_all:
            raise ValueError("these statistics were gathered without capture_all")
        if not self.all_features:
            return np.zeros([0, self.num_features or 0], np.float32)
        return np.concatenate(self.all_features, axis=0)

    def get_mean_cov(self, ddof: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """float64 mean ``[D]`` and covariance ``[D, D]``.

        ``ddof=0`` (default) is NVlabs' biased ``Σxᵀx/N − μμᵀ``; ``ddof=1`` rescales it to
        ``np.cov``'s unbiased estimate (pytorch-fid).
        """
        if not self.capture_mean_cov:
            raise ValueError("these statistics were gathered without capture_mean_cov")
        if self.num_items < 1:
            raise ValueError("no features were accumulated")
        mean = self.raw_mean / self.num_items
        cov = self.raw_cov / self.num_items
        cov = cov - np.outer(mean, mean)
        if ddof:
            if self.num_items <= ddof:
                raise ValueError(f"need more than {ddof} items for ddof={ddof}, got {self.num_items}")
            cov = cov * (self.num_items / (self.num_items - ddof))
        return mean, cov

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, key: str | None = None) -> None:
        """Writes the statistics to ``path`` (``.npz``) atomically, with ``key`` (the cache key
        it answers, if any) and a sha256 of the arrays (see :meth:`load_cached`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(capture_all=self.capture_all, capture_mean_cov=self.capture_mean_cov,
                      max_items=-1 if self.max_items is None else self.max_items,
                      num_items=self.num_items,
                      num_features=-1 if self.num_features is None else self.num_features)
        if self.capture_mean_cov and self.raw_mean is not None:
            arrays.update(raw_mean=self.raw_mean, raw_cov=self.raw_cov)
        if self.capture_all and self.num_features is not None:
            arrays.update(all_features=self.get_all())
        if key is not None:
            arrays["key"] = _digest_array(hashlib.sha256(str(key).encode()).digest())
        arrays["checksum"] = _digest_array(arrays_digest(arrays))
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp.npz")
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @staticmethod
    def load(path: str | os.PathLike) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature statistics file {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as f:
                d = {k: f[k] for k in f.files}
        except (OSError, ValueError) as e:
            raise ValueError(f"{path} is not a feature statistics file: {e}") from None
        need = {"capture_all", "capture_mean_cov", "max_items", "num_items", "num_features"}
        if not need <= set(d):
            raise ValueError(f"{path} is not a feature statistics file (missing {sorted(need - set(d))})")
        max_items = int(d["max_items"])
        s = FeatureStats(bool(d["capture_all"]), bool(d["capture_mean_cov"]),
                         None if max_items < 0 else max_items)
        nf = int(d["num_features"])
        if nf >= 0:
            s.set_num_features(nf)
        s.num_items = int(d["num_items"])
        if "raw_mean" in d:
            s.raw_mean, s.raw_cov = d["raw_mean"].astype(np.float64), d["raw_cov"].astype(np.float64)
        if "all_features" in d:
            s.all_features = [d["all_features"].astype(np.float32)]
        return s


    @staticmethod
    def load_cached(path: str | os.PathLike, key: str, max_bytes: int = 4 << 30) -> "FeatureStats | None":
        """The statistics cached in ``path`` for ``key``, or None (with a warning on stderr when
        the file exists but is damaged, edited, for another key or inconsistent)."""
        path = Path(path)
        if not path.exists():
            return None
        from gancomp_jax.io.safe_files import read_npz  # pylint: disable=import-outside-toplevel

        def check(name, header):
            if name not in _CACHE_MEMBERS:
                raise ValueError(f"unexpected member {name!r}")
            dims = 0 if name in _SCALARS else 1 if name in ("raw_mean", "key", "checksum") else 2
            if len(header.shape) != dims:
                raise ValueError(f"member {name!r} has shape {header.shape}")
            return True

        try:
            d = read_npz(path, check, "metric statistics cache", max_bytes=max_bytes)
            d = {k: v.reshape(()) if k in _SCALARS else v for k, v in d.items()}
            problem = _cache_problem(d, key)
        except Exception as e:  # pylint: disable=broad-exception-caught  (damaged: recompute)
            problem = f"unreadable ({type(e).__name__}: {e})"
        if problem:
            print(f"warning: metric statistics cache {path} is not used ({problem}); recomputing",
                  file=sys.stderr, flush=True)
            return None
        max_items = int(d["max_items"])
        s = FeatureStats(bool(d["capture_all"]), bool(d["capture_mean_cov"]), None if max_items < 0 else max_items)
        if int(d["num_features"]) >= 0:
            s.set_num_features(int(d["num_features"]))
        s.num_items = int(d["num_items"])
        if "raw_mean" in d:
            s.raw_mean, s.raw_cov = d["raw_mean"].astype(np.float64), d["raw_cov"].astype(np.float64)
        if "all_features" in d:
            s.all_features = [d["all_features"].astype(np.float32)]
        return s


_SCALARS = ("capture_all", "capture_mean_cov", "max_items", "num_items", "num_features")
_CACHE_MEMBERS = _SCALARS + ("key", "checksum", "raw_mean", "raw_cov", "all_features")


def _digest_array(digest: bytes) -> np.ndarray:
    return np.frombuffer(digest, np.uint8).copy()


def _cache_problem(d: Mapping[str, np.ndarray], key: str) -> str | None:
    """What is wrong with the members ``d`` of a cache file meant for ``key`` (None: usable)."""
    missing = sorted(set(_SCALARS + ("key", "checksum")) - set(d))
    if missing:
        return f"missing {missing} (written by an older version, or not a cache file)"
    if d["checksum"].tobytes() != arrays_digest(d):
        return "its arrays do not match its checksum: the file was edited or damaged"
    if d["key"].tobytes() != hashlib.sha256(key.encode()).digest():
        return "it was written for a different dataset, detector or options"
    n, nf = int(d["num_items"]), int(d["num_features"])
    if n < 1 or nf < 1:
        return f"num_items={n}, num_features={nf}"
    if bool(d["capture_mean_cov"]) and (d.get("raw_mean") is None or d["raw_mean"].shape != (nf,)
                                        or d.get("raw_cov") is None or d["raw_cov"].shape != (nf, nf)):
        return "mean/covariance sums missing or of the wrong shape"
    if bool(d["capture_all"]) and (d.get("all_features") is None or d["all_features"].shape != (n, nf)):
        return "feature vectors missing or of the wrong shape"
    for name in ("raw_mean", "raw_cov", "all_features"):
        if name in d and not np.all(np.isfinite(d[name])):
            return f"{name} holds NaN or Inf"
    return None


def cache_dir() -> Path:
    """``$GANCOMP_CACHE_DIR/gan-metrics`` or ``~/.cache/gancomp_jax/gan-metrics``."""
    root = os.environ.get("GANCOMP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gancomp_jax")
    return Path(root) / "gan-metrics"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(name))[:60] or "x"


def cache_path(dataset_name: str, detector_name: str, options: Mapping[str, Any]) -> Path:
    """Cache file for one (dataset, detector, options): NVlabs' naming with an md5 of the
    sorted options (``repr`` of the sorted items, like ``metric_utils``)."""
    md5 = hashlib.md5(repr(sorted(options.items())).encode("utf-8")).hexdigest()
    return cache_dir() / f"{_safe(dataset_name)}-{_safe(detector_name)}-{md5}.npz"


def file_fingerprint(path: str | os.PathLike) -> str:
    """``abs path|size|mtime`` of a file or directory (changes when the data are replaced)."""
    p = Path(path).absolute()
    if not p.exists():
        return str(p)
    st = p.stat()
    return f"{p}|{st.st_size}|{int(st.st_mtime)}"
