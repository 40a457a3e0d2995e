"""fid_digits / class coverage (the embedded data's own metric) and the evaluate job."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.data import DigitsSource
from gancomp_jax.metrics import digits_classifier as dc
from gancomp_jax.metrics import fid
from gancomp_jax.metrics.runner import compute_feature_stats_for_dataset
from gancomp_jax.models import get_preset


class _Subset:
    def __init__(self, source, indices):
        self.source, self.indices = source, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[self.indices[i]]


class _Noise:
    def __len__(self):
        return 400

    def __getitem__(self, i):
        return {"image": np.random.RandomState(i).randint(0, 256, (32, 32, 3)).astype(np.uint8), "label": -1}


def _stats(src, det):
    return compute_feature_stats_for_dataset(src, det, batch_size=128, capture_mean_cov=True, cache=False,
                                             progress=False)


def test_classifier_is_shipped_and_accurate():
    params, info = dc.load_classifier(train_if_missing=False)
    assert info["heldout_accuracy"] > 0.9
    src = DigitsSource(32)
    idx = np.arange(0, len(src), 5)  # held-out items
    x = np.stack([src[int(i)]["image"] for i in idx])
    y = np.asarray([src[int(i)]["label"] for i in idx])
    det = dc.digits_detector("features")
    feats = np.asarray(jax.jit(det.fn)(det.params, x))
    assert feats.shape == (len(idx), 64)
    acc = (dc.digits_classifier_logits(feats).argmax(1) == y).mean()
    assert acc == pytest.approx(info["heldout_accuracy"], abs=1e-6)


def test_fid_digits_orders_sensibly():
    det = dc.digits_detector("features")
    src = DigitsSource(32)
    even = _stats(_Subset(src, range(0, len(src), 2)), det)
    odd = _stats(_Subset(src, range(1, len(src), 2)), det)
    noise = _stats(_Noise(), det)
    real_real = fid.fid_from_stats(even, odd)
    real_noise = fid.fid_from_stats(noise, odd)
    assert real_real < 0.05 * real_noise, (real_real, real_noise)
    shares = dc.class_coverage(np.eye(10)[np.arange(100) % 10])
    assert shares["digits_classes_present"] == 10 and shares["digits_coverage"] == pytest.approx(1.0)
    one = dc.class_coverage(np.eye(10)[np.zeros(50, int)])
    assert one["digits_classes_present"] == 1 and one["digits_coverage"] == pytest.approx(0.1)


@pytest.mark.slow
def test_evaluate_cli_writes_records(tmp_path):
    cfg = get_preset("tiny16").generator
    model = tmp_path / "model"
    checkpoints.save_model(model, {"G_ema": checkpoints.init_network("generator", cfg, jax.random.key(1))})
    out = tmp_path / "eval"
    base = [sys.executable, "-m", "gancomp_jax.main", "--config", "experiments/evaluate.py",
            "--workdir", str(out), f"--config.model={model}", "--config.data.resolution=16",
            "--config.progress=False"]
    res = subprocess.run(base + ["--config.metrics=fid_digits", "--config.num_gen=128"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = (out / "metric-fid_digits.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    assert set(rec) >= {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"}
    r = rec["results"]
    assert rec["metric"] == "fid_digits" and rec["num_gen"] == 128 and "fid_digits" in res.stdout
    assert sum(r["digits_class_shares"]) == pytest.approx(1.0, abs=1e-4)
    # an untrained generator is far from the data, compared with real vs real
    det = dc.digits_detector("features")
    src = DigitsSource(16)
    real_real = fid.fid_from_stats(_stats(_Subset(src, range(0, len(src), 2)), det),
                                   _stats(_Subset(src, range(1, len(src), 2)), det))
    assert r["fid_digits"] > 20 * real_real, (r["fid_digits"], real_real)
    # a metric that needs a weight file fails with one clear line before any work
    bad = subprocess.run(base + ["--config.metrics=fid50k_full"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "error: metric fid50k_full needs config.inception" in bad.stderr
    unknown = subprocess.run(base + ["--config.metrics=fid99"], capture_output=True, text=True, timeout=600)
    assert unknown.returncode == 2 and "unknown metric" in unknown.stderr


def test_evaluate_job_in_process(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GANCOMP_CACHE_DIR", str(tmp_path / "cache"))
    import importlib.util
    import pathlib
    from gancomp_jax.jobs import evaluate
    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "evaluate.py"
    spec = importlib.util.spec_from_file_location("experiments_evaluate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_config = module.get_config
    cfg = get_preset("tiny16").generator
    model = tmp_path / "model"
    checkpoints.save_model(model, {"G_ema": checkpoints.init_network("generator", cfg, jax.random.key(1))})
    config = get_config()
    config.model, config.metrics, config.num_gen, config.progress = str(model), "fid_digits", 64, False
    config.data.resolution = 16
    records = evaluate.run(config, str(tmp_path / "eval"))
    assert records[0]["results"]["fid_digits"] > 0
    line = json.loads((tmp_path / "eval" / "metric-fid_digits.jsonl").read_text().splitlines()[0])
    assert line["snapshot_pkl"] == str(model) and line["num_gen"] == 64
    assert "fid_digits" in capsys.readouterr().out
    config.metrics = "kid50k_full"
    with pytest.raises(ValueError, match="needs config.inception"):
        evaluate.run(config, str(tmp_path / "eval2"))
