"""NICKEL & DiME method: one step on tiny models changes exactly the intended parameters."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gancomp_jax.losses.dime_stats import save_stats
from gancomp_jax.methods import nickel_dime
import distil_harness as H


class TinyEmbedder(nn.Module):
    """A small random CNN embedder (tests never use pretrained weights)."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (3, 3), strides=2)(x))
        return nn.Dense(6)(jnp.mean(x, axis=(1, 2)))


def _tiny_factory(path, preprocess):
    mod = TinyEmbedder()
    params = mod.init(jax.random.key(11), jnp.zeros((1, 16, 16, 3)))
    return params, lambda p, imgs: mod.apply(p, imgs)


@pytest.fixture(autouse=True)
def _register():
    nickel_dime.EMBEDDER_FACTORIES["tiny_test"] = _tiny_factory
    yield
    nickel_dime.EMBEDDER_FACTORIES.pop("tiny_test", None)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return H.make_models(tmp_path_factory.mktemp("nd"), divisor=2, pruned_d_divisor=2)


def _config(teacher, student, **method):
    c = ml_collections.ConfigDict()
    c.lr, c.r1_gamma, c.pl_weight, c.ema_kimg = 0.0025, 1.0, 2.0, 20.0
    c.method = nickel_dime.default_config()
    c.method.teacher, c.method.student = teacher, student
    c.method.fm_levels = 2
    c.method.dime.groups = 2
    c.method.dime.embedders = {
        "dino": {"kind": "tiny_test", "weights": "unused.bin", "weight": 20.0, "preprocess": "released", "blocks": ()},
        "clip": {"kind": "teacher_d", "weights": "", "weight": 15.0, "preprocess": "none", "blocks": ()},
    }
    for k, v in method.items():
        target = c.method
        *path, last = k.split(".")
        for p in path:
            target = target[p]
        target[last] = v
    return c


def _run_all_phases(method, names=None):
    modules, variables = H.build_networks(method)
    before = dict(variables)
    extra = {k: jnp.asarray(v) for k, v in method.extra_state.items()}
    results = {}
    for phase in method.phases:
        if names is not None and phase.name not in names:
            continue
        loss, metrics, new_vars, extra, grads = H.run_phase(method, phase, modules, before, extra, 0, H.real_batch())
        results[phase.name] = (loss, metrics, new_vars, grads)
    return before, results


def _check_phase(before, results, name, expect_changed):
    loss, metrics, new_vars, grads = results[name]
    assert np.isfinite(float(loss)), name
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values()), (name, metrics)
    for role in before:
        did = H.changed(before[role], new_vars[role])
        assert did == (role in expect_changed), (name, role)
    for role in expect_changed:
        assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads[role])), (name, role)


def test_released_form_one_step(models, tmp_path):
    teacher, student = models
    stats = {f"global_{e}_{m}": np.random.RandomState(0).rand(d).astype(np.float32)
             for e, d in (("dino", 6), ("clip", 64)) for m in ("first", "second")}
    save_stats(tmp_path / "g.pt", stats, "builtin")
    method = nickel_dime.build(_config(teacher, student, **{"dime.global_stats": str(tmp_path / "g.pt")}), H.env())
    assert set(method.networks) == {"G_T", "G_S", "D_S", "D_T", "E_dino", "E_clip", "dime_stats"}
    assert {r for r, s in method.networks.items() if s.trainable} == {"G_S", "D_S", "D_T"}
    assert [(p.name, p.updates, p.interval) for p in method.phases] == [
        ("Gmain", ("G_S",), 1), ("Greg", ("G_S",), 4), ("Dmain", ("D_S", "D_T"), 1), ("Dreg", ("D_S", "D_T"), 16)]
    before, res = _run_all_phases(method)
    _check_phase(before, res, "Gmain", {"G_S"})
    _check_phase(before, res, "Greg", {"G_S"})
    _check_phase(before, res, "Dmain", {"D_S", "D_T"})
    _check_phase(before, res, "Dreg", {"D_S", "D_T"})
    m = res["Gmain"][1]
    assert {"G_S/dime_dino_first", "G_S/dime_clip_second", "G_S/scores_fake_D_T"} <= set(m)
    assert float(res["Dmain"][1]["D_S/feature_match"]) > 0
    # D_S is fresh and full width (not the teacher's weights).
    assert H.changed(before["D_S"], before["D_T"])


def test_teacher_d_frozen_when_not_trained(models):
    teacher, student = models
    method = nickel_dime.build(_config(teacher, student, train_teacher_d=False), H.env())
    assert not method.networks["D_T"].trainable
    assert [p.updates for p in method.phases] == [("G_S",), ("G_S",), ("D_S",), ("D_S",)]
    before, res = _run_all_phases(method, ["Dmain"])
    _check_phase(before, res, "Dmain", {"D_S"})


def test_feature_matching_trains_only_early_d_blocks(models):
    """L_FM reaches D_S's blocks up to b{R/2} only (R = 16: b16 and b8 are used up to b8's output)."""
    teacher, student = models
    method = nickel_dime.build(_config(teacher, student, **{"dime.enabled": False}), H.env())
    modules, variables = H.build_networks(method)
    from gancomp_jax.methods.base import Context

    def fm_only(params):
        v = {**variables, "D_S": {"params": params}}
        ctx = Context(step=jnp.int32(0), key=jax.random.key(0), batch=H.real_batch(), batch_size=4, variables=v,
                      modules=modules, specs=method.networks, extra={"pl_mean": jnp.zeros(())},
                      style_mixing_prob=0.9, noise="independent")
        return ctx.discriminate("D_S", ctx.generate("G_T").img, None, features=True)[1]["b8"].sum()

    g = jax.jit(jax.grad(fm_only))(variables["D_S"]["params"])
    assert float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(g["b16"]))) > 0
    assert float(sum(jnp.abs(x).sum() for x in jax.tree.leaves(g["b4"]))) == 0


@pytest.mark.slow
def test_adapter_with_pruned_discriminator_and_mmd_bank(models, tmp_path):
    teacher, student = models
    rs = np.random.RandomState(1)
    stats = {"global_dino_first": rs.rand(6), "global_dino_second": rs.rand(6), "bank_dino": rs.randn(20, 6)}
    save_stats(tmp_path / "b.npz", stats)
    cfg = _config(teacher, student, d_student="pruned", **{"dime.form": "mmd", "dime.reference": "both",
                                                          "dime.use": ("dino",), "dime.bank_batch": 8,
                                                          "dime.global_stats": str(tmp_path / "b.npz")})
    method = nickel_dime.build(cfg, H.env())
    assert "A" in method.networks and method.phases[2].updates == ("D_S", "D_T", "A")
    before, res = _run_all_phases(method, ["Gmain", "Dmain"])
    _check_phase(before, res, "Gmain", {"G_S"})
    _check_phase(before, res, "Dmain", {"D_S", "D_T", "A"})
    assert {"G_S/mmd_teacher_dino", "G_S/mmd_bank_dino"} <= set(res["Gmain"][1])


def test_rounds_reach_the_phases(models):
    """``mixing_rounds`` / ``pl_rounds`` (released: 8 rounds of 8) reach Gmain's mixing and Greg."""
    teacher, student = models
    cfg = _config(teacher, student, mixing_rounds=2, pl_rounds=2, **{"dime.enabled": False})
    cfg.style_mixing_prob = 0.9
    method = nickel_dime.build(cfg, H.env())
    assert method.style_mixing_rounds == 2
    before, res = _run_all_phases(method, ["Gmain", "Greg"])
    _check_phase(before, res, "Gmain", {"G_S"})
    _check_phase(before, res, "Greg", {"G_S"})
    with pytest.raises(ValueError, match="does not split"):   # 2 path-length samples, 3 rounds
        nickel_dime.build(_config(teacher, student, pl_rounds=3, **{"dime.enabled": False}), H.env())


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["nickel_only", "dime_only_no_global"])
def test_ablations(models, variant):
    teacher, student = models
    kw = {"dime.enabled": False} if variant == "nickel_only" else {"nickel": False, "dime.global_stats": ""}
    method = nickel_dime.build(_config(teacher, student, **kw), H.env())
    before, res = _run_all_phases(method, ["Gmain", "Dmain"])
    if variant == "nickel_only":
        assert not any(k.startswith("E_") for k in method.networks)
        _check_phase(before, res, "Dmain", {"D_S", "D_T"})
    else:
        assert "D_T" not in method.networks
        _check_phase(before, res, "Gmain", {"G_S"})
        _check_phase(before, res, "Dmain", {"D_S"})
        assert "G_S/dime_dino_first" in res["Gmain"][1]


def test_config_errors(models):
    teacher, student = models
    with pytest.raises(ValueError, match="dime.form"):
        nickel_dime.build(_config(teacher, student, **{"dime.form": "kl"}), H.env())
    bad = _config(teacher, student)
    bad.method.dime.embedders.dino.kind = "dino_rn50"
    bad.method.dime.embedders.dino.weights = ""
    with pytest.raises(ValueError, match="embedders.dino.weights"):
        nickel_dime.build(bad, H.env())
    with pytest.raises(FileNotFoundError):
        nickel_dime.build(_config(teacher, "/nonexistent/student"), H.env())
    with pytest.raises(ValueError, match="nothing to distil"):
        nickel_dime.build(_config(teacher, student, nickel=False, **{"dime.enabled": False}), H.env())


# ----------------------------------------------------------------------------- through the trainer

def _train_config(teacher, student, steps, **over):
    from gancomp_jax.train.config import default_train_config

    c = default_train_config()
    c.model.preset = "tiny16"
    c.batch_size = 8
    c.total_steps = steps
    c.log_every_steps = 1
    c.checkpoint_every_steps = 2
    c.sample_every_steps = 0
    c.grid_rows, c.grid_cols = 0, 0
    c.progress = False
    c.r1_interval = 2
    c.pl_interval = 2
    c.pl_weight = 2.0
    c.r1_gamma = 1.0
    c.lr = 0.0025
    c.ema_kimg = 1.0
    c.mesh_devices = 1
    c.mbstd_num_shards = 4
    c.method = _config(teacher, student).method
    c.method.dime.groups = 4
    for k, v in over.items():
        node = c
        *path, leaf = k.split(".")
        for p in path:
            node = node[p]
        node[leaf] = v
    return c


def _exported(run_dir):
    from gancomp_jax import checkpoints

    return {k: v.variables for k, v in checkpoints.load_model(run_dir / "model").items()}


@pytest.mark.slow
def test_trainer_resume_is_exact_and_exports_student(models, tmp_path):
    from gancomp_jax.train.trainer import train

    teacher, student = models
    train(_train_config(teacher, student, 4), tmp_path / "a")
    train(_train_config(teacher, student, 2), tmp_path / "b")
    train(_train_config(teacher, student, 4), tmp_path / "b")
    a, b = _exported(tmp_path / "a"), _exported(tmp_path / "b")
    assert set(a) == {"G", "G_ema", "D", "D_T"}
    for name in a:
        for x, y in zip(jax.tree.leaves(a[name]), jax.tree.leaves(b[name])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_trainer_one_and_four_devices_agree(models, tmp_path):
    from gancomp_jax.train.trainer import train

    teacher, student = models
    train(_train_config(teacher, student, 2), tmp_path / "one")
    train(_train_config(teacher, student, 2, mesh_devices=4), tmp_path / "four")
    one, four = _exported(tmp_path / "one"), _exported(tmp_path / "four")
    for name in one:
        for x, y in zip(jax.tree.leaves(one[name]), jax.tree.leaves(four[name])):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)
