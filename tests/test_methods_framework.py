"""The method trainer: StyleGAN2 as a method reproduces the pre-redesign trainer; per-phase
parameter changes; frozen networks; the context's shared generator passes; the registry."""

import importlib.util
import os
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax import checkpoints, methods
from gancomp_jax.methods.base import BuildEnv, Context, Method, NetworkSpec, OptimizerSpec, Phase
from gancomp_jax.models import get_preset
from gancomp_jax.train.trainer import train

REPO = Path(__file__).resolve().parents[1]


def _golden_module():
    spec = importlib.util.spec_from_file_location("make_golden", REPO / "tests" / "fixtures" /
                                                  "make_stylegan2_trainer_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_stylegan2_method_reproduces_the_pre_redesign_trainer(fixtures_dir, tmp_path):
    golden = json.loads((fixtures_dir / "stylegan2_trainer_golden.json").read_text())
    mod = _golden_module()
    res = train(mod.golden_config(), tmp_path / "run")
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [g["step"] for g in golden["metrics"]]
    for got, want in zip(lines, golden["metrics"]):
        assert set(want) <= set(got), set(want) - set(got)
        for k, v in want.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-6, err_msg=f"step {want['step']} {k}")
    # steps 1, 3, 5 (0-based 0, 2, 4) ran both regularisers
    assert [("G/reg_loss" in l, "D/reg_loss" in l) for l in lines] == [(i % 2 == 1, i % 2 == 1) for i in range(1, 7)]
    got = {"G": mod.digest(res.state.params["G"]), "G_ema": mod.digest(res.state.ema["G"]),
           "D": mod.digest(res.state.params["D"])}
    for name, leaves in golden["networks"].items():
        assert set(leaves) == set(got[name]), name
        for path, (s, ss) in leaves.items():
            np.testing.assert_allclose(got[name][path], [s, ss], rtol=1e-4, atol=1e-5, err_msg=f"{name}{path}")
    np.testing.assert_allclose(float(res.state.extra["pl_mean"]), golden["pl_mean"], rtol=1e-5)


def test_registry():
    assert "stylegan2" in methods.available()
    assert methods.get("stylegan2").build
    with pytest.raises(ValueError, match="'nope' is not a method; available: .*stylegan2"):
        methods.get("nope")
    with pytest.raises(ValueError, match="is not a method"):
        methods.get("../base")


# ---------------------------------------------------------------------------------------------
# One step per phase on a tiny model


def _tiny(**overrides):
    """test_train's tiny config for one step, checkpointing every step, no sample grids, no EMA ramp-up."""
    from test_train import tiny_config
    return tiny_config(**{"total_steps": 1, "log_every_steps": 1, "checkpoint_every_steps": 1,
                          "sample_every_steps": 0, "grid_rows": 0, "grid_cols": 0, "ema_rampup": None,
                          **overrides})


def _prepared(config):
    from gancomp_jax.train.steps import build_steps
    from gancomp_jax.train.trainer import prepare, resolve_config
    p = prepare(resolve_config(config))
    state = jax.jit(p.init_fn)(p.loaded_trainable)
    frozen, _ = p.place_frozen()
    steps = build_steps(p.method, p.nets.modules, p.txs, int(config.batch_size))
    res = config.model.get("resolution") or 16
    batch = {"image": jax.random.uniform(jax.random.key(5), (int(config.batch_size), 16, 16, 3), minval=-1, maxval=1),
             "label": jnp.zeros((int(config.batch_size),), jnp.int32)}
    return p, state, frozen, steps, batch


def _changed(before, after) -> bool:
    return any(not np.array_equal(np.asarray(a), np.asarray(b))
               for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def _host(tree):
    return jax.tree.map(np.asarray, jax.device_get(tree))


def test_stylegan2_one_step_per_phase_changes_exactly_the_intended_networks():
    p, state, frozen, steps, batch = _prepared(_tiny())
    assert [ph.name for ph, _ in steps.phases] == ["Gmain", "Greg", "Dmain", "Dreg"]
    assert p.method.reg_interval("G") == 2 and p.method.reg_interval("D") == 2
    for phase, fn in steps.phases:
        before = _host(state)
        state, metrics = fn(state, frozen, batch)
        after = _host(state)
        assert all(np.isfinite(float(v)) for v in metrics.values()), (phase.name, metrics)
        assert phase.metric_name in metrics
        for role in ("G", "D"):
            assert _changed(before.params[role]["params"], after.params[role]["params"]) == (role in phase.updates), \
                (phase.name, role)
            assert _changed(before.opt[role], after.opt[role]) == (role in phase.updates), (phase.name, role)
        # w_avg moves in every phase that maps latents through G (NVlabs: training-mode mapping)
        assert _changed(before.params["G"]["buffers"], after.params["G"]["buffers"]) == (phase.name != "Dreg")
        assert _changed(before.extra, after.extra) == (phase.name == "Greg")  # pl_mean
        assert not _changed(before.ema, after.ema) and int(after.step) == 0
    before = _host(state)
    state, m = steps.ema(state)
    assert int(state.step) == 1 and set(m) == {"G/ema_beta"}
    assert not _changed(before.params, _host(state).params)


def test_stylegan2_without_regularisers_has_no_reg_phases_and_no_lazy_correction():
    p, *_ = _prepared(_tiny(r1_gamma=0.0, pl_weight=0.0))
    assert [ph.name for ph in p.method.phases] == ["Gmain", "Dmain"]
    assert p.method.reg_interval("G") is None and p.method.reg_interval("D") is None
    assert p.method.phase_key_ids() == [0, 2]  # the D phase keeps its random stream


# ---------------------------------------------------------------------------------------------
# A distillation method: frozen teacher, student initialised from it, shared latents


def _toy_distil_module(teacher: str, student: str):
    import types

    from gancomp_jax.losses import logistic_d_loss, nonsaturating_g_loss

    mod = types.ModuleType("gancomp_jax.methods.toy_distil")

    def build(config, env):
        def g_student(ctx: Context):
            t = ctx.generate("G_T", features=True)
            s = ctx.generate("G_S", features=True)
            adv = jnp.mean(nonsaturating_g_loss(ctx.discriminate("D_S", s.img, s.c)))
            kd = jnp.mean(jnp.square(s.features["b8"] - jax.lax.stop_gradient(t.features["b8"])))
            return adv + kd, {"G_S/adv": adv, "G_S/kd": kd, "G_S/img_gap": jnp.max(jnp.abs(s.img - t.img)),
                              "G_S/ws_gap": jnp.max(jnp.abs(s.ws - t.ws))}

        def d_student(ctx: Context):
            s = ctx.generate("G_S")
            g, r = logistic_d_loss(ctx.discriminate("D_S", jax.lax.stop_gradient(s.img), s.c),
                                   ctx.discriminate("D_S", ctx.reals))
            return jnp.mean(g) + jnp.mean(r), {}

        adam = OptimizerSpec(lr=0.002)
        return Method(
            networks={"G_T": NetworkSpec("generator", source=teacher, source_name="G_ema", trainable=False),
                      "G_S": NetworkSpec("generator", source=student, source_name="G_ema", ema=True, export="G"),
                      "D_S": NetworkSpec("discriminator", env.model.discriminator, export="D")},
            optimizers={"G_S": adam, "D_S": adam},
            phases=[Phase("Gmain", "G_S", g_student), Phase("Dmain", "D_S", d_student)],
            style_mixing_prob=0.9, noise="shared", ema_kimg=1.0, sample_network="G_ema")

    mod.build = build
    return mod


@pytest.fixture
def teacher_dirs(tmp_path):
    preset = get_preset("tiny16")
    out = []
    for seed in (0, 1):
        g = checkpoints.init_network("generator", preset.generator, jax.random.key(seed))
        out.append(checkpoints.save_model(tmp_path / f"teacher{seed}", {"G_ema": g}))
    return out


def test_distillation_method_frozen_teacher_shared_latents(tmp_path, teacher_dirs, monkeypatch):
    teacher = str(teacher_dirs[0])
    monkeypatch.setitem(sys.modules, "gancomp_jax.methods.toy_distil", _toy_distil_module(teacher, teacher))
    cfg = _tiny(**{"method.name": "toy_distil"})
    p, state, frozen, steps, batch = _prepared(cfg)
    assert set(frozen) == {"G_T"} and set(state.params) == {"G_S", "D_S"} and set(state.ema) == {"G_S"}
    teacher_before = _host(frozen)
    (g_phase, g_fn), (d_phase, d_fn) = steps.phases
    before = _host(state)
    state, m = g_fn(state, frozen, batch)
    # the student starts as a copy of the teacher: same z, labels, mixing and noise give the same images
    # (up to float rounding: the student's pass is differentiated, the teacher's is not)
    assert float(m["G_S/img_gap"]) < 1e-5 and float(m["G_S/ws_gap"]) < 1e-5 and float(m["G_S/kd"]) < 1e-10
    after = _host(state)
    assert _changed(before.params["G_S"]["params"], after.params["G_S"]["params"])
    assert not _changed(before.params["D_S"], after.params["D_S"])
    state, m = d_fn(state, frozen, batch)
    assert _changed(after.params["D_S"]["params"], _host(state).params["D_S"]["params"])
    assert not _changed(teacher_before, _host(frozen))  # bit-identical teacher

    # End to end: the teacher's sha256 is recorded; resuming with another teacher is refused.
    calls = []

    def hook(step, networks):  # an evaluation hook: sees the exported student networks on the host
        calls.append((step, sorted(networks)))
        return {"score": 10.0 - step if step == 1 else 10.0 + step}

    cfg = _tiny(**{"method.name": "toy_distil", "total_steps": 2, "eval.every_kimg": 0.008,
                   "eval.best_metric": "score", "grid_rows": 1, "grid_cols": 2})
    res = train(cfg, tmp_path / "run", hooks=[hook])
    assert calls == [(1, ["D", "G", "G_ema"]), (2, ["D", "G", "G_ema"])]
    assert [h["Eval/score"] for h in res.eval_history] == [9.0, 12.0]
    best = json.loads((tmp_path / "run" / "best_model" / "model.json").read_text())
    assert best["metadata"]["step"] == 1 and best["metadata"]["Eval/score"] == 9.0
    meta = json.loads((tmp_path / "run" / "checkpoints" / "2" / "meta" / "metadata").read_text())
    assert meta["frozen"]["G_T"]["source"] == teacher and len(meta["frozen"]["G_T"]["sha256"]) == 64
    exported = checkpoints.load_model(tmp_path / "run" / "model")
    assert set(exported) == {"G", "G_ema", "D"}
    # the run's networks at its newest verified checkpoint equal the export (same step)
    from gancomp_jax.train.run_models import load_run_networks
    at_ckpt = load_run_networks(tmp_path / "run")
    assert set(at_ckpt) == {"G", "G_ema", "D"}
    for name in at_ckpt:
        assert not _changed(at_ckpt[name].variables, exported[name].variables), name
    assert set(load_run_networks(tmp_path / "run" / "checkpoints" / "1", ["G_ema"])) == {"G_ema"}
    # saved under this suite's 4 virtual devices, loaded by a process that sees one device
    import subprocess
    code = ("import sys, json, numpy as np, jax\n"
            "from gancomp_jax.train.run_models import load_run_networks\n"
            "nets = load_run_networks(sys.argv[1])\n"
            "print(json.dumps({k: float(sum(np.abs(l).sum(dtype=np.float64) for l in jax.tree.leaves(n.variables)))"
            " for k, n in nets.items()}), jax.device_count())\n")
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    sums, n_dev = r.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert n_dev == "1" and json.loads(sums) == {
        k: float(sum(np.abs(l).sum(dtype=np.float64) for l in jax.tree.leaves(n.variables))) for k, n in at_ckpt.items()}
    assert not _changed(teacher_before["G_T"], checkpoints.load_model(teacher)["G_ema"].variables)
    # teacher-vs-student grids (issue 23.19): the frozen teacher once, on the student's latents
    from PIL import Image
    samples = tmp_path / "run" / "samples"
    assert Image.open(samples / "teacher.png").size == Image.open(samples / "fakes_final.png").size
    # a resumed session keeps the earlier sessions' best (compare_methods trains in chunks)
    res = train(_tiny(**{"method.name": "toy_distil", "total_steps": 4, "eval.every_kimg": 0.008,
                         "eval.best_metric": "score", "grid_rows": 1, "grid_cols": 2}), tmp_path / "run",
                hooks=[hook])
    assert [h["Eval/score"] for h in res.eval_history] == [13.0, 14.0]
    best = json.loads((tmp_path / "run" / "best_model" / "model.json").read_text())
    assert best["metadata"]["step"] == 1 and best["metadata"]["Eval/score"] == 9.0
    other = str(teacher_dirs[1])
    monkeypatch.setitem(sys.modules, "gancomp_jax.methods.toy_distil", _toy_distil_module(other, teacher))
    with pytest.raises(ValueError, match="frozen network 'G_T' differs from the one this run started with"):
        train(_tiny(**{"method.name": "toy_distil", "total_steps": 5}), tmp_path / "run")
    assert res.step == 4
