"""The networks of a training run at one of its checkpoints (for generation and evaluation).

``load_run_networks(RUN_DIR)`` gives the exported networks (e.g. ``G``, ``G_ema``, ``D``; for a
distillation run the student's) of the newest *verified* checkpoint of ``RUN_DIR/checkpoints``;
``load_run_networks(RUN_DIR/checkpoints/<step>)`` those of that step (verified too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from gancomp_jax.models.network import Network, check_variables
from gancomp_jax.models.registry import KINDS
from gancomp_jax.train.checkpointing import _step_dirs, verify


def _find_step(path: Path) -> Path:
    if path.parent.name == "checkpoints" and path.name.isdigit():
        problem = verify(path)
        if problem is not None:
            raise ValueError(f"checkpoint {path} cannot be used: {problem}")
        return path
    ckpt_dir = path / "checkpoints"
    if not ckpt_dir.is_dir():
        raise ValueError(f"{path} is not a training run (no checkpoints/ in it)")
    for _, step_dir in _step_dirs(ckpt_dir):
        if verify(step_dir) is None:
            return step_dir
    raise ValueError(f"{ckpt_dir} holds no verified checkpoint")


def load_run_networks(path: str | Path, names: Sequence[str] | None = None) -> dict[str, Network]:
    """``{export name: Network}`` (host numpy variables) of a run directory or checkpoint folder."""
    path = Path(path).absolute()
    if not path.exists():
        raise FileNotFoundError(f"training run {path} does not exist")
    step_dir = _find_step(path)
    # Handlers named, so that item_metadata reads the saved shapes: without them it is None and
    # Orbax restores onto the saving run's devices (a run trained on 4 devices would not load on 1).
    mngr = ocp.CheckpointManager(step_dir.parent, options=ocp.CheckpointManagerOptions(create=False, read_only=True),
                                 item_handlers={"state": ocp.StandardCheckpointHandler(),
                                                "meta": ocp.JsonCheckpointHandler()})
    try:
        step = int(step_dir.name)
        meta = dict(mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
        exports = meta.get("exports")
        if meta.get("state_format") != 2 or not exports:
            raise ValueError(f"{step_dir} was written by an older trainer; use its model/ directory instead")
        tree = mngr.item_metadata(step)["state"]
        tree = getattr(tree, "tree", tree)
        dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dev), tree)
        state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    finally:
        mngr.close()
    wanted = list(exports) if names is None else list(names)
    out = {}
    for name in wanted:
        if name not in exports:
            raise KeyError(f"network {name!r} not in {step_dir} (found: {sorted(exports)})")
        e = exports[name]
        variables = state["ema" if e["ema"] else "params"][e["role"]]
        cls = KINDS[e["kind"]][0]
        net = Network(e["kind"], cls.from_dict(e["config"]), jax.tree.map(np.asarray, dict(variables)))
        check_variables(name, net)
        out[name] = net
    return out
