"""Train a class-conditional BigGAN (BigGAN-PyTorch's training loop; method ``biggan``).

    python -m gancomp_jax.main --config experiments/biggan.py:digits --workdir runs/biggan_digits

Variants:

- ``digits`` (default): a small conditional BigGAN teacher on the embedded digits (32 px, 10
  classes): G_ch = D_ch = 16 (widths 64), dim_z 64 hierarchical, shared_dim 32, G attention at
  16 px, no D attention, batch 64 split over 4 D steps (BigGAN-PyTorch's CIFAR launch script's
  ``num_D_steps``), Adam betas (0, 0.999), G_lr 5e-4, D_lr 1e-3, G EMA 0.995 from iteration 100,
  600 iterations (``total_kimg`` 38.4).
  Changed from BigGAN-PyTorch's settings so that the run learns digit shapes in minutes on a
  CPU: with its CIFAR learning rates (2e-4 / 2e-4) and 2 or 4 D steps, G was still at chance
  class accuracy after 200 iterations (one collapsed shape for every class; the class showed
  only as the digit's tint, which D can check from colour alone). With 2.5× / 5× those rates
  (D twice G; its ImageNet ratio is 4) and 4 D steps the classes take their own shapes:
  G's class accuracy 0.46 / 0.74 / 0.91 after 300 / 400 / 500 iterations (measured, README's
  BigGAN section). EMA decay 0.995 (a window of ~200 iterations) instead of its 0.9999 (and
  this variant's earlier 0.999), whose window is longer than the whole run.
- ``imagenet128``: BigGAN-PyTorch's ``launch_BigGAN_bs256x8.sh`` settings (G_ch = D_ch = 96,
  dim_z 120, shared_dim 128, hier, attention 64, G_lr 1e-4, D_lr 4e-4, num_D_steps 1,
  adam_eps 1e-6, SN_eps 1e-6, EMA 0.9999 from 20k, G_ortho 0) on ImageNet via TFDS
  (batch 256; the release accumulates 8 × 256). Images: centre crop of the short edge and
  bilinear resize to 128 with the released ``I128_hdf5`` pixel levels (``data.preprocess``);
  prepare the data once with ``tfds build imagenet2012 --file_format=array_record`` (manual
  download of the ILSVRC2012 tars into TFDS' manual_dir).

The result is ``WORKDIR/model`` (G, G_ema, D); generate with ``experiments/generate.py``
(``--config.class_idx``), or export to BigGAN-PyTorch's files with ``tools/export_pt.py``.
"""

from gancomp_jax.methods import biggan
from gancomp_jax.train.config import default_train_config

VARIANTS = ("digits", "imagenet128")


def apply_digits_settings(c) -> None:
    """The digits settings above (shared by ``experiments/dgl_gan.py:biggan_digits``)."""
    m = c.method
    c.model.preset = "small32"   # only fixes the data resolution (32 px) for the trainer
    c.data.source = "digits"
    m.resolution = 32
    m.G_ch = m.D_ch = 16
    m.dim_z, m.shared_dim, m.hier, m.n_classes = 64, 32, True, 10
    m.G_attn, m.D_attn = "16", "0"
    m.G_lr, m.D_lr = 5e-4, 1e-3      # BigGAN-PyTorch's CIFAR script: 2e-4 / 2e-4 (see the docstring)
    m.num_D_steps = 4                 # its CIFAR script's value
    m.ema_decay, m.ema_start = 0.995, 100
    c.batch_size = 64
    c.total_kimg = 38.4               # 600 iterations
    c.log_every_steps = 20
    c.checkpoint_every_steps = 100
    c.sample_every_steps = 0


def get_config(variant: str = "digits"):
    if variant not in VARIANTS:
        raise ValueError(f"unknown biggan variant {variant!r}; choose from {VARIANTS}")
    c = default_train_config()
    c.method = biggan.default_config()
    m = c.method
    if variant == "digits":
        apply_digits_settings(c)
    else:
        c.model.preset = "paper256"
        c.model.resolution = 128
        c.data.source = "tfds"
        c.data.name = "imagenet2012"
        c.data.resolution = 128
        c.data.preprocess = "biggan_hdf5"  # centre crop + bilinear resize, I128_hdf5's levels (data/tfds_source.py)
        m.resolution, m.G_ch, m.D_ch = 128, 96, 96
        m.dim_z, m.shared_dim, m.hier, m.n_classes = 120, 128, True, 1000
        m.G_attn = m.D_attn = "64"
        m.G_lr, m.D_lr, m.num_D_steps, m.adam_eps, m.SN_eps = 1e-4, 4e-4, 1, 1e-6, 1e-6
        m.ema_decay, m.ema_start = 0.9999, 20000
        c.batch_size = 256
        c.total_kimg = 256 * 150000 / 1000
    return c
