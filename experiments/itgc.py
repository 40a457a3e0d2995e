"""ITGC (NeurIPS 2022; CAGC + variational energy-based model) — released settings and digits.

    python -m gancomp_jax.main --config experiments/itgc.py --workdir runs/itgc \\
        --config.method.teacher=models/ffhq256 --config.method.student=runs/prune70/model \\
        --config.data.source=zip --config.data.path=ffhq256.zip \\
        --config.method.face_parser=79999_iter.pth --config.method.lpips_vgg=vgg16-397923af.pth

Variants (``--config experiments/itgc.py:VARIANT``, combine with ``+``):

- ``ffhq256`` (default): CAGC's training settings (``experiments/cagc_kd.py``; G EMA
  ``0.5^(32/10000)`` per iteration = ``ema_kimg`` 5 at batch 16) plus the
  released VEM defaults: ``ResnetEBM(input_nc=64, n_blocks=7)`` with Adam (1e-4, (0, 0.999)),
  Langevin 10 steps of size 50 with σ 0.005, λ_MI 0.05, λ_l2 0.05.
- ``released``: the only released ITGC code, the NICKEL & DiME port
  (``train_CAGC_with_VEM.py``, a stylegan2-ada loop): CAGC's ``released`` KD settings plus what
  that loop does — float16 in the 4 highest resolutions with ``conv_clamp`` 256 (here bfloat16,
  ``model.mixed_precision``) and ``nan_to_num`` on every gradient (``grad_nan_to_num``); EBM
  and Langevin settings as above; λ_MI = λ_l2 = 0.05 (the loss signature's; the port's
  ``main_utils`` default of 0.0 would switch the term off). Its stale-EBM-gradient and
  missing-key bugs are not reproduced (``gancomp_jax/methods/itgc.py``).
- CAGC's ``intermediate``, ``vgg``, ``no_mask``, ``shared_noise``.
- ``digits``: small32 digits teacher → pruned student (32 px, batch 16): output L1 + the
  energy term, unmasked, no perceptual term; the energy network has 4 blocks (16 px after its
  input pooling).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cagc_kd  # noqa: E402

from gancomp_jax.methods import itgc  # noqa: E402
from gancomp_jax.train.config import default_train_config  # noqa: E402

VARIANTS = cagc_kd.VARIANTS


def get_config(variant: str = "ffhq256"):
    c = default_train_config()
    c.method = itgc.default_config()
    cagc_kd.apply_variants(c, [p for p in (variant or "ffhq256").split("+") if p], "itgc")
    if "digits" in (variant or ""):
        c.method.ebm_blocks = 4
    if "released" in (variant or "").split("+"):
        c.model.mixed_precision = True
        c.model.conv_clamp = 256.0
        c.grad_nan_to_num = True
    return c
