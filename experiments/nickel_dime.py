"""NICKEL & DiME distillation (Yeo et al., ECCV 2024) — released FFHQ-256 settings and ablations.

    python -m gancomp_jax.main --config experiments/nickel_dime.py --workdir runs/nd \\
        --config.method.teacher=models/ffhq256 --config.method.student=runs/prune90/model \\
        --config.data.source=zip --config.data.path=ffhq256.zip \\
        --config.method.dime.global_stats=ffhq256_global.pt \\
        --config.method.dime.embedders.dino.weights=dino_resnet50_pretrain.pth \\
        --config.method.dime.embedders.clip.weights=RN50.pt

Variants (``--config experiments/nickel_dime.py:VARIANT``; combine with ``+``, e.g.
``ffhq256+dino_only+no_global``):

- ``ffhq256`` (default): the released ``DD-Pruned-ratio-0.9-ffhq-256.yaml`` — paper256 teacher,
  r = 0.9 content-aware student, batch 64, lr 0.0025, Adam (0, 0.99), R1 γ 1 every 16 steps,
  path length (weight 2, every 4) on the student, EMA half-life 20 kimg, x-flips, 40,000 kimg,
  D_S fresh and full width, D_T trained, DiME = 20·DINO-RN50 + 15·CLIP-RN50 raw moments
  against global statistics (``tools/dime_stats.py``), moments over 8 chunks of 8.
- ``released``: ``ffhq256`` plus everything the released stylegan2-ada loop does on top:
  float16 in the 4 highest resolutions of G and D with ``conv_clamp`` 256 (here bfloat16,
  ``model.mixed_precision``: same exponent range as float16, 8 instead of 11 significand bits,
  and no loss scaling is needed), ``nan_to_num`` on every gradient (NaN→0, ±inf→±1e5;
  ``grad_nan_to_num``), the style-mixing crossover drawn per 8-sample accumulation round
  (``method.mixing_rounds`` 8) and the path-length mean moved per round (``method.pl_rounds`` 8);
  DiME moments per 8 samples as in ``ffhq256``. Pair it with a student pruned by
  ``experiments/prune.py:released``. Checked key by key in ``tests/test_released_presets.py``.
- ``nickel_only``, ``dime_only``, ``clip_only``, ``dino_only``, ``no_global`` (DiME against the
  teacher's moments on the same latents instead of a global file), ``mmd`` (our kernel-MMD
  DiME against the teacher's embeddings of the same batch).
- ``digits``: the quickstart-sized run (small32 digits teacher → pruned student, 32 px,
  batch 16, a couple of minutes on 2 CPU cores). Its DiME embedder is the *frozen teacher
  discriminator's* features (spatial means of its b16 and b8 block outputs): trained on the
  same digits, sensitive to their structure, available without downloads, and — unlike
  ImageNet CLIP/DINO, which see 32-px digits as noise — meaningful at this size. It is not the
  digits classifier used for evaluation (``fid_digits``), so the student is never optimised
  against its own yardstick. Targets are the teacher's in-batch moments (no global file).
  Measured on the shipped digits teacher pruned 70 % (content-aware), 6 kimg: fid_digits
  (2,000 samples) 1159.9 for the pruned student → 72.8 (teacher 17.0); class coverage
  0.43 → 0.67.

Per-device batch: the released code estimates the moments on each GPU's ``batch_gpu`` = 8
samples per accumulation round. Here ``method.dime.groups`` splits the *global* batch into
contiguous chunks (64 / 8 = 8 groups), so the estimate and the result are the same on any
number of devices.
"""

import ml_collections

from gancomp_jax.methods import nickel_dime
from gancomp_jax.train.config import default_train_config, use_digits_student_settings

VARIANTS = ("ffhq256", "released", "nickel_only", "dime_only", "clip_only", "dino_only", "no_global", "mmd", "digits")


def _ffhq256(c):
    c.model.preset = "paper256"
    c.data.source = "zip"
    c.data.xflip = True
    c.batch_size = 64
    c.lr = 0.0025
    c.betas = (0.0, 0.99)
    c.r1_gamma = 1.0
    c.r1_interval = 16
    c.pl_weight = 2.0
    c.pl_interval = 4
    c.style_mixing_prob = 0.9
    c.ema_kimg = 20.0
    c.ema_rampup = 0.0
    c.total_kimg = 40000.0
    c.method.dime.groups = 8


def _released(c):
    """What ``train_DD.py`` / ``training_loop_DD.py`` / ``loss_DD.py`` do beyond ``_ffhq256``."""
    c.model.mixed_precision = True
    c.model.conv_clamp = 256.0
    c.grad_nan_to_num = True
    c.pl_batch_shrink = 2
    m = c.method
    m.mixing_rounds = 8            # batch 64 / batch_gpu 8
    m.pl_rounds = 8                # 32 path-length samples = 8 rounds of 4
    m.dime.groups = 8
    m.d_student, m.nickel, m.train_teacher_d = "fresh", True, True
    m.fm_weight, m.fm_levels, m.noise = 10.0, 4, "independent"
    m.dime.enabled, m.dime.form, m.dime.use = True, "moments", ("dino", "clip")


def _digits(c):
    use_digits_student_settings(c)
    c.data.xflip = False
    c.total_kimg = 6.0
    c.log_every_steps = 50
    c.checkpoint_every_steps = 200
    c.sample_every_steps = 200
    m = c.method
    m.fm_levels = 3                 # G_T b8 / D_S b16 features are 8x8: 3 Haar levels
    m.dime.groups = 2               # 8 samples per moment estimate, as released
    m.dime.use = ("tdisc",)
    m.dime.global_stats = ""
    m.dime.embedders = ml_collections.ConfigDict({
        "tdisc": {"kind": "teacher_d", "weights": "", "weight": 20.0, "preprocess": "none", "blocks": ("b16", "b8")},
        "dino": dict(m.dime.embedders.dino), "clip": dict(m.dime.embedders.clip)})


def get_config(variant: str = "ffhq256"):
    c = default_train_config()
    c.method = nickel_dime.default_config()
    parts = [p for p in (variant or "ffhq256").split("+") if p]
    for p in parts:
        if p not in VARIANTS:
            raise ValueError(f"unknown nickel_dime variant {p!r}; choose from {VARIANTS} (combine with '+')")
    if "digits" in parts and "released" in parts:
        raise ValueError("nickel_dime variants 'digits' and 'released' exclude each other")
    (_digits if "digits" in parts else _ffhq256)(c)
    if "released" in parts:
        _released(c)
    m = c.method
    if "nickel_only" in parts:
        m.dime.enabled = False
    if "dime_only" in parts:
        m.nickel = False
    if "clip_only" in parts:
        m.dime.use = ("clip",)
    if "dino_only" in parts:
        m.dime.use = ("dino",)
    if "no_global" in parts:
        m.dime.global_stats = ""
    if "mmd" in parts:
        m.dime.form = "mmd"
        m.dime.reference = "teacher"
    return c
