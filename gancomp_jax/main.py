"""Command-line entry point.

    python -m gancomp_jax.main --config experiments/<name>.py --workdir DIR [--config.key=value ...]

The config file's ``job`` field selects what runs (``generate``, ``init_model``, ``train``,
``quickstart``, ...). Every config value can be overridden on the command line; unknown keys and
values of the wrong type are rejected before anything runs.
"""

from __future__ import annotations

import importlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (experiments/<name>.py).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory of the job.")

# job name -> module exposing run(config, workdir)
JOBS = {
    "generate": "gancomp_jax.jobs.generate",
    "init_model": "gancomp_jax.jobs.init_model",
    "train": "gancomp_jax.jobs.train",
    "quickstart": "gancomp_jax.jobs.quickstart",
}


class UsageError(ValueError):
    """A user-facing configuration problem (printed without a traceback)."""


def run_job(config, workdir: str):
    """Runs ``config.job`` with ``workdir``; returns what the job returns."""
    job = config.get("job")
    if job not in JOBS:
        raise UsageError(f"config.job={job!r} is not a known job; choose one of {sorted(JOBS)}")
    if not workdir:
        raise UsageError("--workdir is required")
    module = importlib.import_module(JOBS[job])
    return module.run(config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None:
        raise app.UsageError("--config is required (e.g. --config experiments/generate.py)")
    try:
        run_job(_CONFIG.value, _WORKDIR.value)
    except (UsageError, ValueError, FileNotFoundError, FileExistsError, KeyError) as e:
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


def parse_flags(argv):
    """absl flag parsing with one clear line for unknown config keys or bad values."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except (AttributeError, KeyError) as e:
        key = str(e).strip("\"'")
        bad = [a for a in argv[1:] if a.startswith("--config.") and key in a.split("=", 1)[0]]
        print(f"error: unknown config key {key!r} (from {' '.join(bad) or 'the command line'}); "
              f"the config file lists the valid keys", file=sys.stderr)
        sys.exit(2)


def entry():
    app.call_after_init(_quiet_library_logs)
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    entry()
