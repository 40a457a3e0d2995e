"""BigGAN (BigGAN-PyTorch's networks) as a model family; imported only by code that uses it."""

from gancomp_jax.models.biggan.config import (BigGANDiscriminatorConfig, BigGANGeneratorConfig,
                                              d_block_resolutions, d_downsample, g_num_blocks)
from gancomp_jax.models.biggan.networks import (BigGANDiscriminator, BigGANGenerator, init_discriminator,
                                                init_generator, standing_stats)

__all__ = ["BigGANDiscriminator", "BigGANDiscriminatorConfig", "BigGANGenerator", "BigGANGeneratorConfig",
           "d_block_resolutions", "d_downsample", "g_num_blocks", "init_discriminator", "init_generator",
           "standing_stats"]
