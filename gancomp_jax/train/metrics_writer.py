"""What a user sees during training: TensorBoard events, a JSONL of scalars, PNG sample grids.

Only process 0 writes. TensorBoard files are written with TensorBoard's own event writer
(no TensorFlow needed); ``tensorboard --logdir WORKDIR/tb`` shows them.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from gancomp_jax.utils.images import make_grid, save_png


class MetricsWriter:
    """Writes scalars to ``WORKDIR/metrics.jsonl`` and ``WORKDIR/tb``; images to ``tb`` too."""

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self.workdir = Path(workdir)
        self._tb = None
        if enabled:
            (self.workdir / "tb").mkdir(parents=True, exist_ok=True)
            self._tb = EventFileWriter(str(self.workdir / "tb"))
            self._jsonl = open(self.workdir / "metrics.jsonl", "a", buffering=1)

    def truncate_after(self, step: int) -> None:
        """Drops JSONL records logged after ``step`` (they are redone after a resume)."""
        if not self.enabled:
            return
        path = self.workdir / "metrics.jsonl"
        self._jsonl.close()
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        path.write_text("".join(l + "\n" for l in keep))
        self._jsonl = open(path, "a", buffering=1)

    def scalars(self, step: int, values: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in values.items()}
        self._jsonl.write(json.dumps({"step": int(step), "time": time.time(), **clean}) + "\n")
        summary = summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in clean.items() if math.isfinite(v)])
        self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def image(self, step: int, tag: str, img: np.ndarray) -> None:
        """Adds a uint8 ``[H, W, 3]`` image to TensorBoard."""
        if not self.enabled:
            return
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=tag, image=summary_pb2.Summary.Image(height=img.shape[0], width=img.shape[1], colorspace=3,
                                                     encoded_image_string=buf.getvalue()))])
        self._tb.add_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()
            self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()
            self.enabled = False


def write_grid(path: Path, images_u8: np.ndarray, cols: int) -> np.ndarray:
    """Tiles ``[N, H, W, 3]`` uint8 images into a grid PNG at ``path``; returns the grid."""
    grid = make_grid(images_u8, cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, grid)
    return grid
