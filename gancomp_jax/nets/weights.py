"""Loading helpers for the perception networks: state dicts from the files users have, key and
shape checks with clear errors, torch -> Flax layout conversion, and our converted directories.

Files understood by :func:`read_state_dict`:

* ``torch.save`` files (zip archives, legacy streams) and plain pickles, read with the
  restricted unpickler of :mod:`gancomp_jax.io.torch_pickle` — no code from the file runs;
* ``.safetensors`` files;
* directories written by :func:`save_converted` (``tools/convert_feature_net.py``), see
  :func:`load_converted`.

A converted directory holds ``feature_net.json`` (format, version, kind, config, source file
and its sha256) and ``variables/`` (an Orbax checkpoint of the Flax variables as numpy).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import jax
import numpy as np

from ..io.safe_files import load_json_file, require_regular_file
from ..io.torch_pickle import CheckpointFormatError, UnsafePickleError, load_torch_file
from ..utils.atomic_dir import check_output_dir, writing_dir

__all__ = [
    "CONVERTED_FORMAT",
    "check_state_dict",
    "check_variables",
    "file_sha256",
    "is_converted_dir",
    "load_converted",
    "read_state_dict",
    "save_converted",
    "torch_to_flax",
]

CONVERTED_FORMAT = "gancomp_jax.feature_net"
CONVERTED_VERSION = 1
_META = "feature_net.json"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_converted_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory written by :func:`save_converted`."""
    return Path(path).is_dir() and (Path(path) / _META).is_file()


def _flatten_tensors(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flatten nested dicts of arrays into ``{'a.b.c': array}``; other leaves are dropped."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str):
                continue
            out.update(_flatten_tensors(value, f"{prefix}{key}."))
    elif isinstance(obj, np.ndarray):
        out[prefix[:-1]] = obj
    return out


def read_state_dict(
    path: str | os.PathLike,
    network: str,
    *,
    nested_keys: tuple[str, ...] = ("state_dict", "model", "net"),
    strip_prefixes: tuple[str, ...] = ("module.",),
) -> dict[str, np.ndarray]:
    """A flat ``{key: numpy array}`` state dict from a torch or safetensors file.

    ``network`` names the network in error messages. If the file holds a dict whose only
    array-bearing entry is one of ``nested_keys`` (a training checkpoint), that entry is used.
    A prefix in ``strip_prefixes`` shared by every key (``module.`` from DataParallel) is removed.

    Raises FileNotFoundError for a missing file and ValueError (naming ``network`` and the
    file) for anything unreadable or unsafe.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{network}: weight file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{network}: {path} is a directory but not a converted network "
                         f"(no {_META}); give the weight file itself")
    require_regular_file(path, f"{network}: weight file")  # a FIFO or device is never opened
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            obj: Any = load_file(str(path))
        else:
            obj = load_torch_file(path)
    except UnsafePickleError as e:
        raise ValueError(f"{network}: refusing to load {path}: {e}") from None
    except CheckpointFormatError as e:
        raise ValueError(f"{network}: {e}") from None
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{network}: cannot read {path}: {type(e).__name__}: {e}") from None
    if isinstance(obj, Mapping):
        for key in nested_keys:
            if key in obj and isinstance(obj[key], Mapping) and _flatten_tensors(obj[key]):
                obj = obj[key]
                break
    flat = _flatten_tensors(obj) if isinstance(obj, Mapping) else {}
    if not flat:
        raise ValueError(f"{network}: {path} holds no tensors (expected a state dict, got {type(obj).__name__})")
    for prefix in strip_prefixes:
        if all(k.startswith(prefix) for k in flat):
            flat = {k[len(prefix):]: v for k, v in flat.items()}
    return flat


def check_state_dict(
    state: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    network: str,
    source: str,
) -> None:
    """Raise ValueError naming the first missing key or wrong shape (and how many more)."""
    missing = [k for k in expected if k not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ValueError(
            f"{network}: {source} has no tensor {missing[0]!r}{more}, expected shape "
            f"{tuple(expected[missing[0]])}; is this the right file?"
        )
    for key, shape in expected.items():
        got = tuple(np.shape(state[key]))
        if got != tuple(shape):
            raise ValueError(f"{network}: {source}: tensor {key!r} has shape {got}, expected {tuple(shape)}")


_DEFAULT_LEAF_NAMES = {
    # (collection, flax leaf) -> torch leaf
    ("params", "kernel"): "weight",
    ("params", "bias"): "bias",
    ("params", "scale"): "weight",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def _torch_leaf_shape(flax_leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if flax_leaf == "kernel" and len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if flax_leaf == "kernel" and len(shape) == 2:  # [in, out] -> [out, in]
        return (shape[1], shape[0])
    return shape


def _to_flax_layout(flax_leaf: str, array: np.ndarray) -> np.ndarray:
    if flax_leaf == "kernel" and array.ndim == 4:
        return np.transpose(array, (2, 3, 1, 0))
    if flax_leaf == "kernel" and array.ndim == 2:
        return array.T
    return array


def torch_to_flax(
    state: Mapping[str, np.ndarray],
    abstract_variables: Mapping[str, Any],
    network: str,
    source: str,
    *,
    module_name: Callable[[str], str] = lambda name: name,
) -> dict[str, Any]:
    """Fill Flax variables with the matching tensors of a torch state dict.

    ``abstract_variables`` is the variable tree of the Flax module (e.g. from
    ``jax.eval_shape(module.init, ...)``); each leaf ``(collection, m1, ..., leaf)`` is looked up
    as torch key ``module_name(m1) + '.' + ... + '.' + torch_leaf`` where ``kernel`` ->
    ``weight`` (conv kernels OIHW -> HWIO, dense ``[out, in]`` -> ``[in, out]``), BatchNorm
    ``scale`` -> ``weight``, ``mean``/``var`` -> ``running_mean``/``running_var``. All keys and
    shapes are checked first (one clear error); extra torch keys are ignored. Returns float32
    numpy variables.
    """
    flat = jax.tree_util.tree_flatten_with_path(abstract_variables)[0]
    plan = []
    expected: dict[str, tuple[int, ...]] = {}
    for path, leaf in flat:
        names = [p.key for p in path]
        collection, modules, flax_leaf = names[0], names[1:-1], names[-1]
        torch_leaf = _DEFAULT_LEAF_NAMES.get((collection, flax_leaf))
        if torch_leaf is None:
            raise ValueError(f"{network}: no torch name for variable {'/'.join(names)}")
        key = ".".join([module_name(m) for m in modules] + [torch_leaf])
        expected[key] = _torch_leaf_shape(flax_leaf, tuple(leaf.shape))
        plan.append((names, flax_leaf, key))
    check_state_dict(state, expected, network, source)
    out: dict[str, Any] = {}
    for names, flax_leaf, key in plan:
        node = out
        for n in names[:-1]:
            node = node.setdefault(n, {})
        node[names[-1]] = np.ascontiguousarray(_to_flax_layout(flax_leaf, np.asarray(state[key], np.float32)))
    return out


def check_variables(variables: Mapping[str, Any], abstract_variables: Mapping[str, Any], network: str,
                    source: str) -> None:
    """Raise ValueError unless ``variables`` has exactly the leaves and shapes of ``abstract_variables``."""
    want = {jax.tree_util.keystr(p): tuple(v.shape)
            for p, v in jax.tree_util.tree_flatten_with_path(abstract_variables)[0]}
    got = {jax.tree_util.keystr(p): tuple(np.shape(v))
           for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
    for key, shape in want.items():
        if key not in got:
            raise ValueError(f"{network}: {source} has no variable {key}, expected shape {shape}")
        if got[key] != shape:
            raise ValueError(f"{network}: {source}: variable {key} has shape {got[key]}, expected {shape}")
    extra = sorted(set(got) - set(want))
    if extra:
        raise ValueError(f"{network}: {source} has unexpected variable {extra[0]}")


def numbered(name: str) -> str:
    """Flax names ``layer1_0`` / ``features_28`` -> torch ``layer1.0`` / ``features.28``."""
    return re.sub(r"_(\d+)$", r".\1", name)


# --------------------------------------------------------------------------- converted dirs
def _checkpointer():
    import orbax.checkpoint as ocp

    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"feature_net_p{me}"))


def save_converted(
    directory: str | os.PathLike,
    kind: str,
    variables: Mapping[str, Any],
    config: Mapping[str, Any],
    source: str = "",
    *,
    overwrite: bool = False,
) -> Path:
    """Write converted variables to ``directory`` atomically (see the module docstring)."""
    directory = Path(directory).absolute()
    sources = (source,) if source else ()
    check_output_dir(directory, sources, overwrite, option="overwrite=True", what="output directory")
    sha = file_sha256(source) if source and Path(source).is_file() else None
    with writing_dir(directory, sources) as tmp:
        tree = jax.tree.map(lambda a: np.asarray(a), dict(variables))
        ckptr = _checkpointer()
        ckptr.save(tmp / "variables", tree)
        ckptr.wait_until_finished()
        ckptr.close()
        meta = {
            "format": CONVERTED_FORMAT,
            "version": CONVERTED_VERSION,
            "kind": kind,
            "config": dict(config),
            "source": str(source),
            "source_sha256": sha,
        }
        (tmp / _META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return directory


def load_converted(directory: str | os.PathLike, kinds: tuple[str, ...] | str, network: str
                   ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(variables, config)`` from a converted directory whose kind is one of ``kinds``."""
    directory = Path(directory).absolute()
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    meta_path = directory / _META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{network}: {directory} is not a converted network (no {_META})")
    meta = load_json_file(meta_path, f"{network}: converted network description", max_bytes=1 << 20)
    if not isinstance(meta.get("config", {}), Mapping):
        raise ValueError(f"{network}: {meta_path}: 'config' must be a JSON object")
    if meta.get("format") != CONVERTED_FORMAT or meta.get("version") != CONVERTED_VERSION:
        raise ValueError(f"{network}: {meta_path}: format {meta.get('format')!r} version "
                         f"{meta.get('version')!r}, expected {CONVERTED_FORMAT!r} version {CONVERTED_VERSION}")
    if meta.get("kind") not in kinds:
        raise ValueError(f"{network}: {directory} holds a converted {meta.get('kind')!r} network, "
                         f"expected {' or '.join(map(repr, kinds))}")
    ckptr = _checkpointer()
    try:
        restored = ckptr.restore(directory / "variables")
    except Exception as e:  # orbax raises several types for missing/corrupt data
        raise ValueError(f"{network}: {directory}/variables could not be read: {type(e).__name__}: {e}") from None
    finally:
        ckptr.close()
    return jax.tree.map(np.asarray, dict(restored)), dict(meta.get("config", {}))
