"""gancomp_jax: StyleGAN2 compression (NICKEL & DiME, CAGC, DGL-GAN, ...) in JAX/Flax."""

__version__ = "0.1.0"
