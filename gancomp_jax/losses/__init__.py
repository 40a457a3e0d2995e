"""Loss terms (pure functions of arrays and callables)."""

from gancomp_jax.losses.stylegan2 import (logistic_d_loss, nonsaturating_g_loss, path_length_penalty,
                                          r1_penalty)

__all__ = ["logistic_d_loss", "nonsaturating_g_loss", "path_length_penalty", "r1_penalty"]
