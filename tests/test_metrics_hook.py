"""The training evaluation hook (config.eval.hooks = ('gancomp_jax.metrics.hook:make_hook',))."""

from __future__ import annotations

import jax
import ml_collections
import pytest

from gancomp_jax import checkpoints
from gancomp_jax.data import default_data_config
from gancomp_jax.metrics.hook import make_hook
from gancomp_jax.models import get_preset


@pytest.mark.slow  # tiny generator + classifier compile (≈ 30 s on 2 free cores)
def test_hook_returns_fid_digits_and_coverage(tmp_path, monkeypatch):
    monkeypatch.setenv("GANCOMP_CACHE_DIR", str(tmp_path))
    config = ml_collections.ConfigDict({"data": default_data_config(),
                                        "eval": {"metrics": "fid_digits", "num_gen": 64}})
    config.data.resolution = 16
    hook = make_hook(config)
    cfg = get_preset("tiny16").generator
    nets = {"G_ema": checkpoints.init_network("generator", cfg, jax.random.key(0)),
            "D": checkpoints.init_network("discriminator", get_preset("tiny16").discriminator, jax.random.key(1))}
    out = hook(100, nets)
    assert out["fid_digits"] > 0 and 0 < out["digits_coverage"] <= 1
    assert "digits_class_shares" not in out  # only scalars go to the logs
    config.eval.metrics = "fid_nope"
    with pytest.raises(ValueError, match="unknown metric"):
        make_hook(config)
