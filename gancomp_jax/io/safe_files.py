"""Reading input files that may be hostile: regular files only, sizes and nesting bounded first.

Every reader of a user-named input (weight files, ``config.json``, statistics ``.npz``) goes
through these helpers, so that

* a FIFO, socket or device given where a file is expected is refused by name, never opened for
  reading (``open`` on a FIFO blocks until a writer appears); the check is made with ``stat``
  and again with ``fstat`` on a descriptor opened with ``O_NONBLOCK``, so a FIFO swapped in
  between is refused too;
* a file's length is checked against a cap before it is read (JSON: 16 MiB by default);
* JSON nesting depth is bounded (64 by default) before parsing, so a 100,000-deep list is one
  error, not a ``RecursionError``;
* ``.npz`` members are checked from their ``.npy`` headers (dtype, shape, bytes) before any
  data is read or decompressed, and decompression is bounded by the size the header implies
  (:func:`read_npz`).

All failures raise ``ValueError`` (or ``FileNotFoundError``) with a message naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np

__all__ = [
    "DEFAULT_JSON_MAX_BYTES",
    "DEFAULT_JSON_MAX_DEPTH",
    "NpyHeader",
    "check_finite",
    "file_kind",
    "load_json_file",
    "open_regular",
    "read_npz",
    "require_regular_file",
]

DEFAULT_JSON_MAX_BYTES = 16 << 20
DEFAULT_JSON_MAX_DEPTH = 64
MAX_NPZ_MEMBERS = 256

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def file_kind(mode: int) -> str:
    """``'a FIFO (named pipe)'``, ``'a directory'`` ... for a ``st_mode`` that is not a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def require_regular_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """``path`` if it is (or links to) a regular file; FileNotFoundError / ValueError otherwise."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file; refusing to read it")
    return path


def open_regular(path: str | os.PathLike, what: str = "input file") -> BinaryIO:
    """Opens ``path`` for binary reading only if it is a regular file (checked before and after opening)."""
    path = require_regular_file(path, what)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise ValueError(f"{what} {path} cannot be read: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ValueError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file; refusing to read it")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _json_depth_ok(text: str, max_depth: int) -> bool:
    """False if brackets outside strings nest deeper than ``max_depth`` (a linear scan)."""
    depth = 0
    in_string = escaped = False
    opening, closing = "[{", "]}"
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in opening:
            depth += 1
            if depth > max_depth:
                return False
        elif ch in closing:
            depth -= 1
    return True


def load_json_file(path: str | os.PathLike, what: str = "JSON file", *, max_bytes: int = DEFAULT_JSON_MAX_BYTES,
                   max_depth: int = DEFAULT_JSON_MAX_DEPTH, expect: type | None = dict) -> Any:
    """Parses a JSON file of at most ``max_bytes`` bytes nested at most ``max_depth`` deep.

    ``expect`` (default ``dict``): the type the top-level value must have (None: any).
    """
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise ValueError(f"{what} {path} is {size:,} bytes, more than the limit of {max_bytes:,} bytes")
        blob = f.read(max_bytes + 1)
    if len(blob) > max_bytes:
        raise ValueError(f"{what} {path} grew past the limit of {max_bytes:,} bytes while being read")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{what} {path} is not UTF-8 text: {e}") from None
    if not _json_depth_ok(text, max_depth):
        raise ValueError(f"{what} {path} nests lists or objects more than {max_depth} deep")
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None
    if expect is not None and not isinstance(value, expect):
        raise ValueError(f"{what} {path} holds a JSON {type(value).__name__}, expected a JSON "
                         f"{'object' if expect is dict else expect.__name__}")
    return value


# --------------------------------------------------------------------------- .npz
class NpyHeader:
    """What a ``.npy`` header declares: ``dtype``, ``shape``, ``fortran_order`` and ``nbytes``."""

    def __init__(self, dtype: np.dtype, shape: tuple[int, ...], fortran_order: bool):
        self.dtype, self.shape, self.fortran_order = dtype, shape, fortran_order
        self.nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize

    def __repr__(self) -> str:
        return f"{self.dtype.str} {self.shape}"


def _read_npy_header(stream: BinaryIO, where: str) -> NpyHeader:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream, max_header_size=10_000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream, max_header_size=10_000)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile) as e:
        raise ValueError(f"{where} has no valid .npy header ({e})") from None
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects (dtype {dtype}); only numeric arrays are read")
    if dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"{where} has dtype {dtype}, expected a numeric array")
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"{where} declares an invalid shape {shape}")
    return NpyHeader(dtype, tuple(int(s) for s in shape), bool(fortran))


def read_npz(path: str | os.PathLike, check: Callable[[str, NpyHeader], bool], what: str = "statistics file",
             *, max_bytes: int = 1 << 30) -> dict[str, np.ndarray]:
    """Reads the members of an ``.npz`` that ``check`` accepts, checking every header before any data.

    ``check(name, header)`` is called with each member's name (without ``.npy``) and declared
    header; it returns True to read the member, False to skip it, or raises ValueError (naming
    the problem). Accepted members may hold at most ``max_bytes`` bytes together; each must
    declare the same uncompressed size in the zip directory as its header implies, and is
    decompressed only up to that size. Arrays come back in native byte order, C order.
    """
    path = Path(path)
    wanted: list[tuple[str, zipfile.ZipInfo, NpyHeader]] = []
    total = 0
    with open_regular(path, what) as f:
        try:
            archive = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise ValueError(f"{what} {path} is not an .npz (zip) archive: {e}") from None
        with archive:
            infos = archive.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise ValueError(f"{what} {path} lists {len(infos)} members, more than {MAX_NPZ_MEMBERS}")
            for info in infos:
                if not info.filename.endswith(".npy"):
                    continue
                name = info.filename[:-4]
                where = f"{what} {path}: member {name!r}"
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise ValueError(f"{where} uses an unsupported compression method {info.compress_type}")
                try:
                    with archive.open(info) as stream:
                        header = _read_npy_header(stream, where)
                        header_len = stream.tell()
                except (zipfile.BadZipFile, OSError, EOFError) as e:  # zlib.error is caught below
                    raise ValueError(f"{where} cannot be read: {e}") from None
                except Exception as e:  # zlib.error
                    raise ValueError(f"{where} cannot be read: {type(e).__name__}: {e}") from None
                if not check(name, header):
                    continue
                if header.nbytes + header_len != info.file_size:
                    raise ValueError(f"{where}: its header declares {header} ({header.nbytes:,} bytes) but the "
                                     f"archive lists {info.file_size:,} bytes")
                total += header.nbytes
                if total > max_bytes:
                    raise ValueError(f"{where} ({header}) makes the arrays read {total:,} bytes, more than the "
                                     f"limit of {max_bytes:,} bytes")
                wanted.append((name, info, header))
            out = {}
            for name, info, header in wanted:
                where = f"{what} {path}: member {name!r}"
                try:
                    with archive.open(info) as stream:
                        _read_npy_header(stream, where)
                        buf = bytearray(header.nbytes)
                        view, got = memoryview(buf), 0
                        while got < header.nbytes:
                            n = stream.readinto(view[got:])
                            if not n:
                                break
                            got += n
                except (zipfile.BadZipFile, OSError, EOFError) as e:
                    raise ValueError(f"{where} cannot be read: {e}") from None
                except Exception as e:  # zlib.error
                    raise ValueError(f"{where} cannot be read: {type(e).__name__}: {e}") from None
                if got != header.nbytes:
                    raise ValueError(f"{where} is truncated ({got:,} of {header.nbytes:,} bytes)")
                order = "F" if header.fortran_order else "C"
                array = np.frombuffer(buf, header.dtype).reshape(header.shape, order=order)
                out[name] = np.ascontiguousarray(array.astype(header.dtype.newbyteorder("="), copy=False))
    return out


def check_finite(arrays: Mapping[str, np.ndarray], where: str) -> None:
    """ValueError naming the first array that holds NaN or infinity."""
    for name, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise ValueError(f"{where}: {name!r} holds {bad:,} NaN or infinite values")


def arrays_digest(arrays: Mapping[str, Any]) -> bytes:
    """sha256 over every member of ``arrays`` but ``checksum`` (name, dtype, shape and bytes, in
    sorted name order): the seal of the files our caches and resumable states write."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if name == "checksum":
            continue
        a = np.ascontiguousarray(np.asarray(arrays[name]))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.digest()
