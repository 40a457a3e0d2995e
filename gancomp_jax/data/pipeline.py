"""Deterministic, resumable, multi-host input pipeline built on Grain.

Batches are dicts of numpy arrays::

    {'image': float32 [local_batch, R, R, 3] in [-1, 1]  (= uint8 / 127.5 - 1),
     'label': int32   [local_batch]                      (-1 = unlabelled)}

with ``local_batch = global_batch_size // process_count``.

How the stream is defined (all lazy ``grain.MapDataset`` index arithmetic, so
any position can be reached in O(1)):

1. ``MapDataset.source(source).shuffle(shuffle_seed).repeat(num_epochs)``:
   position ``g`` (the *global example index*) of the resulting stream is
   epoch ``g // N``, and Grain reshuffles every epoch with a seed folded with
   the epoch number. ``num_epochs=None`` repeats forever.
2. With ``drop_remainder=True`` and finite epochs the stream is cut to a
   multiple of ``global_batch_size``, so every process sees the same number of
   full batches.
3. Global batch ``b`` is positions ``[b * G, (b + 1) * G)``. Process ``p`` of
   ``P`` takes the contiguous block ``o = 0 .. L-1`` (``L = G // P``) of it:
   its local batch ``b`` is positions ``b * G + p * L + o``. The local batches
   of all processes are disjoint and, concatenated in process order, form
   exactly global batch ``b`` whatever ``P`` is (``global_row = p * L + o``) —
   the layout ``jax.make_array_from_process_local_data`` assumes. With several
   processes an incomplete final global batch is always dropped.
4. The x-flip decision for position ``g`` comes from an RNG seeded with
   ``(seed, g)`` only, so it does not depend on the process count, the
   number of threads or worker processes.

Resuming: the pipeline counts the local batches it has returned. ``get_state``
returns that count (plus fingerprints of the settings that define the stream)
as a JSON-serialisable dict; ``set_state`` rebuilds the Grain iterator starting
at that batch (``batches[k:]``), so prefetched-but-unconsumed batches are
simply read again and the continuation is bit-identical. The state is the same
on every process and does not depend on ``worker_count``; since global batch
contents do not depend on ``process_count`` either, a run may also resume with
a different number of processes (same ``global_batch_size``).

Reading: ``to_iter_dataset`` with ``prefetch_batches`` threads, each building
one whole batch; with ``worker_count > 0`` Grain's ``mp_prefetch`` hands whole
batches round-robin to that many worker processes (identical output).
"""

from __future__ import annotations

import json
from typing import Any, Iterator

from absl import flags
import grain
import numpy as np

STATE_VERSION = 1
_SHUFFLE_STREAM = 0x5F1E
_XFLIP_STREAM = 0xF11B


def _derive_seed(seed: int, stream: int) -> int:
    """A 32-bit seed for one randomness stream (shuffle, ...) of the pipeline."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def flip_decision(seed: int, global_index: int) -> bool:
    """Whether the example at stream position ``global_index`` is x-flipped."""
    rng = np.random.default_rng([seed, _XFLIP_STREAM, global_index])
    return bool(rng.integers(2))


def _tag_with_position(index: int, example: Any) -> tuple[int, Any]:
    return index, example


class _ToModelInput:
    """(position, {'image': uint8 HxWx3, 'label': int}) -> float32/int32 example."""

    def __init__(self, seed: int, xflip: bool):
        self.seed = seed
        self.xflip = xflip

    def __call__(self, tagged: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        position, example = tagged
        image = np.asarray(example["image"])
        if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"source returned image of shape {image.shape} dtype {image.dtype};"
                " expected uint8 [H, W, 3]"
            )
        if self.xflip and flip_decision(self.seed, position):
            image = image[:, ::-1]
        image = image.astype(np.float32) * np.float32(1 / 127.5) - np.float32(1)
        return {"image": image, "label": np.int32(example["label"])}


class _ProcessBlocks:
    """Random-access view of process ``p``'s rows: its contiguous block of every global batch.

    Local index ``i`` is stream position ``(i // L) * G + p * L + i % L`` (``G`` global and
    ``L`` local batch size), so concatenating the processes' local batches in process order
    gives exactly the single-process global batch — the layout
    ``jax.make_array_from_process_local_data`` assumes.
    """

    def __init__(self, stream: Any, global_batch: int, local_batch: int, process_index: int):
        self.stream, self.g, self.l, self.p = stream, global_batch, local_batch, process_index

    def __len__(self) -> int:
        return len(self.stream) // self.g * self.l

    def __getitem__(self, i: int):
        return self.stream[(i // self.l) * self.g + self.p * self.l + i % self.l]


class InputPipeline(Iterator[dict[str, np.ndarray]]):
    """Iterator over local batches; see the module docstring for the layout.

    Args:
      source: random-access source (``__len__``, ``__getitem__`` returning
        ``{'image': uint8 [R, R, 3], 'label': int}``).
      global_batch_size: examples per step over all processes; must be divisible
        by ``process_count``.
      seed: non-negative int; defines the shuffle order and x-flips.
      xflip: randomly mirror images horizontally (probability 1/2 each).
      process_index, process_count: this process and the number of processes
        (e.g. ``jax.process_index()``, ``jax.process_count()``).
      num_epochs: passes over the data; ``None`` = forever.
      drop_remainder: drop the last incomplete global batch (finite epochs
        only). With several processes it is always dropped.
      worker_count: Grain worker processes (0 = read in this process).
      prefetch_batches: batches read ahead (and in parallel, one thread each)
        per process / worker.
    """

    def __init__(
        self,
        source: Any,
        *,
        global_batch_size: int,
        seed: int,
        xflip: bool = False,
        process_index: int = 0,
        process_count: int = 1,
        num_epochs: int | None = None,
        drop_remainder: bool = True,
        worker_count: int = 0,
        prefetch_batches: int = 4,
    ):
        if process_count < 1 or not 0 <= process_index < process_count:
            raise ValueError(f"bad process_index/process_count: {process_index}/{process_count}")
        if global_batch_size < 1 or global_batch_size % process_count:
            raise ValueError(
                f"global_batch_size={global_batch_size} must be a positive multiple"
                f" of process_count={process_count}"
            )
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if num_epochs is not None and num_epochs < 1:
            raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")
        num_examples = len(source)
        if num_examples == 0:
            raise ValueError(f"source {source!r} is empty")

        self.source = source
        self.seed = int(seed)
        self.global_batch_size = int(global_batch_size)
        self.local_batch_size = self.global_batch_size // process_count
        self.process_index, self.process_count = process_index, process_count
        self.num_epochs = num_epochs
        self.drop_remainder = drop_remainder
        self.xflip = bool(xflip)
        self.worker_count = int(worker_count)
        self.prefetch_batches = max(1, int(prefetch_batches))
        self.num_examples = num_examples

        ds = grain.MapDataset.source(source)
        ds = ds.shuffle(seed=_derive_seed(self.seed, _SHUFFLE_STREAM))
        ds = ds.repeat(num_epochs)  # reshuffles each epoch
        if num_epochs is not None and drop_remainder:
            full = len(ds) // self.global_batch_size * self.global_batch_size
            if full == 0:
                raise ValueError(
                    f"{len(ds)} examples ({num_epochs} epoch(s) of {num_examples}) do"
                    f" not fill one global batch of {self.global_batch_size}"
                )
            ds = ds[:full]
        ds = ds.map_with_index(_tag_with_position)  # stream position g
        if process_count > 1:
            ds = grain.MapDataset.source(
                _ProcessBlocks(ds, self.global_batch_size, self.local_batch_size, process_index))
        ds = ds.map(_ToModelInput(self.seed, self.xflip))
        self._batches = ds.batch(self.local_batch_size, drop_remainder=drop_remainder)
        self._next_batch = 0
        self._iter = None

    # -- iteration ------------------------------------------------------------
    @property
    def num_batches(self) -> int | None:
        """Local batches per full run (same on all processes), None if infinite."""
        return None if self.num_epochs is None else len(self._batches)

    def _make_iterator(self):
        ds = self._batches[self._next_batch :].to_iter_dataset(
            grain.ReadOptions(
                num_threads=self.prefetch_batches,
                prefetch_buffer_size=self.prefetch_batches,
            )
        )
        if self.worker_count > 0:
            # Grain 0.2.18's mp_prefetch reads an absl flag and fails with
            # UnparsedFlagAccessError outside absl.app (google/grain#1355, fixed
            # upstream after 0.2.18); fall back to the flag defaults in that case.
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.worker_count))
        return iter(ds)

    def __iter__(self) -> InputPipeline:
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        if self._iter is None:
            self._iter = self._make_iterator()
        batch = next(self._iter)
        self._next_batch += 1
        return batch

    def close(self) -> None:
        """Stops reader threads / worker processes (iteration can restart)."""
        if self._iter is not None:
            close = getattr(self._iter, "close", None)
            if close is not None:
                close()
            self._iter = None

    def __enter__(self) -> InputPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- checkpointing ---------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """JSON-serialisable position; identical on all processes."""
        return {
            "version": STATE_VERSION,
            "next_batch": self._next_batch,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
            "num_examples": self.num_examples,
            "num_epochs": self.num_epochs,
            "process_count": self.process_count,
        }

    def set_state(self, state: dict[str, Any] | str | bytes) -> None:
        """Continues exactly after the last batch returned when ``state`` was taken.

        Accepts the dict from ``get_state`` or its JSON encoding. Raises
        ``ValueError`` if the state belongs to a differently defined stream
        (seed, global batch size or dataset length differ).
        """
        if isinstance(state, (str, bytes)):
            state = json.loads(state)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported pipeline state version: {state!r}")
        for key in ("seed", "global_batch_size", "num_examples"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"pipeline state has {key}={state[key]!r} but this pipeline has"
                    f" {getattr(self, key)!r}; cannot resume"
                )
        self.close()
        self._next_batch = int(state["next_batch"])


def make_pipeline(source: Any, **kwargs: Any) -> InputPipeline:
    """Returns an :class:`InputPipeline` over ``source`` (an iterator with get/set_state);
    keyword arguments as for :class:`InputPipeline`."""
    return InputPipeline(source, **kwargs)
