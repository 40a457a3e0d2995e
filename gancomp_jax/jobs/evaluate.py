"""Evaluation job: NVlabs-named metrics of one generator, written as NVlabs ``metric-*.jsonl``.

    python -m gancomp_jax.main --config experiments/evaluate.py --workdir OUT \
        --config.model=MODEL --config.data.source=zip --config.data.path=ffhq256.zip \
        --config.metrics=fid50k_full,kid50k_full,pr50k3_full,ppl2_wend \
        --config.inception=pt_inception-2015-12-05-6726825d.pth --config.vgg16=vgg16-397923af.pth \
        [--config.lpips=weights/v0.1/vgg.pth]

``MODEL`` is a model directory, an NVlabs ``.pkl`` or a rosinality ``.pt``. Each metric appends
one record to ``OUT/metric-<name>.jsonl`` (``results``, ``metric``, ``total_time``,
``total_time_str``, ``num_gpus`` = local devices, ``snapshot_pkl`` = MODEL, ``timestamp``) and a
table is printed at the end. Metric names and settings: :mod:`gancomp_jax.metrics.registry`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from absl import logging

from gancomp_jax.metrics.hook import _labels


def load_generator(model: str, network: str = "auto", truncation_psi: float = 1.0,
                   noise_mode: str = "random", labels=None):
    """A :class:`GeneratorSpec` from a model directory / ``.pkl`` / ``.pt`` (float32 compute)."""
    from gancomp_jax import checkpoints
    from gancomp_jax.metrics.runner import GeneratorSpec
    from gancomp_jax.models.generator import Generator
    if not model:
        raise ValueError("config.model is required: a model directory, an NVlabs .pkl or a rosinality .pt")
    networks = checkpoints.load_any(model, None if network == "auto" else [network])
    name, net = checkpoints.pick_generator(networks)
    if net.kind == "biggan_generator":  # the BigGAN family (imported only here)
        from gancomp_jax.models.biggan import BigGANGenerator
        return GeneratorSpec(BigGANGenerator(net.config), net.variables, truncation_psi=float(truncation_psi),
                             labels=labels)
    if net.kind != "generator":
        raise ValueError(f"network {name!r} in {model} is a {net.kind}, not a generator")
    return GeneratorSpec(Generator(net.config.replace(num_mixed_res=0)), net.variables,
                         truncation_psi=float(truncation_psi), noise_mode=noise_mode, labels=labels)


def format_table(records: list[dict]) -> str:
    """Plain-text table: metric, result key, value, time."""
    rows = [("metric", "result", "value", "time")]
    for rec in records:
        for k, v in rec["results"].items():
            val = f"{v:.6g}" if isinstance(v, float) else json.dumps(v)
            rows.append((rec["metric"], k, val, rec["total_time_str"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(config, workdir: str) -> list[dict]:
    from gancomp_jax.data import build_source
    from gancomp_jax.metrics import registry

    from gancomp_jax.utils.atomic_dir import check_workdir, prepare_workdir

    check_workdir(workdir)  # new, empty or an earlier output of ours: records never land among other files
    names = [m.strip() for m in str(config.metrics).split(",") if m.strip()]
    if not names:
        raise ValueError("config.metrics is empty; e.g. --config.metrics=fid50k_full,kid50k_full")
    bad = [m for m in names if not registry.is_valid_metric(m)]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; valid metrics: {', '.join(registry.list_valid_metrics())}")
    needs_data = [m for m in names if m not in ("ppl2_wend", "ppl_zfull", "ppl_wfull", "ppl_zend",
                                                 "ppl_wend", "ppl_cagc", "is50k", "fid_digits",
                                                 "class_accuracy_digits")]
    if config.fid_convention not in ("nvlabs", "pytorch_fid"):
        raise ValueError(f"config.fid_convention must be 'nvlabs' or 'pytorch_fid', got {config.fid_convention!r}")
    # Check every needed weight file before the first (long) metric starts.
    for m in names:
        if m.startswith(("fid5", "kid", "is")) and not config.inception:
            raise ValueError(f"metric {m} needs config.inception: pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
        if m.startswith("pr") and not config.vgg16:
            raise ValueError(f"metric {m} needs config.vgg16: torchvision's vgg16-397923af.pth")
        if m.startswith("ppl") and not config.vgg16:
            raise ValueError(f"metric {m} needs config.vgg16: torchvision's vgg16-397923af.pth (the LPIPS "
                             f"trunk; the heads come from config.lpips or the installed lpips package)")
    source = build_source(config.data)
    labels = _labels(source)
    spec = load_generator(config.model, config.network, config.truncation_psi, config.noise_mode, labels)
    spec = dataclasses.replace(spec, class_sampling=str(config.get("class_sampling", "dataset")))
    if getattr(source, "resolution", None) not in (None, spec.resolution):
        if needs_data:
            raise ValueError(f"the data are {source.resolution}px but the generator makes "
                             f"{spec.resolution}px images (config.data.resolution)")
    opts = registry.MetricOptions(
        G=spec, dataset=source, dataset_name=config.data.get("name") or config.data.source,
        inception=config.inception or None, vgg16=config.vgg16 or None, lpips=config.lpips or None,
        fid_convention=config.fid_convention, batch_size=int(config.batch_size),
        num_gen=int(config.num_gen) or None, max_real=int(config.max_real) or None,
        seed=int(config.seed), cache=bool(config.cache), progress=bool(config.progress))
    out = prepare_workdir(workdir, "evaluate")
    records = []
    for m in names:
        logging.info("computing %s", m)
        rec = registry.calc_metric(m, opts)
        line = registry.report_metric(rec, str(out), snapshot=str(config.model))
        logging.info("%s", line)
        records.append(rec)
    print(format_table(records))
    print(f"records: {', '.join(str(out / f'metric-{m}.jsonl') for m in names)}")
    return records
