"""Command-line entry point.

    python -m gancomp_jax.main --config experiments/<name>.py --workdir DIR [--config.key=value ...]

The config file's ``job`` field selects what runs (``generate``, ``init_model``, ``train``,
``quickstart``, ...). Every config value can be overridden on the command line; unknown keys and
values of the wrong type are rejected before anything runs. ``--help`` lists the jobs and the
experiment files; ``--print_config`` prints a config's keys and values and exits.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/<name>.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the job.")
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False, "Print the config's keys and values, then exit.")

# job name -> module exposing run(config, workdir)
JOBS = {
    "generate": "gancomp_jax.jobs.generate",
    "init_model": "gancomp_jax.jobs.init_model",
    "train": "gancomp_jax.jobs.train",
    "quickstart": "gancomp_jax.jobs.quickstart",
    "dgl_gan": "gancomp_jax.jobs.dgl_gan",
    "gan_slimming": "gancomp_jax.jobs.gan_slimming",
    "prune": "gancomp_jax.jobs.prune",
    "evaluate": "gancomp_jax.jobs.evaluate",
    "report": "gancomp_jax.jobs.report",
    "project": "gancomp_jax.jobs.project",
    "style_mixing": "gancomp_jax.jobs.style_mixing",
    "interpolate": "gancomp_jax.jobs.interpolate",
    "edit_report": "gancomp_jax.jobs.edit_report",
}

# jobs that accept --workdir gs://bucket/prefix (train/remote_run.py); the others write local folders
REMOTE_WORKDIR_JOBS = ("train", "dgl_gan")

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
_HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull", "-help")


class UsageError(ValueError):
    """A user-facing configuration problem (printed without a traceback)."""


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions printed as one ``error:`` line: bad input, not bugs."""
    types: list[type[BaseException]] = [UsageError, ValueError, FileNotFoundError, FileExistsError,
                                        NotADirectoryError, IsADirectoryError, PermissionError, KeyError]
    try:  # a NaN/Inf stop is a result of the run, reported by its message
        from gancomp_jax.train.trainer import NonFiniteLossError
        types.append(NonFiniteLossError)
    except ImportError:
        pass
    return tuple(types)


def _has_files(path: Path) -> bool:
    """Whether ``path`` holds a file (our output marker alone does not count)."""
    return any((p.is_file() or p.is_symlink()) and p.name != ".gancomp_jax_output.json" for p in path.rglob("*"))


def run_job(config, workdir: str):
    """Runs ``config.job`` with ``workdir``; returns what the job returns.

    A job that fails leaves no empty run directory behind: if this call created ``workdir`` and
    the job wrote no file into it, the directory is removed again.
    """
    job = config.get("job")
    if job not in JOBS:
        raise UsageError(f"config.job={job!r} is not a known job; choose one of {sorted(JOBS)}")
    if not workdir:
        raise UsageError("--workdir is required")
    if "://" in workdir:
        if job not in REMOTE_WORKDIR_JOBS:
            raise UsageError(f"--workdir {workdir}: job {job!r} writes its outputs into a local folder (completed "
                             f"by renames, which object stores do not have); only the jobs "
                             f"{', '.join(REMOTE_WORKDIR_JOBS)} accept gs://. Use a local path, a mounted Drive folder or a gcsfuse mount")
        return importlib.import_module(JOBS[job]).run(config, workdir)  # cleans up after itself
    existed = Path(workdir).exists()
    module = importlib.import_module(JOBS[job])
    try:
        return module.run(config, workdir)
    except BaseException:
        path = Path(workdir)
        if not existed and path.is_dir() and not _has_files(path):
            shutil.rmtree(path, ignore_errors=True)
        raise


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {argv[1:]}; see --help")
    if _CONFIG.value is None:  # a usage error like the others: exit 2, one line
        _fail("--config is required (e.g. --config experiments/generate.py); see --help")
    if _PRINT_CONFIG.value:
        print(json.dumps(_CONFIG.value.to_dict(), indent=2, sort_keys=True, default=str))
        return
    try:
        run_job(_CONFIG.value, _WORKDIR.value)
    except KeyboardInterrupt as e:
        # The trainer re-raises Ctrl-C with the step and the last checkpoint in the message.
        msg = str(e) or "re-run the same command to resume"
        print(f"interrupted: {msg}", file=sys.stderr)
        sys.exit(130)
    except _user_error_types() as e:
        logging.debug("job failed", exc_info=True)
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)


def _quiet_library_logs() -> None:
    """Keeps INFO logs from this package only; libraries (Orbax, JAX) log warnings and up."""
    import logging as pylogging

    class _OnlyOurInfo(pylogging.Filter):
        def filter(self, record):
            return record.levelno >= pylogging.WARNING or "gancomp_jax" in record.pathname

    for handler in pylogging.getLogger().handlers + pylogging.getLogger("absl").handlers:
        handler.addFilter(_OnlyOurInfo())


# ---------------------------------------------------------------------------------------------
# Argument checks that absl would turn into tracebacks or garbled messages.


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _config_path(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def _load_config_file(path: str):
    """Loads ``get_config()`` of a config file (the same file absl will load), or exits with one line."""
    file_part, sep, arg = path.partition(":")
    file = Path(file_part)
    if not file.is_file():
        near = difflib.get_close_matches(file.name, [p.name for p in EXPERIMENTS.glob("*.py")], n=1)
        hint = f" (did you mean 'experiments/{near[0]}'?)" if near else "; see --help for the experiment files"
        _fail(f"config file '{path}' does not exist{hint}")
    try:
        spec = importlib.util.spec_from_file_location(f"_gancomp_config_{file.stem}", file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 — any failure of the user's config file is one line
        _fail(f"config file '{path}' could not be loaded: {type(e).__name__}: {e}")
    try:  # with the ':ARG' part, as absl calls it, so the config's own message is what the user sees
        return module.get_config(arg) if sep else module.get_config()
    except (ValueError, KeyError, TypeError) as e:
        _fail(f"config file '{path}': {e.args[0] if isinstance(e, KeyError) and e.args else e}")
    except Exception as e:  # noqa: BLE001
        _fail(f"config file '{path}' could not be loaded: {type(e).__name__}: {e}")


def _flat_keys(config, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        name = f"{prefix}{k}"
        keys.append(name)
        if hasattr(v, "items") and not isinstance(v, dict):
            keys += _flat_keys(v, name + ".")
    return keys


def _check_override_keys(argv: list[str], config) -> None:
    """Every ``--config.KEY=VALUE`` names an existing key; else one line with a suggestion."""
    keys = _flat_keys(config)
    for a in argv[1:]:
        if not a.startswith("--config."):
            continue
        key = a[len("--config."):].split("=", 1)[0]
        if key in keys:
            continue
        near = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
        hint = f" (did you mean '{near[0]}'?)" if near else " (--print_config lists the keys)"
        _fail(f"unknown config key '{key}'{hint}")


def parse_flags(argv):
    """absl flag parsing with one clear line for a missing config file, unknown keys or bad values."""
    path = _config_path(argv)
    if path is not None:
        _check_override_keys(argv, _load_config_file(path))
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        msg = str(e)
        m = re.search(r"flag --(config\.[\w.]+)=(.*?): (.*)", msg)
        if m:
            msg = f"bad value '{m.group(2)}' for config key '{m.group(1)[7:]}': {m.group(3).strip()}"
        _fail(msg.splitlines()[0] if msg else type(e).__name__)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _fail(f"bad config override: {e}")


# ---------------------------------------------------------------------------------------------
# --help


def _docstring_summary(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    except (OSError, SyntaxError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def help_text() -> str:
    lines = ["usage: python -m gancomp_jax.main --config experiments/<name>.py --workdir DIR "
             "[--config.key=value ...]", "",
             "StyleGAN2 compression in JAX: import a PyTorch teacher, prune it, distil a student, measure it.",
             "", "jobs (chosen by the config file's `job` field):"]
    for name, module in JOBS.items():
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        lines.append(f"  {name:<12} {_docstring_summary(Path(spec.origin))}")
    lines += ["", f"experiment files ({EXPERIMENTS}):"]
    for path in sorted(EXPERIMENTS.glob("*.py")):
        lines.append(f"  experiments/{path.name:<24} {_docstring_summary(path)}")
    lines += ["",
              "options:",
              "  --config FILE          the experiment file (required)",
              "  --workdir DIR          where the job writes (required to run)",
              "  --config.KEY=VALUE     override any config value (nested keys with dots)",
              "  --print_config         print the config's keys and current values, then exit",
              "", "to see a config's keys: python -m gancomp_jax.main --config experiments/<name>.py --print_config"]
    return "\n".join(lines)


def entry():
    if any(a in _HELP_FLAGS for a in sys.argv[1:]):
        print(help_text())
        sys.exit(0)
    app.call_after_init(_quiet_library_logs)
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    entry()
