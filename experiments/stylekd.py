"""StyleKD (Xu et al., ECCV 2022) — released FFHQ-256 settings and a digits variant.

    python -m gancomp_jax.main --config experiments/stylekd.py --workdir runs/stylekd \\
        --config.method.teacher=models/ffhq256 --config.method.student=runs/prune70/model \\
        --config.data.source=zip --config.data.path=ffhq256.zip \\
        --config.method.face_parser=79999_iter.pth --config.method.lpips_vgg=vgg16-397923af.pth

Variants (``--config experiments/stylekd.py:VARIANT``, combine with ``+``):

- ``ffhq256`` (default): CAGC's training settings (``experiments/cagc_kd.py``: batch 16,
  lr 0.002, R1 γ 10, path length 2, mixing 0.9, G EMA ``0.5^(32/10000)`` per iteration =
  ``ema_kimg`` 5 at batch 16, 7,200 kimg) with the README's StyleKD
  flags: ``--kd_l1_lambda 3 --kd_lpips_lambda 3 --kd_simi_lambda 30 --kd_style_lambda 0
  --simi_loss kl --offset_mode main --main_direction split --offset_weight 5.0 --load_style 1``;
  relation over b8..b64.
- ``released``: the original ``xuguodong03/StyleKD`` ``distributed_train.py`` (rosinality code:
  float32, no gradient sanitising) with the README flags above, CAGC's ``released`` KD settings,
  relation on b16..b128 (the original indexes block outputs from b8, so ``mimic_layer``
  2..5 are b16..b128) and a fresh D (``--load 0``). ``--load 0`` also means the student
  generator starts from random weights with the teacher's mapping: give it such a student
  (``experiments/prune.py`` with ``--config.student_init=scratch``).
- ``random_offsets`` (``--offset_mode random``), ``global_directions``, and CAGC's ``intermediate``,
  ``vgg``, ``no_mask``, ``shared_noise``.
- ``digits``: small32 digits teacher → pruned student (32 px, batch 16): output L1 + relation
  over b8..b32, unmasked, no perceptual term.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cagc_kd  # noqa: E402

from gancomp_jax.methods import stylekd  # noqa: E402
from gancomp_jax.train.config import default_train_config  # noqa: E402

VARIANTS = ("random_offsets", "global_directions") + cagc_kd.VARIANTS


def get_config(variant: str = "ffhq256"):
    c = default_train_config()
    c.method = stylekd.default_config()
    parts = [p for p in (variant or "ffhq256").split("+") if p]
    for p in parts:
        if p not in VARIANTS:
            raise ValueError(f"unknown stylekd variant {p!r}; choose from {VARIANTS} (combine with '+')")
    cagc_kd.apply_variants(c, [p for p in parts if p in cagc_kd.VARIANTS], "stylekd")
    m = c.method
    if "random_offsets" in parts:
        m.offset_mode = "random"
    if "global_directions" in parts:
        m.main_direction = "global"
    if "digits" in parts:
        m.relation_blocks = ("b8", "b16", "b32")
    if "released" in parts:
        m.relation_blocks = ("b16", "b32", "b64", "b128")
        m.d_student = "fresh"
        m.relation_lambda, m.offset_weight, m.kd_style_lambda = 30.0, 5.0, 0.0
        m.offset_mode, m.main_direction, m.mapping_from_teacher = "main", "split", True
    return c
