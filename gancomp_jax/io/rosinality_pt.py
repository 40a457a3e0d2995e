"""Read rosinality stylegan2-pytorch checkpoints (``.pt``) into numpy.

rosinality's ``train.py`` writes ``torch.save({...})`` (zip format in torch
>= 1.6, the legacy stream before) of a dict with the state dicts ``g``,
``g_ema`` and ``d`` (flat ``name -> tensor`` mappings, e.g.
``convs.0.conv.weight``), optionally ``latent_avg`` (a tensor), the optimizer
states ``g_optim`` / ``d_optim`` and ``args`` (an ``argparse.Namespace``).
Pruned checkpoints (CAGC and friends) keep the same layout with narrower
tensors.

Two readers give bit-identical arrays (tested); neither executes code from the file:

* ``torch``: ``torch.load(path, map_location='cpu', weights_only=True)``, with
  ``argparse.Namespace`` (rosinality's ``args``) added to torch's safe globals.
  Needs torch; reads ``torch.save`` files (zip or legacy stream) only.
* ``builtin``: :func:`~gancomp_jax.io.torch_pickle.load_torch_file`, this
  project's allow-list unpickler; needs no torch and also reads plain pickles.

``auto`` (the default) uses ``torch`` when torch is installed and the file is a
``torch.save`` file, ``builtin`` otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from .torch_pickle import (SAFE_GLOBALS, CheckpointFormatError, ReadOnlyType, UnsafePickleError, is_torch_save_file,
                           load_torch_file)

__all__ = ["READERS", "ROSINALITY_NETWORK_KEYS", "load_rosinality_pt"]

READERS = ("auto", "torch", "builtin")

ROSINALITY_NETWORK_KEYS = ("g", "g_ema", "d")


class _Namespace(dict, metaclass=ReadOnlyType):
    """Stand-in for ``argparse.Namespace``: its attributes become dict items."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError("argparse.Namespace state must be a dict")
        self.update(state)


_ROSINALITY_GLOBALS = {("argparse", "Namespace"): _Namespace}


def _torch_to_numpy(value: Any) -> Any:
    """torch tensors -> C-contiguous numpy arrays (bfloat16 widened to float32, as the builtin reader)."""
    import torch

    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return np.array(tensor.numpy(), copy=True, order="C")
    if isinstance(value, dict):
        return {key: _torch_to_numpy(item) for key, item in value.items()}
    if isinstance(value, argparse.Namespace):
        return _torch_to_numpy(vars(value))
    return value


def _load_with_torch(path: Path, source: str) -> Any:
    """``torch.load(weights_only=True)``, its errors turned into this module's."""
    import torch

    if not is_torch_save_file(path):
        raise CheckpointFormatError(
            f"{source}: not a torch.save file (zip or legacy stream); use reader='builtin' for plain pickles"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL (\S+)", str(exc))
        if refused:
            name = refused.group(1)
            hint = ("; the built-in reader allows it (reader='builtin', --reader builtin)"
                    if tuple(name.rsplit(".", 1)) in {**SAFE_GLOBALS, **_ROSINALITY_GLOBALS} else "")
            raise UnsafePickleError(
                f"{source}: torch.load(weights_only=True) refused global '{name}'; "
                f"the file asks for code outside torch's allow-list and was not loaded{hint}"
            ) from None
        raise CheckpointFormatError(f"{source}: torch.load(weights_only=True) cannot read it: "
                                    f"{' '.join(str(exc).split())[:300]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointFormatError(f"{source}: cannot read it as a torch.save file; the file is truncated, "
                                    f"corrupt or in another format ({type(exc).__name__}: "
                                    f"{' '.join(str(exc).split())[:300]})") from None
    if not isinstance(data, dict):
        return data
    # only what load_rosinality_pt returns; optimizer states stay torch tensors and are dropped
    return {key: _torch_to_numpy(value) if key in (*ROSINALITY_NETWORK_KEYS, "latent_avg", "args") else value
            for key, value in data.items()}


def _pick_reader(reader: str, path: Path) -> str:
    if reader not in READERS:
        raise ValueError(f"unknown reader {reader!r}: choose from {', '.join(READERS)}")
    has_torch = importlib.util.find_spec("torch") is not None
    if reader == "torch" and not has_torch:
        raise ValueError("reader='torch' needs PyTorch installed (pip install torch); "
                         "reader='builtin' needs no torch")
    if reader == "auto":
        return "torch" if has_torch and is_torch_save_file(path) else "builtin"
    return reader


def _state_dict(value: Any, key: str, source: str) -> dict[str, np.ndarray]:
    if not isinstance(value, dict):
        raise CheckpointFormatError(
            f"{source}: '{key}' should be a state dict, got {type(value).__name__}"
        )
    for name, tensor in value.items():
        if not isinstance(tensor, np.ndarray):
            raise CheckpointFormatError(
                f"{source}: '{key}.{name}' should be a tensor, got {type(tensor).__name__}"
            )
    return {str(name): tensor for name, tensor in value.items()}


def load_rosinality_pt(path: str | Path, reader: str = "auto") -> dict[str, Any]:
    """Load a rosinality checkpoint without executing code from it.

    Args:
      path: the ``.pt`` file.
      reader: 'auto', 'torch' or 'builtin' (see the module docstring).

    Returns ``{'g', 'g_ema', 'd'}`` -> ``dict[str, np.ndarray]`` (None when the
    file lacks that network), ``'latent_avg'`` -> ``np.ndarray`` or None,
    ``'args'`` -> plain dict or None, and ``'reader'`` -> the reader used.
    Optimizer states are skipped.
    """
    source = str(path)
    used = _pick_reader(reader, Path(path))
    if used == "torch":
        data = _load_with_torch(Path(path), source)
    else:
        data = load_torch_file(path, extra_globals=_ROSINALITY_GLOBALS)
    if not isinstance(data, dict):
        raise CheckpointFormatError(
            f"{source}: expected a dict checkpoint, got {type(data).__name__}"
        )
    if not any(data.get(key) is not None for key in ROSINALITY_NETWORK_KEYS):
        raise CheckpointFormatError(
            f"{source}: no rosinality networks found (expected 'g', 'g_ema' or 'd'; "
            f"keys: {sorted(map(str, data))})"
        )
    result: dict[str, Any] = {}
    for key in ROSINALITY_NETWORK_KEYS:
        value = data.get(key)
        result[key] = None if value is None else _state_dict(value, key, source)
    latent_avg = data.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, np.ndarray):
        raise CheckpointFormatError(
            f"{source}: 'latent_avg' should be a tensor, got {type(latent_avg).__name__}"
        )
    result["latent_avg"] = latent_avg
    args = data.get("args")
    result["args"] = dict(args) if isinstance(args, dict) else args
    result["reader"] = used
    return result
