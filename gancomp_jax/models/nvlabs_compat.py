"""Translate between NVlabs stylegan2-ada-pytorch ``state_dict``s and our variable trees.

NVlabs names map one to one onto our module paths (``synthesis.b8.conv0.affine.weight`` ↔
``params/synthesis/b8/conv0/affine/weight``); only layouts differ:

=========================  ==========================  ==========================
tensor                      NVlabs (torch)              ours (NHWC JAX)
=========================  ==========================  ==========================
dense weight                ``[out, in]``               ``[in, out]``
conv weight                 ``[O, I, kh, kw]``          ``[kh, kw, I, O]``
``synthesis.b4.const``      ``[C, 4, 4]``               ``[4, 4, C]``
``noise_const``, ``w_avg``  buffers                     collection ``buffers``
``resample_filter``         buffers                     recomputed from [1, 3, 3, 1]
=========================  ==========================  ==========================
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from flax import traverse_util

from gancomp_jax.ops import setup_filter

BUFFER_LEAVES = ("w_avg", "noise_const")


def _nv_to_ours(name: str, value: np.ndarray) -> np.ndarray:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "const":
        return np.transpose(value, (1, 2, 0))
    if leaf == "weight" and value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if leaf == "weight" and value.ndim == 2:
        return np.transpose(value)
    return value


def _ours_to_nv(name: str, value: np.ndarray) -> np.ndarray:
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "const":
        return np.transpose(value, (2, 0, 1))
    if leaf == "weight" and value.ndim == 4:
        return np.transpose(value, (3, 2, 0, 1))
    if leaf == "weight" and value.ndim == 2:
        return np.transpose(value)
    return value


def nvlabs_resample_filter() -> np.ndarray:
    """NVlabs' ``setup_filter([1,3,3,1])``: the 4×4 outer product normalised to sum 1."""
    f = setup_filter((1, 3, 3, 1))
    return np.outer(f, f).astype(np.float32)


def _flat_template(template: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{'params.synthesis.b4.const': shape, ...}`` from a variables tree (arrays or ShapeDtypeStructs)."""
    flat = traverse_util.flatten_dict(template, sep=".")
    return {k: tuple(v.shape) for k, v in flat.items()}


def from_nvlabs_state_dict(state_dict: Mapping[str, np.ndarray], template: Mapping[str, Any],
                           network: str = "network") -> dict[str, Any]:
    """Builds our variables ``{'params': ..., 'buffers': ...}`` from an NVlabs ``state_dict``.

    Args:
      state_dict: NVlabs names → arrays (torch layouts).
      template: our variables tree for the same architecture (e.g. from ``jax.eval_shape`` of
        ``init``), used to check that every tensor is present with the right shape.
      network: name used in error messages (e.g. ``'G_ema'``).

    Raises:
      ValueError naming missing, unexpected or mis-shaped tensors, or a non-standard
      resample filter.
    """
    want = _flat_template(template)
    out: dict[str, np.ndarray] = {}
    unexpected, mismatched = [], []
    ref_filter = nvlabs_resample_filter()
    for name, value in state_dict.items():
        value = np.asarray(value)
        if name.endswith("resample_filter"):
            if value.shape != ref_filter.shape or not np.allclose(value, ref_filter, atol=1e-6):
                raise ValueError(
                    f"{network}: {name} is not the [1,3,3,1] filter StyleGAN2 uses; other resampling "
                    f"filters are not supported")
            continue
        leaf = name.rsplit(".", 1)[-1]
        key = ("buffers." if leaf in BUFFER_LEAVES else "params.") + name
        if key not in want:
            unexpected.append(name)
            continue
        converted = _nv_to_ours(name, value).astype(np.float32)
        if converted.shape != want[key]:
            mismatched.append(f"{name}: file {tuple(value.shape)} -> ours {converted.shape}, expected {want[key]}")
            continue
        out[key] = converted
    missing = sorted(k.split(".", 1)[1] for k in want if k not in out)
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {sorted(unexpected)}")
    if mismatched:
        problems.append("shape mismatches: " + "; ".join(mismatched))
    if problems:
        raise ValueError(f"{network}: state_dict does not match the model description: " + ". ".join(problems))
    return traverse_util.unflatten_dict(out, sep=".")


def to_nvlabs_state_dict(variables: Mapping[str, Any], network: str = "G") -> dict[str, np.ndarray]:
    """Inverse of ``from_nvlabs_state_dict``: our variables → NVlabs names and torch layouts.

    ``resample_filter`` buffers are regenerated where NVlabs keeps them (every synthesis block,
    every discriminator block except the 4×4 epilogue, every resampling-capable conv layer).
    ``network`` is ``'G'``/``'G_ema'`` (generator) or ``'D'``.
    """
    flat = traverse_util.flatten_dict(dict(variables), sep=".")
    sd: dict[str, np.ndarray] = {}
    for key, value in flat.items():
        collection, name = key.split(".", 1)
        if collection not in ("params", "buffers"):
            continue
        sd[name] = _ours_to_nv(name, np.asarray(value, dtype=np.float32))
    is_generator = not network.startswith("D")
    filt = nvlabs_resample_filter()
    layers = {n.rsplit(".", 1)[0] for n in sd if n.endswith(".weight") and sd[n].ndim == 4}
    blocks = set()
    for n in sd:
        parts = n.split(".")
        for i, p in enumerate(parts):
            if p.startswith("b") and p[1:].isdigit():
                blocks.add(".".join(parts[:i + 1]))
                break
    for layer in layers:
        if not layer.endswith("torgb"):
            sd[f"{layer}.resample_filter"] = filt
    for block in blocks:
        if is_generator or not block.endswith("b4"):
            sd[f"{block}.resample_filter"] = filt
    return dict(sorted(sd.items()))
