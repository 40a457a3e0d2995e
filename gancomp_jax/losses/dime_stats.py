"""Global embedding moments for DiME: compute them resumably, read and write the released file.

NICKEL & DiME's ``training_loop_DD.py`` reads ``torch.load(global_features_ckpt)``, a dict of
four 1-D float tensors ``global_{dino,clip}_{first,second}`` (the raw first and second moments
``E[f]``, ``E[f²]`` of each embedder's output), but ships no code that computes it. This
module computes the same dict for any set of embedders from a teacher generator or a dataset,
with partial sums checkpointed so an interrupted run continues where it stopped, and reads or
writes it as the released ``.pt`` (``torch.save`` layout; written with torch when it is
installed, otherwise by a small zip writer of the same layout) or as ``.npz``.

Optionally it also keeps a *bank* of the embeddings themselves (``bank_{name}``, ``[n, d]``
float32) for the kernel-MMD form of DiME (:mod:`gancomp_jax.losses.mmd`).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

MOMENT_KEYS = ("first", "second")


# --------------------------------------------------------------------------- file formats

class _Global:
    """A pickled reference to ``module.name`` written without importing ``module``."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce requires a callable
        raise TypeError("placeholder")


class _Storage:
    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride, acc = [], 1
        for s in reversed(self.shape):
            stride.insert(0, acc)
            acc *= s
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


_STORAGE_TYPES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
                  np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage"}


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler lets us emit GLOBAL opcodes
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global("torch", _STORAGE_TYPES[obj.array.dtype]), obj.key, "cpu",
                    int(obj.array.size))
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
            self.memoize(obj)
            return
        super().save(obj, save_persistent_id)


def _write_torch_zip(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``torch.save(dict_of_tensors)``'s zip layout, without torch."""
    stem = "archive"
    obj, blobs = {}, []
    for i, (k, v) in enumerate(arrays.items()):
        v = np.ascontiguousarray(v)
        if v.dtype not in _STORAGE_TYPES:
            raise ValueError(f"cannot write {k!r} of dtype {v.dtype} as a torch tensor")
        st = _Storage(str(i), v)
        blobs.append(st)
        obj[k] = _Tensor(st, v.shape)
    buf = io.BytesIO()
    _TorchPickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{stem}/data.pkl", buf.getvalue())
        zf.writestr(f"{stem}/byteorder", "little")
        for st in blobs:
            zf.writestr(f"{stem}/data/{st.key}", st.array.astype(st.array.dtype.newbyteorder("<")).tobytes())
        zf.writestr(f"{stem}/version", "3\n")


def save_stats(path: str | os.PathLike, stats: Mapping[str, np.ndarray], writer: str = "auto") -> str:
    """Writes ``stats`` to ``path``: ``.pt`` (torch layout) or ``.npz``. Returns the writer used.

    ``writer`` (``.pt`` only): ``'torch'`` (``torch.save`` of float32 tensors), ``'builtin'``
    (our zip writer) or ``'auto'`` (torch when importable).
    """
    path = Path(path)
    arrays = {k: np.asarray(v, np.float32) for k, v in stats.items()}
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == ".npz":
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        used = "npz"
    elif path.suffix == ".pt":
        if writer == "auto":
            try:
                import torch  # noqa: F401
                writer = "torch"
            except ImportError:
                writer = "builtin"
        if writer == "torch":
            import torch
            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp)
        elif writer == "builtin":
            _write_torch_zip(tmp, arrays)
        else:
            raise ValueError(f"unknown .pt writer {writer!r}; use auto, torch or builtin")
        used = writer
    else:
        raise ValueError(f"{path}: global statistics are written as .pt or .npz")
    os.replace(tmp, path)
    return used


#: Largest embedding dimension accepted when the embedders' own dimensions are not given.
MAX_EMBEDDING_DIM = 1 << 16
#: Largest bank (``bank_{e}``, all embeddings) read, in bytes.
MAX_BANK_BYTES = 2 << 30
_MOMENT = re.compile(r"^global_(.+)_(first|second)$")
_BANK = re.compile(r"^bank_(.+)$")


def _expected(key: str, names: Mapping[str, int | None] | None) -> tuple[str, str, int | None] | None:
    """``(embedder, 'first'|'second'|'bank', dimension or None)`` for a key we read, None to skip it."""
    m = _MOMENT.match(key)
    name, what = (m[1], m[2]) if m else (None, None)
    if m is None:
        b = _BANK.match(key)
        if b is None:
            return None
        name, what = b[1], "bank"
    if names is not None and name not in names:
        return None
    return name, what, (names or {}).get(name)


def _check_declared(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype,
                    names: Mapping[str, int | None] | None) -> bool:
    """Checks one entry's declared dtype and shape (before its data is read); False: not needed."""
    expected = _expected(key, names)
    if expected is None:
        return False
    name, what, dim = expected
    if dtype.kind != "f":
        raise ValueError(f"{path}: entry {key!r} is not a float tensor ({dtype})")
    limit = f"{dim} (the {name!r} embedder's dimension)" if dim else f"at most {MAX_EMBEDDING_DIM}"
    ok_dim = (lambda d: d == dim) if dim else (lambda d: 1 <= d <= MAX_EMBEDDING_DIM)
    if what == "bank":
        if len(shape) != 2 or not shape[0] or not ok_dim(shape[1]):
            raise ValueError(f"{path}: {key!r} has shape {shape}, expected [n, {limit}]")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if nbytes > MAX_BANK_BYTES:
            raise ValueError(f"{path}: {key!r} has shape {shape} ({nbytes:,} bytes), more than the limit of "
                             f"{MAX_BANK_BYTES:,} bytes")
    elif len(shape) != 1 or not ok_dim(shape[0]):
        raise ValueError(f"{path}: {key!r} has shape {shape}, expected [{limit}]")
    return True


def load_stats(path: str | os.PathLike, names: list[str] | Mapping[str, int | None] | None = None
               ) -> dict[str, np.ndarray]:
    """Reads a global-statistics file (released ``.pt`` via the restricted unpickler, or ``.npz``).

    Args:
      names: embedder names whose ``global_{name}_{first,second}`` must be present, or a mapping
        ``name -> embedding dimension`` (None: unknown) that the entries must match. Given,
        entries of other embedders are not read.

    Every entry's dtype and shape are checked before its data is read (``.npz``: from the
    ``.npy`` headers, decompressing at most the bytes those imply; ``.pt``: the reader's
    allocation limit is what the expected entries need): moments ``[d]`` and banks ``[n, d]``
    with ``d`` the embedder's dimension (at most :data:`MAX_EMBEDDING_DIM` when unknown), banks
    at most :data:`MAX_BANK_BYTES`. Values must be finite.

    Raises:
      FileNotFoundError, ValueError (not a dict of arrays, missing keys, bad shapes or values).
    """
    from gancomp_jax.io.safe_files import check_finite, read_npz, require_regular_file

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"global statistics file {path} does not exist")
    require_regular_file(path, "global statistics file")
    if names is not None and not isinstance(names, Mapping):
        names = {n: None for n in names}
    if path.suffix == ".npz":
        data = read_npz(path, lambda key, h: _check_declared(path, key, h.shape, h.dtype, names),
                        "global statistics file", max_bytes=MAX_BANK_BYTES + (64 << 20))
    else:
        from gancomp_jax.io import load_torch_file
        from gancomp_jax.io.torch_pickle import CheckpointFormatError

        dims = [d or MAX_EMBEDDING_DIM for d in (names or {}).values()] or [MAX_EMBEDDING_DIM] * 4
        need = (sum(2 * d * 8 for d in dims) + MAX_BANK_BYTES) + (1 << 20)
        try:
            loaded = load_torch_file(path, max_alloc=min(need, 4 << 30))
        except CheckpointFormatError as e:
            raise ValueError(f"global statistics file {e}" if str(e).startswith(str(path)) else str(e)) from None
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{path}: expected a dict of tensors, got {type(loaded).__name__}")
        data = {}
        for k, v in loaded.items():
            arr = np.asarray(v) if isinstance(v, np.ndarray) else None
            if arr is None:
                if _expected(str(k), names) is not None:
                    raise ValueError(f"{path}: entry {k!r} is not a tensor ({type(v).__name__})")
                continue
            if _check_declared(path, str(k), tuple(arr.shape), arr.dtype, names):
                data[str(k)] = arr
    out = {k: np.asarray(v, np.float32) for k, v in data.items()}
    check_finite(out, str(path))
    for name in names or ():
        for m in MOMENT_KEYS:
            key = f"global_{name}_{m}"
            if key not in out:
                raise ValueError(f"{path}: key {key!r} missing (have {sorted(out)})")
        if out[f"global_{name}_first"].shape != out[f"global_{name}_second"].shape:
            raise ValueError(f"{path}: first and second moments of {name!r} differ in shape")
    return out


# --------------------------------------------------------------------------- computation

class MomentAccumulator:
    """Float64 running sums of ``f`` and ``f²`` per embedder (and optionally a bank)."""

    def __init__(self, names: list[str], keep_bank: bool = False):
        self.names = list(names)
        self.keep_bank = keep_bank
        self.count = 0
        self.sum1: dict[str, np.ndarray] = {}
        self.sum2: dict[str, np.ndarray] = {}
        self.bank: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def add(self, feats: Mapping[str, np.ndarray]) -> None:
        n = None
        for name in self.names:
            f = np.asarray(feats[name], np.float64)
            if f.ndim != 2:
                raise ValueError(f"embedder {name!r} returned shape {f.shape}, expected [N, d]")
            n = f.shape[0] if n is None else n
            self.sum1[name] = self.sum1.get(name, 0.0) + f.sum(0)
            self.sum2[name] = self.sum2.get(name, 0.0) + np.square(f).sum(0)
            if self.keep_bank:
                self.bank[name].append(np.asarray(feats[name], np.float32))
        self.count += int(n or 0)

    def stats(self) -> dict[str, np.ndarray]:
        if self.count == 0:
            raise ValueError("no samples were embedded")
        out = {}
        for name in self.names:
            out[f"global_{name}_first"] = (self.sum1[name] / self.count).astype(np.float32)
            out[f"global_{name}_second"] = (self.sum2[name] / self.count).astype(np.float32)
        if self.keep_bank:
            for name in self.names:
                out[f"bank_{name}"] = np.concatenate(self.bank[name])
        return out

    def state(self) -> dict[str, np.ndarray]:
        d = {"count": np.int64(self.count)}
        for name in self.names:
            if name in self.sum1:
                d[f"sum1_{name}"] = self.sum1[name]
                d[f"sum2_{name}"] = self.sum2[name]
                if self.keep_bank and self.bank[name]:
                    d[f"bank_{name}"] = np.concatenate(self.bank[name])
        return d

    def restore(self, d: Mapping[str, np.ndarray]) -> None:
        self.count = int(d["count"])
        for name in self.names:
            if f"sum1_{name}" in d:
                self.sum1[name] = np.asarray(d[f"sum1_{name}"], np.float64)
                self.sum2[name] = np.asarray(d[f"sum2_{name}"], np.float64)
                if self.keep_bank and f"bank_{name}" in d:
                    self.bank[name] = [np.asarray(d[f"bank_{name}"], np.float32)]


def _meta_difference(saved: str, meta: Mapping[str, Any]) -> str:
    """``'weights: was ..., now ...'`` for the settings that differ from a saved ``repr(sorted(items))``."""
    import ast

    try:
        old = dict(ast.literal_eval(saved)) if len(saved) < 100_000 else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        old = None
    if old is None:
        return saved[:500]
    keys = sorted(set(old) | set(meta), key=str)
    return "; ".join(f"{k}: was {old.get(k)!r}, now {meta.get(k)!r}" for k in keys if old.get(k) != meta.get(k))


def weights_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a weight file, or of a directory's regular files (names and contents), for resume checks."""
    import hashlib

    from gancomp_jax.io.safe_files import open_regular

    path = Path(path)

    def file_digest(p: Path) -> str:
        digest = hashlib.sha256()
        with open_regular(p, "weight file") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    if not path.exists():
        raise FileNotFoundError(f"weight file {path} does not exist")
    if not path.is_dir():
        return file_digest(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.is_symlink()):
        digest.update(f"{p.relative_to(path).as_posix()}\0{file_digest(p)}\n".encode())
    return digest.hexdigest()


def compute_global_stats(embedders: Mapping[str, Callable[[Any], Any]],
                         batches: Callable[[int], np.ndarray], n: int, batch_size: int,
                         partial_path: str | os.PathLike | None = None, keep_bank: bool = False,
                         checkpoint_every: int = 20, progress: bool = True,
                         meta: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Global moments of ``n`` images under each embedder, resumable.

    Args:
      embedders: ``{name: images [B, H, W, 3] in [-1, 1] → features [B, d]}`` (preprocessing
        included, e.g. ``load_embedder(kind, path, preprocess='released')``).
      batches: ``i → images`` of batch ``i`` (deterministic in ``i``, so a resumed run embeds
        the same images); the last batch is cut to reach exactly ``n``.
      partial_path: ``.npz`` of the running sums, written every ``checkpoint_every`` batches
        and on completion is left for the caller to delete; a run with the same
        ``meta`` continues from it.
      meta: identifying settings stored with the partial sums; a mismatch is refused.
    """
    from tqdm import tqdm

    names = list(embedders)
    acc = MomentAccumulator(names, keep_bank)
    meta_str = repr(sorted((meta or {}).items()))
    start = 0
    if partial_path is not None and Path(partial_path).is_file():
        with np.load(partial_path) as z:
            saved = {k: z[k] for k in z.files}
        if str(saved.get("meta")) != meta_str:
            raise ValueError(f"{partial_path}: partial sums were computed with different settings "
                             f"({_meta_difference(str(saved.get('meta')), dict(meta or {}))}); delete it or use "
                             "the same settings")
        acc.restore(saved)
        start = acc.count // batch_size
        if acc.count != min(start * batch_size, n):
            raise ValueError(f"{partial_path}: inconsistent sample count {acc.count}")
    num_batches = -(-n // batch_size)
    bar = tqdm(total=n, initial=acc.count, unit="img", desc="dime_stats", disable=not progress)
    for i in range(start, num_batches):
        imgs = batches(i)[: min(batch_size, n - i * batch_size)]
        acc.add({name: np.asarray(fn(imgs)) for name, fn in embedders.items()})
        bar.update(imgs.shape[0])
        if partial_path is not None and ((i + 1) % checkpoint_every == 0 or i + 1 == num_batches):
            tmp = Path(str(partial_path) + ".tmp.npz")
            np.savez(tmp, meta=np.asarray(meta_str), **acc.state())
            os.replace(tmp, partial_path)
    bar.close()
    return acc.stats()


def generator_batches(model_path: str, batch_size: int, seed: int = 0, truncation_psi: float = 1.0
                      ) -> Callable[[int], np.ndarray]:
    """Teacher samples: batch ``i`` uses ``z ~ N(0, I)`` from ``fold_in(key(seed), i)``, random noise."""
    import jax

    from gancomp_jax.checkpoints import load_any, pick_generator
    from gancomp_jax.utils.ranges import check_truncation_psi

    truncation_psi = check_truncation_psi(truncation_psi, "--truncation_psi")
    from gancomp_jax.models import Generator

    _, net = pick_generator(load_any(model_path))
    G = Generator(net.config)
    cfg = net.config
    if cfg.c_dim:
        raise ValueError(f"{model_path}: conditional generators are not supported by dime_stats")

    @jax.jit
    def run(variables, key):
        kz, kn = jax.random.split(key)
        z = jax.random.normal(kz, (batch_size, cfg.z_dim))
        return G.apply(variables, z, None, truncation_psi=truncation_psi, noise_mode="random",
                       rngs={"noise": kn})

    base = jax.random.key(seed)
    return lambda i: np.asarray(run(net.variables, jax.random.fold_in(base, i)))


def data_batches(spec: str, batch_size: int, resolution: int | None = None, xflip: bool = False
                 ) -> tuple[Callable[[int], np.ndarray], int]:
    """Real images in file order: ``spec`` is a folder, a ``.zip`` or ``digits``.

    Returns ``(batch i → images in [-1, 1], number of images)``; with ``xflip`` the dataset is
    doubled by mirrored copies (as training with x-flips sees it).
    """
    from gancomp_jax.data.sources import build_source

    if spec == "digits":
        cfg = {"source": "digits", "resolution": resolution or 32}
    elif Path(spec).is_dir():
        cfg = {"source": "folder", "path": spec, "resolution": resolution}
    elif Path(spec).is_file() and spec.endswith(".zip"):
        cfg = {"source": "zip", "path": spec, "resolution": resolution}
    else:
        raise FileNotFoundError(f"data source {spec} is neither a folder, a .zip nor 'digits'")
    src = build_source(cfg)
    total = len(src) * (2 if xflip else 1)

    def get(i: int) -> np.ndarray:
        idx = range(i * batch_size, min((i + 1) * batch_size, total))
        imgs = []
        for j in idx:
            img = np.asarray(src[j % len(src)]["image"], np.float32)
            if j >= len(src):
                img = img[:, ::-1]
            imgs.append(img / 127.5 - 1.0)
        return np.stack(imgs)

    return get, total
