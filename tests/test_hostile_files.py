"""Hostile checkpoint files (issue 8): bounded time and memory, one `error:` line, nothing written.

Every hostile file is built here, small, from pickle opcodes and hand-written zip archives.
``test_hostile_file_cli`` runs tools/convert_pt_weights.py on each in a subprocess and checks:
exit code 2, exactly one stderr line starting ``error:``, no stdout, no code run (a marker file a
payload would create stays absent), nothing in or beside the output folder, peak RSS of the
process under 1.5 GB (measured by a small parent process, see ``_MEASURE``) and wall time
under 30 s. The converter rejects these files
before importing JAX, so most runs take about a second. Run with ``-s`` to see the measured
time and peak memory per case.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from gancomp_jax.convert.fake_nvlabs import (_LEGACY_MAGIC, FakeNetwork, _Call, _Global, _legacy_storage_bytes,
                                             _Pickler, write_nvlabs_pickle)
from gancomp_jax.io import torch_pickle
from gancomp_jax.io.rosinality_pt import _torch_message, load_rosinality_pt
from gancomp_jax.io.torch_pickle import (MAX_NESTED_STREAMS, AllocationLimitError, CheckpointFormatError,
                                         load_torch_file)

REPO = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None
PEAK_RSS_LIMIT_KB = 1_500_000  # 1.5 GB
TIME_LIMIT_S = 30.0

# --------------------------------------------------------------------------- pickle building blocks


class Raw:
    """Bytes written into the pickle as they are (opcodes)."""

    def __init__(self, data: bytes):
        self.data = data


class Build:
    """``obj`` followed by ``BUILD(state)``."""

    def __init__(self, obj: Any, state: Any):
        self.obj, self.state = obj, state


class Pid:
    """A persistent id (a storage reference in torch files)."""

    def __init__(self, pid: tuple):
        self.pid = pid


class HostilePickler(_Pickler):
    dispatch = dict(_Pickler.dispatch)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Pid) else None

    def _raw(self, obj: Raw) -> None:
        self.write(obj.data)

    def _build(self, obj: Build) -> None:
        self.save(obj.obj)
        self.save(obj.state)
        self.write(pickle.BUILD)

    dispatch[Raw] = _raw
    dispatch[Build] = _build


def dumps(obj: Any, protocol: int = 3) -> bytes:
    buf = io.BytesIO()
    HostilePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


LOAD_FROM_BYTES = _Global("torch.storage", "_load_from_bytes")
REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")


def system_call(marker: Path) -> Raw:
    """Opcodes for ``posix.system('touch MARKER')``: creates ``marker`` if code from the file runs."""
    return Raw(pickle.GLOBAL + b"posix\nsystem\n" + pickle.BINUNICODE + struct.pack("<I", len(f"touch {marker}"))
               + f"touch {marker}".encode() + pickle.TUPLE1 + pickle.REDUCE)


def tensor(storage: Any, size: tuple, stride: tuple, offset: int = 0) -> _Call:
    return _Call(REBUILD_TENSOR, (storage, offset, size, stride, False, OrderedDict()))


def zip_storage(key: str, numel: int, kind: str = "FloatStorage") -> Pid:
    return Pid(("storage", _Global("torch", kind), key, "cpu", numel))


def legacy_stream(main_obj: Any, storages: list[tuple[str, int, bytes]] = ()) -> bytes:
    """A legacy torch.save stream: header pickles, ``main_obj``, key list, then ``(key, numel, raw)`` data."""
    sys_info = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))
    parts = [pickle.dumps(_LEGACY_MAGIC, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps(sys_info, protocol=2), dumps(main_obj, 3),
             pickle.dumps([key for key, _, _ in storages], protocol=2)]
    for _, numel, raw in storages:
        parts += [struct.pack("<q", numel), raw]
    return b"".join(parts)


def nested_streams(depth: int, innermost: Any) -> bytes:
    """``depth`` legacy streams, each one's main pickle ``_load_from_bytes(<the next>)``."""
    inner = legacy_stream(innermost)
    for _ in range(depth - 1):
        inner = legacy_stream(_Call(LOAD_FROM_BYTES, (inner,)))
    return inner


def write_zip(path: Path, members: list[tuple]) -> Path:
    """A zip archive written by hand: ``(name, data)`` stored, or ``(name, data, method, crc, size)``."""
    out = io.BytesIO()
    central = []
    for member in members:
        if len(member) == 2:
            name, data = member
            method, crc, size = 0, zlib.crc32(data), len(data)
        else:
            name, data, method, crc, size = member
        encoded = name.encode()
        offset = out.tell()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data), size,
                              len(encoded), 0) + encoded + data)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, len(data), size,
                                   len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(central), len(central), out.tell() - start,
                          start, 0))
    path.write_bytes(out.getvalue())
    return path


def torch_zip(path: Path, data_pkl: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A torch.save-style zip archive (``archive/data.pkl``, ``archive/data/<key>``)."""
    members = [("archive/data.pkl", data_pkl), ("archive/byteorder", b"little")]
    members += [(f"archive/data/{key}", raw) for key, raw in (storages or {}).items()]
    return write_zip(path, members + [("archive/version", b"3\n")])


# --------------------------------------------------------------------------- the hostile files


def crc_flip(tmp: Path, marker: Path) -> Path:
    """The rosinality fixture with 4 bytes flipped inside its largest storage (CRC-32 now wrong)."""
    data = bytearray((REPO / "tests" / "fixtures" / "rosinality_ros16.pt").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    at = start + info.file_size // 2
    data[at:at + 4] = bytes(b ^ 0x5A for b in data[at:at + 4])
    path = tmp / "flipped.pt"
    path.write_bytes(bytes(data))
    return path


def nested(tmp: Path, marker: Path) -> Path:
    """20 nested ``_load_from_bytes`` streams (2^20 parses when each main pickle is read twice)."""
    payload = {"w": tensor(_Call(LOAD_FROM_BYTES, (_legacy_storage_bytes(np.ones(4, np.float32)),)), (4,), (1,)),
               "x": system_call(marker)}
    path = tmp / "nested.pkl"
    path.write_bytes(dumps({"G_ema": _Call(LOAD_FROM_BYTES, (nested_streams(20, payload),))}))
    return path


def repeated_stream(tmp: Path, marker: Path) -> Path:
    """One 64 KiB stream parsed 30000 times through the pickle memo (6 bytes per call)."""
    stream = legacy_stream({"blob": bytes(1 << 16)})
    calls = 30_000
    body = (pickle.GLOBAL + b"torch.storage\n_load_from_bytes\n" + pickle.BINPUT + b"\x00"
            + pickle.BINBYTES + struct.pack("<I", len(stream)) + stream + pickle.BINPUT + b"\x01" + pickle.POP
            + pickle.POP + pickle.EMPTY_LIST + pickle.MARK
            + (pickle.BINGET + b"\x00" + pickle.BINGET + b"\x01" + pickle.TUPLE1 + pickle.REDUCE) * calls
            + pickle.APPENDS)
    path = tmp / "repeated.pkl"
    path.write_bytes(b"\x80\x03}" + pickle.BINUNICODE + struct.pack("<I", 5) + b"G_ema" + body + pickle.SETITEM
                     + pickle.STOP)
    return path


def zero_stride_pkl(tmp: Path, marker: Path) -> Path:
    """A ~400-byte pickle: one float stored, a tensor of 2^28 of them (stride 0): 1 GiB to copy."""
    storage = _Call(LOAD_FROM_BYTES, (_legacy_storage_bytes(np.zeros(1, np.float32)),))
    path = tmp / "zero_stride.pkl"
    path.write_bytes(dumps({"G_ema": tensor(storage, (1 << 28,), (0,))}, 2))
    return path


def zero_stride_pt(tmp: Path, marker: Path) -> Path:
    """The same inside a torch.save zip (torch.load makes a view; copying it to numpy takes 1 GiB)."""
    data_pkl = dumps({"g": {"w": tensor(zip_storage("0", 1), (1 << 28,), (0,))}}, 2)
    return torch_zip(tmp / "zero_stride.pt", data_pkl, {"0": bytes(4)})


def deflate_bomb(tmp: Path, marker: Path) -> Path:
    """A 1 MB .pt whose storage member inflates to 1 GiB of zeros."""
    chunk, count = 1 << 24, 64
    zeros = bytes(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    steady = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)  # repeats exactly from here
    deflated = first + steady * (count - 1) + compressor.flush()
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    numel = chunk * count // 4
    data_pkl = dumps({"g": {"w": tensor(zip_storage("0", numel), (numel,), (1,))}}, 2)
    return write_zip(tmp / "bomb.pt", [("archive/data.pkl", data_pkl), ("archive/byteorder", b"little"),
                                       ("archive/data/0", deflated, zipfile.ZIP_DEFLATED, crc, chunk * count),
                                       ("archive/version", b"3\n")])


def huge_size(tmp: Path, marker: Path) -> Path:
    """A tensor of 2^63 elements on a 4-element storage."""
    data_pkl = dumps({"g": {"w": tensor(zip_storage("0", 4), (1 << 63,), (1,))}}, 2)
    return torch_zip(tmp / "huge_size.pt", data_pkl, {"0": bytes(16)})


def huge_stride(tmp: Path, marker: Path) -> Path:
    """A 2 x 2 tensor with a stride of 2^64."""
    data_pkl = dumps({"g": {"w": tensor(zip_storage("0", 4), (2, 2), (1 << 64, 1))}}, 2)
    return torch_zip(tmp / "huge_stride.pt", data_pkl, {"0": bytes(16)})


def deep_lists(tmp: Path, marker: Path) -> Path:
    """Lists nested 100000 deep (200 KB)."""
    depth = 100_000
    path = tmp / "deep.pkl"
    path.write_bytes(b"\x80\x03}" + pickle.BINUNICODE + struct.pack("<I", 5) + b"G_ema"
                     + pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1) + pickle.SETITEM + pickle.STOP)
    return path


def deep_dicts_pt(tmp: Path, marker: Path) -> Path:
    """A .pt whose state dict 'g' nests dicts 5000 deep."""
    depth = 5000
    key = pickle.BINUNICODE + struct.pack("<I", 1) + b"a"
    data_pkl = (b"\x80\x02}" + pickle.BINUNICODE + struct.pack("<I", 1) + b"g" + pickle.EMPTY_DICT
                + (key + pickle.EMPTY_DICT) * depth + pickle.SETITEM * (depth + 1) + pickle.STOP)
    return torch_zip(tmp / "deep.pt", data_pkl)


def _shared(depth: int, empty: bytes, fill: Callable[[bytes], bytes]) -> bytes:
    """Opcodes for containers c_0 .. c_depth where c_k holds c_(k-1) twice: 2^depth items as a tree."""
    out = empty + pickle.BINPUT + b"\x00" + pickle.POP
    for level in range(1, depth + 1):
        previous = pickle.BINGET + bytes([level - 1])
        out += empty + pickle.MARK + fill(previous) + pickle.BINPUT + bytes([level]) + pickle.POP
    return out + pickle.BINGET + bytes([depth])


def shared_lists(tmp: Path, marker: Path) -> Path:
    """Lists sharing their items (60 levels): 2^60 items when walked as a tree, 1 KB as a pickle."""
    body = _shared(60, pickle.EMPTY_LIST, lambda item: item * 2 + pickle.APPENDS)
    path = tmp / "shared.pkl"
    path.write_bytes(b"\x80\x03}" + pickle.MARK + pickle.BINUNICODE + struct.pack("<I", 5) + b"G_ema"
                     + pickle.BININT1 + b"\x01" + pickle.BINUNICODE + struct.pack("<I", 19) + b"training_set_kwargs"
                     + body + pickle.SETITEMS + pickle.STOP)
    return path


def shared_dicts_pt(tmp: Path, marker: Path) -> Path:
    """A .pt whose state dict 'g' is 60 levels of dicts sharing their values (no POP: torch lacks it)."""
    def key(name: bytes) -> bytes:
        return pickle.BINUNICODE + struct.pack("<I", len(name)) + name

    def level(k: int) -> bytes:  # c_k = {'a': c_(k-1), 'b': c_(k-1)}
        previous = pickle.BINGET + bytes([k - 1])
        return (pickle.EMPTY_DICT + pickle.MARK + key(b"a") + previous + key(b"b") + previous + pickle.SETITEMS
                + pickle.BINPUT + bytes([k]))

    depth = 60
    scratch = (pickle.EMPTY_LIST + pickle.MARK + pickle.EMPTY_DICT + pickle.BINPUT + b"\x00"
               + b"".join(level(k) for k in range(1, depth)) + pickle.APPENDS)
    data_pkl = (b"\x80\x02}" + pickle.MARK + key(b"scratch") + scratch + key(b"g") + level(depth) + pickle.SETITEMS
                + pickle.STOP)
    return torch_zip(tmp / "shared.pt", data_pkl)


def self_referential(tmp: Path, marker: Path) -> Path:
    """A list that contains itself, beside a network entry."""
    loop: list = []
    loop.append(loop)
    path = tmp / "loop.pkl"
    path.write_bytes(pickle.dumps({"G_ema": 1, "training_set_kwargs": loop}, protocol=4))
    return path


def easydict_build(tmp: Path, marker: Path) -> Path:
    """BUILD on a dnnlib.EasyDict, setting an instance attribute 'items' that hides dict.items."""
    easydict = Raw(pickle.GLOBAL + b"dnnlib.util\nEasyDict\n" + pickle.EMPTY_TUPLE + pickle.NEWOBJ)
    path = tmp / "easydict.pkl"
    path.write_bytes(dumps({"G_ema": 1, "training_set_kwargs": Build(easydict, {"items": 1})}))
    return path


def stub_build(tmp: Path, marker: Path) -> Path:
    """BUILD on a persistent network object, replacing its class name by an int."""
    meta = dict(type="class", version=6, module_src="", class_name="Generator",
                state={"_parameters": {}, "_buffers": {}, "_modules": {}})
    reconstruct = _Global("torch_utils.persistence", "_reconstruct_persistent_obj")
    path = tmp / "stub.pkl"
    path.write_bytes(dumps({"G_ema": Build(_Call(reconstruct, (meta,)), {"class_name": 5})}))
    return path


def newobj_dtype(tmp: Path, marker: Path) -> Path:
    """NEWOBJ of numpy.dtype (skips its constructor)."""
    path = tmp / "dtype.pkl"
    path.write_bytes(dumps({"G_ema": 1, "x": Raw(pickle.GLOBAL + b"numpy\ndtype\n" + pickle.EMPTY_TUPLE
                                                  + pickle.NEWOBJ)}))
    return path


def _tiny_generator(**kwargs: Any) -> FakeNetwork:
    ref = np.load(REPO / "tests" / "fixtures" / "nvlabs_tiny16.npz")
    sd = {k[2:]: ref[k] for k in ref.files if k.startswith("G/")}
    return FakeNetwork("Generator", kwargs, sd)


def init_kwargs_list(tmp: Path, marker: Path) -> Path:
    """A real generator whose _init_kwargs is a list."""
    net = _tiny_generator()
    net.init_kwargs = [1, 2, 3]
    return write_nvlabs_pickle(tmp / "kwargs_list.pkl", {"G_ema": net})


def init_kwargs_types(tmp: Path, marker: Path) -> Path:
    """A real generator whose synthesis_kwargs.channel_base is a list."""
    net = _tiny_generator(z_dim=32, w_dim=32, c_dim=0, img_resolution=16, img_channels=3,
                          mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=[512]))
    return write_nvlabs_pickle(tmp / "kwargs_types.pkl", {"G_ema": net})


def weights_only_advice(tmp: Path, marker: Path) -> Path:
    """BUILD on a dict, which torch's weights_only unpickler refuses with advice to drop weights_only."""
    return torch_zip(tmp / "build_dict.pt", b"\x80\x02}}b.")


BOTH = ("torch", "builtin")
AUTO = ("auto",)
#: name -> (builder, readers, fragment of the error line, issue item)
HOSTILE: dict[str, tuple[Callable[[Path, Path], Path], tuple[str, ...], str]] = {
    "crc_flip": (crc_flip, BOTH, "Bad CRC-32"),
    "nested_streams": (nested, AUTO, f"nest more than {MAX_NESTED_STREAMS} deep"),
    "repeated_stream": (repeated_stream, AUTO, "memory limit"),
    "zero_stride_pkl": (zero_stride_pkl, AUTO, "memory limit"),
    "zero_stride_pt": (zero_stride_pt, BOTH, "memory limit"),
    "deflate_bomb": (deflate_bomb, BOTH, "memory limit"),
    "huge_size": (huge_size, BOTH, "size"),
    "huge_stride": (huge_stride, BOTH, "stride"),
    "deep_lists": (deep_lists, AUTO, "nest more than"),
    "deep_dicts_pt": (deep_dicts_pt, BOTH, "nest more than"),
    "self_referential": (self_referential, AUTO, "contains itself"),
    "shared_lists": (shared_lists, AUTO, "expand to more than"),
    "shared_dicts_pt": (shared_dicts_pt, BOTH, "expand to more than"),
    "easydict_build": (easydict_build, AUTO, "corrupt"),
    "stub_build": (stub_build, AUTO, "cannot be changed"),
    "newobj_dtype": (newobj_dtype, AUTO, "numpy dtype"),
    "init_kwargs_list": (init_kwargs_list, AUTO, "_init_kwargs should be a dict"),
    "init_kwargs_types": (init_kwargs_types, AUTO, "synthesis_kwargs.channel_base=[512] should be an integer"),
    "weights_only_advice": (weights_only_advice, ("torch",), "Can only build"),
}
CASES = [pytest.param(name, reader, id=f"{name}-{reader}",
                      marks=[pytest.mark.skipif(reader == "torch" and not HAS_TORCH, reason="needs torch")])
         for name, (_, readers, _) in HOSTILE.items() for reader in readers]


# Runs the command in argv[2:] and writes its peak RSS (KB) to argv[1]. A small parent matters:
# Linux carries the high-water mark over fork and exec, so a child of the (large) pytest process
# would report at least pytest's own size.
_MEASURE = ("import resource, subprocess, sys\n"
            "code = subprocess.call(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
            "sys.exit(code if code >= 0 else 128 - code)\n")


def run_converter(src: Path, out: Path, reader: str, timeout: float = 60.0) -> tuple[int, str, str, float, int]:
    """Runs the converter CLI; returns (exit code, stdout, stderr, seconds, peak RSS in KB)."""
    logs = out.parent.parent / "logs"
    logs.mkdir(exist_ok=True)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = [sys.executable, str(REPO / "tools" / "convert_pt_weights.py"), str(src), str(out), "--reader", reader]
    with open(logs / "stdout", "wb") as stdout, open(logs / "stderr", "wb") as stderr:
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _MEASURE, str(logs / "rss"), *command], cwd=REPO, env=env,
                                stdout=stdout, stderr=stderr, start_new_session=True)
        watchdog = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            code = proc.wait()
        finally:
            watchdog.cancel()
        seconds = time.monotonic() - start
    rss = logs / "rss"
    peak_kb = int(rss.read_text()) if rss.exists() else -1
    return code, (logs / "stdout").read_text(), (logs / "stderr").read_text(), seconds, peak_kb


@pytest.mark.parametrize("name,reader", CASES)
def test_hostile_file_cli(tmp_path: Path, name: str, reader: str) -> None:
    build, _, fragment = HOSTILE[name]
    src_dir, work = tmp_path / "src", tmp_path / "work"
    src_dir.mkdir()
    work.mkdir()
    marker = tmp_path / "code_ran"
    src = build(src_dir, marker)
    assert src.stat().st_size < 2_000_000
    before = sorted(p.name for p in src_dir.iterdir())
    out = work / "model"

    code, stdout, stderr, seconds, peak_kb = run_converter(src, out, reader)
    print(f"\n{name} [{reader}]: {src.stat().st_size} bytes, exit {code}, {seconds:.1f} s, "
          f"peak RSS {peak_kb / 1024:.0f} MiB\n  {stderr.strip()[:300]}")

    assert seconds < TIME_LIMIT_S, f"took {seconds:.1f} s"
    assert 0 < peak_kb < PEAK_RSS_LIMIT_KB, f"peak RSS {peak_kb} KB"
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert fragment in lines[0] and str(src) in lines[0], lines[0]
    assert "weights_only=False" not in lines[0] and "set to `False`" not in lines[0]
    assert not stdout
    assert not marker.exists()
    assert list(work.iterdir()) == []  # no output, no temporary folder beside it
    assert sorted(p.name for p in src_dir.iterdir()) == before


# --------------------------------------------------------------------------- readers, in process


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls = [0]
    original = torch_pickle.RestrictedUnpickler.load

    def counting(self):
        calls[0] += 1
        return original(self)

    monkeypatch.setattr(torch_pickle.RestrictedUnpickler, "load", counting)
    return calls


@pytest.mark.parametrize("depth", [1, 2, MAX_NESTED_STREAMS - 1])  # + 1 for the storage stream
def test_nested_streams_are_read_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, depth: int) -> None:
    values = np.arange(6, dtype=np.float32)
    innermost = {"w": tensor(_Call(LOAD_FROM_BYTES, (_legacy_storage_bytes(values),)), (2, 3), (3, 1))}
    path = tmp_path / "nested.pkl"
    path.write_bytes(dumps({"G_ema": _Call(LOAD_FROM_BYTES, (nested_streams(depth, innermost),))}))
    calls = _count_loads(monkeypatch)
    result = load_torch_file(path)
    np.testing.assert_array_equal(result["G_ema"]["w"], values.reshape(2, 3))
    # the file's pickle, then 5 pickles (magic, version, sys_info, main, keys) per stream, each read once
    assert calls[0] == 1 + 5 * (depth + 1)


def test_streams_nested_too_deep_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "nested.pkl"
    path.write_bytes(dumps({"G_ema": _Call(LOAD_FROM_BYTES, (nested_streams(MAX_NESTED_STREAMS + 1, {}),))}))
    with pytest.raises(CheckpointFormatError, match=f"nest more than {MAX_NESTED_STREAMS} deep"):
        load_torch_file(path)


def test_legacy_stream_tensors_checked_before_data(tmp_path: Path) -> None:
    """Tensors of a legacy stream are checked against the declared storage size in the one pass."""
    storage = Pid(("storage", _Global("torch", "FloatStorage"), "0", "cpu", 4, None))
    path = tmp_path / "legacy.pt"
    path.write_bytes(legacy_stream({"w": tensor(storage, (3,), (2,))}, [("0", 4, bytes(16))]))
    with pytest.raises(CheckpointFormatError, match="reaches past its storage of 4 elements"):
        load_torch_file(path)
    path.write_bytes(legacy_stream({"w": tensor(storage, (2,), (2,), offset=1)},
                                   [("0", 4, np.arange(4, dtype="<f4").tobytes())]))
    np.testing.assert_array_equal(load_torch_file(path)["w"], [1.0, 3.0])


def test_max_alloc_is_an_option(tmp_path: Path) -> None:
    """The allocation limit is checked before allocating, and callers can raise it."""
    storage = _Call(LOAD_FROM_BYTES, (_legacy_storage_bytes(np.full(1, 7, np.float32)),))
    path = tmp_path / "expanded.pkl"
    path.write_bytes(dumps({"w": tensor(storage, (1 << 20,), (0,))}, 2))  # 4 MiB from 1 float
    with pytest.raises(AllocationLimitError, match=r"4\.0 MiB, more than the reader's memory limit of 1\.0 MiB"):
        load_torch_file(path, max_alloc=1 << 20)
    result = load_torch_file(path, max_alloc=8 << 20)
    assert result["w"].shape == (1 << 20,) and np.all(result["w"] == 7)
    assert torch_pickle.default_max_alloc(10) == 256 << 20
    assert torch_pickle.default_max_alloc(1 << 30) == 4 << 30


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
def test_max_alloc_torch_reader(tmp_path: Path) -> None:
    path = torch_zip(tmp_path / "expanded.pt", dumps({"g": {"w": tensor(zip_storage("0", 1), (1 << 20,), (0,))}}, 2),
                     {"0": np.float32(3).tobytes()})
    for reader in BOTH:
        with pytest.raises(AllocationLimitError, match="memory limit"):
            load_rosinality_pt(path, reader=reader, max_alloc=1 << 20)
        assert np.all(load_rosinality_pt(path, reader=reader, max_alloc=8 << 20)["g"]["w"] == 3)


def test_deflate_bomb_refused_before_inflating(tmp_path: Path) -> None:
    """Declared sizes are checked before decompressing (the builtin reader here; the CLI test covers torch)."""
    path = deflate_bomb(tmp_path, tmp_path / "marker")
    with pytest.raises(AllocationLimitError, match=r"storage '0' would need 1\.0 GiB"):
        load_torch_file(path)


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("reader", BOTH)
def test_corrupt_storage_is_refused_by_both_readers(tmp_path: Path, reader: str) -> None:
    path = crc_flip(tmp_path, tmp_path / "marker")
    with pytest.raises(CheckpointFormatError, match="Bad CRC-32"):
        load_rosinality_pt(path, reader=reader)


def test_repeated_containers_are_charged(tmp_path: Path) -> None:
    """Allow-listed constructors copying one memoized container again and again hit the limit."""
    items = list(range(100_000))
    body = (pickle.GLOBAL + b"builtins\nset\n" + pickle.BINPUT + b"\xf0" + pickle.POP
            + pickle.dumps(items, protocol=3)[2:-1] + pickle.BINPUT + b"\xf1" + pickle.POP + pickle.EMPTY_LIST
            + pickle.MARK + (pickle.BINGET + b"\xf0" + pickle.BINGET + b"\xf1" + pickle.TUPLE1 + pickle.REDUCE) * 1000
            + pickle.APPENDS)
    path = tmp_path / "sets.pkl"
    path.write_bytes(b"\x80\x03" + body + pickle.STOP)
    with pytest.raises(AllocationLimitError, match="a set would need"):
        load_torch_file(path)


def test_weights_only_advice_is_not_passed_on() -> None:
    text = ("Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument "
            "in `torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will "
            "likely succeed, but it can result in arbitrary code execution. Do it only if you got the file from a "
            "trusted source.\nPlease file an issue with the following so that we can make `weights_only=True` "
            "compatible with your use case: WeightsUnpickler error: \n\nUnsupported operand 130\n\nCheck the "
            "documentation of torch.load to learn more about types accepted by default with weights_only "
            "https://pytorch.org/docs/stable/generated/torch.load.html.")
    assert _torch_message(RuntimeError(text)) == "Unsupported operand 130"
    assert "False" not in _torch_message(RuntimeError("retry with weights_only=False"))


def test_pickle_operations_are_charged(tmp_path: Path) -> None:
    """Objects the opcodes build themselves (here 100000 empty dicts from 200 KB) count against the limit."""
    path = tmp_path / "dicts.pkl"
    path.write_bytes(b"\x80\x03" + pickle.EMPTY_LIST + (pickle.EMPTY_DICT + pickle.APPEND) * 100_000 + pickle.STOP)
    with pytest.raises(AllocationLimitError, match="the objects built by the pickle's operations"):
        load_torch_file(path, max_alloc=8 << 20)  # 200000 operations x 128 bytes > 8 MiB
    assert len(load_torch_file(path, max_alloc=64 << 20)) == 100_000


def test_zip_member_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = torch_zip(tmp_path / "many.pt", dumps({"g": {}}, 2), {str(i): b"" for i in range(20)})
    monkeypatch.setattr(torch_pickle, "MAX_ZIP_MEMBERS", 10)
    for read in (load_torch_file, torch_pickle.check_zip_archive):
        with pytest.raises(CheckpointFormatError, match="lists 23 members, more than 10"):
            read(path)
