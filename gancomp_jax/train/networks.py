"""The networks of a method: flax modules from specs, initial / frozen variables from sources,
and a content digest (sha256) that identifies frozen networks across resumes.

With ``mixed_precision`` every generator and discriminator of the method (trained or frozen,
initialised or read from a file: teacher, student, D_S, D_T, ...) runs with NVlabs' rule
(:func:`mixed_precision_config`); the configs recorded for resume checks and exports are the
mixed ones, as NVlabs' pickles record ``num_fp16_res`` and ``conv_clamp``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np

from gancomp_jax import checkpoints
from gancomp_jax.methods.base import Method, NetworkSpec
from gancomp_jax.models import Discriminator, Generator


MIXED_RES = 4             # NVlabs' num_fp16_res
MIXED_CONV_CLAMP = 256.0  # NVlabs' conv_clamp with mixed precision


def variables_sha256(variables: Any) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes (host order; float32 as stored)."""
    h = hashlib.sha256()
    for path, x in sorted(jax.tree_util.tree_flatten_with_path(jax.device_get(variables))[0],
                          key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(x))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _source_path(role: str, spec: NetworkSpec) -> Path:
    path = Path(str(spec.source)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"network {role!r}: source {path} does not exist")
    if path.is_dir() and not (path / "model.json").is_file() and (path / "model" / "model.json").is_file():
        path = path / "model"  # a training run directory: its exported networks (a previous stage)
    return path.absolute()


def load_source(role: str, spec: NetworkSpec) -> checkpoints.Network:
    """The network ``spec.source_name`` (default: ``role``) read from ``spec.source``."""
    path = _source_path(role, spec)
    name = spec.source_name or role
    try:
        net = checkpoints.load_any(path, [name])[name]
    except KeyError as e:
        raise ValueError(f"network {role!r}: {e.args[0] if e.args else e}") from None
    if net.kind != spec.kind:
        raise ValueError(f"network {role!r}: {path} holds {name!r} as a {net.kind}, expected a {spec.kind}")
    if spec.config is not None and spec.config.to_dict() != net.config.to_dict():
        raise ValueError(f"network {role!r}: the architecture of {name!r} in {path} differs from the one the "
                         f"method declares ({net.config.to_dict()} != {spec.config.to_dict()})")
    return net


def mixed_precision_config(config, num_mixed_res: int = MIXED_RES, conv_clamp: float = MIXED_CONV_CLAMP):
    """NVlabs' mixed-precision rule for a generator / discriminator config: the
    ``num_mixed_res`` highest resolutions computed in ``config.mixed_dtype`` (bfloat16 by
    default; parameters, optimiser state and EMAs stay float32) and activations clamped to
    ``±conv_clamp`` (kept when the config already sets a clamp)."""
    return config.replace(num_mixed_res=max(int(config.num_mixed_res), num_mixed_res),
                          conv_clamp=config.conv_clamp if config.conv_clamp is not None else conv_clamp)


def make_module(spec: NetworkSpec, config, mbstd_num_shards: int):
    if spec.kind == "generator":
        return Generator(config)
    if spec.kind == "discriminator":
        return Discriminator(config, mbstd_num_shards=mbstd_num_shards)
    if spec.kind != "module":  # another model family (e.g. BigGAN), built by the registry
        from gancomp_jax.models.registry import make_module as registry_module
        return registry_module(spec.kind, config)
    return spec.module


def initial_variables(role: str, spec: NetworkSpec, config, key: jax.Array) -> Any:
    """Variables of a network whose source is ``'init'``."""
    if spec.kind == "module":
        return dict(spec.init(key))
    v = checkpoints.init_network(spec.kind, config, key).variables
    return {"params": v["params"]} if spec.kind == "discriminator" else dict(v)


class Networks:
    """Modules, configs and (for file sources) loaded variables of a method's networks.

    Attributes:
      modules: role → flax module; configs: role → architecture config (None for 'module');
      loaded: role → host variables read from a source (file / directory); absent for 'init';
      sources: role → {'source', 'name', 'sha256'} of every network read from a source.
    """

    def __init__(self, method: Method, mbstd_num_shards: int, mixed_precision: bool = False):
        self.method = method
        self.mixed_precision = bool(mixed_precision)
        self.modules: dict[str, Any] = {}
        self.configs: dict[str, Any] = {}
        self.loaded: dict[str, Any] = {}
        self.sources: dict[str, dict[str, str]] = {}
        for role, spec in method.networks.items():
            if spec.kind == "module" and spec.export:
                raise ValueError(f"network {role!r}: only generators and discriminators can be exported")
            config = spec.config
            if spec.source != "init":
                if spec.kind == "module":
                    self.loaded[role] = dict(spec.init(jax.random.key(0)))
                    self.sources[role] = {"source": str(spec.source), "name": spec.source_name or role}
                else:
                    net = load_source(role, spec)
                    config = net.config
                    self.loaded[role] = (net.variables if spec.kind != "discriminator"
                                         else {"params": net.variables["params"]})
                    self.sources[role] = {"source": str(_source_path(role, spec)), "name": spec.source_name or role}
                self.sources[role]["sha256"] = variables_sha256(self.loaded[role])
            elif spec.kind != "module" and config is None:
                raise ValueError(f"network {role!r}: source 'init' needs an architecture config")
            if self.mixed_precision and spec.kind in ("generator", "discriminator"):
                config = mixed_precision_config(config)
            self.configs[role] = config
            self.modules[role] = make_module(spec, config, mbstd_num_shards)

    @property
    def trainable(self) -> list[str]:
        return [r for r, s in self.method.networks.items() if s.trainable]

    @property
    def frozen(self) -> list[str]:
        return [r for r, s in self.method.networks.items() if not s.trainable]

    def description(self) -> dict[str, Any]:
        """JSON-able description of the trainable networks (checked on resume)."""
        return {r: {"kind": self.method.networks[r].kind,
                    "config": self.configs[r].to_dict() if hasattr(self.configs[r], "to_dict") else None}
                for r in self.trainable}

    def frozen_record(self) -> dict[str, Any]:
        """Source and sha256 of every frozen network (stored in checkpoint metadata)."""
        return {r: self.sources.get(r, {"source": "init"}) for r in self.frozen}

    def init_variables(self, role: str, key: jax.Array) -> Any:
        """Fresh variables of a network whose source is ``'init'`` (traceable)."""
        return initial_variables(role, self.method.networks[role], self.configs[role], key)
