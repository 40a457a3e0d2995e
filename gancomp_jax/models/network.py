"""One stored network (kind, description, variables): the unit that model directories,
the converters and the trainer's exports exchange.

Kept apart from :mod:`gancomp_jax.checkpoints` (which re-exports it and :func:`check_variables`) so that the converters
(:mod:`gancomp_jax.convert`) can build networks without importing the checkpoint module,
which itself imports the converters lazily (no import cycle).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from flax import traverse_util

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig
from gancomp_jax.models.registry import abstract_variables


@dataclasses.dataclass
class Network:
    """One stored network: its kind ('generator' | 'discriminator'), description and variables."""

    kind: str
    config: GeneratorConfig | DiscriminatorConfig
    variables: dict[str, Any]


def check_variables(name: str, network: Network) -> None:
    """Raises ValueError if ``network.variables`` do not fit its description (names or shapes)."""
    want = traverse_util.flatten_dict(abstract_variables(network.kind, network.config), sep="/")
    have = traverse_util.flatten_dict(dict(network.variables), sep="/")
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    bad = [f"{k}: {tuple(np.shape(have[k]))} != {tuple(want[k].shape)}"
           for k in sorted(set(want) & set(have)) if tuple(np.shape(have[k])) != tuple(want[k].shape)]
    if missing or extra or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:8]}{' ...' if len(extra) > 8 else ''}")
        if bad:
            parts.append(f"wrong shapes {bad[:8]}")
        raise ValueError(f"network {name!r}: variables do not match its description: " + "; ".join(parts))
