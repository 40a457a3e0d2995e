"""Morph between seeds (lerp in W or slerp in Z) or projected_w.npz files, several models side by side.

    python -m gancomp_jax.main --config experiments/interpolate.py --workdir OUT \
        --config.checkpoints=TEACHER,STUDENT --config.seeds=1,2,3 --config.frames=8 [--config.space=z]

Writes OUT/strip.png (one row per model), OUT/morph.gif (or .mp4 with imageio-ffmpeg), interpolate.json.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.job = "interpolate"
    c.checkpoints = ""            # one or more models, comma-separated (required)
    c.names = ""                  # optional row names, comma-separated
    c.network = "auto"
    c.seeds = "1,2,3"             # keyframe seeds ...
    c.projected_w = ""            # ... or keyframe projected_w.npz files, comma-separated
    c.space = "w"                 # 'w': lerp of ws | 'z': slerp of z (seeds only)
    c.frames = 8                  # frames per segment between two keyframes
    c.truncation_psi = 1.0
    c.noise_mode = "const"
    c.video = "gif"               # 'gif' | 'mp4' (needs imageio-ffmpeg) | 'none'
    c.fps = 10.0
    return c
