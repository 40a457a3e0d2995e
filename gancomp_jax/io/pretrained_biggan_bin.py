"""Read pytorch-pretrained-biggan's ``pytorch_model.bin`` (``torch.save(model.state_dict())`` of
its ``BigGAN``) and the ``config.json`` beside it, without executing anything: the state dict
through the restricted reader of :mod:`gancomp_jax.io.torch_pickle` (unsafe globals refused),
the JSON through :func:`gancomp_jax.io.safe_files.load_json_file` (size and depth bounded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gancomp_jax.io.biggan_pth import tensor_dict
from gancomp_jax.io.torch_pickle import CheckpointFormatError, describe, describe_keys, load_torch_file

WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
KEYS = ("embeddings.weight", "generator.gen_z.weight_orig", "generator.conv_to_rgb.weight_orig", "generator.bn.running_means")


def is_pretrained_biggan(sd: Any) -> bool:
    """Whether ``sd`` has pytorch-pretrained-biggan's state-dict names."""
    return isinstance(sd, dict) and all(k in sd for k in KEYS)


def load_state_dict(path: str | Path, max_alloc: int | None = None) -> dict[str, np.ndarray]:
    """The tensors of a ``pytorch_model.bin``; CheckpointFormatError (file, key) when it is not one,
    UnsafePickleError when it asks for anything outside the allow-list."""
    data = load_torch_file(path, max_alloc=max_alloc)
    if not is_pretrained_biggan(data):
        keys = describe_keys(data) if isinstance(data, dict) else describe(data)
        raise CheckpointFormatError(f"{path}: not a pytorch-pretrained-biggan state dict (keys: {keys})")
    return tensor_dict(path, data)


def load_config(path: str | Path) -> dict[str, Any]:
    """``config.json`` as a dict (ValueError naming the file when it is not a small JSON object)."""
    from gancomp_jax.io.safe_files import load_json_file

    return load_json_file(path, "pytorch-pretrained-biggan config", max_bytes=1 << 20, expect=dict)
