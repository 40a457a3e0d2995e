"""Write NVlabs-style network pickles without NVlabs code and without torch (tests, timing).

The bytes follow what ``pickle.dump(dict(G=..., D=..., G_ema=...))`` of stylegan2-ada-pytorch
networks produces:

* each network and submodule is ``torch_utils.persistence._reconstruct_persistent_obj(meta)``
  with ``meta = dict(type='class', version=6, module_src=..., class_name=<bare NVlabs class
  name>, state=<torch.nn.Module __dict__>)``; ``_init_kwargs`` are ``dnnlib.util.EasyDict``;
* each tensor is ``torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False,
  OrderedDict())`` (parameters wrapped in ``torch._utils._rebuild_parameter``), its storage
  ``torch.storage._load_from_bytes(<legacy torch.save stream of one storage>)``.

``module_src`` is a placeholder, so NVlabs' own loader cannot rebuild these networks; real
torch can read every tensor (the tests check that). Use them to exercise
:mod:`gancomp_jax.io` and :mod:`gancomp_jax.convert` on realistic files, e.g.
``tools/make_fake_nvlabs_pkl.py`` for a full-size ``paper256`` snapshot.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import re
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["FakeNetwork", "nvlabs_class_name", "write_nvlabs_pickle"]

MODULE_SRC = "# placeholder for training/networks.py (written by gancomp_jax.convert.fake_nvlabs)\n"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_BUFFERS = ("w_avg", "noise_const", "resample_filter")
_STORAGES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
             np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
             np.dtype(np.int32): "IntStorage", np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage"}


@dataclasses.dataclass
class FakeNetwork:
    """A network to write: NVlabs class name, constructor kwargs and flat NVlabs ``state_dict``.

    ``module_classes`` overrides the class of submodules by path (e.g. ``{'synthesis.input':
    'SynthesisInput'}``); ``init_args`` are positional constructor arguments.
    """

    class_name: str
    init_kwargs: dict[str, Any]
    state_dict: Mapping[str, np.ndarray]
    module_classes: dict[str, str] = dataclasses.field(default_factory=dict)
    init_args: tuple[Any, ...] = ()


# --------------------------------------------------------------------------- pickle building blocks


class _Global:
    """A reference to ``module.name``, written as a GLOBAL opcode (the target need not exist here)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists on callables for REDUCE
        raise TypeError("placeholder")


class _Call:
    """Pickles as ``func(*args)``."""

    def __init__(self, func: _Global, args: tuple):
        self.func, self.args = func, args


class _EasyDict(dict):
    """Pickles as a ``dnnlib.util.EasyDict`` holding the same items."""


class _StorageRef:
    """The storage inside a legacy stream: pickled as a persistent id."""

    def __init__(self, storage_type: str, numel: int):
        self.pid = ("storage", _Global("torch", storage_type), "0", "cpu", numel, None)


_RECONSTRUCT = _Global("torch_utils.persistence", "_reconstruct_persistent_obj")
_EASYDICT = _Global("dnnlib.util", "EasyDict")
_LOAD_FROM_BYTES = _Global("torch.storage", "_load_from_bytes")
_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_REBUILD_PARAMETER = _Global("torch._utils", "_rebuild_parameter")


class _Pickler(pickle._Pickler):  # the Python implementation lets us add types to `dispatch`
    dispatch = dict(pickle._Pickler.dispatch)

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _StorageRef) else None

    def _save_global_ref(self, obj: _Global) -> None:
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    def _save_call(self, obj: _Call) -> None:
        self.save_reduce(obj.func, obj.args, obj=obj)

    def _save_easydict(self, obj: _EasyDict) -> None:
        self.save(_EASYDICT)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items()))

    dispatch[_Global] = _save_global_ref
    dispatch[_Call] = _save_call
    dispatch[_EasyDict] = _save_easydict


def _dumps(obj: Any, protocol: int) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def _legacy_storage_bytes(array: np.ndarray) -> bytes:
    """What ``torch.save(storage, f, _use_new_zipfile_serialization=False)`` writes for one storage."""
    storage_type = _STORAGES.get(array.dtype)
    if storage_type is None:
        raise TypeError(f"no torch storage type for dtype {array.dtype}")
    flat = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1)
    sys_info = dict(protocol_version=1001, little_endian=True, type_sizes=dict(short=2, int=4, long=4))
    parts = [pickle.dumps(_LEGACY_MAGIC, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps(sys_info, protocol=2), _dumps(_StorageRef(storage_type, flat.size), 2),
             pickle.dumps(["0"], protocol=2), struct.pack("<q", flat.size), flat.tobytes()]
    return b"".join(parts)


def _tensor(array: np.ndarray, parameter: bool) -> _Call:
    array = np.asarray(array)
    if array.dtype not in _STORAGES:
        array = array.astype(np.float32)
    strides = tuple(int(np.prod(array.shape[i + 1:], dtype=np.int64)) for i in range(array.ndim))  # C order
    storage = _Call(_LOAD_FROM_BYTES, (_legacy_storage_bytes(array),))
    tensor = _Call(_REBUILD_TENSOR, (storage, 0, tuple(array.shape), strides, False, OrderedDict()))
    return _Call(_REBUILD_PARAMETER, (tensor, True, OrderedDict())) if parameter else tensor


def _easy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return _EasyDict({k: _easy(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(_easy(v) for v in value)
    return value


# --------------------------------------------------------------------------- module trees

_G_CLASSES = [
    (r"mapping", "MappingNetwork"), (r"mapping\.(fc\d+|embed)", "FullyConnectedLayer"),
    (r"synthesis", "SynthesisNetwork"), (r"synthesis\.b\d+", "SynthesisBlock"),
    (r"synthesis\.b\d+\.conv[01]", "SynthesisLayer"), (r"synthesis\.b\d+\.torgb", "ToRGBLayer"),
    (r".*\.affine", "FullyConnectedLayer"), (r"synthesis\.b\d+\.skip", "Conv2dLayer"),
]
_D_CLASSES = [
    (r"b4", "DiscriminatorEpilogue"), (r"b\d+", "DiscriminatorBlock"), (r"b4\.mbstd", "MinibatchStdLayer"),
    (r"b\d+\.(fromrgb|conv0|conv1|skip|conv)", "Conv2dLayer"), (r"b4\.(fc|out)", "FullyConnectedLayer"),
    (r"mapping", "MappingNetwork"), (r"mapping\.(fc\d+|embed)", "FullyConnectedLayer"),
]


def nvlabs_class_name(root_class: str, path: str) -> str:
    """The NVlabs class of the submodule at ``path`` (``'synthesis.b8.conv0'`` → ``'SynthesisLayer'``)."""
    if not path:
        return root_class
    table = _D_CLASSES if root_class.rsplit(".", 1)[-1] == "Discriminator" else _G_CLASSES
    for pattern, name in table:
        if re.fullmatch(pattern, path):
            return name
    return "Module"


def _module_tree(net: FakeNetwork) -> _Call:
    """Nested persistent objects whose parameters/buffers flatten back to ``net.state_dict``."""
    nodes: dict[str, dict[str, Any]] = {}

    def node(path: str) -> dict[str, Any]:
        if path not in nodes:
            nodes[path] = dict(params=OrderedDict(), buffers=OrderedDict(), children=OrderedDict())
            if path:
                parent, _, name = path.rpartition(".")
                node(parent)["children"][name] = path
        return nodes[path]

    node("")
    if net.class_name.rsplit(".", 1)[-1] == "Discriminator" and "b4.conv.weight" in net.state_dict:
        node("b4.mbstd")  # NVlabs' epilogue has a tensor-less MinibatchStdLayer
    for name, value in net.state_dict.items():
        path, _, leaf = name.rpartition(".")
        kind = "buffers" if leaf in _BUFFERS else "params"
        node(path)[kind][leaf] = np.asarray(value)
    for path in net.module_classes:
        node(path)

    def build(path: str) -> _Call:
        n = nodes[path]
        class_name = net.module_classes.get(path, nvlabs_class_name(net.class_name, path))
        state = {
            "training": False,
            "_parameters": OrderedDict((k, _tensor(v, True)) for k, v in n["params"].items()),
            "_buffers": OrderedDict((k, _tensor(v, False)) for k, v in n["buffers"].items()),
            "_non_persistent_buffers_set": set(),
            "_modules": OrderedDict((k, build(child)) for k, child in n["children"].items()),
            "_init_args": tuple(net.init_args) if not path else (),
            "_init_kwargs": _easy(net.init_kwargs if not path else {}),
        }
        meta = dict(type="class", version=6, module_src=MODULE_SRC, class_name=class_name, state=state)
        return _Call(_RECONSTRUCT, (meta,))

    return build("")


def write_nvlabs_pickle(path: str | os.PathLike, networks: Mapping[str, FakeNetwork],
                        extra: Mapping[str, Any] | None = None, protocol: int = 4) -> Path:
    """Writes ``{**networks, **extra}`` like NVlabs' training loop writes a snapshot.

    ``networks`` maps 'G' / 'D' / 'G_ema' (or anything else) to :class:`FakeNetwork`; dicts in
    ``extra`` become EasyDicts, a :class:`FakeNetwork` there (e.g. ``augment_pipe``) a network.
    The file is written to a temporary name and renamed into place.
    """
    path = Path(path)
    data: dict[str, Any] = {}
    for key, value in {**networks, **(extra or {})}.items():
        data[key] = _module_tree(value) if isinstance(value, FakeNetwork) else _easy(value)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            _Pickler(f, protocol=protocol).dump(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
