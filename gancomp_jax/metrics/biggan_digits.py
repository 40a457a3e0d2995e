"""Class-conditional evaluation of a BigGAN generator on the embedded digits.

``evaluate(net)``: ``per_class`` samples of every class (``z ~ N(0, I)`` from
``RandomState(seed)``, no truncation, eval mode), through the digits classifier
(:mod:`gancomp_jax.metrics.digits_classifier`):

- ``fid_digits``: Fréchet distance of its 64-d features, generated vs all 1,797 real digits
  (NVlabs' FID convention, the same statistics as the ``fid_digits`` metric);
- ``class_accuracy``: share of samples the classifier assigns to the requested class
  (:func:`digits_classifier.class_accuracy`, as the registered ``class_accuracy_digits``
  metric; the same images as that metric with ``class_sampling='balanced'`` and
  ``num_gen = 10·per_class``: class-major blocks, z rows from ``RandomState(seed)``);
- ``digits_coverage`` and class shares as for ``fid_digits``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def class_samples(net, per_class: int, seed: int = 0, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``[n_classes·per_class, R, R, 3]`` and their requested classes."""
    from gancomp_jax.models.biggan import BigGANGenerator
    from gancomp_jax.utils.images import to_uint8

    cfg = net.config
    G = BigGANGenerator(cfg)
    fn = jax.jit(lambda v, z, y: G.apply(v, z, y))
    v = jax.tree.map(jnp.asarray, net.variables)
    labels = np.repeat(np.arange(cfg.n_classes), per_class).astype(np.int32)
    z = np.random.RandomState(seed).randn(len(labels), cfg.z_dim).astype(np.float32)
    out = []
    for s in range(0, len(labels), batch_size):
        zz, yy = z[s:s + batch_size], labels[s:s + batch_size]
        n = len(yy)
        if n < batch_size:
            zz = np.concatenate([zz, np.zeros((batch_size - n, cfg.z_dim), np.float32)])
            yy = np.concatenate([yy, np.zeros((batch_size - n,), np.int32)])
        out.append(to_uint8(np.asarray(fn(v, zz, yy)))[:n])
    return np.concatenate(out), labels


def evaluate(net, per_class: int = 200, seed: int = 0) -> dict:
    from gancomp_jax.data.digits import DigitsSource
    from gancomp_jax.metrics import fid as fid_mod
    from gancomp_jax.metrics.digits_classifier import (RESOLUTION, class_accuracy, class_coverage,
                                                       digits_classifier_logits, digits_detector)
    from gancomp_jax.metrics.runner import compute_feature_stats_for_dataset
    from gancomp_jax.metrics.stats_cache import FeatureStats

    if net.config.n_classes != 10:
        raise ValueError(f"digits evaluation needs a 10-class generator, got {net.config.n_classes} classes")
    imgs, labels = class_samples(net, per_class, seed)
    if imgs.shape[1] != RESOLUTION:
        raise ValueError(f"digits evaluation needs {RESOLUTION}px images, got {imgs.shape[1]}px")
    det = digits_detector("features")
    feats = np.concatenate([np.asarray(det.fn(det.params, jnp.asarray(imgs[i:i + 500])))
                            for i in range(0, len(imgs), 500)])
    gen = FeatureStats(capture_all=True, capture_mean_cov=True, max_items=len(feats))
    gen.append(feats)
    real = compute_feature_stats_for_dataset(DigitsSource(RESOLUTION), det, None, 64, capture_mean_cov=True,
                                             cache=False, dataset_name="digits", progress=False)
    logits = digits_classifier_logits(feats)
    acc = class_accuracy(logits, labels)  # the registered class_accuracy_digits metric's computation
    out = dict(fid_digits=float(fid_mod.fid_from_stats(gen, real, "nvlabs")),
               class_accuracy=acc["class_accuracy_digits"],
               class_accuracy_per_class=acc["class_accuracy_digits_per_class"], num_gen=int(len(labels)))
    out.update(class_coverage(logits))
    return out
