"""Read rosinality stylegan2-pytorch checkpoints (``.pt``) into numpy.

rosinality's ``train.py`` writes ``torch.save({...})`` (zip format in torch
>= 1.6, the legacy stream before) of a dict with the state dicts ``g``,
``g_ema`` and ``d`` (flat ``name -> tensor`` mappings, e.g.
``convs.0.conv.weight``), optionally ``latent_avg`` (a tensor), the optimizer
states ``g_optim`` / ``d_optim`` and ``args`` (an ``argparse.Namespace``).
Pruned checkpoints (CAGC and friends) keep the same layout with narrower
tensors. The file is read with :func:`~gancomp_jax.io.torch_pickle.load_torch_file`,
so nothing in it is executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .torch_pickle import CheckpointFormatError, ReadOnlyType, load_torch_file

__all__ = ["ROSINALITY_NETWORK_KEYS", "load_rosinality_pt"]

ROSINALITY_NETWORK_KEYS = ("g", "g_ema", "d")


class _Namespace(dict, metaclass=ReadOnlyType):
    """Stand-in for ``argparse.Namespace``: its attributes become dict items."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError("argparse.Namespace state must be a dict")
        self.update(state)


_ROSINALITY_GLOBALS = {("argparse", "Namespace"): _Namespace}


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


def load_rosinality_pt(path: str | Path) -> dict[str, Any]:
    """Load a rosinality checkpoint without executing code from it.

    Returns ``{'g', 'g_ema', 'd'}`` -> ``dict[str, np.ndarray]`` (None when the
    file lacks that network), ``'latent_avg'`` -> ``np.ndarray`` or None, and
    ``'args'`` -> plain dict or None. Optimizer states are skipped.
    """
    source = str(path)
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
    return result
