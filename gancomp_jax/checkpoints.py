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

import json
import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from gancomp_jax.models import registry
from gancomp_jax.models.registry import KINDS, abstract_variables  # noqa: F401  (network construction)
from gancomp_jax.models.network import Network, check_variables  # noqa: F401  (re-exported)
from gancomp_jax.utils.atomic_dir import check_output_dir, writing_dir

FORMAT = "gancomp_jax.model"
VERSION = 1


def init_network(kind: str, config, key: jax.Array) -> Network:
    """A freshly initialised network (NVlabs initialisation).

    Initialised under one ``jax.jit``: the same keys and draws as an eager ``init``, equal up to float
    rounding of fused ops (small32 G: at most 3e-5 in the N(0, 100) mapping weights) (eager ``init`` dispatches the
    dummy forward pass op by op: hundreds of compilations), in one compilation; for paper256 the
    time left is compiling the ~60 normal draws (28 s for init_model under load 4.5).
    """
    variables = jax.jit(registry.init_variables, static_argnums=(0, 1))(kind, config, key)
    return Network(kind, config, dict(variables))


def _init_variables_host_draws(kind: str, config, key: jax.Array):
    from gancomp_jax.models.layers import host_normal_draws
    with host_normal_draws():
        return registry.init_variables(kind, config, key)


def init_network_host_draws(kind: str, config, key: jax.Array) -> Network:
    """Like :func:`init_network` (same layout, constants and N(0, 1)/lr_multiplier scales), but the
    normal draws are numpy's (PCG64 seeded by each jax key's words), taken on the host.

    Only for ``init_model``'s random-weight models: it compiles one small program instead of
    one fused program per draw (paper256: ~20 s less under load). The numbers differ from
    :func:`init_network`'s for the same key; the trainer, bench and device check keep the jax draws.
    """
    variables = jax.jit(_init_variables_host_draws, static_argnums=(0, 1))(kind, config, key)
    return Network(kind, config, dict(variables))


def _local_checkpointer() -> ocp.StandardCheckpointer:
    """An Orbax checkpointer for host (numpy) trees that involves only this process.

    Model checkpoints hold plain numpy arrays written by one process, so no cross-process
    barriers (which would wait forever for processes that do not save) must be used.
    """
    me = jax.process_index()
    return ocp.StandardCheckpointer(multiprocessing_options=ocp.options.MultiprocessingOptions(
        primary_host=me, active_processes={me}, barrier_sync_key_prefix=f"model_p{me}"))


def save_model(directory: str | os.PathLike, networks: Mapping[str, Network],
               metadata: Mapping[str, Any] | None = None, overwrite: bool = False,
               sources: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Writes ``networks`` (e.g. ``{'G_ema': ..., 'D': ...}``) to ``directory`` atomically.

    Raises FileExistsError if ``directory`` exists and ``overwrite`` is False; with
    ``overwrite`` only an output of ours is replaced, never a folder of other files, a symbolic
    link, the current folder or a folder that is or holds one of ``sources``
    (:mod:`gancomp_jax.utils.atomic_dir`; OutputRefused, a ValueError, otherwise).
    """
    directory = Path(directory).absolute()
    check_output_dir(directory, sources, overwrite, option="overwrite=True", what="model directory")
    if not networks:
        raise ValueError("save_model needs at least one network")
    for name, net in networks.items():
        check_variables(name, net)
    with writing_dir(directory, sources) as tmp:
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
    for name, net in desc["networks"].items():  # all of them: every stored array is checked
        cls = KINDS[net["kind"]][0]
        try:
            configs[name] = cls.from_dict(net["config"])
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{directory}/model.json: network {name!r}: {e}") from None
    target = _expected_arrays(directory, desc, configs)
    ckptr = _local_checkpointer()
    try:
        restored = ckptr.restore(directory / "variables", target)
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


def max_model_bytes() -> int:
    """Largest model directory :func:`load_model` restores (float32 bytes of every declared array):
    ``$GANCOMP_MAX_MODEL_GIB`` GiB (default 16; NVlabs' 1024 px G + D are 0.2 GiB)."""
    raw = os.environ.get("GANCOMP_MAX_MODEL_GIB", "16")
    try:
        gib = float(raw)
    except ValueError:
        raise ValueError(f"GANCOMP_MAX_MODEL_GIB={raw!r} is not a number") from None
    return int(gib * 2 ** 30)


def _expected_arrays(directory: Path, desc: Mapping[str, Any], configs: Mapping[str, Any]) -> dict[str, Any]:
    """The restore target: every array ``model.json`` implies, checked against the stored
    metadata (names, shapes) and the size limit before a byte of array data is read."""
    cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    want = {}
    for name, cfg in configs.items():
        abstract = abstract_variables(desc["networks"][name]["kind"], cfg)
        want[name] = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, np.float32, sharding=cpu), abstract)
    total = sum(int(np.prod(a.shape)) * 4 for a in jax.tree.leaves(want))
    if total > max_model_bytes():
        raise ValueError(f"{directory}/model.json declares networks of {total / 2 ** 30:.1f} GiB, more than the limit "
                         f"of {max_model_bytes() / 2 ** 30:.1f} GiB (raise it with GANCOMP_MAX_MODEL_GIB)")
    ckptr = _local_checkpointer()
    try:
        meta = ckptr.metadata(directory / "variables")
    except Exception as e:  # pylint: disable=broad-exception-caught
        raise ValueError(f"{directory}/variables could not be read: {type(e).__name__}: {e}") from None
    finally:
        ckptr.close()
    stored = {jax.tree_util.keystr(path): tuple(getattr(m, "shape", ()) or ())
              for path, m in jax.tree_util.tree_leaves_with_path(getattr(meta, "item_metadata", meta))}
    expected = {jax.tree_util.keystr(path): tuple(a.shape) for path, a in jax.tree_util.tree_leaves_with_path(want)}
    extra = sorted(set(stored) - set(expected))
    missing = sorted(set(expected) - set(stored))
    bad = [f"{k}: stored {stored[k]}, model.json implies {expected[k]}" for k in sorted(set(stored) & set(expected))
           if stored[k] != expected[k]]
    if extra or missing or bad:
        parts = ([f"arrays not declared in model.json {extra[:4]}"] if extra else []) + \
                ([f"missing {missing[:4]}"] if missing else []) + ([f"wrong shapes {bad[:4]}"] if bad else [])
        raise ValueError(f"{directory}/variables does not match model.json: " + "; ".join(parts))
    return want


def pick_generator(networks: Mapping[str, Network]) -> tuple[str, Network]:
    """The generator to sample from: ``G_ema`` if present, else ``G``, else the only generator."""
    for name in ("G_ema", "G"):
        if name in networks and networks[name].kind in registry.GENERATOR_KINDS:
            return name, networks[name]
    gens = [(n, v) for n, v in networks.items() if v.kind in registry.GENERATOR_KINDS]
    if len(gens) == 1:
        return gens[0]
    raise ValueError(f"cannot choose a generator among {list(networks)}")


def resolve_model(path: str | os.PathLike) -> tuple[str, Path]:
    """What a MODEL argument names, as ``(form, path to read)``; the one resolver behind
    :func:`load_any`, so every job and tool accepts every output of our own jobs.

    ``form`` is ``'model_dir'`` (``model.json`` + ``variables/``), ``'run'`` (a training run
    directory: its newest verified checkpoint), ``'run_step'`` (``RUN/checkpoints/<step>``),
    ``'safetensors'`` (an NVlabs state dict written by ``tools/export_pt.py``), ``'export_dir'``
    (a folder written by ``tools/export_pt.py``) or ``'torch_file'`` (NVlabs ``.pkl`` /
    rosinality ``.pt``). Folders holding a model one level down are followed: ``WORKDIR/model``
    (prune job, finished training runs) and ``WORKDIR/stage2`` (the DGL-GAN job).

    Raises FileNotFoundError ("... does not exist") or ValueError (saying what was expected).
    """
    p = Path(path)
    if not (p.exists() or p.is_symlink()):
        raise FileNotFoundError(f"model {path} does not exist")
    if not p.exists():
        raise FileNotFoundError(f"model {path} is a symbolic link to something that does not exist")
    if p.is_file():
        if p.name.endswith(".safetensors"):
            return "safetensors", p
        return "torch_file", p
    if not p.is_dir():
        raise ValueError(f"model {path} is neither a file nor a folder")
    if (p / "model.json").is_file():
        return "model_dir", p
    if p.parent.name == "checkpoints" and p.name.isdigit():
        return "run_step", p
    if (p / "checkpoints").is_dir():
        return "run", p
    if (p / "model" / "model.json").is_file():
        return "model_dir", p / "model"
    if (p / "stage2").is_dir():
        return resolve_model(p / "stage2")
    if (p / "export.json").is_file() and any(p.glob("*.nvlabs.safetensors")):
        return "export_dir", p
    raise ValueError(f"{path} is not a gancomp_jax model checkpoint: expected a model directory (model.json + variables/), a "
                     "training or DGL-GAN run directory, RUN/checkpoints/<step>, an export_pt folder or "
                     ".nvlabs.safetensors file, an NVlabs .pkl or a rosinality .pt (convert other PyTorch "
                     "files with tools/convert_pt_weights.py)")


def _load_safetensors(files: list[Path], names) -> dict[str, Network]:
    from gancomp_jax.export.nvlabs_safetensors import load_nvlabs_safetensors  # lazy: safetensors

    out = {}
    for f in files:
        net = load_nvlabs_safetensors(f)
        suffix = ".nvlabs.safetensors"
        name = f.name[:-len(suffix)] if f.name.endswith(suffix) else ("G_ema" if net.kind == "generator" else "D")
        out[name] = net
    if names is not None:
        missing = [n for n in names if n not in out]
        if missing:
            raise KeyError(f"network {missing[0]!r} not in {files[0].parent if len(files) > 1 else files[0]} "
                           f"(found: {sorted(out)})")
        out = {n: out[n] for n in names}
    return out


def load_any(path: str | os.PathLike, names: list[str] | tuple[str, ...] | None = None
             ) -> dict[str, Network]:
    """Networks from any MODEL (see :func:`resolve_model`): our model directory, a training or
    DGL-GAN run (or one of its checkpoints), our ``.nvlabs.safetensors`` export, or an NVlabs
    ``.pkl`` / rosinality ``.pt`` file.

    A PyTorch file is converted in memory by :func:`gancomp_jax.convert.import_torch` (its format
    is told from the content); the result then also has ``.metadata`` with the conversion facts.
    """
    form, where = resolve_model(path)
    if form == "model_dir":
        return load_model(where, names)
    if form in ("run", "run_step"):
        from gancomp_jax.train.run_models import load_run_networks  # lazy: it imports this module

        return load_run_networks(where, names)
    if form == "safetensors":
        return _load_safetensors([where], names)
    if form == "export_dir":
        return _load_safetensors(sorted(where.glob("*.nvlabs.safetensors")), names)
    from gancomp_jax.convert import import_torch  # lazy: gancomp_jax.convert imports this module

    return import_torch(where, which=None if names is None else list(names))
