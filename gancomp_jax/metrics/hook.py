"""Metrics during training: an evaluation hook for the trainer (``config.eval.hooks``).

    --config.eval.every_kimg=50 --config.eval.hooks='("gancomp_jax.metrics.hook:make_hook",)'
    --config.eval.best_metric=fid_digits

reads, from the training config (all optional): ``eval.metrics`` (comma list, default
``'fid_digits'`` for the embedded digits, else ``'fid50k_full'``), ``eval.num_gen`` (0: the
metrics' own counts), ``eval.inception`` / ``eval.vgg16`` / ``eval.lpips`` (weight files),
``eval.fid_convention`` and ``eval.batch_size``. The real data are ``config.data``; the sampled
network is ``G_ema`` (else ``G``, else the only generator). Each scalar of each metric's results
is returned (``fid_digits``, ``digits_coverage``, ``fid50k_full``, ...); the trainer logs them
as ``Eval/<name>`` to metrics.jsonl and TensorBoard and keeps ``best_model/`` for
``eval.best_metric``. Dataset statistics are computed once (cache).
"""

from __future__ import annotations

from typing import Any, Mapping

from absl import logging


def _get(cfg, key, default):
    try:
        v = cfg.get(key, default)
    except AttributeError:
        v = getattr(cfg, key, default)
    return default if v is None else v


def make_hook(config):
    """``factory(config) -> hook(step, networks) -> {name: float}`` (see module docstring)."""
    from gancomp_jax import checkpoints
    from gancomp_jax.data import build_source
    from gancomp_jax.metrics import registry
    from gancomp_jax.metrics.runner import GeneratorSpec
    from gancomp_jax.models.generator import Generator

    ev = _get(config, "eval", {})
    source = build_source(config.data)
    default = "fid_digits" if config.data.get("source", "digits") == "digits" else "fid50k_full"
    names = [m.strip() for m in str(_get(ev, "metrics", default) or default).split(",") if m.strip()]
    for n in names:
        if not registry.is_valid_metric(n):
            raise ValueError(f"config.eval.metrics: unknown metric {n!r}; valid: {registry.list_valid_metrics()}")
    from gancomp_jax.utils.ranges import check_sample_count

    num_gen = check_sample_count(int(_get(ev, "num_gen", 0)) or None, "config.eval.num_gen")  # before training
    detectors: dict = {}
    labels = _labels(source)

    def hook(step: int, networks: Mapping[str, Any]) -> dict[str, float]:
        _, net = checkpoints.pick_generator(networks)
        spec = GeneratorSpec(Generator(net.config.replace(num_mixed_res=0)), net.variables, labels=labels)
        opts = registry.MetricOptions(
            G=spec, dataset=source, dataset_name=str(config.data.get("source", "data")),
            inception=_get(ev, "inception", "") or None, vgg16=_get(ev, "vgg16", "") or None,
            lpips=_get(ev, "lpips", "") or None, fid_convention=_get(ev, "fid_convention", "nvlabs"),
            batch_size=int(_get(ev, "batch_size", 64)), num_gen=num_gen, progress=False,
            detectors=detectors)
        out: dict[str, float] = {}
        for n in names:
            rec = registry.calc_metric(n, opts)
            for k, v in rec["results"].items():
                if isinstance(v, (int, float)):
                    out[k] = float(v)
            logging.info("step %d %s: %s", step, n, rec["results"])
        return out

    return hook


def _labels(source):
    try:
        if hasattr(source, "labels") and callable(source.labels):
            return source.labels()
        if hasattr(source, "_labels"):
            return source._labels
    except Exception:  # noqa: BLE001 - labels are optional
        return None
    return None
