"""Read NVlabs stylegan2-ada-pytorch network pickles (``network-snapshot-*.pkl``).

The training loop writes ``pickle.dump(dict(G=..., D=..., G_ema=...,
augment_pipe=..., training_set_kwargs=...))``. Every network class in NVlabs'
code is decorated with ``torch_utils.persistence.persistent_class``, so each
network *and each of its submodules* is pickled as a call
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with::

    meta = dict(type='class', version=6, module_src=<source of training/networks.py>,
                class_name='Generator', state=<the module's __dict__>)

``class_name`` is the bare class name; NVlabs' loader would ``exec`` the
module source to get the class back. Here ``_reconstruct_persistent_obj``
resolves to a function that returns an inert :class:`PersistentStub` holding
the state and a SHA-256 of the source, which is never run. The state is a
``torch.nn.Module`` ``__dict__``: ``_parameters`` / ``_buffers`` / ``_modules``
(ordered dicts), ``_non_persistent_buffers_set``, ``_init_args`` /
``_init_kwargs`` (the constructor arguments, with ``dnnlib.EasyDict`` values)
and plain attributes. Tensors are ``pickle``d torch tensors (see
:mod:`gancomp_jax.io.torch_pickle`).

Old TensorFlow-era pickles (``dnnlib.tflib.network.Network``) are refused;
convert them with NVlabs' ``legacy.py`` first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .torch_pickle import (CheckpointFormatError, ReadOnlyType, Refused, charge_allocation, describe,
                           describe_keys, load_torch_file)

__all__ = [
    "NETWORK_KEYS",
    "EasyDict",
    "NetworkRecord",
    "PersistentStub",
    "TorchModuleStub",
    "get_network",
    "load_nvlabs_pkl",
]

NETWORK_KEYS = ("G", "D", "G_ema")


class EasyDict(dict, metaclass=ReadOnlyType):
    """Stand-in for ``dnnlib.EasyDict``: a dict with attribute access.

    No instance ``__dict__`` (``dnnlib.EasyDict`` keeps its attributes as items),
    so a pickle's BUILD cannot hide dict methods behind instance attributes.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True, slots=True)
class PersistentStub:
    """What ``_reconstruct_persistent_obj(meta)`` gives here: the state, never the class.

    Frozen with slots: a pickle's BUILD opcode cannot change it.
    """

    class_name: str
    state: dict[str, Any]
    module_src_sha256: str
    version: int

    def __setstate__(self, state: Any) -> None:  # a pickle's BUILD opcode; dataclass would allow it
        raise ValueError("a persistent object's metadata cannot be changed after it is made")


def _reconstruct_persistent_obj(meta: Any) -> PersistentStub:
    """Replacement for ``torch_utils.persistence._reconstruct_persistent_obj``."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise ValueError("persistent object metadata is not a dict with type='class'")
    class_name, module_src = meta.get("class_name"), meta.get("module_src")
    state = meta.get("state")
    if not isinstance(class_name, str) or not isinstance(module_src, str):
        raise ValueError("persistent object metadata lacks class_name/module_src strings")
    if not isinstance(state, dict):
        raise ValueError(f"persistent object {class_name!r} has no state dict")
    if len(class_name) > 200:
        raise ValueError(f"persistent object class name {describe(class_name)} is too long")
    version = meta.get("version", -1)
    if type(version) is not int:
        raise ValueError(f"persistent object {class_name!r} has a non-integer version {describe(version)}")
    digest = hashlib.sha256(module_src.encode("utf-8", "surrogatepass")).hexdigest()
    return PersistentStub(class_name, state, digest, version)


class TorchModuleStub(metaclass=ReadOnlyType):
    """Inert stand-in for a plain ``torch.nn`` container module (state only)."""

    class_name: ClassVar[str] = "torch.nn.modules.module.Module"
    state: dict[str, Any] | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError(f"{self.class_name} state must be a dict")
        charge_allocation(64 * len(state), f"{self.class_name} state")
        self.state = dict(state)


def _module_stub(module: str, name: str) -> type[TorchModuleStub]:
    return type(name, (TorchModuleStub,), {"class_name": f"{module}.{name}"})


_TORCH_CONTAINERS = (
    ("torch.nn.modules.module", "Module"),
    ("torch.nn.modules.container", "Sequential"),
    ("torch.nn.modules.container", "ModuleList"),
    ("torch.nn.modules.container", "ModuleDict"),
)
_TF_REFUSAL = Refused(
    "TensorFlow network pickles (dnnlib.tflib.network.Network) are not supported; "
    "convert the file to the PyTorch format with NVlabs stylegan2-ada-pytorch legacy.py "
    "(python legacy.py --source=old.pkl --dest=new.pkl) first"
)
NVLABS_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("dnnlib.tflib.network", "Network"): _TF_REFUSAL,
    **{key: _module_stub(*key) for key in _TORCH_CONTAINERS},
}


@dataclass
class NetworkRecord:
    """One network of an NVlabs pickle, as plain Python and numpy values.

    ``state_dict`` matches torch's ``Module.state_dict()`` names and order;
    ``module_classes`` maps each module path ('' for the root) to its class
    name; ``extra`` holds the pickle's other top-level entries (shared by all
    records of a file).
    """

    class_name: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, np.ndarray]
    extra: dict[str, Any] = field(default_factory=dict)
    init_args: tuple[Any, ...] = ()
    module_src_sha256: str = ""
    module_classes: dict[str, str] = field(default_factory=dict)


def _to_plain(value: Any) -> Any:
    """EasyDicts/OrderedDicts -> dicts, recursively; stubs -> their class name.

    The loader has refused self-referential and too deeply nested values.
    """
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in dict.items(value)}
    if isinstance(value, AbcMapping):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_to_plain(item) for item in value)
    if isinstance(value, (PersistentStub, TorchModuleStub)):
        return value.class_name
    return value


def _module_state(module: Any, where: str) -> tuple[str, dict[str, Any]]:
    if isinstance(module, (PersistentStub, TorchModuleStub)) and isinstance(module.state, dict):
        state = module.state
        if all(isinstance(state.get(k), dict) for k in ("_parameters", "_buffers", "_modules")):
            for k in ("_parameters", "_buffers", "_modules"):
                bad = [name for name in state[k] if not isinstance(name, str)]
                if bad:
                    raise CheckpointFormatError(f"{where}: {k} has a non-string name {describe(bad[0])}")
            skip = state.get("_non_persistent_buffers_set") or ()
            if not isinstance(skip, (set, frozenset, list, tuple)) or not all(isinstance(s, str) for s in skip):
                raise CheckpointFormatError(
                    f"{where}: _non_persistent_buffers_set should be a set of names, got {describe(skip)}"
                )
            return module.class_name, state
    raise CheckpointFormatError(
        f"{where} is not a torch.nn.Module state (got {type(module).__name__})"
    )


def _collect(
    module: Any,
    prefix: str,
    where: str,
    tensors: dict[str, np.ndarray],
    classes: dict[str, str],
    depth: int = 0,
) -> None:
    """Flatten like ``Module.state_dict()``: parameters, buffers, then submodules."""
    if depth > _MAX_MODULE_DEPTH:
        raise CheckpointFormatError(f"{where}: submodules nest more than {_MAX_MODULE_DEPTH} deep")
    class_name, state = _module_state(module, f"{where} module '{prefix[:-1]}'")
    if prefix[:-1] in classes:
        raise CheckpointFormatError(f"{where}: module '{prefix[:-1]}' appears twice")
    classes[prefix[:-1]] = class_name
    skip = set(state.get("_non_persistent_buffers_set") or ())
    entries = list(state["_parameters"].items())
    entries += [(k, v) for k, v in state["_buffers"].items() if k not in skip]
    for name, value in entries:
        if value is None:
            continue
        if not isinstance(value, np.ndarray):
            raise CheckpointFormatError(
                f"{where} tensor '{prefix}{name}' is a {type(value).__name__}, not a tensor"
            )
        tensors[prefix + name] = value
    for name, child in state["_modules"].items():
        if child is not None:
            _collect(child, f"{prefix}{name}.", where, tensors, classes, depth + 1)


_MAX_MODULE_DEPTH = 16


def _init_arguments(state: dict[str, Any], where: str) -> tuple[dict[str, Any], tuple[Any, ...]]:
    """The module's constructor arguments: ``_init_kwargs`` (a dict) and ``_init_args`` (a sequence)."""
    kwargs = state.get("_init_kwargs")
    args = state.get("_init_args")
    if kwargs is not None and not isinstance(kwargs, AbcMapping):
        raise CheckpointFormatError(f"{where}: _init_kwargs should be a dict, got {describe(kwargs)}")
    if kwargs and not all(isinstance(key, str) for key in kwargs):
        raise CheckpointFormatError(f"{where}: _init_kwargs has non-string keys")
    if args is not None and not isinstance(args, (list, tuple)):
        raise CheckpointFormatError(f"{where}: _init_args should be a tuple, got {describe(args)}")
    return _to_plain(kwargs or {}), _to_plain(tuple(args or ()))


def _is_stylegan3(record: NetworkRecord) -> bool:
    return "networks_stylegan3" in record.class_name or any(
        cls.rsplit(".", 1)[-1] == "SynthesisInput" for cls in record.module_classes.values()
    )


def _network_record(value: Any, key: str, source: str, extra: dict[str, Any]) -> NetworkRecord:
    where = f"{source}: network '{key}'"
    if not isinstance(value, PersistentStub):
        raise CheckpointFormatError(
            f"{where} is a {type(value).__name__}, not an NVlabs persistent network object"
        )
    tensors: dict[str, np.ndarray] = {}
    classes: dict[str, str] = {}
    _collect(value, "", where, tensors, classes)
    init_kwargs, init_args = _init_arguments(value.state, where)
    record = NetworkRecord(
        class_name=value.class_name,
        init_kwargs=init_kwargs,
        state_dict=tensors,
        extra=extra,
        init_args=init_args,
        module_src_sha256=value.module_src_sha256,
        module_classes=classes,
    )
    if _is_stylegan3(record):
        raise CheckpointFormatError(
            f"{where} ({record.class_name}) is a StyleGAN3 network: "
            "StyleGAN3 generators are not supported yet"
        )
    return record


def load_nvlabs_pkl(path: str | Path, max_alloc: int | None = None) -> dict[str, NetworkRecord]:
    """Load the networks ``G``, ``D``, ``G_ema`` (those present) of an NVlabs pickle.

    Nothing from the file is executed (no ``module_src`` exec, no imports).
    ``max_alloc``: see :func:`~gancomp_jax.io.torch_pickle.load_torch_file`.
    Other top-level entries go to every record's ``extra``: dicts as plain
    dicts, networks such as ``augment_pipe`` as their class name.
    """
    source = str(path)
    data = load_torch_file(path, extra_globals=NVLABS_GLOBALS, max_alloc=max_alloc)
    if not isinstance(data, dict):
        raise CheckpointFormatError(
            f"{source}: expected a dict at the top of an NVlabs network pickle, "
            f"got {type(data).__name__}"
        )
    present = [key for key in NETWORK_KEYS if data.get(key) is not None]
    if not present:
        raise CheckpointFormatError(
            f"{source}: no networks found (expected G, D or G_ema; "
            f"keys: {describe_keys(data)})"
        )
    extra = {key: _to_plain(value) for key, value in data.items() if key not in NETWORK_KEYS}
    return {key: _network_record(data[key], key, source, extra) for key in present}


def get_network(records: dict[str, NetworkRecord], which: str = "G_ema") -> NetworkRecord:
    """Pick one network, with a clear error when the file lacks it."""
    if which not in records:
        raise CheckpointFormatError(
            f"requested network '{which}' not in file (found: {', '.join(records) or 'none'})"
        )
    return records[which]
