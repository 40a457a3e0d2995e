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
  pickle that references it, so the main pickle is read once, with tensors as
  placeholders (their offsets, sizes and strides already checked against the
  declared storage sizes) that become arrays when loading finishes.
* **plain pickle** (e.g. ``pickle.dump`` of tensors or NVlabs network
  pickles). Tensors appear as ``torch._utils._rebuild_tensor_v2(storage,
  offset, size, stride, ...)`` whose storage is
  ``torch.storage._load_from_bytes(<legacy stream bytes>)``.

Tensors become C-contiguous numpy arrays that own their memory (bfloat16 is
widened to float32); dtype objects and storage classes become
:class:`TorchDType`; ``torch.Size`` becomes a tuple.

Hostile files cost bounded time and memory. Everything a file makes the reader
allocate beyond its own bytes (decompressed zip members, storage data, tensor
copies, containers copied by allow-listed constructors) is charged to an
:class:`AllocationBudget` *before* it is allocated; the default limit is
:func:`default_max_alloc` of the file size (``max_alloc`` raises it). Storages
embedded with ``_load_from_bytes`` nest at most :data:`MAX_NESTED_STREAMS`
deep, containers at most :data:`MAX_NESTING` deep, and self-referential
containers are refused.
"""

from __future__ import annotations

import _compat_pickle
import contextvars
import dataclasses
import io
import math
import reprlib
import pickle
import pickletools
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
    "MAX_EXPANDED_ITEMS",
    "MAX_NESTED_STREAMS",
    "MAX_NESTING",
    "MAX_ZIP_MEMBERS",
    "SAFE_GLOBALS",
    "AllocationBudget",
    "AllocationLimitError",
    "CheckpointFormatError",
    "ReadOnlyType",
    "Refused",
    "RestrictedUnpickler",
    "TorchDType",
    "UnsafePickleError",
    "charge_allocation",
    "check_zip_archive",
    "default_max_alloc",
    "describe",
    "describe_keys",
    "format_bytes",
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


class AllocationLimitError(CheckpointFormatError):
    """Reading the file would allocate more memory than the reader's limit allows."""


# --------------------------------------------------------------------------- resource limits

#: How deep ``torch.storage._load_from_bytes`` streams may nest (real files: 1).
MAX_NESTED_STREAMS = 4
#: How deep containers (dicts, lists, tuples, objects) may nest (real checkpoints: < 40).
MAX_NESTING = 100
#: How many items the loaded value may have when walked as a tree (real checkpoints: < 10^5).
MAX_EXPANDED_ITEMS = 2_000_000
_MIN_MAX_ALLOC = 256 << 20
_MAX_ALLOC_PER_FILE_BYTE = 4


def default_max_alloc(file_size: int) -> int:
    """The default allocation limit for a file of ``file_size`` bytes: max(256 MiB, 4 x size).

    Real checkpoints need about 2x their size (raw storages plus tensor copies).
    """
    return max(_MIN_MAX_ALLOC, _MAX_ALLOC_PER_FILE_BYTE * int(file_size))


def format_bytes(nbytes: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"  # pragma: no cover


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 3, 60, 60, 40


def describe(value: Any) -> str:
    """A short ``repr`` of a value read from a file, safe for deep, huge or odd objects."""
    try:
        return _REPR.repr(value)
    except Exception:  # noqa: BLE001 - a hostile object's repr may fail in any way
        return f"<{type(value).__name__}>"


def describe_keys(mapping: Any, limit: int = 20) -> str:
    """``"['a', 'b']"``: the sorted keys of a mapping read from a file, at most ``limit`` of them."""
    keys = sorted(k if isinstance(k, str) else describe(k) for k in list(mapping)[: limit + 1])
    more = ", ..." if len(keys) > limit else ""
    return "[" + ", ".join(repr(k[:60]) for k in keys[:limit]) + more + "]"


class AllocationBudget:
    """How many bytes one load may still allocate; :meth:`charge` is called before allocating.

    ``limit`` is in bytes; ``source`` names the file in the error.
    """

    def __init__(self, limit: int, source: str) -> None:
        if type(limit) is not int or limit <= 0:
            raise ValueError(f"max_alloc must be a positive number of bytes, got {limit!r}")
        self.limit = limit
        self.used = 0
        self.source = source
        self.streams: dict[int, bytes] = {}  # embedded streams parsed so far (kept: ids stay unique)

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes < 0 or nbytes > self.limit - self.used:
            raise AllocationLimitError(
                f"{self.source}: {what} would need {format_bytes(nbytes)}, more than the reader's memory "
                f"limit of {format_bytes(self.limit)} allows ({format_bytes(self.used)} already used); "
                "a checkpoint of this size needs far less, so the file is corrupt or hostile. If you trust "
                "it, raise the limit (max_alloc=..., convert_pt_weights.py --max-alloc)"
            )
        self.used += nbytes


_BUDGET: contextvars.ContextVar[AllocationBudget | None] = contextvars.ContextVar(
    "gancomp_jax_alloc_budget", default=None
)


def charge_allocation(nbytes: int, what: str) -> None:
    """Charge ``nbytes`` to the budget of the load in progress (no-op outside a load)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.charge(nbytes, what)


def _charge_items(value: Any, what: str, per_item: int = 64) -> None:
    """Charge a copy of a container or string ``value`` (``per_item`` bytes per element)."""
    try:
        count = len(value)
    except TypeError:
        return
    charge_allocation(per_item * count, what)


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

    ``byteorder`` ('<' or '>') is the file's byte order.
    """

    dtype: TorchDType
    data: np.ndarray
    byteorder: str = "<"


class _PendingStorage(NamedTuple):
    """A storage of a legacy stream whose bytes come after the pickle that uses it.

    ``table`` (a :class:`_LegacyStorages`) holds the data once the stream is read;
    ``offset`` / ``numel`` select a view, in elements of ``dtype``.
    """

    table: Any
    key: str
    dtype: TorchDType
    offset: int
    numel: int

    def resolve(self) -> np.ndarray:
        flat = self.table.data[self.key]
        return flat[self.offset : self.offset + self.numel]


class _PendingTensor(NamedTuple):
    """A tensor on a :class:`_PendingStorage`; its layout is already checked and charged."""

    storage: _PendingStorage
    dtype: TorchDType
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    metadata: Any = None

    def resolve(self) -> np.ndarray:
        flat = _typed_view(self.storage.resolve(), self.storage.dtype, self.dtype, "<")
        array = self.dtype.to_numpy(_strided_copy(flat, self.offset, self.size, self.stride))
        return _apply_metadata(array, self.metadata)


_MAX_INDEX = 1 << 62  # sizes, strides and offsets beyond this are not real tensors
_MAX_DIMS = 32


def _check_int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise ValueError(f"tensor {what} must be an int, got {type(value).__name__}")
    if not 0 <= value < _MAX_INDEX:
        raise ValueError(f"tensor {what} {describe(value)} is out of range")
    return value


def _check_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"tensor {what} must be a tuple, got {type(value).__name__}")
    if len(value) > _MAX_DIMS:
        raise ValueError(f"tensor {what} has {len(value)} dimensions (at most {_MAX_DIMS} supported)")
    return tuple(_check_int(v, what) for v in value)


def _check_layout(
    offset: int, size: tuple[int, ...], stride: tuple[int, ...], numel: int
) -> None:
    """The view (offset, size, stride) must lie inside a storage of ``numel`` elements."""
    if len(size) != len(stride):
        raise ValueError(f"tensor size {size} and stride {stride} differ in length")
    if 0 in size:
        return
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= numel:
        raise ValueError(
            f"tensor (offset {offset}, size {describe(size)}, stride {describe(stride)}) "
            f"reaches past its storage of {numel} elements"
        )


def _strided_copy(
    flat: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
) -> np.ndarray:
    """Copy the view (offset, size, stride) of ``flat`` into a new C-contiguous array."""
    _check_layout(offset, size, stride, flat.size)
    if 0 in size:
        return np.empty(size, dtype=flat.dtype)
    strides = tuple(s * flat.itemsize for s in stride)
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size, strides=strides)
    return np.array(view, copy=True, order="C")


def _apply_metadata(array: np.ndarray, metadata: Any) -> np.ndarray:
    """Apply torch's lazy negation/conjugation bits, if a tensor carries them."""
    if not metadata:
        return array
    _check_metadata(metadata)
    if metadata.get("neg"):
        array = np.negative(array)
    if metadata.get("conj"):
        array = np.conjugate(array)
    return array


def _check_metadata(metadata: Any) -> None:
    if metadata and (not isinstance(metadata, dict) or not set(metadata) <= {"conj", "neg"}):
        raise ValueError(f"unsupported tensor metadata {describe(metadata)}")


def _typed_view(flat: np.ndarray, stored: TorchDType, dtype: TorchDType, byteorder: str) -> np.ndarray:
    """View an untyped (byte) storage as elements of ``dtype``."""
    if dtype.name == stored.name:
        return flat
    if flat.nbytes % dtype.itemsize:
        raise ValueError(f"{flat.nbytes} storage bytes do not hold whole {dtype.name} items")
    return flat.view(np.uint8).view(dtype.raw.newbyteorder(byteorder))


def _output_bytes(dtype: TorchDType, size: tuple[int, ...]) -> int:
    itemsize = 4 if dtype.name == "bfloat16" else dtype.itemsize  # bfloat16 widens to float32
    return math.prod(size) * itemsize


def _build_array(
    storage: Any, dtype: TorchDType, offset: Any, size: Any, stride: Any
) -> np.ndarray | _PendingTensor:
    if not isinstance(storage, (Storage, _PendingStorage)):
        raise ValueError(f"tensor storage must be a storage, got {type(storage).__name__}")
    offset = _check_int(offset, "offset")
    size = _check_int_tuple(size, "size")
    stride = _check_int_tuple(stride, "stride")
    if isinstance(storage, _PendingStorage) and storage.table.data is not None:
        storage = Storage(storage.dtype, storage.resolve())  # its stream is complete (_load_from_bytes)
    if isinstance(storage, _PendingStorage):  # legacy stream: data follows the pickle
        numel = storage.numel
        if dtype.name != storage.dtype.name:
            nbytes = numel * storage.dtype.itemsize
            if nbytes % dtype.itemsize:
                raise ValueError(f"{nbytes} storage bytes do not hold whole {dtype.name} items")
            numel = nbytes // dtype.itemsize
        _check_layout(offset, size, stride, numel)
        charge_allocation(_output_bytes(dtype, size), f"a tensor of size {describe(size)}")
        return _PendingTensor(storage, dtype, offset, size, stride)
    flat = _typed_view(storage.data, storage.dtype, dtype, storage.byteorder)
    _check_layout(offset, size, stride, flat.size)
    charge_allocation(_output_bytes(dtype, size), f"a tensor of size {describe(size)}")
    return dtype.to_numpy(_strided_copy(flat, offset, size, stride))


def _with_metadata(tensor: Any, metadata: Any) -> Any:
    if isinstance(tensor, _PendingTensor):
        _check_metadata(metadata)
        return tensor._replace(metadata=metadata) if metadata else tensor
    return _apply_metadata(tensor, metadata)


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> Any:
    """Replacement for ``torch._utils._rebuild_tensor``."""
    dtype = storage.dtype if isinstance(storage, (Storage, _PendingStorage)) else None
    return _build_array(storage, dtype, storage_offset, size, stride)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> Any:
    """Replacement for ``torch._utils._rebuild_tensor_v2`` (typed storage)."""
    return _with_metadata(_rebuild_tensor(storage, storage_offset, size, stride), metadata)


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> Any:
    """Replacement for ``torch._utils._rebuild_tensor_v3`` (byte storage + explicit dtype)."""
    if not isinstance(dtype, TorchDType):
        raise ValueError(f"tensor dtype must be a torch dtype, got {type(dtype).__name__}")
    array = _build_array(storage, dtype, storage_offset, size, stride)
    return _with_metadata(array, metadata)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> Any:
    """Replacement for ``torch._utils._rebuild_parameter``: a parameter is just its data."""
    if not isinstance(data, (np.ndarray, _PendingTensor)):
        raise ValueError(f"parameter data must be a tensor, got {type(data).__name__}")
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any, backward_hooks: Any, state: Any
) -> Any:
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

    # Checked in __new__, so that NEWOBJ (which skips __init__) cannot make a half-built one.
    def __new__(cls, spec: Any = None, align: Any = False, copy: Any = False) -> "_NumpyDTypeSpec":
        if not isinstance(spec, str) or len(spec) > 16:
            raise ValueError(f"numpy dtype spec must be a short string, got {describe(spec)}")
        base = np.dtype(spec)
        if base.fields is not None or base.subdtype is not None or base.kind == "V":
            raise ValueError(f"structured numpy dtype {spec!r} is not supported")
        self = super().__new__(cls)
        self._base = base
        self._byteorder = "="
        return self

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 5:
            raise ValueError(f"unsupported numpy dtype state {describe(state)}")
        byteorder, subarray, names, fields = state[1:5]
        if subarray is not None or names is not None or fields is not None:
            raise ValueError("structured numpy dtypes are not supported")
        if len(state) > 8 and state[8]:
            raise ValueError("numpy dtypes with metadata (datetime) are not supported")
        if not isinstance(byteorder, str) or byteorder not in ("<", ">", "=", "|"):
            raise ValueError(f"bad numpy byte order {describe(byteorder)}")
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
        _charge_items(state[-1], "a numpy array", per_item=1)
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
    charge_allocation(len(buffer), "a numpy array")
    flat = np.frombuffer(buffer, dtype=real)
    return flat.reshape(shape, order=order).copy(order="K")


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """Replacement for ``_codecs.encode``, which protocol-2 pickles use for ``bytes``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise ValueError("_codecs.encode is only allowed for latin1 text")
    charge_allocation(len(text), "a bytes object")
    return text.encode("latin1")


def _charged(constructor: type, name: str) -> Callable[..., Any]:
    """``constructor`` (a container type) that first charges the copy it makes."""

    def build(*args: Any) -> Any:
        if len(args) > 1:
            raise ValueError(f"{name}() takes at most one argument, got {len(args)}")
        if args:
            _charge_items(args[0], f"a {name}")
        return constructor(*args)

    build.__name__ = name
    return build


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
    table["torch", "Size"] = _charged(tuple, "torch.Size")
    table["torch._utils", "_rebuild_tensor"] = _rebuild_tensor
    table["torch._utils", "_rebuild_tensor_v2"] = _rebuild_tensor_v2
    table["torch._utils", "_rebuild_tensor_v3"] = _rebuild_tensor_v3
    table["torch._utils", "_rebuild_parameter"] = _rebuild_parameter
    table["torch._utils", "_rebuild_parameter_with_state"] = _rebuild_parameter_with_state
    table["collections", "OrderedDict"] = _charged(OrderedDict, "OrderedDict")
    for builtins_module in ("builtins", "__builtin__"):
        table[builtins_module, "set"] = _charged(set, "set")
        table[builtins_module, "frozenset"] = _charged(frozenset, "frozenset")
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
    one, a persistent id in the stream is an error. ``depth`` counts the
    ``_load_from_bytes`` streams this one is nested in.
    """

    def __init__(
        self,
        file: BinaryIO,
        *,
        source: str,
        allowed: GlobalTable | None = None,
        persistent_load: Callable[[Any], Any] | None = None,
        depth: int = 0,
    ) -> None:
        super().__init__(file, encoding="latin1")
        self.source = source
        self.allowed: GlobalTable = SAFE_GLOBALS if allowed is None else allowed
        _check_allow_list(self.allowed)
        self._persistent_load = persistent_load
        self.depth = depth

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == _LOAD_FROM_BYTES:
            return _Guarded(
                partial(_load_from_bytes, source=self.source, allowed=self.allowed, depth=self.depth + 1)
            )
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
            raise ValueError(f"unexpected persistent id {describe(pid)} in a plain pickle")
        return self._persistent_load(pid)


#: Bytes charged per pickle operation: an opcode of one byte can make an object of ~60-200 bytes.
_BYTES_PER_OPERATION = 128
_OPERATIONS_PER_CHARGE = 1 << 16


# Arguments that are a length and that many bytes: skipped by seeking, not read (reading them
# would allocate and free large buffers, which leaves the C heap fragmented).
_LENGTH_PREFIXED = {
    pickletools.bytes4: (4, False),
    pickletools.string4: (4, True),
    pickletools.unicodestring4: (4, False),
    pickletools.bytes8: (8, False),
    pickletools.unicodestring8: (8, False),
    pickletools.bytearray8: (8, False),
}


def _charge_operations(file: BinaryIO) -> None:
    """Count the operations of the pickle at the file's position (without running any) and charge them.

    Bounds the memory of objects that the pickle's opcodes build themselves (empty dicts,
    lists, ints ...), which no replacement function sees. Leaves the position unchanged.
    """
    if _BUDGET.get() is None:
        return
    start = file.tell()
    count = 0
    while True:
        code = file.read(1)
        if not code:
            raise EOFError("pickle data was truncated (no STOP)")
        op = pickletools.code2op.get(code.decode("latin-1"))
        if op is None:
            raise pickle.UnpicklingError(f"invalid load key, {code!r}")
        if op.arg is not None:
            prefixed = _LENGTH_PREFIXED.get(op.arg)
            if prefixed is None:
                op.arg.reader(file)
            else:
                width, signed = prefixed
                length = int.from_bytes(_read_exact(file, width), "little", signed=signed)
                if length < 0:
                    raise pickle.UnpicklingError("negative byte count")
                file.seek(length, io.SEEK_CUR)
        count += 1
        if count == _OPERATIONS_PER_CHARGE:
            charge_allocation(count * _BYTES_PER_OPERATION, "the objects built by the pickle's operations")
            count = 0
        if op.code == ".":
            break
    charge_allocation(count * _BYTES_PER_OPERATION, "the objects built by the pickle's operations")
    file.seek(start)


def _restricted_load(
    file: BinaryIO,
    source: str,
    allowed: GlobalTable,
    persistent_load: Callable[[Any], Any] | None = None,
    depth: int = 0,
) -> Any:
    _charge_operations(file)
    unpickler = RestrictedUnpickler(
        file, source=source, allowed=allowed, persistent_load=persistent_load, depth=depth
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
        raise ValueError(f"unsupported persistent id {describe(pid)}")
    storage_type, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(storage_type, TorchDType):
        raise ValueError(f"persistent id names an unknown storage type {describe(storage_type)}")
    if not isinstance(key, str) or len(key) > 256 or type(numel) is not int or not 0 <= numel < _MAX_INDEX:
        raise ValueError(f"bad storage key/size in persistent id {describe(pid)}")
    view = pid[5] if expected_len == 6 else None
    return storage_type, key, numel, view


class _LegacyStorages:
    """Persistent-id handler for a legacy stream; ``data`` is filled after the main pickle."""

    def __init__(self) -> None:
        self.declared: dict[str, tuple[TorchDType, int]] = {}
        self.data: dict[str, np.ndarray] | None = None

    def __call__(self, pid: Any) -> _PendingStorage:
        dtype, key, numel, view = _storage_header(pid, 6)
        if self.declared.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise ValueError(f"storage {key!r} is declared with two different types or sizes")
        offset, size = 0, numel
        if view is not None:
            if not isinstance(view, tuple) or len(view) != 3:
                raise ValueError(f"bad storage view {describe(view)}")
            _, offset, size = view
            if type(offset) is not int or type(size) is not int or offset < 0 or size < 0:
                raise ValueError(f"bad storage view {describe(view)}")
            if offset + size > numel:
                raise ValueError(f"storage view {describe(view)} reaches past its storage")
        return _PendingStorage(self, key, dtype, offset, size)

    def read_data(self, file: BinaryIO, keys: Any) -> None:
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("legacy stream: storage key list is not a list of strings")
        data: dict[str, np.ndarray] = {}
        for key in keys:
            if key not in self.declared:
                raise ValueError(f"legacy stream: data for undeclared storage {key!r}")
            if key in data:
                raise ValueError(f"legacy stream: data for storage {key!r} given twice")
            dtype, numel = self.declared[key]
            (count,) = struct.unpack("<q", _read_exact(file, 8))
            if count != numel:
                raise ValueError(f"storage {key!r}: {count} elements stored, {numel} declared")
            charge_allocation(numel * dtype.itemsize, f"storage {key!r} of {numel} {dtype.name} elements")
            data[key] = np.frombuffer(_read_exact(file, numel * dtype.itemsize), dtype=dtype.raw)
        missing = set(self.declared) - set(data)
        if missing:
            raise ValueError(f"legacy stream: no data for storages {sorted(missing)[:10]}")
        self.data = data


def _read_legacy_stream(file: BinaryIO, source: str, allowed: GlobalTable, depth: int = 0) -> Any:
    """Parse a legacy ``torch.save`` stream starting at the current position of ``file``.

    One pass: tensors in the main pickle are :class:`_PendingTensor` placeholders
    until :func:`_finalize` (the data only follows the pickle).
    """
    magic = _restricted_load(file, source, allowed, depth=depth)
    if type(magic) is not int or magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointFormatError(f"{source}: bad magic number, not a legacy torch.save stream")
    version = _restricted_load(file, source, allowed, depth=depth)
    if type(version) is not int or version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointFormatError(f"{source}: unsupported legacy protocol version {describe(version)}")
    sys_info = _restricted_load(file, source, allowed, depth=depth)
    if not isinstance(sys_info, dict):
        raise CheckpointFormatError(f"{source}: legacy stream header has no sys_info dict")
    storages = _LegacyStorages()
    result = _restricted_load(file, source, allowed, storages, depth)
    keys = _restricted_load(file, source, allowed, depth=depth)
    storages.read_data(file, keys)
    return result


_EMBEDDED = " (embedded storage)"


def _load_from_bytes(data: Any, *, source: str, allowed: GlobalTable, depth: int) -> Any:
    """Replacement for ``torch.storage._load_from_bytes``: parse the embedded legacy stream."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError(f"_load_from_bytes expects bytes, got {type(data).__name__}")
    if depth > MAX_NESTED_STREAMS:
        raise CheckpointFormatError(
            f"{source}: storages embedded with torch.storage._load_from_bytes nest more than "
            f"{MAX_NESTED_STREAMS} deep; real checkpoints nest them once"
        )
    # a stream's bytes came from the file; parsing one (memoized) stream again is charged each time
    budget = _BUDGET.get()
    if budget is not None:
        if id(data) in budget.streams:
            budget.charge(len(data), "an embedded storage stream parsed again")
        else:
            budget.streams[id(data)] = data
    if not source.endswith(_EMBEDDED):
        source += _EMBEDDED
    return _read_legacy_stream(io.BytesIO(data), source, allowed, depth)


# --------------------------------------------------------------------------- zip format


#: Most members a checkpoint zip may list (zipfile keeps an object per member; torch.save
#: writes one per storage, a few thousand for the largest StyleGAN2 checkpoints).
MAX_ZIP_MEMBERS = 100_000


def _open_zip(file: BinaryIO | str | Path) -> zipfile.ZipFile:
    """``zipfile.ZipFile``, after checking the member count its end record declares."""
    handle = open(file, "rb") if isinstance(file, (str, Path)) else file
    try:
        end_record = zipfile._EndRecData(handle)  # the parser zipfile itself uses
        if end_record and end_record[zipfile._ECD_ENTRIES_TOTAL] > MAX_ZIP_MEMBERS:
            raise ValueError(f"the zip directory lists {end_record[zipfile._ECD_ENTRIES_TOTAL]} members, "
                             f"more than {MAX_ZIP_MEMBERS}")
        handle.seek(0)
        return zipfile.ZipFile(handle if handle is file else file)
    finally:
        if handle is not file:
            handle.close()


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


def _read_member(archive: zipfile.ZipFile, name: str, what: str) -> bytes:
    """A zip member's bytes; its declared size is charged before anything is decompressed.

    zipfile never returns more than the declared size and checks the CRC-32.
    """
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise ValueError(f"zip member {name!r} is encrypted")
    charge_allocation(info.file_size, what)
    return archive.read(info)


def _zip_byteorder(archive: zipfile.ZipFile, prefix: str, source: str) -> str:
    if f"{prefix}byteorder" not in archive.namelist():
        return "<"
    if archive.getinfo(f"{prefix}byteorder").file_size > 16:
        raise CheckpointFormatError(f"{source}: byte order record is too long")
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
            name = f"{self._prefix}data/{key}"
            stored = self._archive.getinfo(name).file_size
            if stored != numel * dtype.itemsize:
                raise ValueError(
                    f"storage {key!r}: {stored} bytes stored, {numel} x {dtype.itemsize} declared"
                )
            raw = _read_member(self._archive, name, f"storage {key!r}")
            flat = np.frombuffer(raw, dtype=dtype.raw.newbyteorder(self._byteorder))
            cached = self._cache[key] = Storage(dtype, flat, self._byteorder)
        elif cached.dtype != dtype:
            raise ValueError(f"storage {key!r} is used with two different types")
        return cached


def _read_zip(file: BinaryIO, source: str, allowed: GlobalTable) -> Any:
    with _open_zip(file) as archive:
        prefix = _zip_prefix(archive, source)
        storages = _ZipStorages(archive, prefix, _zip_byteorder(archive, prefix, source))
        data_pkl = _read_member(archive, f"{prefix}data.pkl", "data.pkl")
        return _restricted_load(io.BytesIO(data_pkl), source, allowed, storages)


def check_zip_archive(path: str | Path, budget: AllocationBudget | None = None) -> None:
    """Check every member of a zip file before another reader (torch.load) trusts it.

    Declared sizes are charged to ``budget`` before anything is decompressed,
    then each member is streamed to verify its CRC-32 (``torch.load`` does not).
    Raises :class:`CheckpointFormatError` naming the file.
    """
    source = str(path)
    token = _BUDGET.set(budget) if budget is not None else None
    try:
        with _open_zip(Path(path)) as archive:
            infos = archive.infolist()
            for info in infos:
                if info.flag_bits & 0x1:
                    raise ValueError(f"zip member {info.filename!r} is encrypted")
                charge_allocation(info.file_size, f"zip member {info.filename!r}")
            for info in infos:
                with archive.open(info) as member:
                    while member.read(1 << 20):
                        pass
    except CheckpointFormatError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OverflowError) as exc:
        raise CheckpointFormatError(
            f"{source}: cannot read it as a torch.save zip archive; the file is truncated, corrupt or "
            f"in another format ({type(exc).__name__}: {exc})"
        ) from None
    finally:
        if token is not None:
            _BUDGET.reset(token)


# --------------------------------------------------------------------------- entry point


def _read_pickle_or_legacy(file: BinaryIO, source: str, allowed: GlobalTable) -> Any:
    """A plain pickle, unless its first object is the legacy torch.save magic number."""
    first = _restricted_load(file, source, allowed)
    if type(first) is int and first == LEGACY_MAGIC_NUMBER:
        file.seek(0)
        return _read_legacy_stream(file, source, allowed)
    return first


def _finalize(obj: Any, memo: dict[int, tuple[Any, Any, int]], active: set[int], depth: int = 0) -> Any:
    """Swap the unpickling stand-ins for real objects (arrays, dtypes), in place where possible.

    ``memo`` maps ``id(original) -> (original, result, expanded size)`` (the original is
    kept alive so that its id is not reused); the expanded size counts the items of the
    value as a tree, shared containers once per reference. Refuses containers nested deeper
    than :data:`MAX_NESTING`, containing themselves, or expanding to more than
    :data:`MAX_EXPANDED_ITEMS` (shared containers could otherwise cost 2^depth to walk).
    """
    key = id(obj)
    if key in memo:
        if key in active:
            raise CheckpointFormatError(
                f"a {type(obj).__name__} contains itself (self-referential structure)"
            )
        return memo[key][1]
    if depth > MAX_NESTING:
        raise CheckpointFormatError(f"containers nest more than {MAX_NESTING} levels deep")
    if isinstance(obj, (_UnpickledArray, _NumpyDTypeSpec, _PendingTensor, _PendingStorage, Storage)):
        if isinstance(obj, _UnpickledArray):
            value: Any = obj.view(np.ndarray)
        elif isinstance(obj, _NumpyDTypeSpec):
            value = obj.to_dtype()
        elif isinstance(obj, _PendingTensor):
            value = obj.resolve()
        else:  # a storage pickled on its own
            data = obj.resolve() if isinstance(obj, _PendingStorage) else obj.data
            charge_allocation(data.nbytes, "a storage")
            value = obj.dtype.to_numpy(np.array(data))
        memo[key] = (obj, value, 1)
        return value
    if isinstance(obj, (str, bytes, bytearray, int, float, complex, bool, type(None), TorchDType, np.ndarray)):
        return obj
    memo[key] = (obj, obj, 1)
    active.add(key)
    size = 1

    def walk(value: Any) -> Any:
        nonlocal size
        result = _finalize(value, memo, active, depth + 1)
        entry = memo.get(id(value))
        size += entry[2] if entry is not None and entry[0] is value else 1
        return result

    if isinstance(obj, dict):
        for name, value in list(dict.items(obj)):
            dict.__setitem__(obj, name, walk(value))
    elif isinstance(obj, list):
        obj[:] = [walk(value) for value in obj]
    elif isinstance(obj, (set, frozenset)):
        obj = type(obj)(walk(value) for value in obj)
    elif type(obj) is tuple:
        obj = tuple(walk(value) for value in obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for field in dataclasses.fields(obj):
            object.__setattr__(obj, field.name, walk(getattr(obj, field.name)))
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        attributes = vars(obj)
        for name, value in list(attributes.items()):
            attributes[name] = walk(value)
    if size > MAX_EXPANDED_ITEMS:
        raise CheckpointFormatError(
            f"shared containers expand to more than {MAX_EXPANDED_ITEMS} items "
            "(each reference to a shared container counts its items again)"
        )
    memo[key] = (memo[key][0], obj, size)
    active.discard(key)
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
    RecursionError,
    NotImplementedError,
)


def load_torch_file(
    path: str | Path, *, extra_globals: GlobalTable | None = None, max_alloc: int | None = None
) -> Any:
    """Load a torch checkpoint (zip, legacy stream or plain pickle) without running its code.

    Tensors come back as numpy arrays. ``extra_globals`` extends
    :data:`SAFE_GLOBALS` (``(module, name) -> replacement``) for file families
    that need more, e.g. NVlabs network pickles. ``max_alloc`` caps the bytes
    the file may make the reader allocate (default :func:`default_max_alloc`
    of the file size).

    Raises :class:`UnsafePickleError` for a global outside the allow-list,
    :class:`AllocationLimitError` when the file asks for more memory than
    ``max_alloc``, and :class:`CheckpointFormatError` (naming ``path``) for
    anything unreadable.
    """
    source = str(path)
    allowed: GlobalTable = SAFE_GLOBALS
    if extra_globals:
        allowed = MappingProxyType({**SAFE_GLOBALS, **extra_globals})
        _check_allow_list(allowed)
    from .safe_files import open_regular  # a FIFO or device is refused, never opened for reading

    with open_regular(path, "checkpoint file") as file:
        size = Path(path).stat().st_size
        budget = AllocationBudget(default_max_alloc(size) if max_alloc is None else max_alloc, source)
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
        token = _BUDGET.set(budget)
        try:
            return _finalize(reader(file, source, allowed), {}, set())
        except (UnsafePickleError, AllocationLimitError):
            raise
        except CheckpointFormatError as exc:
            message = str(exc)
            raise CheckpointFormatError(
                message if message.startswith(source) else f"{source}: {message}"
            ) from None
        except _CORRUPTION_ERRORS as exc:
            raise CheckpointFormatError(
                f"{source}: cannot read it as a {what}; the file is truncated, corrupt or "
                f"in another format ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
            ) from None
        finally:
            _BUDGET.reset(token)
