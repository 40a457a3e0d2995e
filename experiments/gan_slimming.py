"""GAN Slimming: sparsity training → prune (criterion gan_slimming) → fine-tune, chained.

    python -m gancomp_jax.main --config experiments/gan_slimming.py --workdir runs/gs \\
        --config.method.teacher=models/ffhq256 --config.data.source=zip --config.data.path=ffhq256.zip \\
        --config.method.vgg16=vgg16-397923af.pth

Stages in ``WORKDIR/stage1`` (sparsity training of the full-width student, initialised from the
teacher), ``WORKDIR/stage2`` (the prune job on stage 1's model, ``config.prune``) and
``WORKDIR/stage3`` (fine-tuning the pruned student; its ``model/`` is the result); see
``gancomp_jax/jobs/gan_slimming.py`` and ``gancomp_jax/methods/gan_slimming.py``.

Variants:

- ``ffhq256`` (default): the released GS scripts (SVS repository ``scripts/templates/gs``,
  NICKEL & DiME ``loss_GS.py``): η = 1e-5, KD = VGG content+Gram λ 3, unmasked, no pixel L1
  term (none of the released GS codes has one); ratio 0.7, scoring on 400 samples in batches
  of 8; StyleGAN2 settings (batch 32,
  lr 0.002, R1 γ 10, path length 2, mixing 0.9, x-flips). Kimg per stage are ours (the released
  scripts run until stopped): ``method.stage1_kimg`` / ``method.stage3_kimg``.
- ``released``: ``ffhq256`` plus what the NICKEL & DiME port's stylegan2-ada loop
  (``train_GS.py``) does: float16 in the 4 highest resolutions with ``conv_clamp`` 256 (here
  bfloat16, ``model.mixed_precision``), ``nan_to_num`` on every gradient (``grad_nan_to_num``);
  pruning surgery ``as_released`` (the student rebuilt at the new widths, ToRGB gains not
  rescaled). Its scoring is ours (the port's GS pruning crashes; see
  ``gancomp_jax/methods/gan_slimming.py``).
- ``digits``: the embedded digits teacher (pass ``--config.method.teacher``), 32 px, batch 16,
  VGG off (no downloads) and CAGC's output L1 (λ 3) in its place — our substitution, not in any
  release — η = 1e-3 so that 1 kimg of sparsity training moves the styles, 1 kimg + 2 kimg.
"""

import ml_collections

from gancomp_jax.methods import gan_slimming
from gancomp_jax.train.config import default_train_config, use_digits_student_settings

VARIANTS = ("ffhq256", "released", "digits")


def get_config(variant: str = "ffhq256"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown gan_slimming variant {variant!r}; choose from {VARIANTS}")
    c = default_train_config()
    c.job = "gan_slimming"
    c.method = gan_slimming.default_config()
    c.method.stage1_kimg = 10000.0
    c.method.stage3_kimg = 30000.0
    c.prune = ml_collections.ConfigDict({"criterion": "gan_slimming", "ratio": 0.7, "n_sample": 400,
                                         "batch_size": 8, "seed": 0, "progress": True})
    if variant in ("ffhq256", "released"):
        c.model.preset = "paper256"
        c.data.source = "zip"
        c.data.xflip = True
        c.batch_size = 32
        c.lr = 0.002
        c.r1_gamma = 10.0
        c.pl_weight = 2.0
        c.style_mixing_prob = 0.9
        c.ema_kimg = 10.0
        c.ema_rampup = 0.0
        if variant == "released":
            c.model.mixed_precision = True
            c.model.conv_clamp = 256.0
            c.grad_nan_to_num = True
            c.prune.surgery = "as_released"
            m = c.method
            m.kd_l1_mode, m.kd_percept_mode, m.kd_percept_lambda = "none", "VGG", 3.0
            m.mask, m.sparsity_eta = "none", 1e-5
    else:
        use_digits_student_settings(c)
        c.method.kd_percept_mode = "none"
        c.method.kd_l1_mode = "Output_Only"   # stands in for the VGG term (no downloads)
        c.method.sparsity_eta = 1e-3
        c.method.stage1_kimg = 1.0
        c.method.stage3_kimg = 2.0
        c.prune.n_sample = 64
        c.log_every_steps = 50
        c.checkpoint_every_steps = 200
        c.sample_every_steps = 200
    return c
