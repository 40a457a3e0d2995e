"""Editing comparison of a teacher and its students (CAGC): projection PSNR/LPIPS, style mixing, morph.

    python -m gancomp_jax.main --config experiments/edit_report.py --workdir OUT \
        --config.teacher=T --config.students=S1,S2 --config.targets=FOLDER [--config.vgg16=vgg16-397923af.pth]
    python -m gancomp_jax.main --config experiments/edit_report.py:digits --workdir OUT \
        --config.students=runs/quickstart/prune/model,runs/quickstart/distil_nickel_dime/model

Variant `digits`: the shipped digits teacher, 32 real digits images as targets, loss=mse, 200 steps,
2,000 w_avg samples (offline, a few minutes on a CPU). Writes OUT/report.md, report.json,
projections.png, style_mixing/<model>.png, morph/strip.png + morph.gif, project/<model>/<target>/.
"""

from pathlib import Path

import ml_collections

# the digits teacher shipped with the package (absolute, so the variant works from any directory)
DIGITS_TEACHER = str(Path(__file__).resolve().parents[1] / "gancomp_jax" / "assets" / "digits_teacher")


def get_config(variant: str = ""):
    c = ml_collections.ConfigDict()
    c.job = "edit_report"
    c.teacher = ""                    # model directory / .pkl / .pt (required)
    c.students = ""                   # comma-separated models
    c.names = ""                      # optional: teacher name first, then students
    c.network = "auto"
    c.targets = ""                    # folder of target images (e.g. Helen-Set55) ...
    c.digits_targets = 0              # ... or N real images of the embedded digits data
    c.show_targets = 8                # targets shown in projections.png
    # projection (the project job's settings; NVlabs defaults)
    c.num_steps = 1000
    c.w_avg_samples = 10000
    c.initial_learning_rate = 0.1
    c.initial_noise_factor = 0.05
    c.lr_rampdown_length = 0.25
    c.lr_rampup_length = 0.05
    c.noise_ramp_length = 0.75
    c.regularize_noise_weight = 1e5
    c.seed = 303
    c.space = "w"
    c.loss = "vgg_nvlabs"
    c.vgg16 = ""
    c.lpips_lin = ""
    c.render_noise = "stored"
    # style mixing and morph
    c.row_seeds = "85,100,75,458,1500"
    c.col_seeds = "55,821,1789,293"
    c.col_styles = "0-6"
    c.truncation_psi = 1.0
    c.morph_seeds = "1,2,3"
    c.morph_space = "w"
    c.frames = 8
    c.video = "gif"
    c.progress = True
    if variant == "digits":
        c.teacher = DIGITS_TEACHER
        c.digits_targets = 32
        c.loss = "mse"
        c.num_steps = 200
        c.w_avg_samples = 2000
        c.col_styles = "0-3"          # 8 style layers at 32 px: coarse half from the columns
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of experiments/edit_report.py; choose 'digits'")
    return c
