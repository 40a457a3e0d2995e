"""Accelerator-ready runtime settings: matmul precision, compilation cache location, the
input-pipeline bottleneck warning and the pipeline-alone benchmark."""

import jax
import ml_collections
import pytest

from gancomp_jax.train import trainer


def test_matmul_precision_choices():
    before = jax.config.jax_default_matmul_precision
    cfg = ml_collections.ConfigDict({"matmul_precision": "highest"})
    with trainer.matmul_precision(cfg):
        assert jax.config.jax_default_matmul_precision == "highest"
    assert jax.config.jax_default_matmul_precision == before  # restored, not set globally
    with trainer.matmul_precision(ml_collections.ConfigDict({"matmul_precision": "default"})):
        assert jax.config.jax_default_matmul_precision == before  # 'default' leaves it alone
    with pytest.raises(ValueError, match=r"config.matmul_precision='fast' must be one of"):
        trainer.matmul_precision(ml_collections.ConfigDict({"matmul_precision": "fast"}))


def test_compilation_cache_dir(tmp_path):
    auto = ml_collections.ConfigDict({"compilation_cache_dir": "auto"})
    if jax.config.jax_compilation_cache_dir:  # tests/conftest.py gives the session a cache: it is kept
        assert trainer.compilation_cache_dir(auto, tmp_path) is None
    else:
        assert trainer.compilation_cache_dir(auto, tmp_path) == str(tmp_path / "xla_cache")
    assert trainer.compilation_cache_dir(ml_collections.ConfigDict({"compilation_cache_dir": "none"}), tmp_path) is None
    assert trainer.compilation_cache_dir(ml_collections.ConfigDict({"compilation_cache_dir": "gs://b/c"}),
                                         tmp_path) == "gs://b/c"


def test_input_bound_warning_once(capsys):
    warned = []
    assert not trainer.warn_if_input_bound(64, 0.1, 1.0, warned)  # 10 % waiting: fine
    assert trainer.warn_if_input_bound(64, 0.5, 1.0, warned)
    err = capsys.readouterr().err
    assert "input pipeline is the bottleneck" in err and "50 %" in err and "128.0 img/s" in err
    assert not trainer.warn_if_input_bound(64, 0.9, 1.0, warned)  # once per run
    assert capsys.readouterr().err == ""


def test_pipeline_benchmark_digits():
    from gancomp_jax.bench import bench_pipeline

    r = bench_pipeline("digits", "", 32, 16, 0, 3)
    assert r["pipeline_img_per_s"] > 0 and r["pipeline_worker_count"] == 0
