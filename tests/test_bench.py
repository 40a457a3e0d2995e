"""tools/bench.py: compile time is timed on its own (``lower().compile()``), so a machine that gets
busier between the first and the later calls cannot make it negative (issue 23, item 18)."""

import types

import jax
from gancomp_jax import bench
from gancomp_jax.models import get_preset


def test_compile_time_does_not_depend_on_load_during_the_timed_calls(monkeypatch):
    """A fake clock makes every call after the first one 100 s slower (load arriving). The old
    'first call minus median' gave about -100 s; the compile time must stay what compiling took."""
    clock = {"extra": 0.0, "calls": 0}
    real_block = jax.block_until_ready

    def block(x):
        out = real_block(x)
        clock["calls"] += 1
        if clock["calls"] > 1:
            clock["extra"] += 100.0
        return out

    import time as real_time
    fake_time = types.SimpleNamespace(perf_counter=lambda: real_time.perf_counter() + clock["extra"])
    monkeypatch.setattr(bench, "time", fake_time)
    monkeypatch.setattr(jax, "block_until_ready", block)
    x = jax.numpy.ones((64, 64))
    compile_s, median_s = bench._time(jax.jit(lambda x: jax.numpy.tanh(x @ x.T)), (x,), 3)
    assert 0 < compile_s < 100 and median_s >= 100  # the timed calls saw the 'load'
    clock.update(extra=0.0, calls=0)
    r = bench.bench_discriminator(get_preset("tiny16"), 2, 1)
    assert 0 < r["D_compile_s"] < 100 and r["D_sec_per_batch"] >= 100, r


def test_init_network_compiles_once_instead_of_op_by_op():
    """init_model / bench initialise under one jit: an eager flax init compiled every op of the
    dummy forward pass separately (151 backend compilations for tiny16, minutes for paper256)."""
    from jax import monitoring

    from gancomp_jax import checkpoints

    events, active = [], [True]  # listeners cannot be removed: this one goes quiet after the test
    monitoring.register_event_duration_secs_listener(lambda name, secs, **kw: active[0] and events.append(name))
    cfg = get_preset("tiny16").generator.replace(z_dim=24)  # a config no other test compiled
    net = checkpoints.init_network("generator", cfg, jax.random.key(0))
    active[0] = False
    compiles = sum(e == "/jax/core/compile/backend_compile_duration" for e in events)
    assert 1 <= compiles <= 4, compiles
    assert net.variables["params"]["mapping"]["fc0"]["weight"].shape == (24, cfg.w_dim)
