"""Compression report: teacher vs students (params, MACs, compression rate, images/s, metrics,
grids on the same seeds, quality-vs-MACs plot).

    python -m gancomp_jax.main --config experiments/report.py --workdir OUT \
        --config.teacher=T --config.students=S1,S2

Default metric: fid_digits (the embedded digits; needs no weight files). For real data e.g.
--config.metrics=fid50k_full --config.inception=pt_inception-2015-12-05-6726825d.pth
--config.data.source=zip --config.data.path=ffhq256.zip. Writes OUT/report.md, report.json,
grid.png, quality_vs_macs.png and metric-<name>.jsonl.

BigGAN teacher and students (one family per report), e.g. on the digits:
--config.metrics=fid_digits,class_accuracy_digits --config.class_sampling=balanced.
"""

import ml_collections

from gancomp_jax.data import default_data_config


def get_config():
    config = ml_collections.ConfigDict()
    config.job = "report"
    config.teacher = ""               # model directory / .pkl / .pt (required)
    config.students = ""              # comma-separated model paths
    config.names = ""                 # optional comma-separated names: teacher first, then students
    config.metrics = "fid_digits"     # comma-separated metric names ('' for none)
    config.data = default_data_config()
    config.inception = ""
    config.vgg16 = ""
    config.lpips = ""
    config.fid_convention = "nvlabs"
    config.num_gen = 0                # 0: each metric's own sample count
    config.max_real = 0
    config.seeds = "0-7"              # grid columns
    config.batch_size = 64
    config.speed_batch = 16           # batch for the images/s measurement
    config.seed = 0
    config.class_sampling = "dataset"  # conditional models: dataset | uniform | balanced (metrics' classes)
    config.grid_classes = 10          # BigGAN: grid rows for the first N classes (one row per model each)
    config.progress = True
    return config
