"""Training checkpoints with Orbax: train state + input-pipeline position + run metadata.

``WORKDIR/checkpoints/<step>/{state,data,meta}``; Orbax writes each checkpoint to a temporary
directory and renames it when complete, so a run killed mid-save resumes from the previous
complete checkpoint. Only the newest ``max_to_keep`` checkpoints are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax
import jax
import orbax.checkpoint as ocp


class TrainCheckpointer:
    def __init__(self, directory: str | Path, max_to_keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=async_save)
        self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                           item_names=("state", "data", "meta"))

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        self._mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)))

    def restore_meta(self, step: int) -> dict:
        """Only the run metadata of checkpoint ``step`` (cheap; read before the state)."""
        restored = self._mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(restored["meta"])

    def restore(self, step: int, template_state: Any, shardings: Any) -> tuple[Any, dict, dict]:
        """Restores checkpoint ``step`` into the structure (and shardings) of ``template_state``."""
        target = flax.serialization.to_state_dict(template_state)
        target_sh = flax.serialization.to_state_dict(shardings)
        abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), target, target_sh)
        restored = self._mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
        state = flax.serialization.from_state_dict(template_state, restored["state"])
        return state, dict(restored["data"]), dict(restored["meta"])

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.wait_until_finished()
        self._mngr.close()
