"""One stored network (kind, description, variables): the unit that model directories,
the converters and the trainer's exports exchange.

Kept apart from :mod:`gancomp_jax.checkpoints` (which re-exports it) so that the converters
(:mod:`gancomp_jax.convert`) can build networks without importing the checkpoint module,
which itself imports the converters lazily (no import cycle).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig


@dataclasses.dataclass
class Network:
    """One stored network: its kind ('generator' | 'discriminator'), description and variables."""

    kind: str
    config: GeneratorConfig | DiscriminatorConfig
    variables: dict[str, Any]
