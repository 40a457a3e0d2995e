"""DGL-GAN (discriminator-guided compression): stage 1 then stage 2, chained.

    python -m gancomp_jax.main --config experiments/dgl_gan.py --workdir runs/dgl \\
        --config.method.teacher=models/ffhq256 --config.data.source=zip --config.data.path=ffhq256.zip

Stage 1 trains the narrow student (teacher widths / ``method.channel_divisor``) as plain
StyleGAN2 in ``WORKDIR/stage1`` (from scratch, or ``--config.method.init=pruned
--config.method.student=PRUNED_DIR``); stage 2 starts from stage 1's G and D with fresh
optimiser states and adds ``α · softplus(-D_T(G(z)))`` with the teacher's D frozen
(``--config.method.g_teacher_term=ens`` for the ens variant, ``--config.method.d_loss=
teacher_weighted`` for the teacher-weighted D loss, ``--config.method.alpha=0.5``), in
``WORKDIR/stage2`` (its ``model/`` is the result). Re-running resumes whichever stage is
unfinished. Kimg per stage: ``method.stage1_kimg`` / ``method.stage2_kimg``.

Variants: ``released`` (``ffhq256`` with the released TF code's choices spelled out: α 0.1
(the config line in ``run_distillation.py``), ``G_dg_pathreg`` teacher term, logistic D loss,
the 4×4 constant at full width, float32 and no gradient sanitising — the TF StyleGAN2 loop has
neither mixed precision nor ``nan_to_num``), ``ffhq256`` (default; the authors' StyleGAN2 settings: lr 0.002, batch 32, R1 γ 10,
path length, EMA 10 kimg, x-flips; their FFHQ runs used the 1024-px config-f teacher) and
``digits`` (quickstart-sized: stage 1 fine-tunes the pruned digits student —
``method.init=pruned``, ``method.student=PRUNED_DIR`` — as plain StyleGAN2 for 1 kimg, stage 2
adds the teacher D's guidance for 3 kimg; measured on the shipped digits teacher pruned 70 %
(content-aware): fid_digits (2,000 samples) 1159.9 for the pruned student → 128.1 after both
stages (teacher 17.0); ``--config.method.init=scratch`` trains a half-width
student from scratch instead, which needs far longer than a quickstart allows).
"""

from gancomp_jax.methods import dgl_gan
from gancomp_jax.train.config import default_train_config, use_digits_student_settings

VARIANTS = ("ffhq256", "released", "digits")


def _biggan_digits():
    """Variant ``biggan_digits``: DGL-GAN on BigGAN (method ``dgl_gan_biggan``). The digits
    BigGAN teacher (``experiments/biggan.py:digits``; set ``--config.method.teacher=RUN``) is
    compressed to half width (channel multiplier 1/2): stage 1 trains the narrow student as
    plain BigGAN for 25.6 kimg (400 iterations), stage 2 adds ``0.1 · (-D_T(G(z)))`` with the
    teacher's D frozen for 12.8 kimg (200 iterations); the teacher's digits settings otherwise
    (its learning rates, 4 D steps, EMA 0.995 — see ``experiments/biggan.py``)."""
    import importlib.util
    import pathlib

    from gancomp_jax.methods import dgl_gan_biggan

    spec = importlib.util.spec_from_file_location("biggan_experiment", pathlib.Path(__file__).with_name("biggan.py"))
    biggan_experiment = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(biggan_experiment)
    apply_digits_settings = biggan_experiment.apply_digits_settings

    c = default_train_config()
    c.job = "dgl_gan"
    c.method = dgl_gan_biggan.default_config()
    apply_digits_settings(c)
    m = c.method
    m.channel_divisor, m.alpha = 2, 0.1
    m.stage1_kimg, m.stage2_kimg = 25.6, 12.8
    return c


def get_config(variant: str = "ffhq256"):
    if variant == "biggan_digits":
        return _biggan_digits()
    if variant not in VARIANTS:
        raise ValueError(f"unknown dgl_gan variant {variant!r}; choose from {VARIANTS}")
    c = default_train_config()
    c.job = "dgl_gan"
    c.method = dgl_gan.default_config()
    c.method.stage1_kimg = 30000.0
    c.method.stage2_kimg = 30000.0
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
            c.model.mixed_precision = False
            c.grad_nan_to_num = False
            m = c.method
            m.alpha, m.g_teacher_term, m.d_loss = 0.1, "dg", "logistic"
            m.channel_divisor, m.keep_const = 2, True
    else:
        use_digits_student_settings(c)
        c.method.init = "pruned"      # stage 1 fine-tunes the pruned digits student (set method.student)
        c.method.stage1_kimg = 1.0
        c.method.stage2_kimg = 3.0
        c.log_every_steps = 50
        c.checkpoint_every_steps = 200
        c.sample_every_steps = 200
    return c
