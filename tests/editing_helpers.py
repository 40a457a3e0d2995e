"""Helpers shared by the editing tests (projector, style mixing, interpolation, edit report)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIGITS_TEACHER = REPO / "gancomp_jax" / "assets" / "digits_teacher"


def load_experiment(name: str, variant: str | None = None, **overrides):
    """``get_config(variant)`` of ``experiments/<name>.py`` with ``overrides`` applied."""
    spec = importlib.util.spec_from_file_location(f"_exp_{name}", REPO / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    config = mod.get_config() if variant is None else mod.get_config(variant)
    for k, v in overrides.items():
        setattr(config, k, v)
    return config
