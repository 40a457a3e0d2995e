"""Channel pruning of StyleGAN2 generators (CAGC, NICKEL & DiME, DGL-GAN widths).

``widths`` (which layers, how many channels), ``criteria`` (channel scores, a registry),
``masks`` (content masks for content-aware scoring), ``surgery`` (slicing the teacher's
variables) and ``pipeline`` (teacher networks → student networks + metadata).
"""

from gancomp_jax.prune.criteria import CRITERIA, ScoringInputs, compute_scores, register_criterion
from gancomp_jax.prune.surgery import select_kept, slice_generator
from gancomp_jax.prune.widths import layer_names, ratio_for_reduction, student_widths

__all__ = ["CRITERIA", "ScoringInputs", "compute_scores", "register_criterion", "select_kept",
           "slice_generator", "layer_names", "ratio_for_reduction", "student_widths"]
