"""Metric names users know (NVlabs ``metric_main.py``), computed with this package's networks.

``calc_metric(name, opts)`` returns an NVlabs-style result record
``{'results': {...}, 'metric', 'total_time', 'total_time_str', 'num_gpus'}`` and
``report_metric(record, run_dir, snapshot)`` appends it to ``run_dir/metric-<name>.jsonl``.

=================  ======================================================================
name               what (NVlabs settings)
=================  ======================================================================
fid50k_full        FID, 50k generated vs all reals (no x-flip)
kid50k_full        KID, 50k generated vs ≤ 1M reals, 100 subsets of ≤ 1000
pr50k3_full        precision/recall, k = 3, 50k generated vs ≤ 200k reals, VGG16 features
ppl2_wend          PPL, 50k pairs, ε 1e-4, W space, end points, no crop, LPIPS-VGG
is50k              Inception Score, 50k generated, 10 splits
fid50k / kid50k    legacy: ≤ 50k reals
pr50k3             legacy: ≤ 50k reals
ppl_zfull ...      legacy PPL variants (with crop): ppl_zfull, ppl_wfull, ppl_zend, ppl_wend
ppl_cagc           CAGC's "PPL" (5k pairs, t ~ U(0,1) in W, independent noise, no /ε²)
fid_digits         embedded digits only: digits-classifier FID (5k generated vs 1797 reals)
                   and class coverage (not Inception FID)
class_accuracy_    conditional generators on the digits (StyleGAN2 c_dim 10, BigGAN 10
digits             classes): the digits classifier's agreement with the requested class, 10k
                   samples, classes as ``G.class_sampling`` says (runner docstring)
=================  ======================================================================

``MetricOptions.num_gen`` / ``max_real`` override the sample counts (e.g. quick checks); the
record then carries ``num_gen`` / ``max_real`` so such numbers are never mistaken for the
standard ones.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

from gancomp_jax.metrics import fid as fid_mod
from gancomp_jax.metrics import inception_score, kid, ppl, precision_recall
from gancomp_jax.metrics.runner import (GeneratorSpec, compute_feature_stats_for_dataset,
                                        compute_feature_stats_for_generator, generator_batches)


@dataclasses.dataclass
class MetricOptions:
    """Everything a metric needs.

    Attributes:
      G: what to sample (:class:`GeneratorSpec`).
      dataset: real-image source (``__len__``/``__getitem__`` → ``{'image': uint8 [R, R, 3]}``).
      dataset_name: name used in the statistics-cache file names.
      inception, vgg16, lpips: weight files: pytorch-fid's Inception, torchvision's VGG16 (P&R
        features and the LPIPS trunk) and LPIPS v0.1 heads (``None``: the installed lpips
        package's ``weights/v0.1/vgg.pth``).
      fid_convention: ``'nvlabs'`` (default) or ``'pytorch_fid'`` (see :mod:`.fid`).
      batch_size: images per detector batch (split over devices).
      num_gen, max_real: override the metric's sample counts (None: NVlabs').
      seed: latents, noise and KID subsets.
      cache: cache dataset statistics.
      progress: tqdm bars.
      detectors: already-built detectors by name (filled lazily).
    """

    G: GeneratorSpec
    dataset: Any = None
    dataset_name: str | None = None
    inception: str | None = None
    vgg16: str | None = None
    lpips: str | None = None
    fid_convention: str = "nvlabs"
    batch_size: int = 64
    num_gen: int | None = None
    max_real: int | None = None
    seed: int = 0
    cache: bool = True
    progress: bool = True
    detectors: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        from gancomp_jax.utils.ranges import check_sample_count

        self.num_gen = check_sample_count(self.num_gen, "num_gen")
        self.max_real = check_sample_count(self.max_real, "max_real")

    def detector(self, name: str, metric: str):
        if name not in self.detectors:
            from gancomp_jax.metrics import detectors as det
            if name in ("inception_pool", "inception_probs"):
                if not self.inception:
                    raise ValueError(f"metric {metric} needs config.inception: pytorch-fid's "
                                     f"pt_inception-2015-12-05-6726825d.pth (or a converted directory)")
                net = self.detectors.get("_inception_net")
                if net is None:
                    from gancomp_jax import nets
                    net = self.detectors["_inception_net"] = nets.load("inception_fid", self.inception)
                self.detectors[name] = det.inception_detector(self.inception, self.fid_convention,
                                                              name.split("_")[1], net=net)
            elif name == "vgg16":
                if not self.vgg16:
                    raise ValueError(f"metric {metric} needs config.vgg16: torchvision's vgg16-397923af.pth")
                self.detectors[name] = det.vgg16_detector(self.vgg16)
            elif name == "lpips":
                if not self.vgg16:
                    raise ValueError(f"metric {metric} needs config.vgg16 (torchvision's vgg16-397923af.pth, "
                                     f"the LPIPS trunk) and optionally config.lpips (weights/v0.1/vgg.pth)")
                self.detectors[name] = det.lpips_fn(self.vgg16, self.lpips)
            elif name in ("digits_features", "digits_logits"):
                from gancomp_jax.metrics.digits_classifier import digits_detector
                self.detectors[name] = digits_detector(name.split("_")[1])
            else:
                raise ValueError(f"unknown detector {name!r}")
        return self.detectors[name]

    def need_dataset(self, metric: str):
        if self.dataset is None:
            raise ValueError(f"metric {metric} needs the real data (config.data)")
        return self.dataset


_METRICS: dict[str, Callable[[MetricOptions], dict[str, Any]]] = {}


def register_metric(fn):
    _METRICS[fn.__name__] = fn
    return fn


def is_valid_metric(name: str) -> bool:
    return name in _METRICS


def list_valid_metrics() -> list[str]:
    return list(_METRICS)


def _n(value, override):
    return value if override is None else int(override)


def _real_max(value, opts):
    if opts.max_real is not None:
        return int(opts.max_real)
    return value


def _gen_stats(opts, detector, num, metric, **kw):
    return compute_feature_stats_for_generator(opts.G, detector, num, opts.batch_size, opts.seed,
                                               progress=opts.progress, **kw)


def _real_stats(opts, detector, max_items, metric, **kw):
    return compute_feature_stats_for_dataset(opts.need_dataset(metric), detector, max_items,
                                             opts.batch_size, cache=opts.cache,
                                             dataset_name=opts.dataset_name, progress=opts.progress, **kw)


def compute_fid(opts, metric, max_real, num_gen) -> float:
    det = opts.detector("inception_pool", metric)
    real = _real_stats(opts, det, _real_max(max_real, opts), metric, capture_mean_cov=True)
    gen = _gen_stats(opts, det, _n(num_gen, opts.num_gen), metric, capture_mean_cov=True)
    return fid_mod.fid_from_stats(gen, real, opts.fid_convention)


def compute_kid(opts, metric, max_real, num_gen, num_subsets=100, max_subset_size=1000) -> float:
    det = opts.detector("inception_pool", metric)
    real = _real_stats(opts, det, _real_max(max_real, opts), metric, capture_all=True).get_all()
    gen = _gen_stats(opts, det, _n(num_gen, opts.num_gen), metric, capture_all=True).get_all()
    return kid.kernel_inception_distance(real, gen, num_subsets, max_subset_size, seed=opts.seed)


def compute_pr(opts, metric, max_real, num_gen, nhood_size=3):
    det = opts.detector("vgg16", metric)
    real = _real_stats(opts, det, _real_max(max_real, opts), metric, capture_all=True).get_all()
    gen = _gen_stats(opts, det, _n(num_gen, opts.num_gen), metric, capture_all=True).get_all()
    return precision_recall.precision_recall(real, gen, nhood_size, 10000, 10000)


def compute_ppl(opts, metric, num_samples, epsilon, space, sampling, crop, batch_size, variant="nvlabs"):
    lpips, lpips_params = opts.detector("lpips", metric)
    return ppl.compute_ppl(opts.G.module, opts.G.variables, lpips, lpips_params,
                           _n(num_samples, opts.num_gen), epsilon, space, sampling, crop, batch_size,
                           seed=opts.seed, labels=opts.G.labels, variant=variant, progress=opts.progress)


# ----------------------------------------------------------------------------- primary metrics
@register_metric
def fid50k_full(opts):
    return dict(fid50k_full=compute_fid(opts, "fid50k_full", max_real=None, num_gen=50000))


@register_metric
def kid50k_full(opts):
    return dict(kid50k_full=compute_kid(opts, "kid50k_full", max_real=1000000, num_gen=50000))


@register_metric
def pr50k3_full(opts):
    p, r = compute_pr(opts, "pr50k3_full", max_real=200000, num_gen=50000)
    return dict(pr50k3_full_precision=p, pr50k3_full_recall=r)


@register_metric
def ppl2_wend(opts):
    return dict(ppl2_wend=compute_ppl(opts, "ppl2_wend", 50000, 1e-4, "w", "end", False, 2))


@register_metric
def is50k(opts):
    det = opts.detector("inception_probs", "is50k")
    probs = _gen_stats(opts, det, _n(50000, opts.num_gen), "is50k", capture_all=True).get_all()
    mean, std = inception_score.inception_score(probs.astype(np.float64), num_splits=10)
    return dict(is50k_mean=mean, is50k_std=std)


# ----------------------------------------------------------------------------- legacy metrics
@register_metric
def fid50k(opts):
    return dict(fid50k=compute_fid(opts, "fid50k", max_real=50000, num_gen=50000))


@register_metric
def kid50k(opts):
    return dict(kid50k=compute_kid(opts, "kid50k", max_real=50000, num_gen=50000))


@register_metric
def pr50k3(opts):
    p, r = compute_pr(opts, "pr50k3", max_real=50000, num_gen=50000)
    return dict(pr50k3_precision=p, pr50k3_recall=r)


@register_metric
def ppl_zfull(opts):
    return dict(ppl_zfull=compute_ppl(opts, "ppl_zfull", 50000, 1e-4, "z", "full", True, 2))


@register_metric
def ppl_wfull(opts):
    return dict(ppl_wfull=compute_ppl(opts, "ppl_wfull", 50000, 1e-4, "w", "full", True, 2))


@register_metric
def ppl_zend(opts):
    return dict(ppl_zend=compute_ppl(opts, "ppl_zend", 50000, 1e-4, "z", "end", True, 2))


@register_metric
def ppl_wend(opts):
    return dict(ppl_wend=compute_ppl(opts, "ppl_wend", 50000, 1e-4, "w", "end", True, 2))


# ----------------------------------------------------------------------------- other papers / data
@register_metric
def ppl_cagc(opts):
    return dict(ppl_cagc=compute_ppl(opts, "ppl_cagc", 5000, 1e-4, "w", "full", False, 50, variant="cagc"))


@register_metric
def fid_digits(opts):
    """Digits-classifier FID (5k generated vs all real digits) and class coverage."""
    from gancomp_jax.data.digits import DigitsSource
    from gancomp_jax.metrics.digits_classifier import RESOLUTION, class_coverage, digits_classifier_logits
    det = opts.detector("digits_features", "fid_digits")
    real_source = opts.dataset if isinstance(opts.dataset, DigitsSource) else DigitsSource(RESOLUTION)
    real = compute_feature_stats_for_dataset(real_source, det, _real_max(None, opts), opts.batch_size,
                                             capture_mean_cov=True, cache=opts.cache,
                                             dataset_name="digits", progress=opts.progress)
    gen = _gen_stats(opts, det, _n(5000, opts.num_gen), "fid_digits", capture_mean_cov=True, capture_all=True)
    result = dict(fid_digits=fid_mod.fid_from_stats(gen, real, "nvlabs"))
    result.update(class_coverage(digits_classifier_logits(gen.get_all())))
    return result


@register_metric
def class_accuracy_digits(opts):
    """Digits classifier's agreement with the requested class (10k conditional samples)."""
    from gancomp_jax.metrics.digits_classifier import NUM_CLASSES, class_accuracy
    k = opts.G.c_dim
    if k != NUM_CLASSES:
        raise ValueError(f"metric class_accuracy_digits needs a generator conditioned on the {NUM_CLASSES} "
                         f"digit classes, got {k} classes")
    det = opts.detector("digits_logits", "class_accuracy_digits")
    logits, requested = [], []
    for out, cls in generator_batches(opts.G, _n(10000, opts.num_gen), opts.batch_size, opts.seed,
                                      detector=det, desc="generator digits_logits", progress=opts.progress,
                                      with_classes=True):
        logits.append(out)
        requested.append(cls)
    return class_accuracy(np.concatenate(logits), np.concatenate(requested))


# ----------------------------------------------------------------------------- records
def _format_time(seconds: float) -> str:
    s = int(np.rint(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


def calc_metric(metric: str, opts: MetricOptions) -> dict[str, Any]:
    """Computes ``metric``; returns the NVlabs-style record (plus the overrides used)."""
    if not is_valid_metric(metric):
        raise ValueError(f"unknown metric {metric!r}; valid metrics: {', '.join(list_valid_metrics())}")
    import jax
    start = time.time()
    results = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in _METRICS[metric](opts).items()}
    total = time.time() - start
    record = dict(results=results, metric=metric, total_time=total, total_time_str=_format_time(total),
                  num_gpus=len(jax.local_devices()))
    if opts.num_gen is not None:
        record["num_gen"] = int(opts.num_gen)
    if opts.max_real is not None:
        record["max_real"] = int(opts.max_real)
    if metric.startswith(("fid", "kid", "is")) and metric != "fid_digits":
        record["fid_convention"] = opts.fid_convention
    return record


def report_metric(record: dict[str, Any], run_dir=None, snapshot: str | None = None) -> str:
    """Appends the record (with ``snapshot_pkl`` and ``timestamp``) to
    ``run_dir/metric-<metric>.jsonl`` and returns the JSON line."""
    import json
    import os
    line = json.dumps(dict(record, snapshot_pkl=snapshot, timestamp=time.time()))
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f"metric-{record['metric']}.jsonl"), "at") as f:
            f.write(line + "\n")
    return line
