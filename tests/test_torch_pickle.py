"""Restricted reading of torch files: exact arrays, clear errors, no code execution."""

from __future__ import annotations

import builtins
import os
import pickle
import pickletools
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gancomp_jax.io.torch_pickle import (  # noqa: E402
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    CheckpointFormatError,
    Refused,
    TorchDType,
    UnsafePickleError,
    load_torch_file,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
WRITERS = ("pickle2", "pickle_highest", "zip", "legacy")


def write(obj: object, path: Path, writer: str) -> Path:
    """Serialise ``obj`` the way ``writer`` names: plain pickle or torch.save (zip/legacy)."""
    if writer == "pickle2":
        path.write_bytes(pickle.dumps(obj, protocol=2))
    elif writer == "pickle_highest":
        path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=(writer == "zip"))
    return path


def expected_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy()  # widening bfloat16 -> float32 is exact
    return tensor.numpy()


def assert_bit_exact(actual: object, tensor: torch.Tensor) -> None:
    expected = expected_numpy(tensor)
    assert isinstance(actual, np.ndarray)
    assert type(actual) is np.ndarray
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == np.ascontiguousarray(expected).tobytes()


def sample_tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(6, 5, generator=gen)
    return {
        "f32_4d": torch.randn(2, 3, 4, 5, generator=gen),
        "f16_1d": torch.randn(7, generator=gen).half(),
        "bf16_2d": torch.randn(3, 4, generator=gen).bfloat16(),
        "f64": torch.randn(3, generator=gen, dtype=torch.float64),
        "i64": torch.arange(-5, 5, dtype=torch.int64),
        "i32": torch.tensor([1, -2, 3], dtype=torch.int32),
        "u8": torch.arange(0, 256, 37, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "scalar_i64": torch.tensor(-7),
        "empty": torch.zeros(0, 3),
        "transposed": shared.t(),
        "sliced": shared[1:5:2, 1:],
        "shared_base": shared,
        "expanded": torch.randn(3, 1, generator=gen).expand(3, 4),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=gen)),
    }


@pytest.mark.parametrize("writer", WRITERS)
def test_tensors_round_trip_bit_exact(tmp_path: Path, writer: str) -> None:
    tensors = sample_tensors()
    loaded = load_torch_file(write(tensors, tmp_path / "t.bin", writer))
    assert list(loaded) == list(tensors)
    for name, tensor in tensors.items():
        assert_bit_exact(loaded[name], tensor)


@pytest.mark.parametrize("writer", WRITERS)
def test_arrays_own_their_memory(tmp_path: Path, writer: str) -> None:
    tensors = sample_tensors()
    loaded = load_torch_file(write(tensors, tmp_path / "t.bin", writer))
    for name in ("transposed", "sliced", "shared_base", "bf16_2d", "scalar"):
        assert loaded[name].flags.c_contiguous and loaded[name].flags.writeable, name
    before = loaded["transposed"].copy()
    loaded["shared_base"][...] = 0  # torch views share storage; our arrays must not
    np.testing.assert_array_equal(loaded["transposed"], before)


@pytest.mark.parametrize("writer", WRITERS)
def test_containers_and_torch_objects(tmp_path: Path, writer: str) -> None:
    obj = {
        "state": OrderedDict(w=torch.ones(2)),
        "size": torch.Size([2, 3]),
        "dtype": torch.float16,
        "nested": [1, 2.5, "x", None, (True, b"raw")],
        "set": {1, 2},
        "frozen": frozenset({"a"}),
    }
    loaded = load_torch_file(write(obj, tmp_path / "c.bin", writer))
    assert isinstance(loaded["state"], OrderedDict)
    assert loaded["size"] == (2, 3) and type(loaded["size"]) is tuple
    assert loaded["dtype"] == TorchDType("float16", np.dtype("float16"))
    assert loaded["nested"] == [1, 2.5, "x", None, (True, b"raw")]
    assert loaded["set"] == {1, 2} and loaded["frozen"] == frozenset({"a"})


def test_uint16_tensor_uses_untyped_storage(tmp_path: Path) -> None:
    tensor = torch.tensor([0, 1, 65535], dtype=torch.int32).to(torch.uint16)
    for writer in WRITERS:
        loaded = load_torch_file(write({"u": tensor}, tmp_path / f"{writer}.bin", writer))
        np.testing.assert_array_equal(loaded["u"], np.array([0, 1, 65535], dtype=np.uint16))
        assert loaded["u"].dtype == np.uint16


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_numpy_values(tmp_path: Path, protocol: int) -> None:
    values = {
        "f": np.arange(12, dtype=np.float32).reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "big_endian": np.arange(3, dtype=">f8"),
        "strings": np.array(["ab", "c"]),
        "objects": np.array([1, "two", None], dtype=object),
        "f32": np.float32(1.5),
        "i64": np.int64(-3),
        "dtype": np.dtype("<i2"),
    }
    path = tmp_path / "np.pkl"
    path.write_bytes(pickle.dumps(values, protocol=protocol))
    loaded = load_torch_file(path)
    reference = pickle.loads(path.read_bytes())  # our own file: trusted
    for name in ("f", "fortran", "big_endian", "strings", "objects"):
        assert type(loaded[name]) is np.ndarray
        assert loaded[name].dtype == reference[name].dtype
        np.testing.assert_array_equal(loaded[name], values[name])
    assert loaded["f32"] == np.float32(1.5) and type(loaded["f32"]) is np.float32
    assert loaded["i64"] == -3 and type(loaded["i64"]) is np.int64
    assert loaded["dtype"] == np.dtype("<i2")


def test_legacy_stream_layout_matches_torch(tmp_path: Path) -> None:
    """Check the section layout our reader expects against what torch writes."""
    path = write({"x": torch.arange(3.0)}, tmp_path / "legacy.pt", "legacy")
    with open(path, "rb") as file:
        assert pickle.load(file) == LEGACY_MAGIC_NUMBER
        assert pickle.load(file) == LEGACY_PROTOCOL_VERSION
        assert pickle.load(file)["little_endian"] is True  # sys_info
        main = [(op.name, arg) for op, arg, _ in pickletools.genops(file)]  # not executed
        keys = pickle.load(file)
        count = int(np.frombuffer(file.read(8), dtype="<i8")[0])
        raw = file.read(12)
        assert file.read() == b""
    assert ("BINPERSID", None) in main and ("GLOBAL", "torch FloatStorage") in main
    assert len(keys) == 1 and ("BINUNICODE", keys[0]) in main  # key named by the pid
    assert count == 3
    assert raw == np.arange(3, dtype="<f4").tobytes()


# --------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_file_names_path(tmp_path: Path, writer: str, keep: float) -> None:
    path = write(sample_tensors(), tmp_path / "full.bin", writer)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointFormatError, match="truncated") as info:
        load_torch_file(truncated)
    assert str(truncated) in str(info.value)


def test_zip_with_corrupted_storage_bytes(tmp_path: Path) -> None:
    tensor = torch.randn(64)
    path = write({"w": tensor}, tmp_path / "w.pt", "zip")
    data = bytearray(path.read_bytes())
    start = data.index(tensor.numpy().tobytes())
    data[start : start + 8] = bytes(8)  # the zip CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointFormatError) as info:
        load_torch_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "content", [b"", b"hello, not a checkpoint", b"PK\x03\x04garbage", b"\x80\x04\x95"]
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointFormatError) as info:
        load_torch_file(path)
    assert str(path) in str(info.value)


def test_zip_without_data_pkl(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("foo/bar.txt", "hi")
    with pytest.raises(CheckpointFormatError, match="data.pkl"):
        load_torch_file(path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archive_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(CheckpointFormatError, match="TorchScript"):
        load_torch_file(path)


def test_missing_file_is_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_torch_file(tmp_path / "nope.pt")


# --------------------------------------------------------------------------- malicious files


class _Exploit:
    """Pickles as a call of ``func(*args)``; unpickling it with pickle.load would run it."""

    def __init__(self, func: object, args: tuple) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple:
        return self.func, self.args


def _exploits(marker: Path) -> dict[str, _Exploit]:
    return {
        "os.system": _Exploit(os.system, (f"touch {marker}",)),
        "subprocess.Popen": _Exploit(subprocess.Popen, (["touch", str(marker)],)),
        "builtins.eval": _Exploit(
            builtins.eval, (f"open({str(marker)!r}, 'w').close()",)
        ),
    }


_GLOBAL_NAMES = {
    "os.system": ("os.system", "posix.system"),
    "subprocess.Popen": ("subprocess.Popen",),
    "builtins.eval": ("builtins.eval",),
}


def _assert_refused(path: Path, marker: Path, kind: str) -> None:
    with pytest.raises(UnsafePickleError) as info:
        load_torch_file(path)
    message = str(info.value)
    assert any(f"'{name}'" in message for name in _GLOBAL_NAMES[kind]), message
    assert str(path) in message
    assert not marker.exists()


@pytest.mark.parametrize("kind", sorted(_GLOBAL_NAMES))
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_plain_pickle_is_refused(tmp_path: Path, kind: str, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    payload = {"w": torch.ones(2), "evil": _exploits(marker)[kind]}
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    _assert_refused(path, marker, kind)


@pytest.mark.parametrize("kind", sorted(_GLOBAL_NAMES))
@pytest.mark.parametrize("writer", ["zip", "legacy"])
def test_malicious_object_inside_torch_save(tmp_path: Path, kind: str, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = OrderedDict(w=torch.randn(3), nested={"evil": [_exploits(marker)[kind]]})
    path = write(payload, tmp_path / "evil.pt", writer)
    _assert_refused(path, marker, kind)


def _legacy_stream(main_object: object, keys: list[str]) -> bytes:
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {}}
    parts = [LEGACY_MAGIC_NUMBER, LEGACY_PROTOCOL_VERSION, sys_info, main_object, keys]
    return b"".join(pickle.dumps(part, protocol=2) for part in parts)


def test_malicious_object_inside_storage_bytes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil_bytes = _legacy_stream(_exploits(marker)["os.system"], [])
    storage = _Exploit(torch.storage._load_from_bytes, (evil_bytes,))
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"tensor": storage}, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"'(os|posix)\.system'.*embedded storage"):
        load_torch_file(path)
    assert not marker.exists()


def test_tensor_view_past_storage_is_refused(tmp_path: Path) -> None:
    storage = torch.arange(4.0)._typed_storage()
    rebuild = torch._utils._rebuild_tensor_v2
    overflow = _Exploit(rebuild, (storage, 0, (10,), (1000,), False, OrderedDict()))
    path = tmp_path / "oob.pkl"
    path.write_bytes(pickle.dumps(overflow))
    with pytest.raises(CheckpointFormatError, match="past its storage"):
        load_torch_file(path)


def test_forged_numpy_dtype_is_refused(tmp_path: Path) -> None:
    """numpy's dtype.__setstate__ accepts overlapping object/int fields (pointer forging)."""
    fields = {"a": (np.dtype("O"), 0), "b": (np.dtype("<i8"), 0)}
    forged = (np.dtype, ("V16", False, True), (3, "|", None, ("a", "b"), fields, 16, 1, 63))
    path = tmp_path / "dtype.pkl"

    class ForgedDType:
        def __reduce__(self) -> tuple:
            return forged

    path.write_bytes(pickle.dumps(ForgedDType(), protocol=2))
    with pytest.raises(CheckpointFormatError, match="structured numpy dtype"):
        load_torch_file(path)


@pytest.mark.parametrize(
    "target, state",
    [
        # BUILD on an allow-listed function: would change its defaults for later loads
        (b"ctorch._utils\n_rebuild_tensor_v2\n", b"(N(dV__defaults__\n(I01\ntstb."),
        (b"ctorch.storage\n_load_from_bytes\n", b"(N(dV__defaults__\n(I01\ntstb."),
        # BUILD on a shared dtype descriptor: would make later float32 tensors misread
        (b"ctorch\nfloat32\n", b"(N(dVname\nVfloat64\nstb."),
        (b"ctorch\nfloat32\n", b"(dVname\nVfloat64\nsb."),
        # BUILD on a stand-in class
        (b"cnumpy\ndtype\n", b"(N(dVto_dtype\ncbuiltins\nset\nstb."),
        (b"ccollections\nOrderedDict\n", b"(N(dVfoo\ncbuiltins\nset\nstb."),
    ],
)
def test_pickle_cannot_patch_allow_listed_objects(
    tmp_path: Path, target: bytes, state: bytes
) -> None:
    """Pickle's BUILD opcode sets attributes on whatever find_class returned; nothing may change."""
    path = tmp_path / "patch.pkl"
    path.write_bytes(target + state)
    with pytest.raises(CheckpointFormatError):
        load_torch_file(path)
    good = write({"w": torch.arange(4.0)}, tmp_path / "good.pkl", "pickle_highest")
    loaded = load_torch_file(good)["w"]
    assert loaded.dtype == np.float32 and loaded.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_refused_entries_and_extra_globals(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(OrderedDict(a=1)))
    table = {("collections", "OrderedDict"): Refused("ordered dicts are banned here")}
    with pytest.raises(CheckpointFormatError, match="ordered dicts are banned here"):
        load_torch_file(path, extra_globals=table)
    assert load_torch_file(path, extra_globals={("collections", "OrderedDict"): dict}) == {"a": 1}

    class Mutable(dict):
        pass

    with pytest.raises(TypeError, match="ReadOnlyType"):  # BUILD could patch such a class
        load_torch_file(path, extra_globals={("collections", "OrderedDict"): Mutable})


def test_loader_does_not_import_torch(tmp_path: Path) -> None:
    path = write(sample_tensors(), tmp_path / "t.pt", "zip")
    legacy = write(sample_tensors(), tmp_path / "t_legacy.pt", "legacy")
    pickled = write(sample_tensors(), tmp_path / "t.pkl", "pickle_highest")
    code = (
        "import sys\n"
        "from gancomp_jax.io.torch_pickle import load_torch_file\n"
        f"for p in {[str(path), str(legacy), str(pickled)]!r}:\n"
        "    load_torch_file(p)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
