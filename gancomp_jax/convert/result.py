"""What an import returns (:class:`ImportResult`) and which networks it was asked for.

Shared by :mod:`gancomp_jax.convert` (NVlabs / rosinality) and
:mod:`gancomp_jax.convert.biggan_import`, so that the latter need not import the package
``__init__`` that lazily imports it (no import cycle); the package re-exports every name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gancomp_jax.convert.errors import ConversionError, NetworkNotFoundError

NETWORK_NAMES = ("G_ema", "G", "D")
ROSINALITY_KEYS = {"G_ema": "g_ema", "G": "g", "D": "d"}
_ALIASES = {v: k for k, v in ROSINALITY_KEYS.items()}


class ImportResult(dict):
    """``{name: checkpoints.Network}`` in the order G_ema, G, D, plus ``metadata`` and ``warnings``."""

    def __init__(self, networks: dict, metadata: dict[str, Any]):
        super().__init__(networks)
        self.metadata = metadata

    @property
    def warnings(self) -> list[str]:
        return self.metadata["warnings"]

    @property
    def format(self) -> str:
        return self.metadata["source"]["format"]


def _requested(which: str | Iterable[str] | None, present: list[str], found: str, path: Path) -> list[str]:
    if which is None or which == "all":
        return present
    names = [w.strip() for w in which.split(",")] if isinstance(which, str) else list(which)
    names = [_ALIASES.get(n, n) for n in names]  # rosinality's names work too
    if "all" in names:
        return present
    unknown = [n for n in names if n not in NETWORK_NAMES]
    if unknown:
        raise ConversionError(f"unknown network name(s) {unknown}: choose from {', '.join(NETWORK_NAMES)} or all")
    missing = [n for n in names if n not in present]
    if missing:
        raise NetworkNotFoundError(f"{path}: network {', '.join(missing)} not in the file (found: {found})")
    return list(dict.fromkeys(names))
