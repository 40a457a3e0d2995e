"""The report job on BigGAN models: a tiny random 10-class BigGAN teacher (real architecture, 32 px)
and its ℓ1-pruned student: params and MACs, fid_digits and class_accuracy_digits with balanced
class sampling, images/s, the per-class grid; a report mixing StyleGAN2 and BigGAN is refused."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.convert.common import count_parameters
from gancomp_jax.jobs import report
from gancomp_jax.jobs.evaluate import load_generator
from gancomp_jax.models.biggan import BigGANGeneratorConfig, init_generator
from gancomp_jax.models.biggan.cost import generator_macs
from gancomp_jax.models.network import Network
from gancomp_jax.prune import biggan as pb


def _random_biggan(cfg, seed):
    """The real variable tree (shapes traced, nothing compiled), random weights and BN statistics."""
    rng = np.random.RandomState(seed)

    def draw(path, x):
        name = jax.tree_util.keystr(path)
        if name.endswith("['stored_var']"):
            return rng.uniform(0.5, 2.0, x.shape).astype(np.float32)
        if "['sv" in name:
            return np.ones(x.shape, np.float32)
        return np.asarray(rng.randn(*x.shape) * (0.3 if "['params']" in name else 1.0), np.float32)
    return jax.tree_util.tree_map_with_path(draw, jax.eval_shape(lambda k: init_generator(cfg, k), jax.random.key(0)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bg_report")
    cfg = BigGANGeneratorConfig.biggan(32, ch=4, attention="16", dim_z=8, shared_dim=4, n_classes=10)
    teacher = {"G_ema": Network("biggan_generator", cfg, _random_biggan(cfg, 0))}
    student, _ = pb.prune_networks(teacher, divisor=2)
    checkpoints.save_model(root / "teacher", teacher)
    checkpoints.save_model(root / "student", student)
    return root


def test_biggan_report(models, tmp_path, monkeypatch):
    monkeypatch.setenv("GANCOMP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "report"
    rep = report.make_report(str(models / "teacher"), {"half": str(models / "student")}, out,
                             metrics="fid_digits,class_accuracy_digits", num_gen=20, class_sampling="balanced",
                             seeds="0-1", grid_classes=3, batch_size=20, speed_batch=6, speed_iters=1,
                             progress=False)
    data = json.loads((out / "report.json").read_text())
    assert data["family"] == "biggan" and data["grid_classes"] == [0, 1, 2]
    t, s = data["rows"]
    nets = {k: checkpoints.load_model(models / k)["G_ema"] for k in ("teacher", "student")}
    assert t["params"] == count_parameters(nets["teacher"].variables)
    assert s["params"] == count_parameters(nets["student"].variables) < t["params"]
    assert (t["macs"], s["macs"]) == (generator_macs(nets["teacher"].config), generator_macs(nets["student"].config))
    assert s["compression_rate"] == pytest.approx(1 - s["macs"] / t["macs"]) and s["macs_cagc"] is None
    assert s["widths"] == [8, 8, 16, 8] and t["resolution"] == 32
    assert t["images_per_second"] > 0 and s["measured_speedup"] > 0
    assert 0 <= s["metrics"]["class_accuracy_digits"] <= 1 and s["metrics"]["fid_digits"] > 0
    assert len(t["metrics"]["class_accuracy_digits_per_class"]) == 10
    assert len((out / "metric-class_accuracy_digits.jsonl").read_text().splitlines()) == 2
    md = (out / "report.md").read_text()
    assert md.startswith("# Compression report (BigGAN)") and "| half | student |" in md
    assert "class_accuracy_digits" in md and "models.biggan.cost" in md
    from PIL import Image
    assert Image.open(out / "grid.png").size == (2 * 32, 3 * 2 * 32)  # 2 seeds; 3 classes x 2 models
    assert rep["quality_metric"] == "fid_digits"
    # grid block of class 2, student row = G_student(z of seeds 0, 1; class 2)
    g = np.asarray(Image.open(out / "grid.png"))
    want = report.class_rows(load_generator(str(models / "student")), [0, 1], [0, 1, 2])[2]
    np.testing.assert_array_equal(g[5 * 32:6 * 32], np.concatenate(list(want), axis=1))


def test_mixed_families_refused(models, tmp_path):
    from gancomp_jax.models import get_preset
    cfg = get_preset("tiny16").generator
    v = jax.tree.map(lambda a: np.zeros(a.shape, np.float32), checkpoints.abstract_variables("generator", cfg))
    checkpoints.save_model(tmp_path / "sg2", {"G_ema": Network("generator", cfg, v)})
    out = tmp_path / "report"
    with pytest.raises(ValueError, match="one family: the teacher .* is a BigGAN generator but sg2 .* StyleGAN2"):
        report.make_report(str(models / "teacher"), [str(tmp_path / "sg2")], out, metrics="", progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="class_sampling must be one of"):
        report.make_report(str(models / "teacher"), [], out, metrics="", class_sampling="most", progress=False)
