"""Read PyTorch checkpoints into numpy without running code from the file.

Python pickles are small programs: a pickle names globals ("module.attribute")
and calls them, so loading an untrusted pickle with :func:`pickle.load` can run
anything. This module never does that. :class:`RestrictedUnpickler` resolves a
short allow-list of globals to *local* replacements written here (functions
that build numpy arrays, inert stand-in classes) and refuses everything else
with :class:`UnsafePickleError`. ``torch`` is never imported.

File formats understood by :func:`load_torch_file` (detected by their first bytes):

* **zip** (``torch.save`` default since torch 1.6; starts with ``PK``). One
  top-level folder ``<name>/`` holding ``data.pkl`` (the pickled object),
  ``data/<key>`` (raw bytes of storage ``key``), ``byteorder`` (``little``/``big``,
  optional, little when absent), ``version`` / ``.format_version`` and
  ``.storage_alignment``. Inside ``data.pkl`` each storage is a persistent id
  ``('storage', storage_type, key, location, numel)``; ``storage_type`` is a
  global such as ``torch.FloatStorage`` (or ``torch.storage.UntypedStorage`` for
  byte storages) and ``numel`` counts elements of that type.
* **legacy stream** (``torch.save(..., _use_new_zipfile_serialization=False)``
  and the bytes that ``torch.storage._load_from_bytes`` receives when a tensor
  is put through a plain ``pickle.dump``). Several pickles back to back: the
  magic number ``0x1950A86A20F9469CFC6C``, the protocol version ``1001``, a
  ``sys_info`` dict (endianness and C type sizes of the writer), the main
  pickle whose persistent ids are ``('storage', storage_type, key, location,
  numel, view_metadata)``, then a pickled list of storage keys. After that, for
  each key in that list order: an int64 little-endian element count followed
  by ``count * itemsize`` raw little-endian bytes. The data comes *after* the
  pickle that references it, so the main pickle is read twice: once to learn
  the dtype and size of each key, once more to build the arrays.
* **plain pickle** (e.g. ``pickle.dump`` of tensors or NVlabs network
  pickles). Tensors appear as ``torch._utils._rebuild_tensor_v2(storage,
  offset, size, stride, ...)`` whose storage is
  ``torch.storage._load_from_bytes(<legacy stream bytes>)``.

Tensors become C-contiguous numpy arrays that own their memory (bfloat16 is
widened to float32); dtype objects and storage classes become
:class:`TorchDType`; ``torch.Size`` becomes a tuple.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FunctionType, MappingProxyType
from typing import Any, BinaryIO, Callable, Mapping, NamedTuple

import numpy as np

__all__ = [
    "LEGACY_MAGIC_NUMBER",
    "LEGACY_PROTOCOL_VERSION",
    "SAFE_GLOBALS",
    "CheckpointFormatError",
    "ReadOnlyType",
    "Refused",
    "RestrictedUnpickler",
    "TorchDType",
    "UnsafePickleError",
    "is_torch_save_file",
    "load_torch_file",
    "sniff_container",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")

GlobalTable = Mapping[tuple[str, str], Any]


def sniff_container(head: bytes) -> str | None:
    """'zip' (torch.save), 'legacy' (old torch.save stream), 'pickle' or None, from a file's first bytes."""
    if head[:4] in _ZIP_MAGICS:
        return "zip"
    # the legacy stream opens with the magic number pickled at protocol 2: PROTO 2, LONG1 of 10 bytes
    if head[:4] == b"\x80\x02\x8a\x0a" and int.from_bytes(head[4:14], "little") == LEGACY_MAGIC_NUMBER:
        return "legacy"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return None


def is_torch_save_file(path: str | Path) -> bool:
    """True for files written by ``torch.save`` (zip or legacy stream)."""
    with open(path, "rb") as file:
        return sniff_container(file.read(16)) in ("zip", "legacy")


class UnsafePickleError(ValueError):
    """The pickle references a global that is not on the allow-list."""


class CheckpointFormatError(ValueError):
    """The file is not a readable checkpoint (wrong format, truncated, corrupt, missing keys)."""


@dataclass(frozen=True)
class Refused:
    """Allow-list entry for a known global that must be refused with a specific message."""

    message: str


class ReadOnlyType(type):
    """Metaclass for stand-in classes handed to pickle.

    Pickle's BUILD opcode can set attributes on any object on its stack,
    including the classes and functions that ``find_class`` returns; without
    this a file could patch a stand-in class for the rest of the process.
    """

    def __setattr__(cls, name: str, value: Any) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")

    def __delattr__(cls, name: str) -> None:
        raise AttributeError(f"{cls.__name__} is read-only")


class _Guarded:
    """Read-only wrapper around a replacement function (see :class:`ReadOnlyType`)."""

    __slots__ = ("_func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        object.__setattr__(self, "_func", func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._func(*args, **kwargs)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("allow-listed functions are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("allow-listed functions are read-only")

    def __repr__(self) -> str:
        return f"<restricted replacement {getattr(self._func, '__name__', self._func)!r}>"


# --------------------------------------------------------------------------- dtypes


class TorchDType(NamedTuple):
    """Stand-in for a torch dtype or typed storage class.

    ``raw`` is how one element is laid out in the file (little-endian);
    bfloat16 is stored as raw ``uint16`` and widened to float32 on output.
    A (named) tuple, so that a pickle cannot modify these shared values.
    """

    name: str
    raw: np.dtype

    @property
    def itemsize(self) -> int:
        return self.raw.itemsize

    def to_numpy(self, raw: np.ndarray) -> np.ndarray:
        """Turn an owned array of raw elements into the user-facing numpy array."""
        if self.name == "bfloat16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        if not raw.dtype.isnative:
            return raw.astype(raw.dtype.newbyteorder("="))
        return raw


_DTYPE_CODES = {
    "float16": "<f2",
    "bfloat16": "<u2",
    "float32": "<f4",
    "float64": "<f8",
    "complex64": "<c8",
    "complex128": "<c16",
    "int8": "|i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "|u1",
    "uint16": "<u2",
    "uint32": "<u4",
    "uint64": "<u8",
    "bool": "|b1",
}
DTYPES: Mapping[str, TorchDType] = MappingProxyType(
    {name: TorchDType(name, np.dtype(code)) for name, code in _DTYPE_CODES.items()}
)
_STORAGE_CLASSES = {
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "CharStorage": "int8",
    "ShortStorage": "int16",
    "IntStorage": "int32",
    "LongStorage": "int64",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


# --------------------------------------------------------------------------- tensors


class Storage(NamedTuple):
    """A storage read from the file: a flat array of ``dtype.raw`` elements.

    ``data`` is None during the first pass over a legacy stream, when the bytes
    have not been read yet. ``byteorder`` ('<' or '>') is the file's byte order.
    """

    dtype: TorchDType
    data: np.ndarray | None
    byteorder: str = "<"


def _check_int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise ValueError(f"tensor {what} must be an int, got {type(value).__name__}")
    return value


def _check_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"tensor {what} must be a tuple, got {type(value).__name__}")
    return tuple(_check_int(v, what) for v in value)


def _strided_copy(
    flat: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
) -> np.ndarray:
    """Copy the view (offset, size, stride) of ``flat`` into a new C-contiguous array."""
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} differ in length")
    if offset < 0 or min(size, default=0) < 0 or min(stride, default=0) < 0:
        raise ValueError(f"negative tensor offset/size/stride: {offset}, {size}, {stride}")
    if 0 in size:
        return np.empty(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise ValueError(
            f"tensor (offset {offset}, size {size}, stride {stride}) "
            f"reaches past its storage of {flat.size} elements"
        )
    strides = tuple(s * flat.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=strides)
    return np.array(view, copy=True, order="C")


def _apply_metadata(array: np.ndarray, metadata: Any) -> np.ndarray:
    """Apply torch's lazy negation/conjugation bits, if a tensor carries them."""
    if not metadata:
        return array
    if not isinstance(metadata, dict) or not set(metadata) <= {"conj", "neg"}:
        raise ValueError(f"unsupported tensor metadata {metadata!r}")
    if metadata.get("neg"):
        array = np.negative(array)
    if metadata.get("conj"):
        array = np.conjugate(array)
    return array


def _build_array(
    storage: Any, dtype: TorchDType, offset: Any, size: Any, stride: Any
) -> np.ndarray:
    if not isinstance(storage, Storage):
        raise ValueError(f"tensor storage must be a storage, got {type(storage).__name__}")
    offset = _check_int(offset, "offset")
    size = _check_int_tuple(size, "size")
    stride = _check_int_tuple(stride, "stride")
    if storage.data is None:  # first pass over a legacy stream: no bytes yet
        return np.empty(0, dtype=dtype.raw)
    flat = storage.data
    if dtype.name != storage.dtype.name:  # untyped (byte) storage viewed as ``dtype``
        if flat.nbytes % dtype.itemsize:
            raise ValueError(f"{flat.nbytes} storage bytes do not hold whole {dtype.name} items")
        flat = flat.view(np.uint8).view(dtype.raw.newbyteorder(storage.byteorder))
    return dtype.to_numpy(_strided_copy(flat, offset, size, stride))


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> np.ndarray:
    """Replacement for ``torch._utils._rebuild_tensor``."""
    dtype = storage.dtype if isinstance(storage, Storage) else None
    return _build_array(storage, dtype, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> np.ndarray:
    """Replacement for ``torch._utils._rebuild_tensor_v2`` (typed storage)."""
    return _apply_metadata(_rebuild_tensor(storage, storage_offset, size, stride), metadata)


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> np.ndarray:
    """Replacement for ``torch._utils._rebuild_tensor_v3`` (byte storage + explicit dtype)."""
    if not isinstance(dtype, TorchDType):
        raise ValueError(f"tensor dtype must be a torch dtype, got {type(dtype).__name__}")
    array = _build_array(storage, dtype, storage_offset, size, stride)
    return _apply_metadata(array, metadata)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> np.ndarray:
    """Replacement for ``torch._utils._rebuild_parameter``: a parameter is just its data."""
    if not isinstance(data, np.ndarray):
        raise ValueError(f"parameter data must be a tensor, got {type(data).__name__}")
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any, backward_hooks: Any, state: Any
) -> np.ndarray:
    """Replacement for ``torch._utils._rebuild_parameter_with_state`` (Python state dropped)."""
    return _rebuild_parameter(data, requires_grad, backward_hooks)


# --------------------------------------------------------------------------- numpy values


class _NumpyDTypeSpec(metaclass=ReadOnlyType):
    """Inert stand-in for ``numpy.dtype`` while unpickling.

    numpy's own ``dtype.__setstate__`` accepts arbitrary field layouts
    (e.g. an object field overlapping an integer field), which would let a
    pickle forge pointers. This class accepts only the state of plain,
    non-structured dtypes; a real dtype is made from it later.
    """

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(spec, str):
            raise ValueError(f"numpy dtype spec must be a string, got {type(spec).__name__}")
        base = np.dtype(spec)
        if base.fields is not None or base.subdtype is not None or base.kind == "V":
            raise ValueError(f"structured numpy dtype {spec!r} is not supported")
        self._base = base
        self._byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 5:
            raise ValueError(f"unsupported numpy dtype state {state!r}")
        byteorder, subarray, names, fields = state[1:5]
        if subarray is not None or names is not None or fields is not None:
            raise ValueError("structured numpy dtypes are not supported")
        if len(state) > 8 and state[8]:
            raise ValueError("numpy dtypes with metadata (datetime) are not supported")
        if byteorder not in ("<", ">", "=", "|"):
            raise ValueError(f"bad numpy byte order {byteorder!r}")
        self._byteorder = byteorder

    def to_dtype(self) -> np.dtype:
        if self._byteorder in ("<", ">"):
            return self._base.newbyteorder(self._byteorder)
        return self._base


class _NdarrayMarker:
    """Stand-in for the ``numpy.ndarray`` class; only usable as ``_reconstruct``'s argument."""

    __slots__ = ()


_NDARRAY = _NdarrayMarker()


class _UnpickledArray(np.ndarray):
    """Array made by ``_reconstruct``; its ``__setstate__`` checks the dtype first.

    Replaced by a plain ``np.ndarray`` when loading finishes (see ``_finalize``).
    """

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError("unsupported numpy array state")
        at = len(state) - 3  # index of the dtype in (version?, shape, dtype, fortran, data)
        spec = state[at]
        if not isinstance(spec, _NumpyDTypeSpec):
            raise ValueError("numpy array state without a numpy dtype")
        state = state[:at] + (spec.to_dtype(),) + state[at + 1 :]
        np.ndarray.__setstate__(self, state)


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> _UnpickledArray:
    """Replacement for ``numpy.core.multiarray._reconstruct``: an empty array to fill."""
    if subtype is not _NDARRAY:
        raise ValueError("numpy _reconstruct only supports numpy.ndarray")
    return np.empty((0,), dtype=np.uint8).view(_UnpickledArray)


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """Replacement for ``numpy.core.multiarray.scalar``."""
    if not isinstance(dtype, _NumpyDTypeSpec):
        raise ValueError("numpy scalar without a numpy dtype")
    real = dtype.to_dtype()
    if real.hasobject:
        return data
    if not isinstance(data, (bytes, bytearray)) or len(data) != real.itemsize:
        raise ValueError(f"numpy scalar of {real} needs {real.itemsize} bytes")
    return np.frombuffer(data, dtype=real)[0].copy()


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """Replacement for ``numpy.core.numeric._frombuffer`` (pickle protocol 5)."""
    if not isinstance(dtype, _NumpyDTypeSpec) or not isinstance(buffer, (bytes, bytearray)):
        raise ValueError("numpy _frombuffer needs bytes and a numpy dtype")
    if order not in ("C", "F"):
        raise ValueError(f"bad array order {order!r}")
    real = dtype.to_dtype()
    if real.hasobject:
        raise ValueError("object arrays cannot be read from a buffer")
    shape = _check_int_tuple(shape, "shape")
    flat = np.frombuffer(buffer, dtype=real)
    return flat.reshape(shape, order=order).copy(order="K")


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Replacement for ``_codecs.encode``, which protocol-2 pickles use for ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("_codecs.encode is only allowed for latin1 text")
    return text.encode("latin1")


# --------------------------------------------------------------------------- allow-list


def _build_safe_globals() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for storage_class, dtype_name in _STORAGE_CLASSES.items():
        table["torch", storage_class] = DTYPES[dtype_name]
        table["torch.cuda", storage_class] = DTYPES[dtype_name]  # pre-1.6 GPU saves
    table["torch.storage", "UntypedStorage"] = DTYPES["uint8"]
    table["torch", "UntypedStorage"] = DTYPES["uint8"]
    for dtype_name, dtype in DTYPES.items():
        table["torch", dtype_name] = dtype
    table["torch", "Size"] = tuple
    table["torch._utils", "_rebuild_tensor"] = _rebuild_tensor
    table["torch._utils", "_rebuild_tensor_v2"] = _rebuild_tensor_v2
    table["torch._utils", "_rebuild_tensor_v3"] = _rebuild_tensor_v3
    table["torch._utils", "_rebuild_parameter"] = _rebuild_parameter
    table["torch._utils", "_rebuild_parameter_with_state"] = _rebuild_parameter_with_state
    table["collections", "OrderedDict"] = OrderedDict
    for builtins_module in ("builtins", "__builtin__"):
        table[builtins_module, "set"] = set
        table[builtins_module, "frozenset"] = frozenset
    table["_codecs", "encode"] = _codecs_encode
    for core in ("numpy.core", "numpy._core"):
        table[f"{core}.multiarray", "_reconstruct"] = _numpy_reconstruct
        table[f"{core}.multiarray", "scalar"] = _numpy_scalar
        table[f"{core}.numeric", "_frombuffer"] = _numpy_frombuffer
    table["numpy", "ndarray"] = _NDARRAY
    table["numpy", "dtype"] = _NumpyDTypeSpec
    return table


#: Globals every checkpoint may use, mapped to their safe local replacements.
#: ``torch.storage._load_from_bytes`` is handled by :class:`RestrictedUnpickler` itself.
SAFE_GLOBALS: GlobalTable = MappingProxyType(_build_safe_globals())
_LOAD_FROM_BYTES = ("torch.storage", "_load_from_bytes")


_MISSING = object()
_HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes defined in Python


def _check_allow_list(table: GlobalTable) -> None:
    """Classes in an allow-list must be immutable: builtin types or ReadOnlyType classes."""
    for key, target in table.items():
        if isinstance(target, type) and target.__flags__ & _HEAPTYPE:
            if not isinstance(target, ReadOnlyType):
                raise TypeError(f"allow-listed class for {key} must use the ReadOnlyType metaclass")


def _py3_alias(module: str, name: str) -> str:
    """Protocol 0-2 pickles use Python 2 names ('__builtin__.eval'); say the Python 3 one too."""
    py3 = _compat_pickle.NAME_MAPPING.get((module, name))
    if py3 is None:
        py3 = (_compat_pickle.IMPORT_MAPPING.get(module, module), name)
    return "" if py3 == (module, name) else f" (Python 3: '{py3[0]}.{py3[1]}')"


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals, to local replacements.

    ``allowed`` maps ``(module, name)`` to the object to use instead (default:
    :data:`SAFE_GLOBALS`); a :class:`Refused` value gives a tailored error.
    ``persistent_load`` handles the storage references of torch files; without
    one, a persistent id in the stream is an error.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        source: str,
        allowed: GlobalTable | None = None,
        persistent_load: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.allowed: GlobalTable = SAFE_GLOBALS if allowed is None else allowed
        _check_allow_list(self.allowed)
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _LOAD_FROM_BYTES:
            return _Guarded(partial(_load_from_bytes, source=self.source, allowed=self.allowed))
        target = self.allowed.get((module, name), _MISSING)
        if isinstance(target, Refused):
            raise CheckpointFormatError(f"{self.source}: {target.message}")
        if target is _MISSING:
            raise UnsafePickleError(
                f"restricted unpickler refuses global '{module}.{name}'{_py3_alias(module, name)} "
                f"in {self.source} (not on the allow-list; loading it could run code from the file)"
            )
        if isinstance(target, (FunctionType, partial)):
            return _Guarded(target)
        return target

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise ValueError(f"unexpected persistent id {pid!r} in a plain pickle")
        return self._persistent_load(pid)


def _restricted_load(
    file: BinaryIO,
    source: str,
    allowed: GlobalTable,
    persistent_load: Callable[[Any], Any] | None = None,
) -> Any:
    unpickler = RestrictedUnpickler(
        file, source=source, allowed=allowed, persistent_load=persistent_load
    )
    return unpickler.load()


# --------------------------------------------------------------------------- legacy stream


def _read_exact(file: BinaryIO, nbytes: int) -> bytes:
    data = file.read(nbytes)
    if len(data) != nbytes:
        raise EOFError(f"expected {nbytes} bytes, file ends after {len(data)}")
    return data


def _storage_header(pid: Any, expected_len: int) -> tuple[TorchDType, str, int, Any]:
    """Validate a ``('storage', type, key, location, numel[, view])`` persistent id."""
    if not isinstance(pid, tuple) or len(pid) != expected_len or pid[0] != "storage":
        raise ValueError(f"unsupported persistent id {pid!r}")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(storage_type, TorchDType):
        raise ValueError(f"persistent id names an unknown storage type {storage_type!r}")
    if not isinstance(key, str) or type(numel) is not int or numel < 0:
        raise ValueError(f"bad storage key/size in persistent id {pid!r}")
    view = pid[5] if expected_len == 6 else None
    return storage_type, key, numel, view


class _LegacyStorages:
    """Persistent-id handler for a legacy stream; ``data`` is filled between the two passes."""

    def __init__(self) -> None:
        self.declared: dict[str, tuple[TorchDType, int]] = {}
        self.data: dict[str, np.ndarray] | None = None

    def __call__(self, pid: Any) -> Storage:
        dtype, key, numel, view = _storage_header(pid, 6)
        if self.declared.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise ValueError(f"storage {key!r} is declared with two different types or sizes")
        if self.data is None:
            return Storage(dtype, None)
        flat = self.data[key]
        if view is not None:
            flat = self._view(flat, view)
        return Storage(dtype, flat)

    @staticmethod
    def _view(flat: np.ndarray, view: Any) -> np.ndarray:
        if not isinstance(view, tuple) or len(view) != 3:
            raise ValueError(f"bad storage view {view!r}")
        _, offset, size = view
        if type(offset) is not int or type(size) is not int or offset < 0 or size < 0:
            raise ValueError(f"bad storage view {view!r}")
        if offset + size > flat.size:
            raise ValueError(f"storage view {view!r} reaches past its storage")
        return flat[offset : offset + size]

    def read_data(self, file: BinaryIO, keys: Any) -> None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("legacy stream: storage key list is not a list of strings")
        data: dict[str, np.ndarray] = {}
        for key in keys:
            if key not in self.declared:
                raise ValueError(f"legacy stream: data for undeclared storage {key!r}")
            dtype, numel = self.declared[key]
            (count,) = struct.unpack("<q", _read_exact(file, 8))
            if count != numel:
                raise ValueError(f"storage {key!r}: {count} elements stored, {numel} declared")
            data[key] = np.frombuffer(_read_exact(file, numel * dtype.itemsize), dtype=dtype.raw)
        missing = set(self.declared) - set(data)
        if missing:
            raise ValueError(f"legacy stream: no data for storages {sorted(missing)}")
        self.data = data


def _read_legacy_stream(file: BinaryIO, source: str, allowed: GlobalTable) -> Any:
    """Parse a legacy ``torch.save`` stream starting at the current position of ``file``."""
    magic = _restricted_load(file, source, allowed)
    if type(magic) is not int or magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointFormatError(f"{source}: bad magic number, not a legacy torch.save stream")
    version = _restricted_load(file, source, allowed)
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointFormatError(f"{source}: unsupported legacy protocol version {version!r}")
    sys_info = _restricted_load(file, source, allowed)
    if not isinstance(sys_info, dict):
        raise CheckpointFormatError(f"{source}: legacy stream header has no sys_info dict")
    main_start = file.tell()
    storages = _LegacyStorages()
    _restricted_load(file, source, allowed, storages)  # pass 1: learn storage dtypes/sizes
    keys = _restricted_load(file, source, allowed)
    storages.read_data(file, keys)
    file.seek(main_start)
    return _restricted_load(file, source, allowed, storages)  # pass 2: real arrays


def _load_from_bytes(data: Any, *, source: str, allowed: GlobalTable) -> Any:
    """Replacement for ``torch.storage._load_from_bytes``: parse the embedded legacy stream."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"_load_from_bytes expects bytes, got {type(data).__name__}")
    return _read_legacy_stream(io.BytesIO(data), f"{source} (embedded storage)", allowed)


# --------------------------------------------------------------------------- zip format


def _zip_prefix(archive: zipfile.ZipFile, source: str) -> str:
    candidates = sorted(
        name[: -len("data.pkl")]
        for name in archive.namelist()
        if name == "data.pkl" or (name.endswith("/data.pkl") and name.count("/") == 1)
    )
    if len(candidates) != 1:
        raise CheckpointFormatError(
            f"{source}: zip file is not a torch.save archive "
            f"(expected exactly one '<name>/data.pkl', found {len(candidates)})"
        )
    if f"{candidates[0]}constants.pkl" in archive.namelist():
        raise CheckpointFormatError(
            f"{source}: TorchScript archives (torch.jit.save) are not supported; "
            "save the model's state_dict() with torch.save instead"
        )
    return candidates[0]


def _zip_byteorder(archive: zipfile.ZipFile, prefix: str, source: str) -> str:
    if f"{prefix}byteorder" not in archive.namelist():
        return "<"
    marker = archive.read(f"{prefix}byteorder").strip()
    if marker not in (b"little", b"big"):
        raise CheckpointFormatError(f"{source}: unknown byte order record {marker!r}")
    return "<" if marker == b"little" else ">"


class _ZipStorages:
    """Persistent-id handler for ``data.pkl`` in a zip archive: reads ``data/<key>``."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, byteorder: str) -> None:
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._cache: dict[str, Storage] = {}

    def __call__(self, pid: Any) -> Storage:
        dtype, key, numel, _ = _storage_header(pid, 5)
        cached = self._cache.get(key)
        if cached is None:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            if len(raw) != numel * dtype.itemsize:
                raise ValueError(
                    f"storage {key!r}: {len(raw)} bytes stored, "
                    f"{numel} x {dtype.itemsize} declared"
                )
            flat = np.frombuffer(raw, dtype=dtype.raw.newbyteorder(self._byteorder))
            cached = self._cache[key] = Storage(dtype, flat, self._byteorder)
        elif cached.dtype != dtype:
            raise ValueError(f"storage {key!r} is used with two different types")
        return cached


def _read_zip(file: BinaryIO, source: str, allowed: GlobalTable) -> Any:
    with zipfile.ZipFile(file) as archive:
        prefix = _zip_prefix(archive, source)
        storages = _ZipStorages(archive, prefix, _zip_byteorder(archive, prefix, source))
        data_pkl = archive.read(f"{prefix}data.pkl")
        return _restricted_load(io.BytesIO(data_pkl), source, allowed, storages)


# --------------------------------------------------------------------------- entry point


def _read_pickle_or_legacy(file: BinaryIO, source: str, allowed: GlobalTable) -> Any:
    """A plain pickle, unless its first object is the legacy torch.save magic number."""
    first = _restricted_load(file, source, allowed)
    if type(first) is int and first == LEGACY_MAGIC_NUMBER:
        file.seek(0)
        return _read_legacy_stream(file, source, allowed)
    return first


def _finalize(obj: Any, memo: dict[int, Any] | None = None) -> Any:
    """Swap the unpickling stand-ins for numpy objects (arrays, dtypes) for real ones."""
    if memo is None:
        memo = {}
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, _UnpickledArray):
        return memo.setdefault(id(obj), obj.view(np.ndarray))
    if isinstance(obj, _NumpyDTypeSpec):
        return memo.setdefault(id(obj), obj.to_dtype())
    if isinstance(obj, Storage) and obj.data is not None:  # a storage pickled on its own
        return memo.setdefault(id(obj), obj.dtype.to_numpy(np.array(obj.data)))
    memo[id(obj)] = obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            obj[key] = _finalize(value, memo)
    elif isinstance(obj, list):
        obj[:] = [_finalize(value, memo) for value in obj]
    elif isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        memo[id(obj)] = obj = type(obj)(_finalize(value, memo) for value in obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        for key, value in vars(obj).items():
            vars(obj)[key] = _finalize(value, memo)
    return obj


_CORRUPTION_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    struct.error,
    zipfile.BadZipFile,
    zlib.error,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    UnicodeDecodeError,
    MemoryError,
)


def load_torch_file(path: str | Path, *, extra_globals: GlobalTable | None = None) -> Any:
    """Load a torch checkpoint (zip, legacy stream or plain pickle) without running its code.

    Tensors come back as numpy arrays. ``extra_globals`` extends
    :data:`SAFE_GLOBALS` (``(module, name) -> replacement``) for file families
    that need more, e.g. NVlabs network pickles.

    Raises :class:`UnsafePickleError` for a global outside the allow-list and
    :class:`CheckpointFormatError` (naming ``path``) for anything unreadable.
    """
    source = str(path)
    allowed: GlobalTable = SAFE_GLOBALS
    if extra_globals:
        allowed = MappingProxyType({**SAFE_GLOBALS, **extra_globals})
        _check_allow_list(allowed)
    with open(path, "rb") as file:
        head = file.read(512)
        file.seek(0)
        if not head:
            raise CheckpointFormatError(f"{source}: file is empty")
        if len(head) >= 262 and head[257:262] == b"ustar":
            raise CheckpointFormatError(
                f"{source}: tar-based torch.save files (torch < 0.4) are not supported"
            )
        if head[:4] in _ZIP_MAGICS:
            reader, what = _read_zip, "torch.save zip archive"
        else:
            reader, what = _read_pickle_or_legacy, "pickle or legacy torch.save file"
        try:
            result = reader(file, source, allowed)
        except (UnsafePickleError, CheckpointFormatError):
            raise
        except _CORRUPTION_ERRORS as exc:
            raise CheckpointFormatError(
                f"{source}: cannot read it as a {what}; the file is truncated, corrupt or "
                f"in another format ({type(exc).__name__}: {exc})"
            ) from exc
    return _finalize(result)
