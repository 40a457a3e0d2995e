"""CAGC distillation (Liu et al., CVPR 2021) — released FFHQ-256 settings and a digits variant.

    python -m gancomp_jax.main --config experiments/cagc_kd.py --workdir runs/cagc \\
        --config.method.teacher=models/ffhq256 --config.method.student=runs/prune70/model \\
        --config.data.source=zip --config.data.path=ffhq256.zip \\
        --config.method.face_parser=79999_iter.pth --config.method.lpips_vgg=vgg16-397923af.pth

Variants (``--config experiments/cagc_kd.py:VARIANT``, combine with ``+``):

- ``ffhq256`` (default): ``train_hyperparams.py`` — batch 16, lr 0.002, Adam (0, 0.99), R1 γ 10
  every 16, path length 2 every 4 (batch / 2), style mixing 0.9, G EMA ``accum = 0.5^(32/10000)``
  per iteration — at batch 16 a half-life of 10000/32 iterations = 5 kimg, so ``ema_kimg = 5``
  (our EMA is ``0.5^(B / (ema_kimg·1000))`` per step), 450,001 iterations (the README command;
  7,200 kimg), x-flips;
  ``kd_l1_mode='Output_Only'``, ``kd_percept_mode='LPIPS'``, λ 3 and 3, face mask, the
  student's D from the teacher's, independent teacher noise.
- ``intermediate`` (L1 on every partial RGB image), ``vgg`` (VGG content + Gram instead of
  LPIPS), ``no_mask``, ``shared_noise``.
- ``released``: ``ffhq256`` with every choice where a default of ours could differ from
  CAGC's ``train.py`` set explicitly (the key-by-key check is ``tests/test_released_presets.py``):
  LPIPS inputs above 256 px resized bilinearly to 256 (``kd_resize``), independent teacher
  noise, face mask, the teacher's D, float32 everywhere (rosinality code: no mixed precision,
  no gradient sanitising). Pair it with a student pruned by ``experiments/prune.py:released_cagc``.
- ``digits``: the quickstart-sized run (small32 digits teacher → pruned student, 32 px,
  batch 16, minutes on CPU): output L1 only, unmasked (no face parser or ImageNet VGG for
  32-px digits; LPIPS can be added with ``--config.method.kd_percept_mode=LPIPS`` and a VGG file).
"""

from gancomp_jax.methods import cagc
from gancomp_jax.train.config import default_train_config, use_digits_student_settings

VARIANTS = ("ffhq256", "released", "intermediate", "vgg", "no_mask", "shared_noise", "digits")


def ffhq256(c):
    c.model.preset = "paper256"
    c.data.source = "zip"
    c.data.xflip = True
    c.batch_size = 16
    c.lr = 0.002
    c.betas = (0.0, 0.99)
    c.r1_gamma = 10.0
    c.r1_interval = 16
    c.pl_weight = 2.0
    c.pl_interval = 4
    c.pl_batch_shrink = 2
    c.style_mixing_prob = 0.9
    c.ema_kimg = 5.0                 # 0.5^(32/10000) per iteration at batch 16
    c.ema_rampup = 0.0
    c.total_kimg = 7200.0


def released(c):
    """CAGC ``train.py`` / ``train_hyperparams.py`` as released (on top of :func:`ffhq256`)."""
    ffhq256(c)
    c.model.mixed_precision = False
    c.grad_nan_to_num = False
    m = c.method
    m.kd_l1_mode, m.kd_l1_lambda = "Output_Only", 3.0
    m.kd_percept_mode, m.kd_percept_lambda = "LPIPS", 3.0
    m.kd_image_size, m.kd_resize = 256, "bilinear"
    m.mask, m.parse_size = "face", 512
    m.noise = "independent"
    m.d_student = "teacher"


def digits(c):
    use_digits_student_settings(c)
    c.data.xflip = False
    c.total_kimg = 6.0
    c.log_every_steps = 50
    c.checkpoint_every_steps = 200
    c.sample_every_steps = 200
    c.method.mask = "none"
    c.method.kd_percept_mode = "none"


def apply_variants(c, parts, name):
    for p in parts:
        if p not in VARIANTS:
            raise ValueError(f"unknown {name} variant {p!r}; choose from {VARIANTS} (combine with '+')")
    if "digits" in parts and "released" in parts:
        raise ValueError(f"{name} variants 'digits' and 'released' exclude each other")
    (digits if "digits" in parts else released if "released" in parts else ffhq256)(c)
    m = c.method
    if "intermediate" in parts:
        m.kd_l1_mode = "Intermediate"
    if "vgg" in parts:
        m.kd_percept_mode = "VGG"
    if "no_mask" in parts:
        m.mask = "none"
    if "shared_noise" in parts:
        m.noise = "shared"


def get_config(variant: str = "ffhq256"):
    c = default_train_config()
    c.method = cagc.default_config()
    apply_variants(c, [p for p in (variant or "ffhq256").split("+") if p], "cagc_kd")
    return c
