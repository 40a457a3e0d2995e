"""Import PyTorch StyleGAN2 checkpoints (NVlabs ``.pkl``, rosinality/CAGC ``.pt``) as our networks.

    from gancomp_jax.convert import import_torch
    nets = import_torch("network-snapshot-025000.pkl", which=("G_ema", "D"))
    nets["G_ema"]            # checkpoints.Network(kind, config, variables)
    nets.metadata            # source file, format, sha256, inferred facts, warnings

The format is told from the content (the first bytes, then the top-level keys), not from the
file name: NVlabs network pickles are plain pickles of ``{'G', 'D', 'G_ema', ...}`` persistent
objects; rosinality checkpoints are ``torch.save`` files of ``{'g', 'g_ema', 'd',
'latent_avg', ...}`` state dicts. Files are read by the loaders of :mod:`gancomp_jax.io`, which
execute nothing from them: NVlabs pickles by a restricted, torch-free unpickler; rosinality
files by ``torch.load(weights_only=True)`` when torch is installed, else by the same unpickler. Our names are used throughout: ``G``,
``G_ema``, ``D`` (rosinality's ``g``, ``g_ema``, ``d``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gancomp_jax.convert.errors import (ConversionError, NetworkNotFoundError, UnrecognizedFileError,
                                        UnsupportedNetworkError)
from gancomp_jax.convert.result import (_ALIASES, NETWORK_NAMES, ROSINALITY_KEYS,  # noqa: F401  (re-exported)
                                        ImportResult, _requested)
from gancomp_jax.io import CheckpointFormatError, UnsafePickleError, load_nvlabs_pkl, load_rosinality_pt
from gancomp_jax.io.rosinality_pt import READERS
from gancomp_jax.io.torch_pickle import sniff_container

if TYPE_CHECKING:  # the converters import JAX; keep `import gancomp_jax.convert` light
    from gancomp_jax.convert.common import Converted

__all__ = [
    "FORMATS", "NETWORK_NAMES", "ConversionError", "ImportResult", "NetworkNotFoundError",
    "UnrecognizedFileError", "UnsupportedNetworkError", "detect_container", "import_torch",
]

FORMATS = {"nvlabs-pkl": "NVlabs stylegan2-ada-pytorch network pickle",
           "rosinality-pt": "rosinality stylegan2-pytorch checkpoint",
           "biggan-pytorch": "BigGAN-PyTorch state dict (G.pth / G_ema.pth / D.pth)",
           "pretrained-biggan": "pytorch-pretrained-biggan BigGAN-deep (pytorch_model.bin + config.json)"}
_NEITHER = ("is neither an NVlabs network pickle (.pkl) nor a rosinality checkpoint (.pt)")


def detect_container(path: str | os.PathLike) -> str:
    """'zip' (torch.save), 'legacy' (old torch.save stream) or 'pickle', from the first bytes.

    Raises UnrecognizedFileError for anything else (empty files, text, random bytes).
    """
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise UnrecognizedFileError(f"{path}: the file is empty")
    container = sniff_container(head)
    if container:
        return container
    raise UnrecognizedFileError(f"{path} {_NEITHER}: it is not a pickle or torch.save file "
                                f"(first bytes {head[:8]!r})")


def _wrap(e: Exception) -> ConversionError:
    msg = str(e)
    cls = UnsupportedNetworkError if ("StyleGAN3" in msg or "TensorFlow" in msg) else UnrecognizedFileError
    return cls(msg)


def _no_networks(e: Exception) -> bool:
    return isinstance(e, CheckpointFormatError) and "networks found" in str(e)


def _load(path: Path, reader: str, max_alloc: int | None = None) -> tuple[str, Any]:
    """``('nvlabs-pkl', {key: NetworkRecord})`` or ``('rosinality-pt', load_rosinality_pt(...))``."""
    container = detect_container(path)
    loaders = [("nvlabs-pkl", lambda p: load_nvlabs_pkl(p, max_alloc=max_alloc)),
               ("rosinality-pt", lambda p: load_rosinality_pt(p, reader=reader, max_alloc=max_alloc))]
    if container != "pickle":  # torch.save files are rosinality's; plain pickles NVlabs'
        loaders.reverse()
    first_error = None
    for fmt, loader in loaders:
        try:
            return fmt, loader(path)
        except (CheckpointFormatError, UnsafePickleError) as e:
            if not _no_networks(e):  # unreadable, unsafe or unsupported: no point trying the other
                raise _wrap(e) from None
            first_error = first_error or e
    detail = str(first_error).removeprefix(f"{path}: ")
    raise UnrecognizedFileError(f"{path} {_NEITHER}: {detail}")


@contextlib.contextmanager
def _malformed(path: Path, name: str):
    """Turns an unexpected failure on values from the file into one UnsupportedNetworkError.

    The converters check what they read; this is the net under those checks, for values of a
    type nobody foresaw (a hostile or damaged file must give one error line, never a traceback).
    """
    try:
        yield
    except (TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError, MemoryError) as e:
        detail = " ".join(str(e).split())[:200]
        raise UnsupportedNetworkError(f"{path}: network '{name}': malformed values in the file "
                                      f"({type(e).__name__}: {detail})") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def import_torch(path: str | os.PathLike, which: str | Iterable[str] | None = None,
                 reader: str = "auto", max_alloc: int | None = None) -> ImportResult:
    """Reads and converts the networks of an NVlabs ``.pkl`` or rosinality ``.pt`` file.

    Args:
      path: the file (its format is detected from its content).
      which: 'G_ema', 'G', 'D', a list or comma-separated string of them, or None / 'all'
        for every network in the file.
      reader: how rosinality ``.pt`` files are read: 'auto' (``torch.load(weights_only=True)``
        when torch is installed, else the built-in reader), 'torch' or 'builtin'; see
        :mod:`gancomp_jax.io.rosinality_pt`. NVlabs pickles always use the built-in reader
        (``weights_only`` cannot load them).
      max_alloc: the most bytes reading the file may allocate (default: max(256 MiB, 4 x the
        file size)); a file that asks for more is refused before anything is allocated.

    Returns:
      ImportResult: ``{name: checkpoints.Network}`` with ``.metadata`` = ``{'source': {path,
      format, reader, sha256, size_bytes}, 'file_networks', 'networks': {name: facts}, 'warnings',
      'load_seconds', 'imports_seconds', 'convert_seconds'}``.

    Raises:
      UnrecognizedFileError: not a readable checkpoint of either format (empty, random bytes,
        truncated, unsafe pickle).
      UnsupportedNetworkError: StyleGAN3, TensorFlow-era or other non-StyleGAN2 networks, or
        tensors/kwargs this model cannot represent.
      NetworkNotFoundError: a requested network is not in the file (the message lists those that are).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        from gancomp_jax.convert.biggan_import import import_biggan, is_biggan_dir  # BigGAN weights folder
        if is_biggan_dir(path):
            return import_biggan(path, which, max_alloc)
        from gancomp_jax.convert.pretrained_biggan import import_pretrained_biggan, is_pretrained_biggan_dir
        if is_pretrained_biggan_dir(path):  # pytorch-pretrained-biggan: pytorch_model.bin + config.json
            return import_pretrained_biggan(path, which, max_alloc)
        raise UnrecognizedFileError(f"{path} is a directory, not a .pkl/.pt file")
    t0 = time.perf_counter()
    if reader not in READERS:
        raise ConversionError(f"unknown reader {reader!r}: choose from {', '.join(READERS)}")
    try:
        fmt, data = _load(path, reader, max_alloc)
    except UnrecognizedFileError:
        from gancomp_jax.convert.biggan_import import import_biggan, is_biggan_file  # BigGAN-PyTorch .pth
        if is_biggan_file(path, max_alloc):
            return import_biggan(path, which, max_alloc)
        from gancomp_jax.convert.pretrained_biggan import import_pretrained_biggan, is_pretrained_biggan_file
        if is_pretrained_biggan_file(path, max_alloc):  # pytorch-pretrained-biggan's pytorch_model.bin
            return import_pretrained_biggan(path, which, max_alloc)
        raise
    t1 = time.perf_counter()
    # the converters import JAX: only once the file has been read (bad files fail fast)
    from gancomp_jax.convert.nvlabs import convert_nvlabs_record
    from gancomp_jax.convert.rosinality import convert_rosinality

    t_imports = time.perf_counter()

    converted: dict[str, Converted] = {}
    source_keys: dict[str, str] = {}
    if fmt == "nvlabs-pkl":
        present = [n for n in NETWORK_NAMES if n in data]
        names = _requested(which, present, ", ".join(data), path)
        for name in names:
            with _malformed(path, name):
                converted[name] = convert_nvlabs_record(data[name], name, str(path))
            source_keys[name] = name
    else:
        present = [n for n in NETWORK_NAMES if data.get(ROSINALITY_KEYS[n]) is not None]
        found = ", ".join(f"{n} ('{ROSINALITY_KEYS[n]}')" for n in present)
        names = _requested(which, present, found, path)
        for name in names:
            kind = "discriminator" if name == "D" else "generator"
            with _malformed(path, name):
                converted[name] = convert_rosinality(data[ROSINALITY_KEYS[name]], kind, name, str(path),
                                                     latent_avg=data["latent_avg"], args=data.get("args"))
            source_keys[name] = ROSINALITY_KEYS[name]
        if "G" in names and data["latent_avg"] is not None:
            converted["G"].warnings.append(
                f"{path}: network 'G': w_avg taken from the file's latent_avg (usually computed for g_ema)")
    t2 = time.perf_counter()
    warnings = [w for c in converted.values() for w in c.warnings]
    metadata = {
        "source": {"path": str(path.absolute()), "format": fmt, "description": FORMATS[fmt],
                   "reader": data["reader"] if fmt == "rosinality-pt" else "builtin",
                   "sha256": _sha256(path), "size_bytes": path.stat().st_size},
        "file_networks": present,
        "networks": {n: dict(c.facts, source_key=source_keys[n]) for n, c in converted.items()},
        "warnings": warnings,
        "load_seconds": round(t1 - t0, 3),
        "imports_seconds": round(t_imports - t1, 3),
        "convert_seconds": round(t2 - t_imports, 3),
    }
    if fmt == "nvlabs-pkl":
        extra = next(iter(data.values())).extra
        if extra.get("training_set_kwargs") is not None:
            metadata["training_set_kwargs"] = _jsonable(extra["training_set_kwargs"])
    if fmt == "rosinality-pt" and data.get("args") is not None:
        metadata["training_args"] = _jsonable(data["args"])
    return ImportResult({n: c.network for n, c in converted.items()}, metadata)
