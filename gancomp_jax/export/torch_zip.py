"""Write ``torch.save``-format files (the zip format of torch >= 1.6) without torch.

Only what a checkpoint of state dicts needs: nested ``dict`` / ``collections.OrderedDict``
with ``str`` keys whose leaves are numpy arrays (saved as CPU tensors), ``str``, ``int``,
``float``, ``bool`` or ``None``. The result reads back with ``torch.load(path,
weights_only=True)`` and with :func:`gancomp_jax.io.load_torch_file`.

Layout (as ``torch.save`` writes it)::

    <name>/data.pkl              protocol-2 pickle of the object; each tensor is
                                 torch._utils._rebuild_tensor_v2(storage, 0, size, stride,
                                 False, OrderedDict()) with the persistent id
                                 ('storage', torch.FloatStorage, '<key>', 'cpu', numel)
    <name>/.format_version       b'1'
    <name>/.storage_alignment    b'64'
    <name>/byteorder             b'little'
    <name>/data/<key>            raw little-endian bytes of storage <key>, 64-byte aligned
    <name>/version               b'3\\n'

Entries are stored uncompressed, as torch stores them. The pickle is emitted opcode by
opcode (``pickle`` itself would need the real ``torch`` globals to exist).
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STORAGE_TYPES", "write_torch_zip"]

#: numpy dtype → torch legacy storage class name (what ``torch.save`` records).
STORAGE_TYPES = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}
_ALIGN = 64

# pickle opcodes (protocol 2)
_PROTO, _STOP = b"\x80", b"."
_MARK, _TUPLE, _EMPTY_TUPLE, _TUPLE1, _TUPLE2 = b"(", b"t", b")", b"\x85", b"\x86"
_EMPTY_DICT, _SETITEMS, _GLOBAL, _REDUCE, _BINPERSID = b"}", b"u", b"c", b"R", b"Q"
_BININT, _BININT1, _BININT2, _LONG1 = b"J", b"K", b"M", b"\x8a"
_BINUNICODE, _BINFLOAT, _NONE, _NEWTRUE, _NEWFALSE = b"X", b"G", b"N", b"\x88", b"\x89"


class _Emitter:
    """Builds the pickle of ``data.pkl`` and collects the storages it references."""

    def __init__(self) -> None:
        self.out = bytearray(_PROTO + b"\x02")
        self.storages: list[np.ndarray] = []

    def global_(self, module: str, name: str) -> None:
        self.out += _GLOBAL + f"{module}\n{name}\n".encode("ascii")

    def int_(self, v: int) -> None:
        if 0 <= v < 256:
            self.out += _BININT1 + struct.pack("<B", v)
        elif 0 <= v < 65536:
            self.out += _BININT2 + struct.pack("<H", v)
        elif -2 ** 31 <= v < 2 ** 31:
            self.out += _BININT + struct.pack("<i", v)
        else:
            raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
            self.out += _LONG1 + struct.pack("<B", len(raw)) + raw

    def str_(self, s: str) -> None:
        raw = s.encode("utf-8")
        self.out += _BINUNICODE + struct.pack("<I", len(raw)) + raw

    def tuple_(self, items: tuple) -> None:
        if not items:
            self.out += _EMPTY_TUPLE
            return
        self.out += _MARK
        for item in items:
            self.value(item)
        self.out += _TUPLE

    def ordered_dict(self) -> None:
        self.global_("collections", "OrderedDict")
        self.out += _EMPTY_TUPLE + _REDUCE

    def tensor(self, array: np.ndarray) -> None:
        array = np.asarray(array)
        if array.dtype not in STORAGE_TYPES:
            raise ValueError(f"cannot save arrays of dtype {array.dtype} as torch tensors")
        array = np.array(array, dtype=array.dtype.newbyteorder("<"), order="C")
        key = str(len(self.storages))
        self.storages.append(array)
        stride, acc = [], 1
        for n in reversed(array.shape):
            stride.append(acc)
            acc *= n
        self.global_("torch._utils", "_rebuild_tensor_v2")
        self.out += _MARK
        self.out += _MARK
        self.str_("storage")
        self.global_("torch", STORAGE_TYPES[array.dtype])
        self.str_(key)
        self.str_("cpu")
        self.int_(int(array.size))
        self.out += _TUPLE + _BINPERSID
        self.int_(0)
        self.tuple_(tuple(int(n) for n in array.shape))
        self.tuple_(tuple(reversed(stride)))
        self.out += _NEWFALSE
        self.ordered_dict()  # backward hooks
        self.out += _TUPLE + _REDUCE

    def value(self, v: Any) -> None:
        if isinstance(v, np.ndarray) or isinstance(v, np.generic):
            self.tensor(np.asarray(v))
        elif isinstance(v, dict):
            if isinstance(v, OrderedDict):
                self.ordered_dict()
            else:
                self.out += _EMPTY_DICT
            if v:
                self.out += _MARK
                for k, item in v.items():
                    if not isinstance(k, str):
                        raise ValueError(f"only str keys can be saved, got {k!r}")
                    self.str_(k)
                    self.value(item)
                self.out += _SETITEMS
        elif v is None:
            self.out += _NONE
        elif isinstance(v, bool):
            self.out += _NEWTRUE if v else _NEWFALSE
        elif isinstance(v, int):
            self.int_(v)
        elif isinstance(v, float):
            self.out += _BINFLOAT + struct.pack(">d", v)
        elif isinstance(v, str):
            self.str_(v)
        elif isinstance(v, tuple):
            self.tuple_(v)
        else:
            raise ValueError(f"cannot save a {type(v).__name__} in a torch zip file")

    def finish(self) -> bytes:
        return bytes(self.out + _STOP)


def _archive_name(path: Path) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", path.stem)
    return name or "archive"


def _write_entry(zf: zipfile.ZipFile, name: str, data: bytes, align: int | None = None) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 0
    if align:
        # The local header is 30 bytes + name + extra; pad the extra field ("FB" as torch does)
        # so that the data starts on an ``align`` boundary (torch's mmap loading needs it).
        offset = zf.fp.tell() + 30 + len(name.encode("utf-8")) + 4
        pad = (-offset) % align
        info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    zf.writestr(info, data)


def write_torch_zip(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` to ``path`` in torch's zip serialization format (see module docstring).

    The file is written to a temporary sibling and renamed into place, so a failure leaves
    no partial file.
    """
    path = Path(path)
    emitter = _Emitter()
    emitter.value(obj)
    pkl = emitter.finish()
    prefix = _archive_name(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            _write_entry(zf, f"{prefix}/data.pkl", pkl)
            _write_entry(zf, f"{prefix}/.format_version", b"1")
            _write_entry(zf, f"{prefix}/.storage_alignment", str(_ALIGN).encode())
            _write_entry(zf, f"{prefix}/byteorder", b"little")
            for key, array in enumerate(emitter.storages):
                _write_entry(zf, f"{prefix}/data/{key}", array.tobytes(order="C"), align=_ALIGN)
            _write_entry(zf, f"{prefix}/version", b"3\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
