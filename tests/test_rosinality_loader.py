"""rosinality stylegan2-pytorch checkpoints: the shared fixture and synthetic variants.

Every behaviour is checked for both readers: torch.load(weights_only=True) and the built-in one.
"""

from __future__ import annotations

import argparse
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gancomp_jax.io.rosinality_pt import load_rosinality_pt  # noqa: E402
from gancomp_jax.io.torch_pickle import CheckpointFormatError, UnsafePickleError  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROS16 = FIXTURES / "rosinality_ros16.pt"
READERS = pytest.mark.parametrize("reader", ["torch", "builtin"])


def assert_same_tensors(actual: dict[str, np.ndarray], expected: dict[str, torch.Tensor]) -> None:
    assert list(actual) == list(expected)
    for name, tensor in expected.items():
        ref = tensor.numpy()
        value = actual[name]
        assert type(value) is np.ndarray, name
        assert value.dtype == ref.dtype and value.shape == ref.shape, name
        assert value.tobytes() == np.ascontiguousarray(ref).tobytes(), name


@pytest.mark.skipif(not ROS16.exists(), reason=f"fixture {ROS16} not available")
@READERS
def test_fixture_matches_torch_load_bit_exact(reader: str) -> None:
    expected = torch.load(ROS16, map_location="cpu", weights_only=True)
    loaded = load_rosinality_pt(ROS16, reader=reader)

    assert set(expected) == {"g", "g_ema", "d", "latent_avg"}
    for key in ("g", "g_ema", "d"):
        assert_same_tensors(loaded[key], expected[key])
    assert loaded["latent_avg"].tobytes() == expected["latent_avg"].numpy().tobytes()
    assert loaded["latent_avg"].shape == (32,)
    assert loaded["g"]["convs.0.conv.weight"].shape == (1, 40, 48, 3, 3)
    assert loaded["args"] is None
    assert loaded["reader"] == reader


def _fake_checkpoint() -> dict:
    gen = torch.Generator().manual_seed(0)
    g = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    d = torch.nn.Linear(2, 1)
    optim = torch.optim.Adam(g.parameters(), lr=0.002, betas=(0.0, 0.99))
    g(torch.randn(5, 4, generator=gen)).sum().backward()
    optim.step()
    args = argparse.Namespace(size=16, channel_multiplier=2, r1=10.0, ckpt=None, device="cuda")
    return {
        "g": g.state_dict(),
        "d": d.state_dict(),
        "g_ema": g.state_dict(),
        "g_optim": optim.state_dict(),
        "d_optim": torch.optim.Adam(d.parameters()).state_dict(),
        "args": args,
        "latent_avg": torch.randn(8, generator=gen),
    }


@READERS
@pytest.mark.parametrize("zip_format", [True, False])
def test_namespace_and_optimizer_state(tmp_path: Path, zip_format: bool, reader: str) -> None:
    checkpoint = _fake_checkpoint()
    path = tmp_path / "050000.pt"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)

    loaded = load_rosinality_pt(path, reader=reader)

    assert set(loaded) == {"g", "g_ema", "d", "latent_avg", "args", "reader"}
    for key in ("g", "g_ema", "d"):
        assert_same_tensors(loaded[key], checkpoint[key])
    assert type(loaded["args"]) is dict
    assert loaded["args"] == vars(checkpoint["args"])
    np.testing.assert_array_equal(loaded["latent_avg"], checkpoint["latent_avg"].numpy())


@READERS
def test_g_ema_only(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "g_ema.pt"
    torch.save({"g_ema": {"style.1.weight": torch.ones(2, 2)}}, path)
    loaded = load_rosinality_pt(path, reader=reader)
    assert loaded["g"] is None and loaded["d"] is None and loaded["latent_avg"] is None
    np.testing.assert_array_equal(loaded["g_ema"]["style.1.weight"], np.ones((2, 2), np.float32))


@READERS
def test_no_networks_is_a_clear_error(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "empty.pt"
    torch.save({"latent_avg": torch.zeros(2), "args": argparse.Namespace(size=8)}, path)
    with pytest.raises(CheckpointFormatError, match="no rosinality networks found") as info:
        load_rosinality_pt(path, reader=reader)
    assert str(path) in str(info.value)


@READERS
def test_non_tensor_entry_is_a_clear_error(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "bad.pt"
    torch.save({"g": {"style.1.weight": [1, 2]}}, path)
    with pytest.raises(CheckpointFormatError, match=r"'g\.style\.1\.weight' should be a tensor"):
        load_rosinality_pt(path, reader=reader)


@READERS
def test_malicious_checkpoint_is_refused(tmp_path: Path, reader: str) -> None:
    class Exploit:
        def __reduce__(self) -> tuple:
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    path = tmp_path / "evil.pt"
    torch.save({"g": {"w": torch.ones(1)}, "args": Exploit()}, path)
    with pytest.raises(UnsafePickleError, match=r"'(os|posix)\.system'") as info:
        load_rosinality_pt(path, reader=reader)
    assert str(path) in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_numpy_in_args_is_refused_by_torch_and_read_by_builtin(tmp_path: Path) -> None:
    path = tmp_path / "np_args.pt"
    torch.save({"g_ema": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=np.float64(0.002))}, path)
    with pytest.raises(UnsafePickleError, match=r"refused global 'numpy\.[\w.]+'.*reader='builtin'"):
        load_rosinality_pt(path, reader="torch")
    assert load_rosinality_pt(path, reader="builtin")["args"] == {"lr": 0.002}


@READERS
def test_truncated_checkpoint(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "full.pt"
    torch.save(_fake_checkpoint(), path)
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointFormatError, match="cut.pt"):
        load_rosinality_pt(truncated, reader=reader)


def test_plain_pickle_of_state_dicts(tmp_path: Path) -> None:
    checkpoint = {"g_ema": _fake_checkpoint()["g_ema"]}
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(checkpoint))
    loaded = load_rosinality_pt(path)
    assert loaded["reader"] == "builtin"  # auto: torch.load cannot read plain pickles
    assert_same_tensors(loaded["g_ema"], checkpoint["g_ema"])
    with pytest.raises(CheckpointFormatError, match="not a torch.save file"):
        load_rosinality_pt(path, reader="torch")


@pytest.mark.parametrize("zip_format", [True, False])
def test_auto_reader_prefers_torch_load(tmp_path: Path, zip_format: bool) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(_fake_checkpoint(), path, _use_new_zipfile_serialization=zip_format)
    assert load_rosinality_pt(path)["reader"] == "torch"


def test_unknown_reader(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save(_fake_checkpoint(), path)
    with pytest.raises(ValueError, match="unknown reader 'pickle'"):
        load_rosinality_pt(path, reader="pickle")


def test_without_torch_auto_uses_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    path = tmp_path / "ckpt.pt"
    torch.save(_fake_checkpoint(), path)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    assert load_rosinality_pt(path)["reader"] == "builtin"
    with pytest.raises(ValueError, match="reader='torch' needs PyTorch installed"):
        load_rosinality_pt(path, reader="torch")
