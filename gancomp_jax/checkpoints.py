"""Model checkpoints: a directory holding network descriptions (JSON) and variables (Orbax).

Layout::

    DIR/model.json     {"format": "gancomp_jax.model", "version": 1,
                        "networks": {"G_ema": {"kind": "generator", "config": {...}}, ...},
                        "metadata": {...}}
    DIR/variables/     Orbax checkpoint of {"G_ema": {"params": ..., "buffers": ...}, ...}

The converter, the trainer's exports and ``experiments/generate.py`` all use this format.
Writes are atomic: everything goes to a sibling temporary directory that is renamed into
place only when complete, so an interrupted save never leaves a checkpoint that loads wrong.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from gancomp_jax.models import DiscriminatorConfig, GeneratorConfig, registry
from gancomp_jax.models.registry import KINDS, abstract_variables  # noqa: F401  (network construction)
from gancomp_jax.utils.atomic_dir import move_into_place

FORMAT = "gancomp_jax.model"
VERSION = 1


@dataclasses.dataclass
class Network:
    """One stored network: its kind ('generator' | 'discriminator'), description and variables."""

    kind: str
    config: GeneratorConfig | DiscriminatorConfig
    variables: dict[str, Any]


def init_network(kind: str, config, key: jax.Array) -> Network:
    """A freshly initialised network (NVlabs initialisation)."""
    return Network(kind, config, registry.init_variables(kind, config, key))


def check_variables(name: str, network: Network) -> None:
    """Raises ValueError if ``network.variables`` do not fit its description (names or shapes)."""
    want = traverse_util.flatten_dict(abstract_variables(network.kind, network.config), sep="/")
    have = traverse_util.flatten_dict(dict(network.variables), sep="/")
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    bad = [f"{k}: {tuple(np.shape(have[k]))} != {tuple(want[k].shape)}"
           for k in sorted(set(want) & set(have)) if tuple(np.shape(have[k])) != tuple(want[k].shape)]
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:8]}{' ...' if len(extra) > 8 else ''}")
        if bad:
            parts.append(f"wrong shapes {bad[:8]}")
        raise ValueError(f"network {name!r}: variables do not match its description: " + "; ".join(parts))


def _local_checkpointer() -> ocp.StandardCheckpointer:
    """An Orbax checkpointer for host (numpy) trees that involves only this process.

    Model checkpoints hold plain numpy arrays written by one process, so no cross-process
    barriers (which would wait forever for processes that do not save) must be used.
    """
    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"model_p{me}"))


def save_model(directory: str | os.PathLike, networks: Mapping[str, Network],
               metadata: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Writes ``networks`` (e.g. ``{'G_ema': ..., 'D': ...}``) to ``directory`` atomically.

    Raises FileExistsError if ``directory`` exists and ``overwrite`` is False.
    """
    directory = Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists; pass overwrite=True to replace it")
    if not networks:
        raise ValueError("save_model needs at least one network")
    for name, net in networks.items():
        check_variables(name, net)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        tree = {name: jax.tree.map(lambda a: np.asarray(a, dtype=np.float32), dict(net.variables))
                for name, net in networks.items()}
        ckptr = _local_checkpointer()
        ckptr.save(tmp / "variables", tree)
        ckptr.wait_until_finished()
        ckptr.close()
        description = {
            "format": FORMAT, "version": VERSION,
            "networks": {name: {"kind": net.kind, "config": net.config.to_dict()} for name, net in networks.items()},
            "metadata": dict(metadata or {}),
        }
        (tmp / "model.json").write_text(json.dumps(description, indent=2, sort_keys=True, default=str))
        move_into_place(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_description(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``model.json`` of a checkpoint, validated."""
    directory = Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"model checkpoint {directory} does not exist")
    desc_path = directory / "model.json"
    if not desc_path.is_file():
        raise ValueError(f"{directory} is not a gancomp_jax model checkpoint (no model.json); "
                         f"convert PyTorch files with tools/convert_pt_weights.py")
    try:
        desc = json.loads(desc_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{desc_path} is not valid JSON: {e}") from None
    if desc.get("format") != FORMAT:
        raise ValueError(f"{desc_path}: format is {desc.get('format')!r}, expected {FORMAT!r}")
    if desc.get("version") != VERSION:
        raise ValueError(f"{desc_path}: version {desc.get('version')!r} is not supported (expected {VERSION})")
    for name, net in desc.get("networks", {}).items():
        if net.get("kind") not in KINDS:
            raise ValueError(f"{desc_path}: network {name!r} has unknown kind {net.get('kind')!r}")
    if not desc.get("networks"):
        raise ValueError(f"{desc_path}: no networks listed")
    return desc


def load_model(directory: str | os.PathLike, names: list[str] | tuple[str, ...] | None = None
               ) -> dict[str, Network]:
    """Loads networks from a checkpoint (all, or the given ``names``) as numpy-backed variables."""
    directory = Path(directory).absolute()
    desc = read_description(directory)
    available = list(desc["networks"])
    names = available if names is None else list(names)
    for name in names:
        if name not in desc["networks"]:
            raise KeyError(f"network {name!r} not in {directory} (found: {available})")
    configs = {}
    for name in names:
        net = desc["networks"][name]
        cls = KINDS[net["kind"]][0]
        try:
            configs[name] = cls.from_dict(net["config"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{directory}/model.json: network {name!r}: {e}") from None
    ckptr = _local_checkpointer()
    try:
        restored = ckptr.restore(directory / "variables")
    except Exception as e:  # orbax raises several types for missing/corrupt data
        raise ValueError(f"{directory}/variables could not be read: {type(e).__name__}: {e}") from None
    finally:
        ckptr.close()
    out = {}
    for name in names:
        if name not in restored:
            raise ValueError(f"{directory}/variables holds no arrays for network {name!r}")
        variables = jax.tree.map(np.asarray, dict(restored[name]))
        net = Network(desc["networks"][name]["kind"], configs[name], variables)
        check_variables(name, net)
        out[name] = net
    return out


def pick_generator(networks: Mapping[str, Network]) -> tuple[str, Network]:
    """The generator to sample from: ``G_ema`` if present, else ``G``, else the only generator."""
    for name in ("G_ema", "G"):
        if name in networks and networks[name].kind == "generator":
            return name, networks[name]
    gens = [(n, v) for n, v in networks.items() if v.kind == "generator"]
    if len(gens) == 1:
        return gens[0]
    raise ValueError(f"cannot choose a generator among {list(networks)}")


def load_any(path: str | os.PathLike, names: list[str] | tuple[str, ...] | None = None
             ) -> dict[str, Network]:
    """Networks from our model directory, or from an NVlabs ``.pkl`` / rosinality ``.pt`` file.

    A file is converted in memory by :func:`gancomp_jax.convert.import_torch` (its format is
    told from the content); the result then also has ``.metadata`` with the conversion facts.
    """
    if not Path(path).exists():
        raise FileNotFoundError(f"model checkpoint {path} does not exist")
    if Path(path).is_dir():
        return load_model(path, names)
    from gancomp_jax.convert import import_torch  # lazy: gancomp_jax.convert imports this module

    return import_torch(path, which=None if names is None else list(names))
