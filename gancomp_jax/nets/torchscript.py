"""Read the tensors of a TorchScript archive (``torch.jit.save``) without running it.

OpenAI's ``RN50.pt`` is such an archive. ``torch.jit.load`` would compile and
run the TorchScript in its ``code/`` folder; this reader never looks at that
folder. The zip holds one top-level folder ``<name>/`` with:

* ``data.pkl``: the module tree, pickled. Each module is written as
  ``GLOBAL '__torch__.<qualified class name>'``, ``EMPTY_TUPLE NEWOBJ``, then a
  dict of its attributes (``training``, parameters, buffers, submodules, plain
  values) and ``BUILD``. Tensors are ``torch._utils._rebuild_tensor_v2`` over a
  persistent id ``('storage', torch.<T>Storage, key, device, numel)`` whose
  bytes are ``data/<key>``. Integer lists use ``torch.jit._pickle.build_intlist``.
* ``constants.pkl``, ``code/``, ``version``, ``byteorder``: not needed here.

The ``__torch__.*`` classes resolve to :class:`ScriptObjectStub`, an inert
record of the attribute dict (no method of the archive's classes exists
here); every other global goes through the allow-list of
:mod:`gancomp_jax.io.torch_pickle` (its public ``load_torch_file`` does the
reading, with its memory budget) and anything else (``os.system``, ...) is
refused with :class:`~gancomp_jax.io.torch_pickle.UnsafePickleError`.
"""

from __future__ import annotations

import pickle
import pickletools
import shutil
import tempfile
import zipfile
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from gancomp_jax.io import torch_pickle as tp
from gancomp_jax.io.torch_pickle import CheckpointFormatError, ReadOnlyType, UnsafePickleError

__all__ = ["ScriptObjectStub", "is_torchscript_archive", "load_torchscript_state_dict"]


class ScriptObjectStub(metaclass=ReadOnlyType):
    """Inert stand-in for a TorchScript module object: its class name and attributes.

    Constructed only through pickle's ``NEWOBJ`` with no arguments; ``BUILD``
    hands it the attribute dict (string keys only).
    """

    qualname = "?"

    def __init__(self) -> None:  # REDUCE with arguments fails here (TypeError)
        object.__setattr__(self, "attributes", {})

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise ValueError(f"TorchScript object {self.qualname} has a non-dict state")
        object.__setattr__(self, "attributes", dict(state))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("TorchScript stubs are read-only")


def _stub_class(qualname: str, cache: dict[str, type]) -> type:
    cls = cache.get(qualname)
    if cls is None:
        cls = cache[qualname] = ReadOnlyType(
            "ScriptObjectStub", (ScriptObjectStub,), {"qualname": qualname, "__slots__": ()}
        )
    return cls


def _typed_list(kind: type | tuple[type, ...]):
    def build(values: Any) -> list:
        if not isinstance(values, list) or not all(isinstance(v, kind) for v in values):
            raise ValueError(f"TorchScript list builder expects a list of {kind}, got {values!r:.80}")
        return list(values)

    return build


def _restore_type_tag(value: Any, type_str: Any) -> Any:
    """Replacement for ``torch.jit._pickle.restore_type_tag``: returns the value unchanged."""
    if not isinstance(type_str, str):
        raise ValueError("restore_type_tag expects a type string")
    return value


_JIT_GLOBALS = MappingProxyType(
    {
        ("torch.jit._pickle", "build_intlist"): _typed_list(int),
        ("torch.jit._pickle", "build_doublelist"): _typed_list(float),
        ("torch.jit._pickle", "build_boollist"): _typed_list(bool),
        ("torch.jit._pickle", "build_tensorlist"): _typed_list(np.ndarray),
        ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    }
)


def _script_class_globals(data_pkl: bytes, source: str) -> dict[tuple[str, str], type]:
    """Stub classes for every ``GLOBAL '__torch__.* Name'`` opcode of ``data.pkl``.

    The opcodes are only listed (``pickletools.genops`` parses, it never runs
    anything); names that are not identifiers are refused.
    """
    stubs: dict[str, type] = {}
    table: dict[tuple[str, str], type] = {}
    for opcode, arg, _ in pickletools.genops(data_pkl):
        if opcode.name != "GLOBAL" or not isinstance(arg, str):
            continue
        module, _, name = arg.partition(" ")
        if module != "__torch__" and not module.startswith("__torch__."):
            continue
        if not name.isidentifier() or not all(p.isidentifier() for p in module.split(".")):
            raise UnsafePickleError(f"bad TorchScript class name {module}.{name!r} in {source}")
        table[module, name] = _stub_class(f"{module}.{name}", stubs)
    return table


def _without_code(src: zipfile.ZipFile, prefix: str, dst_path: Path) -> None:
    """Copy ``<prefix>data.pkl``, ``data/*``, ``byteorder`` and ``version`` into a plain torch.save zip."""
    keep = ("data.pkl", "byteorder", "version", ".format_version", ".storage_alignment")
    with zipfile.ZipFile(dst_path, "w", compression=zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            rest = info.filename[len(prefix):] if info.filename.startswith(prefix) else None
            if rest is None or not (rest in keep or (rest.startswith("data/") and "/" not in rest[5:])):
                continue
            with src.open(info) as fin, dst.open(info.filename, "w", force_zip64=True) as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)


def _archive_prefix(archive: zipfile.ZipFile, source: str) -> str:
    names = archive.namelist()
    prefixes = sorted(
        n[: -len("data.pkl")] for n in names if n.endswith("/data.pkl") and n.count("/") == 1
    )
    if len(prefixes) != 1 or f"{prefixes[0]}constants.pkl" not in names:
        raise CheckpointFormatError(
            f"{source}: not a TorchScript archive (expected one '<name>/data.pkl' beside "
            f"'<name>/constants.pkl')"
        )
    return prefixes[0]


def is_torchscript_archive(path: str | Path) -> bool:
    """True for a zip with ``<name>/data.pkl`` and ``<name>/constants.pkl`` (``torch.jit.save``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") and n[: -len("constants.pkl")] + "data.pkl" in names for n in names)


def _flatten_modules(obj: Any, prefix: str, out: dict[str, np.ndarray], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    for name, value in getattr(obj, "attributes", {}).items():
        key = f"{prefix}{name}"
        if isinstance(value, np.ndarray):
            out[key] = value
        elif isinstance(value, ScriptObjectStub):
            _flatten_modules(value, key + ".", out, seen)


def load_torchscript_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """All tensor attributes of a TorchScript archive's module tree, as a flat state dict.

    Keys are dotted attribute paths as in ``module.state_dict()`` (e.g.
    ``visual.layer1.0.conv1.weight``, ``input_resolution``); values are numpy
    arrays in their stored dtype (float16 for OpenAI's CLIP archives).

    How: every member is first checked (sizes against the reader's memory
    budget, CRC-32) with :func:`~gancomp_jax.io.torch_pickle.check_zip_archive`;
    ``data.pkl`` and the storages are then copied (streamed) into a temporary
    plain ``torch.save`` zip without ``code/`` and ``constants.pkl``, which
    :func:`~gancomp_jax.io.torch_pickle.load_torch_file` reads with the
    ``__torch__`` classes named in ``data.pkl`` added to its allow-list as
    inert :class:`ScriptObjectStub` classes.

    Raises FileNotFoundError, :class:`UnsafePickleError` (a global outside the
    allow-list) or :class:`CheckpointFormatError` (anything unreadable).
    """
    source = str(path)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TorchScript archive not found: {source}")
    budget = tp.AllocationBudget(tp.default_max_alloc(path.stat().st_size), source)
    tp.check_zip_archive(path, budget)
    plain: Path | None = None
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _archive_prefix(archive, source)
            data_pkl = archive.read(f"{prefix}data.pkl")
            extra = {**_JIT_GLOBALS, **_script_class_globals(data_pkl, source)}
            with tempfile.TemporaryDirectory(prefix="torchscript_") as tmp:
                plain = Path(tmp) / "state.pt"
                _without_code(archive, prefix, plain)
                root = tp.load_torch_file(plain, extra_globals=extra, max_alloc=budget.limit)
    except (UnsafePickleError, CheckpointFormatError) as exc:  # name the user's file, not our copy
        message = str(exc).replace(str(plain), source) if plain is not None else str(exc)
        raise type(exc)(message) from None
    except (zipfile.BadZipFile, OSError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointFormatError(
            f"{source}: cannot read it as a TorchScript archive; the file is truncated, corrupt or in "
            f"another format ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(root, ScriptObjectStub):
        raise CheckpointFormatError(f"{source}: TorchScript data.pkl does not hold a module object")
    state: dict[str, np.ndarray] = {}
    _flatten_modules(root, "", state, set())
    return state
