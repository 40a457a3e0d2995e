"""StyleGAN2 networks as Flax linen modules with NVlabs numerics."""

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig
from gancomp_jax.models.discriminator import Discriminator
from gancomp_jax.models.generator import (Generator, MappingNetwork, SynthesisNetwork, mix_styles,
                                          sample_mixing_cutoff, truncate)
from gancomp_jax.models.presets import PRESET_NAMES, get_preset

__all__ = [
    "Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "MappingNetwork",
    "SynthesisNetwork", "mix_styles", "sample_mixing_cutoff", "truncate", "PRESET_NAMES", "get_preset",
]
