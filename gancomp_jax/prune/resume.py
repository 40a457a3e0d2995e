"""Resumable scoring: a sampling criterion's running sums sealed in a file after every batch.

Content-aware scoring of a 256 px teacher takes hours on a CPU (see README). The criterion adds
each batch's scores to float64 running sums; after every batch :meth:`ScoreAccumulator.save`
writes ``{layer index: sums}``, the number of batches done, a fingerprint of everything the
scores depend on (teacher variables, settings, content mask) and a sha256 of it all, to a
temporary file renamed into place, so an interrupted run (Ctrl-C, kill, power cut) leaves the
sums of its last complete batch. :meth:`load` resumes from them only when the fingerprint and
checksum match — the samples of batch ``i`` depend only on ``(seed, i)``, so skipping the done
batches gives exactly the scores of an uninterrupted run; anything else (other settings, a
damaged file) is reported and scoring starts over.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gancomp_jax.io.safe_files import arrays_digest


def variables_digest(variables: Mapping[str, Any]) -> str:
    """sha256 over the names, shapes, dtypes and bytes of a variables tree (host copies)."""
    import jax  # pylint: disable=import-outside-toplevel

    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(dict(variables)), key=lambda t: jax.tree_util.keystr(t[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class ScoreAccumulator:
    """Running per-layer score sums of one criterion, sealed after every batch in ``path``.

    Args:
      path: the state file (``WORKDIR/.scoring_state.npz`` for the prune job).
      fingerprint: JSON-able settings the scores depend on (the criterion adds its own).
      prepare: called once before the first write (the job creates and marks its workdir).
    """

    def __init__(self, path: str | os.PathLike, fingerprint: Mapping[str, Any],
                 prepare: Callable[[], None] | None = None):
        self.path = Path(path)
        self.fingerprint = dict(fingerprint)
        self.prepare = prepare
        self.batches_done = 0
        self.num_batches: int | None = None
        self.resumed_from = 0

    def _key(self, extra: Mapping[str, Any]) -> str:
        return json.dumps({**self.fingerprint, **extra}, sort_keys=True, default=str)

    def load(self, extra: Mapping[str, Any], widths: Mapping[int, int], num_batches: int
             ) -> tuple[int, dict[int, np.ndarray]]:
        """(batches done, running sums) to continue from; (0, zeros) when there is nothing usable."""
        self.num_batches = num_batches
        zeros = {i: np.zeros(c, np.float64) for i, c in widths.items()}
        if not self.path.exists():
            return 0, zeros
        problem = None
        try:
            if not self.path.is_file() or self.path.stat().st_size > 64 << 20:
                raise ValueError("not a regular file of at most 64 MiB")
            with np.load(self.path, allow_pickle=False) as f:
                d = {k: f[k] for k in f.files}
            if d.get("checksum") is None or d["checksum"].tobytes() != arrays_digest(d):
                problem = "its checksum does not match (damaged or edited)"
            elif str(d["key"]) != self._key(extra):
                problem = "it was made with other settings or another teacher"
            else:
                done = int(d["batches_done"])
                sums = {i: d[f"layer{i}"].astype(np.float64) for i in widths}
                if not 0 < done <= num_batches or any(sums[i].shape != (c,) for i, c in widths.items()) \
                        or not all(np.all(np.isfinite(s)) for s in sums.values()):
                    problem = "its contents are inconsistent"
        except Exception as e:  # pylint: disable=broad-exception-caught
            problem = f"unreadable ({type(e).__name__}: {e})"
        if problem:
            print(f"warning: scoring state {self.path} is not used ({problem}); scoring from the start",
                  file=sys.stderr, flush=True)
            return 0, zeros
        self.batches_done = self.resumed_from = done
        print(f"resuming scoring after batch {done} of {num_batches} (sums sealed in {self.path})",
              file=sys.stderr, flush=True)
        return done, sums

    def save(self, extra: Mapping[str, Any], batches_done: int, sums: Mapping[int, np.ndarray]) -> None:
        """Seals the sums after ``batches_done`` batches (atomic: temporary file, then rename)."""
        if self.prepare is not None:
            self.prepare()
            self.prepare = None
        arrays = {f"layer{i}": np.asarray(s, np.float64) for i, s in sums.items()}
        arrays["batches_done"] = np.int64(batches_done)
        arrays["key"] = np.array(self._key(extra))
        arrays["checksum"] = np.frombuffer(arrays_digest(arrays), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            tmp.write_bytes(buf.getvalue())
            os.replace(tmp, self.path)
        finally:
            if tmp.exists():
                tmp.unlink()
        self.batches_done = batches_done

    def finish(self) -> None:
        """Removes the state file (the scores are in the job's outputs now)."""
        if self.path.is_file():
            self.path.unlink()

    def describe(self) -> str:
        n = self.num_batches
        if not self.batches_done:
            return "scoring stopped before its first batch was complete; re-run the same command to start again"
        return (f"scoring stopped after batch {self.batches_done} of {n if n is not None else '?'} (sums sealed in "
                f"{self.path}); re-run the same command to resume")


