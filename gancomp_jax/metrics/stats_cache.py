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
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np


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
    def save(self, path: str | os.PathLike) -> None:
        """Writes the statistics to ``path`` (``.npz``) atomically."""
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
