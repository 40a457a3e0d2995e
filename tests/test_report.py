"""Report job: teacher vs students table (params, MACs, compression, images/s, metrics), grid, plot."""

from __future__ import annotations

import json

import jax
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.jobs import report
from gancomp_jax.metrics.cost import generator_cost
from gancomp_jax.models import get_preset


def _save(path, channel_max, seed):
    cfg = get_preset("tiny16", channel_max=channel_max).generator
    checkpoints.save_model(path, {"G_ema": checkpoints.init_network("generator", cfg, jax.random.key(seed))})
    return cfg


@pytest.mark.slow  # compiles two generators three times each (≈ 1 min on 2 free cores)
def test_report_table_grid_plot(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCOMP_CACHE_DIR", str(tmp_path / "cache"))
    t_cfg = _save(tmp_path / "teacher", 32, 0)
    s_cfg = _save(tmp_path / "student", 8, 1)
    out = tmp_path / "report"
    rep = report.make_report(str(tmp_path / "teacher"), {"small": str(tmp_path / "student")}, out,
                             metrics="fid_digits", num_gen=64, seeds="0-3", speed_iters=1, progress=False)
    data = json.loads((out / "report.json").read_text())
    teacher, student = data["rows"]
    assert teacher["role"] == "teacher" and student["name"] == "small"
    tc, sc = generator_cost(t_cfg), generator_cost(s_cfg)
    assert teacher["macs"] == tc["macs"] and student["params"] == sc["params"]
    assert teacher["compression_rate"] == 0.0
    assert student["compression_rate"] == pytest.approx(1 - sc["macs"] / tc["macs"])
    assert student["images_per_second"] > 0 and student["metrics"]["fid_digits"] > 0
    assert len(student["metrics"]["digits_class_shares"]) == 10
    md = (out / "report.md").read_text()
    assert "| small | student |" in md and "grid.png" in md and "quality_vs_macs.png" in md
    from PIL import Image
    grid = Image.open(out / "grid.png")
    assert grid.size == (4 * 16, 2 * 16)  # 2 models x 4 seeds
    assert (out / "quality_vs_macs.png").stat().st_size > 1000
    assert rep["quality_metric"] == "fid_digits"
    assert len((out / "metric-fid_digits.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ValueError, match="names"):
        report.make_report(str(tmp_path / "teacher"), [str(tmp_path / "student")], out, names=["a"],
                           metrics="", progress=False)


def test_time_generators_round_robin_median_and_spread(tmp_path):
    """Every model timed the same way: warm-up, then round-robin repetitions; median and spread."""
    from gancomp_jax.jobs.evaluate import load_generator

    _save(tmp_path / "a", 8, 0)
    _save(tmp_path / "b", 8, 1)
    specs = [load_generator(str(tmp_path / n)) for n in ("a", "b")]
    out = report.time_generators(specs, batch_size=4, reps=3, warmup=1)
    for r in out:
        assert len(r["times_s"]) == 3 and r["batch_size"] == 4
        assert r["images_per_second_min"] <= r["images_per_second"] <= r["images_per_second_max"]
        assert r["images_per_second"] == pytest.approx(4 / sorted(r["times_s"])[1], rel=1e-9)
    assert report._fmt_speed({"images_per_second": 2599.4, "images_per_second_min": 997.0,
                              "images_per_second_max": 2812.0}) == "2599.4 (997–2812)"
