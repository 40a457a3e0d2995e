"""Evaluate a generator with NVlabs-named metrics.

    python -m gancomp_jax.main --config experiments/evaluate.py --workdir OUT \
        --config.model=MODEL --config.data.source=zip --config.data.path=ffhq256.zip \
        --config.metrics=fid50k_full,kid50k_full,pr50k3_full,ppl2_wend \
        --config.inception=pt_inception-2015-12-05-6726825d.pth \
        --config.vgg16=vgg16-397923af.pth  # PR features and the LPIPS trunk (PPL)

Writes OUT/metric-<name>.jsonl (one NVlabs-style record per run) and prints a table. For the
embedded digits: --config.metrics=fid_digits (no weight files needed).
Metrics: fid50k_full kid50k_full pr50k3_full ppl2_wend is50k fid50k kid50k pr50k3 ppl_zfull
ppl_wfull ppl_zend ppl_wend ppl_cagc fid_digits (gancomp_jax/metrics/registry.py).
"""

import ml_collections

from gancomp_jax.data import default_data_config


def get_config():
    config = ml_collections.ConfigDict()
    config.job = "evaluate"
    config.model = ""                 # model directory, NVlabs .pkl or rosinality .pt (required)
    config.network = "auto"           # 'auto' (G_ema, else G) or a network name
    config.metrics = "fid50k_full"    # comma-separated metric names
    config.data = default_data_config()  # the real images (source, path, resolution)
    config.inception = ""             # pytorch-fid pt_inception-2015-12-05-6726825d.pth (FID/KID/IS)
    config.vgg16 = ""                 # torchvision vgg16-397923af.pth (precision/recall; LPIPS trunk for PPL)
    config.lpips = ""                 # LPIPS v0.1 heads weights/v0.1/vgg.pth ('': the lpips package's)
    config.fid_convention = "nvlabs"  # 'nvlabs' (uint8, (x-128)/128, biased cov) | 'pytorch_fid'
    config.truncation_psi = 1.0
    config.noise_mode = "random"      # NVlabs metrics sample with random noise
    config.batch_size = 64            # images per detector batch (split over devices)
    config.num_gen = 0                # 0: each metric's own count (50k); else override (recorded)
    config.max_real = 0               # 0: each metric's own count; else override (recorded)
    config.seed = 0
    config.class_sampling = "dataset"  # conditional G: 'dataset' (NVlabs: a random item's label) | 'uniform' | 'balanced'
    config.cache = True               # cache dataset statistics (~/.cache/gancomp_jax/gan-metrics)
    config.progress = True
    return config
