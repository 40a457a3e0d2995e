"""The one guard for everything our tools write: outputs are recognisable, only ours are replaced.

What counts as *ours* (and so may be replaced with ``--overwrite`` / ``config.overwrite``):

* a model directory: exactly ``model.json`` (format ``gancomp_jax.model``) and ``variables/``,
  as :func:`gancomp_jax.checkpoints.save_model` writes it;
* a converted feature network: exactly ``feature_net.json`` and ``variables/``
  (:func:`gancomp_jax.nets.weights.save_converted`);
* any other output folder holding the marker file :data:`MARKER` (``{"tool": ...}``), written
  by :func:`write_marker` into every non-model folder a tool of ours creates.

Never replaced, whatever the options: a folder of user files, a folder that is or contains a
source of the job, the current folder or one of its parents, a symbolic link (a link is never
followed into another folder; a dangling one is refused too).

Directories are written beside their destination as ``.NAME.partial-PID-XXXXXX`` and renamed into
place by :func:`move_into_place`; a replaced directory is renamed aside to ``.NAME.old-PID-XXXXXX``
and deleted afterwards. Temporaries left by a killed process are removed by
:func:`clean_stale_temporaries` on the next run (one line on stderr says so).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Iterable, Iterator

__all__ = ["MARKER", "MODEL_DIR_ENTRIES", "FEATURE_NET_ENTRIES", "OutputRefused", "is_model_dir",
           "is_ours", "read_marker", "write_marker", "check_output_dir", "check_workdir",
           "check_output_file", "check_run_workdir", "prepare_workdir", "temp_dir_beside", "move_into_place",
           "clean_stale_temporaries", "replace_file", "writing_dir"]

MARKER = ".gancomp_jax_output.json"
MODEL_DIR_ENTRIES = frozenset({"model.json", "variables"})
FEATURE_NET_ENTRIES = frozenset({"feature_net.json", "variables"})
_MODEL_FORMAT = "gancomp_jax.model"              # gancomp_jax.checkpoints.FORMAT (no JAX import here)
_FEATURE_NET_FORMAT = "gancomp_jax.feature_net"  # gancomp_jax.nets.weights.CONVERTED_FORMAT
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<what>partial|old)-(?:(?P<pid>\d+)-)?[0-9a-f]{6,8}$")


class OutputRefused(ValueError):
    """An output path that must not be written or replaced (printed as one ``error:`` line)."""


def _read_json(path: Path, limit: int = 1 << 20):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read(limit))
    except (OSError, ValueError, RecursionError):
        return None


def _entries_why(path: Path, allowed: frozenset[str]) -> str:
    foreign = sorted(p.name for p in path.iterdir() if p.name not in allowed)
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    return f"it holds files that are not ours ({shown})"


def is_model_dir(path: str | os.PathLike) -> tuple[bool, str]:
    """``(True, '')`` if ``path`` is a model directory of ours, else ``(False, why not)``."""
    path = Path(path)
    if path.is_symlink():
        return False, "it is a symbolic link"
    if not path.is_dir():
        return False, "it is not a directory"
    if {p.name for p in path.iterdir()} - MODEL_DIR_ENTRIES:
        return False, _entries_why(path, MODEL_DIR_ENTRIES)
    if not (path / "model.json").is_file() or not (path / "variables").is_dir():
        return False, "it lacks model.json or variables/"
    desc = _read_json(path / "model.json")
    if not isinstance(desc, dict) or desc.get("format") != _MODEL_FORMAT:
        return False, f"its model.json is not a {_MODEL_FORMAT} description"
    return True, ""


def _is_feature_net_dir(path: Path) -> bool:
    names = {p.name for p in path.iterdir()}
    if names != FEATURE_NET_ENTRIES or not (path / "variables").is_dir():
        return False
    meta = _read_json(path / "feature_net.json")
    return isinstance(meta, dict) and meta.get("format") == _FEATURE_NET_FORMAT


def read_marker(path: str | os.PathLike) -> dict | None:
    """The marker of an output folder of ours (``{"tool": ...}``), or None."""
    marker = Path(path) / MARKER
    if marker.is_symlink() or not marker.is_file():
        return None
    data = _read_json(marker, 1 << 16)
    return data if isinstance(data, dict) and isinstance(data.get("tool"), str) else None


def write_marker(path: str | os.PathLike, tool: str, **extra) -> Path:
    """Marks the folder ``path`` (created if needed) as an output of ``tool``; returns the marker."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    marker = path / MARKER
    if read_marker(path) is None:
        tmp = path / f".{MARKER}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps({"tool": tool, **extra}, sort_keys=True) + "\n")
        os.replace(tmp, marker)
    return marker


def is_ours(path: str | os.PathLike) -> tuple[bool, str]:
    """``(True, '')`` if ``path`` is an output of ours that may be replaced, else ``(False, why)``."""
    path = Path(path)
    if path.is_symlink():
        return False, "it is a symbolic link (never followed)"
    if not path.exists():
        return False, "it does not exist"
    if not path.is_dir():
        return False, "it is not a directory"
    if read_marker(path) is not None:
        return True, ""
    ours, why = is_model_dir(path)
    if ours or _is_feature_net_dir(path):
        return True, ""
    if "model.json" in why or "variables" in why:
        return False, why
    return False, (why if "not ours" in why else "it is not an output of gancomp_jax") + \
        f" (no model.json + variables/, no {MARKER})"


def _protected(path: Path, sources: Iterable[str | os.PathLike]) -> str | None:
    """Why ``path`` may never be replaced (cwd, a parent of it, a source inside), or None."""
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        return "it is the current folder or one of its parents"
    if real == Path(real.anchor) or real == Path.home().resolve():
        return "it is the file-system root or your home folder"
    for src in sources:
        if not src:
            continue
        src_real = Path(src).resolve()
        if real == src_real or real in src_real.parents:
            return f"it is or contains the source {src}"
    return None


def _name(option: str) -> str:
    return option or "overwrite"


def check_output_dir(out_dir: str | os.PathLike, sources: Iterable[str | os.PathLike] = (),
                     overwrite: bool = False, option: str = "--overwrite", what: str = "OUT") -> None:
    """Raises unless the directory ``out_dir`` may be (re)written as a whole from ``sources``.

    Raises:
      OutputRefused: ``out_dir`` is a symbolic link, is or contains a source, is the current
        folder or a parent of it, or exists (with ``overwrite``) and is not an output of ours.
      FileExistsError: ``out_dir`` exists and ``overwrite`` is not set.
    """
    out_dir = Path(out_dir)
    sources = [s for s in sources if s]
    if out_dir.is_symlink():
        raise OutputRefused(f"{what} {out_dir} is a symbolic link; links are never followed when writing: "
                            "give the real folder")
    why = _protected(out_dir, sources)
    if why:
        raise OutputRefused(f"{what} {out_dir} must not be replaced: {why}; nothing was changed")
    if not out_dir.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass {_name(option)} to replace it")
    ours, why = is_ours(out_dir)
    if not ours:
        raise OutputRefused(f"{_name(option)} only replaces an output of gancomp_jax (a model directory "
                            f"or a folder with {MARKER}), and {out_dir} is not one: {why}; nothing was changed")


def check_output_file(path: str | os.PathLike, overwrite: bool = False, option: str = "--overwrite") -> Path:
    """Raises unless the single file ``path`` may be written (its final name, as given).

    A symbolic link (dangling or not) is refused, never written through; an existing file needs
    ``overwrite``; a directory is refused.
    """
    path = Path(path)
    if path.is_symlink():
        raise OutputRefused(f"output {path} is a symbolic link; links are never written through")
    if path.exists():
        if not path.is_file():
            raise OutputRefused(f"output {path} exists and is not a regular file; nothing was changed")
        if not overwrite:
            raise FileExistsError(f"output {path} already exists"
                                  + (f"; pass {option} to replace it" if option else ""))
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of output {path} does not exist")
    return path


def replace_file(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` through a temporary beside it (never through a link)."""
    path = Path(path)
    if path.is_symlink():
        raise OutputRefused(f"output {path} is a symbolic link; links are never written through")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def check_workdir(workdir: str | os.PathLike, replaces: Iterable[str] = ()) -> None:
    """Raises unless a job may write its files into ``workdir``.

    ``workdir`` must be new, empty, or an output folder of ours (marked); never a link, the
    current folder or a parent of it. ``replaces``: names the job writes, only mentioned in the
    message when a foreign folder already holds them.
    """
    workdir = Path(workdir)
    if workdir.is_symlink():
        raise OutputRefused(f"workdir {workdir} is a symbolic link; links are never followed when writing: "
                            "give the real folder")
    if not workdir.exists():
        return
    if not workdir.is_dir():
        raise OutputRefused(f"workdir {workdir} exists and is not a folder")
    if read_marker(workdir) is not None:
        return
    entries = sorted(p.name for p in workdir.iterdir())
    if not entries:
        return
    clash = [n for n in replaces if (workdir / n).exists() or (workdir / n).is_symlink()]
    shown = ", ".join((clash or entries)[:5]) + (" ..." if len(clash or entries) > 5 else "")
    raise OutputRefused(f"workdir {workdir} holds files that are not outputs of gancomp_jax ({shown}; no "
                        f"{MARKER}); choose a new or empty workdir, nothing was changed")


def prepare_workdir(workdir: str | os.PathLike, tool: str, replaces: Iterable[str] = ()) -> Path:
    """:func:`check_workdir`, then creates ``workdir`` and marks it as ``tool``'s output."""
    check_workdir(workdir, replaces)
    write_marker(workdir, tool)
    return Path(workdir)


def check_run_workdir(workdir: str | os.PathLike) -> None:
    """Raises unless a training run may use ``workdir``: new, empty, marked as ours, or an earlier
    run (``checkpoints/`` inside, from before the marker existed). Never a link or a folder of
    other files (the trainer writes ``config.json``, ``model/``, ``samples/`` ... into it)."""
    workdir = Path(workdir)
    if not workdir.is_symlink() and (workdir / "checkpoints").is_dir() and read_marker(workdir) is None:
        return
    check_workdir(workdir, ("config.json", "model", "samples", "metrics.jsonl"))


def temp_dir_beside(directory: str | os.PathLike) -> Path:
    """Creates and returns ``.NAME.partial-PID-XXXXXX`` beside ``directory`` (its parent is created)."""
    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    return tmp


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)


def clean_stale_temporaries(directory: str | os.PathLike, quiet: bool = False) -> list[Path]:
    """Removes our ``.NAME.partial-*`` / ``.NAME.old-*`` left beside ``directory`` by a killed run.

    A temporary is stale when the process that made it (its PID in the name) is gone, or when it
    carries no PID (older names). A link among them is unlinked, never followed. Prints one
    line on stderr when something was removed (unless ``quiet``); returns what was removed.
    """
    directory = Path(directory).absolute()
    parent = directory.parent
    if not parent.is_dir():
        return []
    removed = []
    for p in parent.iterdir():
        m = _TEMP_RE.match(p.name)
        if not m or m.group("name") != directory.name:
            continue
        if m.group("pid") and _alive(int(m.group("pid"))):
            continue
        try:
            _remove(p)
            removed.append(p)
        except OSError:
            pass
    if removed and not quiet:
        print(f"note: removed {len(removed)} stale temporar{'y' if len(removed) == 1 else 'ies'} of an "
              f"interrupted earlier run beside {directory} ({', '.join(p.name for p in removed[:3])})",
              file=sys.stderr)
    return removed


def move_into_place(tmp: Path, directory: Path, sources: Iterable[str | os.PathLike] = ()) -> None:
    """Renames the finished ``tmp`` to ``directory``.

    An existing ``directory`` must be an output of ours (see the module docstring; anything
    else raises :class:`OutputRefused` and nothing changes); it is renamed aside first and
    deleted only after the new one is in place, so a reader never sees half of either.
    """
    tmp, directory = Path(tmp), Path(directory)
    if directory.is_symlink():
        raise OutputRefused(f"{directory} is a symbolic link; links are never followed when writing: "
                            "give the real folder")
    why = _protected(directory, sources)
    if why:
        raise OutputRefused(f"{directory} must not be replaced: {why}; nothing was changed")
    if directory.exists():
        ours, why = is_ours(directory)
        if not ours:
            raise OutputRefused(f"{directory} is not an output of gancomp_jax, so it is not replaced: {why}; "
                                "nothing was changed")
        trash = directory.parent / f".{directory.name}.old-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        directory.rename(trash)
        try:
            tmp.rename(directory)
        except BaseException:
            trash.rename(directory)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(directory)


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[tuple[list, object]]:
    """Holds Ctrl-C back while a folder is written (Orbax writes from threads that cannot be
    abandoned halfway); yields ``(signals received meanwhile, the handler before)`` and restores
    that handler at the end."""
    if threading.current_thread() is not threading.main_thread():
        yield [], None
        return
    got: list = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield got, old
    finally:
        signal.signal(signal.SIGINT, old)


def _raises_keyboard_interrupt(handler) -> bool:
    return handler is signal.default_int_handler or handler == signal.SIG_DFL


@contextlib.contextmanager
def writing_dir(directory: str | os.PathLike, sources: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yields a fresh temporary folder beside ``directory``; when the block ends normally it is
    moved into place (:func:`move_into_place`, which refuses anything that is not ours).

    Stale temporaries of an earlier killed run are removed first (one line says so). Ctrl-C while
    the block runs is held until it ends (saves take seconds): under Python's default handler the
    new folder is then discarded, nothing is changed, and KeyboardInterrupt is raised with one
    line saying so; under another handler (the trainer's) the folder is kept and that handler is
    called. An error in the block removes the temporary and changes nothing.
    """
    directory = Path(directory).absolute()
    clean_stale_temporaries(directory)
    with _sigint_deferred() as (got, old):
        tmp = temp_dir_beside(directory)
        try:
            yield tmp
            if not (got and _raises_keyboard_interrupt(old)):
                move_into_place(tmp, directory, sources)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    if got:
        if _raises_keyboard_interrupt(old):
            raise KeyboardInterrupt(f"Ctrl-C while writing {directory}: it was not written, nothing "
                                    "was changed")
        if callable(old):
            old(signal.SIGINT, None)
