"""Output folders of the editing tools: the ``.gancomp_jax_output.json`` marker, sealing, videos.

Every folder an editing job writes carries a marker file ``.gancomp_jax_output.json`` with at
least ``{"tool": NAME}``; a folder is *sealed* once its marker says ``"complete": true``, which is
written last. A folder that exists without our marker is never written into or replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

MARKER = ".gancomp_jax_output.json"
VIDEO_FORMATS = ("none", "gif", "mp4")


def read_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of ``folder`` as a dict, or None when there is none (or it is unreadable)."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_marker(folder: str | os.PathLike, tool: str, **fields: Any) -> None:
    """Writes ``folder``'s marker atomically (temp file + rename)."""
    path = Path(folder) / MARKER
    tmp = path.with_name(f"{MARKER}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({"tool": tool, **fields}, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def is_ours(folder: str | os.PathLike, tool: str | None = None) -> bool:
    marker = read_marker(folder)
    return marker is not None and (tool is None or marker.get("tool") == tool)


def claim_folder(folder: str | os.PathLike, tool: str, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """Makes ``folder`` ours for ``tool``, or checks that it already is.

    A missing or empty folder is created and marked (``complete: false``). A folder of ours
    written by the same tool with other ``settings`` is refused, naming the changed keys; a folder
    with files but no marker of ours is refused. Returns the existing marker (None if new).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output path {folder} exists and is not a directory")
    marker = read_marker(folder) if folder.exists() else None
    if marker is None:
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"output folder {folder} already holds files that are not an output of "
                                  f"gancomp_jax {tool} (no {MARKER}); choose an empty or new folder")
        folder.mkdir(parents=True, exist_ok=True)
        write_marker(folder, tool, settings=dict(settings), complete=False)
        return None
    if marker.get("tool") != tool:
        raise FileExistsError(f"output folder {folder} was written by gancomp_jax {marker.get('tool')!r}, "
                              f"not {tool!r}; choose another folder")
    old = marker.get("settings", {})
    new = json.loads(json.dumps(dict(settings), default=str))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        raise ValueError(f"output folder {folder} holds a {tool} run with other settings (changed: "
                         f"{', '.join(changed)}); use a new folder to run with these settings")
    return marker


def new_temp_dir(parent: Path, name: str) -> Path:
    """A fresh hidden ``parent/.NAME.tmp-XXXXXXXX`` folder for writing before sealing."""
    tmp = parent / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def remove_stale_temps(parent: Path) -> None:
    """Removes our unfinished ``.NAME.tmp-*`` folders left by an interrupted run."""
    for p in parent.glob(".*.tmp-*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def ffmpeg_available() -> bool:
    """True when imageio with its ffmpeg plugin is installed (MP4 needs an encoder)."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def check_video_format(fmt: str) -> None:
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"video format must be one of {VIDEO_FORMATS}, got {fmt!r}")
    if fmt == "mp4" and not ffmpeg_available():
        raise ValueError("video='mp4' needs an MP4 encoder (pip install imageio imageio-ffmpeg); "
                         "use video='gif' or 'none'")


def write_animation(path: str | os.PathLike, frames: list[np.ndarray] | np.ndarray, fps: float = 10.0) -> Path:
    """Writes uint8 frames ``[T, H, W, C]`` as an animated GIF (Pillow) or MP4 (imageio-ffmpeg),
    chosen by ``path``'s suffix; written beside and renamed into place."""
    path = Path(path)
    frames = [np.asarray(f, np.uint8) for f in frames]
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        if path.suffix == ".gif":
            ims = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
            ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:],
                        duration=max(1, int(round(1000 / fps))), loop=0)
        elif path.suffix == ".mp4":
            import imageio

            with imageio.get_writer(tmp, mode="I", fps=fps, codec="libx264", bitrate="16M") as w:
                for f in frames:
                    w.append_data(f)
        else:
            raise ValueError(f"unknown animation format {path.suffix!r} (use .gif or .mp4)")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
