"""A training run whose run directory is on Cloud Storage (``--workdir gs://bucket/prefix``).

* Checkpoints: Orbax writes ``gs://.../checkpoints/<step>`` directly (TensorStore); they are sealed
  and verified like local ones (:mod:`gancomp_jax.train.checkpointing`), so an interrupted run
  resumes exactly, from any machine that can read the bucket.
* Every other file of the run (``config.json``, ``metrics.jsonl``, ``tb/``, ``samples/``,
  ``model/``, ``best_model/``, the output marker) is written by the unchanged trainer code into a
  local staging folder and mirrored by :meth:`RemoteRun.sync`: each new or changed file becomes
  one object (one request: atomic). The trainer syncs after every checkpoint save and when it
  stops (finished, failed or interrupted), so what is on GCS is at most one checkpoint interval
  behind; a resume truncates ``metrics.jsonl`` to the checkpoint's step exactly as locally.
* Model folders (``model/``, ``best_model/``) have no atomic replace on GCS (no rename). They are
  committed like checkpoints: the old ``model.json`` is deleted first, then the old objects, then
  the new ``variables/`` objects are written, ``model.json`` last. A folder with ``model.json`` is
  complete; one without is not a model (``gsutil cp -r`` / ``gcloud storage cp -r`` it to a local
  folder to use it with the tools, which read local paths).
* The XLA compilation cache (``compilation_cache_dir='auto'``) goes to ``gs://.../xla_cache``
  (JAX reads and writes ``gs://`` itself), so a new runtime does not recompile.

Ownership as locally: the prefix must be new (no objects) or hold our marker
``.gancomp_jax_output.json``; anything else is refused before anything is written. When the run
fails on its inputs or is abandoned before its first checkpoint and the prefix was new, every
object written under it is deleted again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from gancomp_jax.io import cloud_storage as gcs
from gancomp_jax.utils.atomic_dir import MARKER

MODEL_DIRS = ("model", "best_model")
MODEL_COMMIT = "model.json"
PULLED = ("metrics.jsonl", MARKER)


class RemoteRun:
    """A ``gs://`` run directory with its local staging folder (see the module docstring)."""

    def __init__(self, url: str, is_main: bool = True):
        gcs.split(url)  # a bucket and a prefix
        self.url = url.rstrip("/")
        self.is_main = is_main
        self.fs = gcs.filesystem()
        existing = gcs.list_files(self.url, self.fs)
        self.created = not existing
        if existing and MARKER not in existing:
            shown = ", ".join(sorted(existing)[:5]) + (" ..." if len(existing) > 5 else "")
            raise ValueError(f"workdir {self.url} holds objects that are not outputs of gancomp_jax ({shown}; "
                             f"no {MARKER}); choose a new or empty prefix, nothing was changed")
        if existing:
            try:
                marker = json.loads(gcs.read_bytes(gcs.join(self.url, MARKER), self.fs, limit=1 << 16))
            except (OSError, ValueError):
                marker = None
            if not (isinstance(marker, dict) and isinstance(marker.get("tool"), str)):
                raise ValueError(f"workdir {self.url}: its {MARKER} is not a gancomp_jax marker; choose a new or "
                                 f"empty prefix, nothing was changed")
        self.staging = Path(tempfile.mkdtemp(prefix="gancomp_jax_gcs_run_"))
        self._synced: dict[str, tuple[int, int]] = {}
        for rel in PULLED:
            if rel in existing and is_main:
                local = self.staging / rel
                self.fs.get_file(gcs.join(self.url, rel), str(local))
                self._synced[rel] = self._signature(local)

    @property
    def checkpoints(self) -> str:
        return gcs.join(self.url, "checkpoints")

    def cache_root(self):
        """The run directory as a path object JAX's compilation cache accepts (``gs://``)."""
        from etils import epath

        return epath.Path(self.url)

    def remote_of(self, local) -> str | None:
        """The ``gs://`` name of a path inside the staging folder (None passes through)."""
        if local is None:
            return None
        rel = Path(local).relative_to(self.staging)
        return gcs.join(self.url, str(rel)) if str(rel) != "." else self.url

    @staticmethod
    def _signature(p: Path) -> tuple[int, int]:
        st = p.stat()
        return st.st_size, st.st_mtime_ns

    def _local_files(self) -> dict[str, Path]:
        out = {}
        for p in self.staging.rglob("*"):
            rel = p.relative_to(self.staging)
            hidden = any(part.startswith(".") for part in rel.parts) and str(rel) != MARKER
            if p.is_file() and not p.is_symlink() and not hidden:
                out[str(rel)] = p
        return out

    def sync(self, best_effort: bool = False) -> None:
        """Uploads new and changed files; model folders with ``model.json`` last (see above).
        ``best_effort`` (when the run is stopping on another error): a failure is one warning line."""
        if not self.is_main:
            return
        if best_effort:
            try:
                self.sync()
            except Exception as e:  # noqa: BLE001 - the error being raised matters more
                print(f"warning: could not upload the run's files to {self.url} ({type(e).__name__}: "
                      f"{str(e)[:200]}); the checkpoints there are unaffected", file=sys.stderr, flush=True)
            return
        files = self._local_files()
        changed = {rel for rel, p in files.items() if self._synced.get(rel) != self._signature(p)}
        for name in MODEL_DIRS:
            inside = {rel for rel in files if rel.startswith(name + "/")}
            if not changed & inside:
                continue
            remote = gcs.join(self.url, name)
            commit = gcs.join(remote, MODEL_COMMIT)
            if self.fs.exists(commit):
                self.fs.rm_file(commit)  # from here on the remote folder is not a model
            gcs.remove_prefix(remote, self.fs)
            for rel in sorted(inside, key=lambda r: r == f"{name}/{MODEL_COMMIT}"):
                self.fs.put_file(str(files[rel]), gcs.join(self.url, rel))
                self._synced[rel] = self._signature(files[rel])
            changed -= inside
        for rel in sorted(changed, key=lambda r: r == MARKER):
            self.fs.put_file(str(files[rel]), gcs.join(self.url, rel))
            self._synced[rel] = self._signature(files[rel])

    def has_checkpoints(self) -> bool:
        return bool(gcs.list_dirs(self.checkpoints, self.fs))

    def discard_if_new(self) -> None:
        """Deletes everything written under a prefix this run created, if no checkpoint is there."""
        if self.created and self.is_main and not self.has_checkpoints():
            gcs.remove_prefix(self.url, self.fs)
            self._synced.clear()

    def close(self) -> None:
        """Removes the staging folder (after the last :meth:`sync`)."""
        shutil.rmtree(self.staging, ignore_errors=True)


def probe_timeout() -> float:
    """Seconds the reachability probe waits (``GANCOMP_JAX_GCS_TIMEOUT_S``, default 30)."""
    try:
        return float(os.environ.get("GANCOMP_JAX_GCS_TIMEOUT_S", gcs.PROBE_TIMEOUT_S))
    except ValueError:
        return gcs.PROBE_TIMEOUT_S
