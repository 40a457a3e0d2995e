"""Default training config (the fields ``gancomp_jax.train.trainer.train`` reads)."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

from gancomp_jax.data import default_data_config


def default_train_config() -> ml_collections.ConfigDict:
    """StyleGAN2 training as NVlabs does it; ``None`` fields take the model preset's value."""
    c = ml_collections.ConfigDict()
    c.job = "train"
    c.seed = 0

    # The training method (gancomp_jax/methods/<name>.py); its own keys go here too.
    c.method = ml_collections.ConfigDict({"name": "stylegan2"})

    c.model = ml_collections.ConfigDict()
    c.model.preset = "small32"          # gancomp_jax.models.presets
    c.model.resolution = 0               # 0: the preset's
    c.model.channel_base = 0             # 0: the preset's; widths = min(channel_base // res, channel_max)
    c.model.channel_max = 0              # 0: the preset's
    c.model.conv_clamp = config_dict.placeholder(float)   # NVlabs uses 256 with mixed precision
    c.model.mixed_precision = False      # bfloat16 in the 4 highest resolutions (G and D)
    c.model.g_architecture = ""          # '' (preset) | 'skip' | 'orig' | 'resnet'
    c.model.d_architecture = ""          # '' (preset) | 'resnet' | 'skip' | 'orig'
    c.model.mbstd_group_size = 0         # 0: the preset's

    c.data = default_data_config()       # source="digits" etc. (gancomp_jax.data)
    c.data.resolution = 0                # 0: the model resolution

    c.batch_size = config_dict.placeholder(int)   # global batch
    c.total_kimg = 25000.0
    c.total_steps = 0                    # > 0 overrides total_kimg
    c.lr = config_dict.placeholder(float)
    c.betas = (0.0, 0.99)
    c.adam_eps = 1e-8
    c.r1_gamma = config_dict.placeholder(float)
    c.r1_interval = 16
    c.pl_weight = config_dict.placeholder(float)
    c.pl_interval = 4
    c.pl_decay = 0.01
    c.pl_batch_shrink = 2
    c.style_mixing_prob = config_dict.placeholder(float)
    c.ema_kimg = config_dict.placeholder(float)
    c.ema_rampup = config_dict.placeholder(float)  # 0: no ramp-up
    c.loss = ml_collections.ConfigDict({"g": {"nonsaturating": 1.0}, "d": {"logistic": 1.0}})
    c.grad_nan_to_num = False            # True: NaN -> 0, ±inf -> ±1e5 in every gradient before the optimiser
                                         # (NVlabs stylegan2-ada loops: misc.nan_to_num(param.grad, ...))

    c.mesh_devices = -1                  # -1: all devices
    c.sharding = "replicate"             # 'replicate' | 'fsdp'
    c.mbstd_num_shards = -1              # -1: one minibatch-std shard per device (as NVlabs per GPU)
    c.distributed = False                # call jax.distributed.initialize() (multi-host)
    c.coordinator_address = ""           # host:port of process 0 ('' : auto-detect on TPU/SLURM)
    c.num_processes = 1
    c.process_id = 0
    c.compilation_cache_dir = "auto"     # persistent XLA compilation cache: auto (WORKDIR/xla_cache) | none | PATH
    c.matmul_precision = "default"      # float32 matmuls: default (TPU: bf16 passes, GPU: TF32) | high | highest

    c.log_every_steps = 50
    c.checkpoint_every_steps = 1000
    c.keep_checkpoints = 3
    c.restart = False                    # True: if no checkpoint in WORKDIR can be resumed (all unsealed or
                                         # damaged), move them to checkpoints_rejected/ and start from step 0
    c.async_checkpointing = True
    c.sample_every_steps = 1000
    c.grid_rows = 4
    c.grid_cols = 8
    c.progress = True

    # Evaluation during training (hooks: 'package.module:factory' strings, factory(config) ->
    # hook(step, {exported name: checkpoints.Network}) -> {metric: value}; logged as Eval/<metric>).
    c.eval = ml_collections.ConfigDict()
    c.eval.every_kimg = 0.0              # 0: never
    c.eval.hooks = ()
    c.eval.best_metric = ""              # e.g. 'fid': keep WORKDIR/best_model of the best value
    c.eval.best_mode = "min"             # 'min' | 'max'
    # read by the metrics hook (gancomp_jax.metrics.hook:make_hook)
    c.eval.metrics = ""                  # '': fid_digits on the embedded digits, else fid50k_full
    c.eval.num_gen = 0                   # 0: each metric's own sample count
    c.eval.inception = ""                # pt_inception-2015-12-05-6726825d.pth (FID/KID/IS)
    c.eval.vgg16 = ""                    # vgg16-397923af.pth (precision/recall, LPIPS trunk)
    c.eval.lpips = ""                    # LPIPS v0.1 heads ('' : the lpips package's)
    c.eval.fid_convention = "nvlabs"     # 'nvlabs' | 'pytorch_fid'
    c.eval.batch_size = 64
    return c


def use_digits_student_settings(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Training settings every method's ``digits`` variant shares: the small32 digits teacher's
    architecture and data, batch 16, lr 0.0025, R1 γ 1, no path length or style mixing (the
    teacher was trained without them), EMA 2 kimg with ramp-up 0.05. Returns ``c``."""
    c.model.preset = "small32"
    c.data.source = "digits"
    c.batch_size = 16
    c.lr = 0.0025
    c.r1_gamma = 1.0
    c.pl_weight = 0.0
    c.style_mixing_prob = 0.0
    c.ema_kimg = 2.0
    c.ema_rampup = 0.05
    return c
