"""Input pipelines for StyleGAN2 training (Grain based).

Sources (random access, elements ``{'image': uint8 [R, R, 3], 'label': int}``):
``DigitsSource`` (built-in, no download), ``ImageFolderSource``,
``ZipSource`` (NVlabs dataset_tool zips), ``TFDSImageFolderSource``
(``split/label/image`` directories) and ``TFDSSource`` (prepared TFDS
datasets; optional ``tensorflow-datasets`` dependency, imported lazily).

Pipeline: ``make_pipeline(source, global_batch_size=..., seed=...)`` yields
``{'image': float32 [B, R, R, 3] in [-1, 1], 'label': int32 [B]}`` with
``B = global_batch_size // process_count`` and supports ``get_state`` /
``set_state`` for exact resumption.

Typical use::

    cfg = default_data_config()
    source = build_source(cfg)
    it = make_pipeline(source, global_batch_size=64, seed=0, xflip=cfg.xflip,
                       process_index=jax.process_index(),
                       process_count=jax.process_count(),
                       worker_count=cfg.worker_count)
    batch = next(it)
"""

from gancomp_jax.data.digits import DigitsSource
from gancomp_jax.data.pipeline import InputPipeline
from gancomp_jax.data.pipeline import make_pipeline
from gancomp_jax.data.sources import build_source
from gancomp_jax.data.sources import default_data_config
from gancomp_jax.data.sources import EncodedImageSource
from gancomp_jax.data.sources import ImageFolderSource
from gancomp_jax.data.sources import SOURCE_KINDS
from gancomp_jax.data.sources import TFDSImageFolderSource
from gancomp_jax.data.sources import ZipSource

# tensorflow_datasets itself is only imported when a TFDSSource is built.
from gancomp_jax.data.tfds_source import TFDSSource

__all__ = [
    "DigitsSource",
    "EncodedImageSource",
    "ImageFolderSource",
    "InputPipeline",
    "SOURCE_KINDS",
    "TFDSImageFolderSource",
    "TFDSSource",
    "ZipSource",
    "build_source",
    "default_data_config",
    "make_pipeline",
]
