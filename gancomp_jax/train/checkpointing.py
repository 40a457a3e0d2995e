"""Training checkpoints with Orbax: train state + input-pipeline position + run metadata,
each sealed with a checksum manifest.

``WORKDIR/checkpoints/<step>/{state,data,meta}``; Orbax writes each checkpoint to a temporary
directory and renames it when complete, so a run killed mid-save resumes from the previous
complete checkpoint. Only the newest ``max_to_keep`` checkpoints are kept.

Integrity: once a checkpoint is complete on disk, process 0 writes
``<step>/checksums.json`` (sha256 and size of every file in it). At restore, checkpoints are
verified newest first; one that is unsealed (no manifest: the run died before sealing it) or
whose files do not match (truncated, bytes flipped) is moved to ``WORKDIR/checkpoints_rejected/``
with a one-line warning, and the newest intact one is used. Only sealed, verified checkpoints
are named "good". If no checkpoint is intact but some are merely unsealed (the run stopped
between a save and its seal), nothing is moved and resuming is refused with a message: the run's
progress is never discarded silently; ``config.restart=True`` moves them aside and starts over.

On Cloud Storage (``gs://``; :mod:`gancomp_jax.io.cloud_storage`) the same holds with objects:
Orbax writes a step's objects in place and marks it complete with ``commit_success.txt``; the
seal is then one ``checksums.json`` object written in one request (atomic), listing every other
object of the step; verification compares sizes from the listing and re-hashes each object. A
rejected checkpoint is copied to ``checkpoints_rejected/`` and deleted (no rename on GCS: if that
is interrupted, the rest is moved on the next start).

An entry of ``checkpoints/`` that is a symbolic link is refused with one message (never
followed, never deleted through). A ``checksums.json`` is checked before use (an object whose ``files`` maps relative paths inside
the step directory to ``[sha256 hex, size]``, at most 16 MiB); one that is not is reported as
damaged, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import sys
import uuid
from pathlib import Path
from typing import Any

import flax
import jax
import orbax.checkpoint as ocp

from gancomp_jax.io import cloud_storage as gcs

MANIFEST = "checksums.json"
MAX_MANIFEST_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
RESTART_HINT = "set --config.restart=True to discard them and start again from step 0"


class UnsealedCheckpointsError(ValueError):
    """Every checkpoint of a run is unsealed or damaged and at least one is only unsealed."""


def _sha256(path: Path) -> str:
    if gcs.is_gcs(path):
        return gcs.sha256(str(path))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(step_dir: Path) -> list[Path]:
    return sorted(p for p in step_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def _sizes(step_dir) -> dict[str, int]:
    """``{relative path: size}`` of the files of a checkpoint (not the manifest)."""
    if gcs.is_gcs(step_dir):
        return {rel: n for rel, n in gcs.list_files(str(step_dir)).items() if rel != MANIFEST}
    return {str(p.relative_to(step_dir)): p.stat().st_size for p in _files(step_dir)}


def write_manifest(step_dir: Path) -> None:
    """Seals a complete checkpoint: ``{relative path: [sha256, size]}`` written atomically."""
    entries = {rel: [_sha256(step_dir / rel), size] for rel, size in sorted(_sizes(step_dir).items())}
    if gcs.is_gcs(step_dir):  # one object, one request: atomic
        gcs.write_bytes(str(step_dir / MANIFEST), json.dumps(
            {"format": "gancomp_jax.checkpoint_checksums", "version": 1, "files": entries},
            indent=0, sort_keys=True).encode())
        return
    tmp = step_dir / f".{MANIFEST}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps({"format": "gancomp_jax.checkpoint_checksums", "version": 1, "files": entries},
                              indent=0, sort_keys=True))
    tmp.rename(step_dir / MANIFEST)


def _manifest_entries(manifest: Path) -> dict[str, tuple[str, int]] | str:
    """``{relative path: (sha256, size)}`` of a checksum manifest, or what is wrong with it."""
    try:
        if gcs.is_gcs(manifest):
            raw = gcs.read_bytes(str(manifest), limit=MAX_MANIFEST_BYTES + 1)
        elif manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return f"its checksums.json is larger than {MAX_MANIFEST_BYTES} bytes"
        else:
            raw = manifest.read_bytes()
        if len(raw) > MAX_MANIFEST_BYTES:
            return f"its checksums.json is larger than {MAX_MANIFEST_BYTES} bytes"
        doc = json.loads(raw.decode())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return "its checksums.json is unreadable"
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, dict) or not files:
        return "its checksums.json has no 'files' mapping"
    out = {}
    for rel, entry in files.items():
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            return f"its checksums.json lists a path outside the checkpoint: {rel[:80]!r}"
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
                and _SHA256.fullmatch(entry[0]) and isinstance(entry[1], int) and not isinstance(entry[1], bool)
                and entry[1] >= 0):
            return f"its checksums.json entry for {rel[:80]!r} is not [sha256, size]"
        out[rel] = (entry[0], entry[1])
    return out


def verify(step_dir: Path) -> str | None:
    """None if ``step_dir`` is sealed and every listed file matches; else what is wrong."""
    step_dir = _as_dir(step_dir)
    manifest = step_dir / MANIFEST
    if not _is_sealed(step_dir):
        return "not sealed (no checksums.json: the run stopped before the checkpoint was complete)"
    files = _manifest_entries(manifest)
    if isinstance(files, str):
        return files
    if gcs.is_gcs(step_dir):
        present = gcs.list_files(str(step_dir))
        for rel, (digest, size) in sorted(files.items()):
            if rel not in present:
                return f"file {rel} is missing"
            if present[rel] != size:
                return f"file {rel} has {present[rel]} bytes, expected {size}"
            if _sha256(step_dir / rel) != digest:
                return f"file {rel} does not match its checksum"
        return None
    for rel, (digest, size) in sorted(files.items()):
        p = step_dir / rel
        try:
            st = p.lstat()
        except OSError:
            return f"file {rel} is missing"
        if not stat.S_ISREG(st.st_mode):
            return f"file {rel} is not a regular file"
        if st.st_size != size:
            return f"file {rel} has {st.st_size} bytes, expected {size}"
        if _sha256(p) != digest:
            return f"file {rel} does not match its checksum"
    return None


def _is_sealed(step_dir) -> bool:
    if gcs.is_gcs(step_dir):
        return gcs.exists(str(step_dir / MANIFEST))
    return (step_dir / MANIFEST).is_file()


def _step_dirs(directory: Path) -> list[tuple[int, Path]]:
    if gcs.is_gcs(directory):
        return sorted(((int(n), directory / n) for n in gcs.list_dirs(str(directory)) if n.isdigit()), reverse=True)
    if not directory.is_dir():
        return []
    return sorted(((int(p.name), p) for p in directory.iterdir() if p.is_dir() and p.name.isdigit()), reverse=True)


def refuse_links(directory: Path) -> None:
    """Raises ValueError if an entry of ``directory`` (e.g. ``checkpoints/0``) is a symbolic link:
    Orbax would follow it when reading and fail or delete through it when pruning old steps."""
    if gcs.is_gcs(directory) or not directory.is_dir():
        return
    links = sorted(p.name for p in directory.iterdir() if p.is_symlink())
    if links:
        raise ValueError(f"{directory / links[0]} is a symbolic link; a run's checkpoints must be real folders "
                         f"inside it (links are never followed or deleted): remove the link, or use a new --workdir")


def _legacy(step_dir: Path) -> bool:
    """A checkpoint of the trainer before checksums (no ``state_format`` in its metadata)."""
    try:
        path = step_dir / "meta" / "metadata"
        meta = json.loads(gcs.read_bytes(str(path)) if gcs.is_gcs(path) else path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "state_format" not in meta and "model" in meta


def select_intact(directory: str | Path, is_main: bool = True, restart: bool = False) -> int | None:
    """The newest verified checkpoint step in ``directory`` (None if none). Newer checkpoints
    that fail verification are moved aside (by process 0) with a warning line each.

    Raises ValueError for checkpoints of the trainer before the method redesign (not resumable),
    and :class:`UnsealedCheckpointsError` (moving nothing) when no checkpoint verifies but some
    are only unsealed, unless ``restart`` (then they are moved aside and None is returned)."""
    directory = _as_dir(directory)
    refuse_links(directory)
    checked = []
    for step, path in _step_dirs(directory):
        if not _is_sealed(path) and _legacy(path):
            raise ValueError(f"{directory} holds checkpoints of an older version of the trainer, which cannot be "
                             f"resumed; use a new --workdir (its model/ directory, if any, is still usable)")
        problem = verify(path)
        if problem is None:
            break
        checked.append((step, path, problem))
    else:
        unsealed = [step for step, path, _ in checked if not _is_sealed(path)]
        if unsealed and not restart:
            raise UnsealedCheckpointsError(
                f"{directory} holds no resumable checkpoint: step(s) {', '.join(map(str, unsealed))} are not sealed "
                f"(no checksums.json: the run stopped while saving, so they cannot be verified)"
                f"{' and the others are damaged' if len(unsealed) < len(checked) else ''}; the run's progress is "
                f"there but cannot be trusted; {RESTART_HINT} (they are moved to "
                f"{directory.parent / 'checkpoints_rejected'}), or use a new --workdir")
        step = None
    for bad_step, path, problem in checked:
        if is_main:
            rejected = directory.parent / "checkpoints_rejected"
            if not gcs.is_gcs(rejected):
                rejected.mkdir(exist_ok=True)
            target = rejected / f"{bad_step}-{uuid.uuid4().hex[:6]}"
            print(f"warning: checkpoint {path} is unusable ({problem}); moved to {target}, "
                  f"{'falling back to the previous one' if step is not None else 'starting from step 0 (restart)'}",
                  file=sys.stderr, flush=True)
            if gcs.is_gcs(path):
                gcs.move_prefix(str(path), str(target))
            else:
                shutil.move(str(path), str(target))
    return step


def _as_dir(directory):
    """A local ``Path`` or, for ``gs://``, an ``etils.epath.Path`` (Orbax's own path type)."""
    if gcs.is_gcs(directory):
        from etils import epath

        gcs.configure_clients()
        return epath.Path(str(directory))
    return Path(directory)


class TrainCheckpointer:
    """Orbax manager for ``WORKDIR/checkpoints`` with sealing (see module docstring).

    Construct it after :func:`select_intact` has removed unusable checkpoints.
    """

    def __init__(self, directory: str | Path, max_to_keep: int = 3, async_save: bool = True,
                 is_main: bool = True):
        self.directory = _as_dir(directory)
        if not gcs.is_gcs(self.directory):
            self.directory = self.directory.absolute()
        self.is_main = is_main
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=async_save)
        self._mngr = ocp.CheckpointManager(self.directory, options=options,
                                           item_names=("state", "data", "meta"))
        self._unsealed: list[int] = []
        self.last_sealed: int | None = None  # newest step this process sealed (no re-hashing)

    def latest_step(self) -> int | None:
        return self._mngr.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._mngr.all_steps())

    def seal(self) -> None:
        """Waits for pending saves and writes their checksum manifests."""
        self._mngr.wait_until_finished()
        if self.is_main:
            for step in self._unsealed:
                step_dir = self.directory / str(step)
                if (str(step) in gcs.list_dirs(str(self.directory)) if gcs.is_gcs(step_dir)
                        else step_dir.is_dir()):  # may have been pruned by max_to_keep meanwhile
                    write_manifest(step_dir)
                    self.last_sealed = max(step, self.last_sealed or step)
        self._unsealed = []

    def seal_if_done(self) -> None:
        """Seals finished saves without waiting (called every iteration: keeps the window in
        which the newest checkpoint is complete but unsealed short)."""
        if self.is_main and self._unsealed and not self._mngr.is_saving_in_progress():
            self.seal()

    def save(self, step: int, state: Any, data_state: dict, meta: dict) -> None:
        self.seal()  # the previous save is complete by now in almost every case: cheap
        self._mngr.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(flax.serialization.to_state_dict(state)),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave(meta)))
        self._unsealed.append(step)

    def last_good_step(self) -> int | None:
        """The newest sealed checkpoint whose files verify now (None if none)."""
        self.seal()
        for step, path in _step_dirs(self.directory):
            if verify(path) is None:
                return step
        return None

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
        self.seal()

    def close(self) -> None:
        self.seal()
        self._mngr.close()
