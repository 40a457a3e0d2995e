"""init_model's paper256 initialisation compiles a few programs, not one per normal draw (issue 23)."""

import jax
import numpy as np

from gancomp_jax import checkpoints
from gancomp_jax.models import get_preset


def test_paper256_init_model_path_compiles_few_programs_with_nvlabs_scales():
    from jax import monitoring

    events, active = [], [True]  # listeners cannot be removed: this one goes quiet after the test
    monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: active[0] and events.append(name))
    preset = get_preset("paper256")
    g = checkpoints.init_network_host_draws("generator", preset.generator, jax.random.key(0))
    d = checkpoints.init_network_host_draws("discriminator", preset.discriminator, jax.random.key(1))
    active[0] = False
    compiles = sum(e == "/jax/core/compile/backend_compile_duration" for e in events)
    assert compiles <= 6, compiles  # jax draws: one fused program per draw shape (~20 s on XLA:CPU)
    fc0 = np.asarray(g.variables["params"]["mapping"]["fc0"]["weight"])
    assert fc0.shape == (512, 512) and abs(fc0.std() - 100.0) < 2.0  # N(0, 1) / lr_multiplier 0.01
    for net in (g, d):
        for path, leaf in jax.tree_util.tree_leaves_with_path(net.variables):
            assert np.all(np.isfinite(np.asarray(leaf))), path
    # the same key gives the same weights; another seed gives others
    again = checkpoints.init_network_host_draws("generator", preset.generator, jax.random.key(0))
    other = checkpoints.init_network_host_draws("generator", preset.generator, jax.random.key(2))
    np.testing.assert_array_equal(fc0, np.asarray(again.variables["params"]["mapping"]["fc0"]["weight"]))
    assert not np.array_equal(fc0, np.asarray(other.variables["params"]["mapping"]["fc0"]["weight"]))
