"""Project real images into a generator's latent space (NVlabs projector.py; W or W+).

    python -m gancomp_jax.main --config experiments/project.py --workdir OUT \
        --config.checkpoint=MODEL --config.target=IMG [--config.loss=vgg_nvlabs --config.vgg16=vgg16-397923af.pth]
    python -m gancomp_jax.main --config experiments/project.py --workdir OUT \
        --config.checkpoint=MODEL --config.targets=FOLDER     # batch, resumable

Variant `digits`: the shipped digits teacher, loss=mse, 200 steps, 2,000 w_avg samples (CPU).
Writes target.png, proj.png, projected_w.npz, proj.gif, metrics.json (see gancomp_jax/jobs/project.py).
"""

from pathlib import Path

import ml_collections

# the digits teacher shipped with the package (absolute, so the variant works from any directory)
DIGITS_TEACHER = str(Path(__file__).resolve().parents[1] / "gancomp_jax" / "assets" / "digits_teacher")


def get_config(variant: str = ""):
    c = ml_collections.ConfigDict()
    c.job = "project"
    c.checkpoint = ""                 # model directory / .pkl / .pt / training run (required)
    c.network = "auto"                # 'auto' (G_ema, else G) or a network name
    c.target = ""                     # one image file ...
    c.targets = ""                    # ... or a folder of images (batch mode; one sub-folder each)
    # NVlabs projector.project defaults
    c.num_steps = 1000
    c.w_avg_samples = 10000
    c.initial_learning_rate = 0.1
    c.initial_noise_factor = 0.05
    c.lr_rampdown_length = 0.25
    c.lr_rampup_length = 0.05
    c.noise_ramp_length = 0.75
    c.regularize_noise_weight = 1e5
    c.seed = 303                      # NVlabs run_projection default
    # our options
    c.space = "w"                     # 'w' (NVlabs) | 'w_plus' (one w per layer)
    c.loss = "vgg_nvlabs"             # 'vgg_nvlabs' (NVlabs) | 'lpips' | 'mse' (needs no weights)
    c.vgg16 = ""                      # torchvision vgg16-397923af.pth (or a converted lpips_vgg dir)
    c.lpips_lin = ""                  # LPIPS v0.1 heads; default: the file inside the lpips wheel
    c.render_noise = "stored"         # proj.png with the stored noise ('stored') or optimised maps
    c.video = "gif"                   # 'gif' | 'mp4' (needs imageio-ffmpeg) | 'none'
    c.video_every = 10                # one progress frame every N steps
    c.progress = True
    if variant == "digits":
        c.checkpoint = DIGITS_TEACHER
        c.loss = "mse"
        c.num_steps = 200
        c.w_avg_samples = 2000
        c.video_every = 5
    elif variant:
        raise ValueError(f"unknown variant {variant!r} of experiments/project.py; choose 'digits'")
    return c
