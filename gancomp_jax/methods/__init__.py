"""Training methods: one module ``gancomp_jax/methods/<name>.py`` each, selected by
``config.method.name``.

A method module defines ``build(config, env) -> Method`` (see :mod:`gancomp_jax.methods.base`)
and optionally ``resolve(config) -> None`` (fills method defaults into the config and checks
it, raising ValueError naming the bad key) and ``default_config() -> ConfigDict`` (the
method's keys under ``config.method``). The registry below needs no editing: a name is looked up
by importing ``gancomp_jax.methods.<name>``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from types import ModuleType

from gancomp_jax.methods.base import (BuildEnv, Context, Generated, Latents, Method, NetworkSpec, OptimizerSpec,
                                      Phase)

_NOT_METHODS = {"base"}


def available() -> list[str]:
    """Names of the method modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_METHODS
                  and not m.name.startswith("_"))


def get(name: str) -> ModuleType:
    """The method module ``gancomp_jax.methods.<name>``; ValueError naming the choices if none."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name in _NOT_METHODS:
        raise ValueError(f"config.method.name={name!r} is not a method; available: {available()}")
    try:
        module = importlib.import_module(f"gancomp_jax.methods.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"gancomp_jax.methods.{name}":
            raise ValueError(f"config.method.name={name!r} is not a method; available: {available()}") from None
        raise
    if not callable(getattr(module, "build", None)):
        raise ValueError(f"gancomp_jax.methods.{name} defines no build(config, env)")
    return module


__all__ = ["BuildEnv", "Context", "Generated", "Latents", "Method", "NetworkSpec", "OptimizerSpec", "Phase",
           "available", "get"]
