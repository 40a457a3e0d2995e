"""Read BigGAN-PyTorch weight files (``G.pth``, ``G_ema.pth``, ``D.pth``, ``state_dict.pth``)
with the restricted reader of :mod:`gancomp_jax.io.torch_pickle` (torch is not imported,
nothing from the file is executed; unsafe globals are refused).

``G*.pth`` / ``D*.pth`` are ``torch.save(net.state_dict())``: an ``OrderedDict`` of tensors.
``state_dict.pth`` is ``torch.save`` of the run's bookkeeping ``{'itr', 'epoch', ...,
'config': {...}}`` (plain Python values); only its ``config`` and ``itr`` are used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gancomp_jax.io.torch_pickle import CheckpointFormatError, describe, describe_keys, load_torch_file

G_KEYS = ("shared.weight", "linear.weight", "blocks.0.0.conv1.weight", "blocks.0.0.bn1.gain.weight")
D_KEYS = ("embed.weight", "linear.weight", "blocks.0.0.conv1.weight")


def network_kind(sd: Any) -> str | None:
    """'generator' / 'discriminator' when ``sd`` has BigGAN-PyTorch's keys, else None."""
    if not isinstance(sd, dict):
        return None
    if all(k in sd for k in G_KEYS):
        return "generator"
    if all(k in sd for k in D_KEYS) and "shared.weight" not in sd:
        return "discriminator"
    return None


def load_biggan_state_dict(path: str | Path, max_alloc: int | None = None) -> tuple[str, dict[str, np.ndarray]]:
    """``(kind, state dict)`` of a BigGAN-PyTorch ``G*.pth``/``D*.pth``.

    Raises CheckpointFormatError (naming the file and the key) when it is not one, or
    UnsafePickleError when the file asks for anything outside the allow-list.
    """
    data = load_torch_file(path, max_alloc=max_alloc)
    kind = network_kind(data)
    if kind is None:
        keys = describe_keys(data) if isinstance(data, dict) else describe(data)
        raise CheckpointFormatError(f"{path}: not a BigGAN-PyTorch G/D state dict (keys: {keys})")
    return kind, tensor_dict(path, data)


def tensor_dict(path: str | Path, data: dict) -> dict[str, np.ndarray]:
    """``data`` as ``{name: array}``; CheckpointFormatError naming the file and the entry when a
    name is not a string or a value is not a tensor."""
    out = {}
    for k, v in dict.items(data):
        if not isinstance(k, str):
            raise CheckpointFormatError(f"{path}: non-string tensor name {describe(k)}")
        if not isinstance(v, np.ndarray):
            raise CheckpointFormatError(f"{path}: '{k}' should be a tensor, got {type(v).__name__}")
        out[k] = v
    return out


def load_run_config(path: str | Path, max_alloc: int | None = None) -> dict[str, Any]:
    """``state_dict.pth``'s ``config`` (plain values; non-plain entries dropped) and ``itr``."""
    data = load_torch_file(path, max_alloc=max_alloc)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise CheckpointFormatError(f"{path}: not a BigGAN-PyTorch state_dict.pth (no 'config' dict)")
    cfg = {k: v for k, v in dict.items(data["config"])
           if isinstance(k, str) and (v is None or isinstance(v, (bool, int, float, str)))}
    itr = data.get("itr")
    return {"config": cfg, "itr": itr if isinstance(itr, int) else None}
