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
  Needs torch; reads ``torch.save`` files (zip or legacy stream) only. Zip
  archives are checked first (every member's CRC-32, which torch skips, and
  declared sizes against the memory limit), and tensors are charged to the
  limit before they are copied to numpy.
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
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .torch_pickle import (MAX_NESTING, SAFE_GLOBALS, AllocationBudget, CheckpointFormatError,
                           ReadOnlyType, UnsafePickleError, charge_allocation, check_zip_archive, default_max_alloc,
                           describe, describe_keys, is_torch_save_file, load_torch_file, sniff_container)

__all__ = ["READERS", "ROSINALITY_NETWORK_KEYS", "load_rosinality_pt"]

READERS = ("auto", "torch", "builtin")

ROSINALITY_NETWORK_KEYS = ("g", "g_ema", "d")


class _Namespace(dict, metaclass=ReadOnlyType):
    """Stand-in for ``argparse.Namespace``: its attributes become dict items."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError("argparse.Namespace state must be a dict")
        charge_allocation(64 * len(state), "argparse.Namespace state")
        self.update(state)


_ROSINALITY_GLOBALS = {("argparse", "Namespace"): _Namespace}

#: Most items (tensors, values, dicts) the converted entries of a torch-read file may hold.
MAX_STATE_ITEMS = 100_000


def _torch_to_numpy(value: Any, budget: AllocationBudget, depth: int = 0, active: frozenset = frozenset(),
                    visits: list[int] | None = None) -> Any:
    """torch tensors -> C-contiguous numpy arrays (bfloat16 widened to float32, as the builtin reader).

    Each copy is charged to ``budget`` first (a zero-stride tensor can claim any size);
    dicts nested deeper than ``MAX_NESTING``, containing themselves or expanding (through
    shared dicts) to more than :data:`MAX_STATE_ITEMS` items are refused.
    """
    import torch

    visits = [0] if visits is None else visits
    visits[0] += 1
    if visits[0] > MAX_STATE_ITEMS:
        raise CheckpointFormatError(f"{budget.source}: the state dicts expand to more than {MAX_STATE_ITEMS} items "
                                    "(a shared dict counts once per reference); a StyleGAN2 checkpoint has a few "
                                    "thousand")
    if depth > MAX_NESTING:
        raise CheckpointFormatError(f"{budget.source}: containers nest more than {MAX_NESTING} levels deep")
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu()
        itemsize = 4 if tensor.dtype == torch.bfloat16 else tensor.element_size()
        budget.charge(tensor.numel() * itemsize, f"a tensor of size {tuple(tensor.shape)}")
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        return np.array(tensor.numpy(), copy=True, order="C")
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        if id(value) in active:
            raise CheckpointFormatError(f"{budget.source}: a dict contains itself (self-referential structure)")
        inner = active | {id(value)}
        return {key: _torch_to_numpy(item, budget, depth + 1, inner, visits) for key, item in dict.items(value)}
    return value


# torch's advice to retry with weights_only=False (which would run code from the file) is not passed on
_TORCH_ADVICE = (
    re.compile(r"Weights only load failed\.?"),
    re.compile(r"This file can still be loaded.*?(?=WeightsUnpickler error:|$)", re.S),
    re.compile(r"In PyTorch 2\.6, we changed.*?trusted source\.", re.S),
    re.compile(r"Please file an issue with the following.*?use case:", re.S),
    re.compile(r"\(?[12]\)\s*Alternatively.*?error message\.", re.S),
    re.compile(r"Check the documentation of torch\.load.*?torch\.load\.html\.", re.S),
    re.compile(r"Exception raised from .*", re.S),
    re.compile(r"WeightsUnpickler error:"),
)


def _torch_message(exc: BaseException) -> str:
    """One line from a torch.load error, without torch's hint to load with weights_only=False."""
    text = str(exc)
    for pattern in _TORCH_ADVICE:
        text = pattern.sub(" ", text)
    text = " ".join(text.replace("\033[1m", "").replace("\033[0m", "").split())
    if "weights_only" in text and "False" in text:
        text = "torch.load(weights_only=True) refused the file"
    return text[:300] or type(exc).__name__


_TORCH_ERRORS = (RuntimeError, EOFError, OSError, ValueError, TypeError, OverflowError, MemoryError,
                 RecursionError, AttributeError, KeyError, IndexError, NotImplementedError)


def _load_with_torch(path: Path, source: str, max_alloc: int | None = None) -> Any:
    """``torch.load(weights_only=True)`` after checking the zip, its errors turned into this module's."""
    with open(path, "rb") as file:
        container = sniff_container(file.read(16))
    if container not in ("zip", "legacy"):
        raise CheckpointFormatError(
            f"{source}: not a torch.save file (zip or legacy stream); use reader='builtin' for plain pickles"
        )
    size = path.stat().st_size
    budget = AllocationBudget(default_max_alloc(size) if max_alloc is None else max_alloc, source)
    if container == "zip":
        check_zip_archive(path, budget)  # CRC-32 of every member, declared sizes vs the limit
    import torch  # after the checks: importing torch takes seconds

    try:
        # torch warns (on stderr) about e.g. unusual pickle protocols; our errors say what matters
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")
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
                                    f"{_torch_message(exc)}") from None
    except _TORCH_ERRORS as exc:
        raise CheckpointFormatError(f"{source}: cannot read it as a torch.save file; the file is truncated, "
                                    f"corrupt or in another format ({type(exc).__name__}: "
                                    f"{_torch_message(exc)})") from None
    if not isinstance(data, dict):
        return data
    # only what load_rosinality_pt returns; optimizer states stay torch tensors and are dropped
    try:
        visits = [0]
        return {key: _torch_to_numpy(value, budget, visits=visits)
                if key in (*ROSINALITY_NETWORK_KEYS, "latent_avg", "args") else value
                for key, value in dict.items(data)}
    except CheckpointFormatError:
        raise
    except _TORCH_ERRORS as exc:
        raise CheckpointFormatError(f"{source}: cannot convert its tensors ({type(exc).__name__}: "
                                    f"{_torch_message(exc)})") from None


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
    for name, tensor in dict.items(value):
        if not isinstance(name, str):
            raise CheckpointFormatError(f"{source}: '{key}' has a non-string tensor name {describe(name)}")
        if not isinstance(tensor, np.ndarray):
            raise CheckpointFormatError(
                f"{source}: '{key}.{name}' should be a tensor, got {type(tensor).__name__}"
            )
    return dict(dict.items(value))


def load_rosinality_pt(path: str | Path, reader: str = "auto", max_alloc: int | None = None) -> dict[str, Any]:
    """Load a rosinality checkpoint without executing code from it.

    Args:
      path: the ``.pt`` file.
      reader: 'auto', 'torch' or 'builtin' (see the module docstring).
      max_alloc: the most bytes the file may make the reader allocate (default
        :func:`~gancomp_jax.io.torch_pickle.default_max_alloc` of the file size).

    Returns ``{'g', 'g_ema', 'd'}`` -> ``dict[str, np.ndarray]`` (None when the
    file lacks that network), ``'latent_avg'`` -> ``np.ndarray`` or None,
    ``'args'`` -> plain dict or None, and ``'reader'`` -> the reader used.
    Optimizer states are skipped.
    """
    source = str(path)
    used = _pick_reader(reader, Path(path))
    if used == "torch":
        data = _load_with_torch(Path(path), source, max_alloc)
    else:
        data = load_torch_file(path, extra_globals=_ROSINALITY_GLOBALS, max_alloc=max_alloc)
    if not isinstance(data, dict):
        raise CheckpointFormatError(
            f"{source}: expected a dict checkpoint, got {type(data).__name__}"
        )
    if not any(data.get(key) is not None for key in ROSINALITY_NETWORK_KEYS):
        raise CheckpointFormatError(
            f"{source}: no rosinality networks found (expected 'g', 'g_ema' or 'd'; "
            f"keys: {describe_keys(data)})"
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
    result["args"] = dict(dict.items(args)) if isinstance(args, dict) else args
    result["reader"] = used
    return result
