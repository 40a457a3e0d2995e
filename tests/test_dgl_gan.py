"""DGL-GAN: loss terms by hand, and one step of each stage on tiny models."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import distil_harness as H
from gancomp_jax import checkpoints
from gancomp_jax.losses.dgl import dgl_d_teacher_weighted, dgl_g_ens_term, dgl_g_teacher_term
from gancomp_jax.methods import dgl_gan


def _sp(x):
    return np.log1p(np.exp(x))


def test_loss_terms_by_hand():
    l = jnp.array([[-2.0], [0.5], [-0.1]])
    np.testing.assert_allclose(dgl_g_teacher_term(l), _sp(-np.array([-2.0, 0.5, -0.1])), rtol=1e-6)
    ens = np.asarray(dgl_g_ens_term(l))
    np.testing.assert_allclose(ens, [2.0 * _sp(2.0), 0.0, 0.1 * _sp(0.1)], rtol=1e-6)
    # The weight is detached: d/dl [c·softplus(-l)] = -c·σ(-l) with c = -l held constant.
    g = jax.grad(lambda x: dgl_g_ens_term(x).sum())(l)
    sig = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(np.asarray(g)[:, 0], [-2.0 * sig, 0.0, -0.1 / (1 + np.exp(-0.1))], rtol=1e-6)
    gen, real = dgl_d_teacher_weighted(jnp.array([[1.0]]), jnp.array([[-1.0]]), jnp.array([[0.0]]), jnp.array([[2.0]]))
    assert float(gen[0]) == pytest.approx(0.5 * _sp(1.0), rel=1e-6)
    assert float(real[0]) == pytest.approx(1 / (1 + np.exp(-2.0)) * _sp(1.0), rel=1e-6)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dgl")
    teacher, student = H.make_models(root, divisor=2, pruned_d_divisor=2)
    return root, teacher, student


def _config(**method):
    c = ml_collections.ConfigDict()
    c.lr, c.r1_gamma, c.pl_weight = 0.002, 10.0, 2.0
    c.method = dgl_gan.default_config()
    c.method.update(method)
    return c


def test_stage1_is_a_narrow_stylegan2(models):
    _, teacher, _ = models
    method = dgl_gan.build(_config(stage=1, teacher=teacher), H.env())
    t_g = checkpoints.read_description(teacher)["networks"]["G_ema"]["config"]["channels"]
    g = method.networks["G"].config.channels
    assert g[0] == t_g[0] and list(g[1:]) == [c // 2 for c in t_g[1:]]
    assert set(method.networks) == {"G", "D"} and all(s.source == "init" for s in method.networks.values())
    assert [p.name for p in method.phases] == ["Gmain", "Greg", "Dmain", "Dreg"]


@pytest.mark.parametrize("term,d_loss", [("dg", "logistic"), ("ens", "teacher_weighted")])
def test_stage2_one_step(models, term, d_loss):
    root, teacher, student = models
    stage1 = root / f"stage1_{term}"
    if not stage1.exists():
        s1 = dgl_gan.build(_config(stage=1, teacher=teacher), H.env())
        nets = {n: checkpoints.init_network(s.kind, s.config, jax.random.key(i))
                for i, (n, s) in enumerate(s1.networks.items())}
        checkpoints.save_model(stage1, nets)
    method = dgl_gan.build(_config(stage=2, teacher=teacher, stage1=str(stage1), g_teacher_term=term,
                                   d_loss=d_loss, alpha=0.5), H.env())
    assert not method.networks["D_T"].trainable
    assert {r for r, s in method.networks.items() if s.trainable} == {"G", "D"}
    modules, variables = H.build_networks(method)
    extra = {"pl_mean": jnp.zeros(())}
    for name, expect in (("Gmain", {"G"}), ("Dmain", {"D"})):
        phase = [p for p in method.phases if p.name == name][0]
        loss, metrics, new_vars, _, grads = H.run_phase(method, phase, modules, variables, extra, 0, H.real_batch())
        assert np.isfinite(float(loss))
        for role in variables:
            assert H.changed(variables[role], new_vars[role]) == (role in expect), (name, role)
        if name == "Gmain":
            assert "G/teacher_term" in metrics


def test_config_errors(models):
    _, teacher, _ = models
    with pytest.raises(ValueError, match="stage1"):
        dgl_gan.build(_config(stage=2, teacher=teacher), H.env())
    with pytest.raises(ValueError, match="g_teacher_term"):
        dgl_gan.build(_config(stage=1, teacher=teacher, g_teacher_term="x"), H.env())
    with pytest.raises(FileNotFoundError):
        dgl_gan.build(_config(stage=2, teacher=teacher, stage1="/nonexistent"), H.env())


@pytest.mark.slow
def test_chained_stages_resume_exactly_and_agree_across_devices(models, tmp_path):
    """The dgl_gan job: stage 1 then stage 2 (from stage 1's networks); stop+resume equals an
    uninterrupted run bit for bit; 1 and 4 devices agree."""
    from gancomp_jax.jobs import dgl_gan as job

    _, teacher, _ = models

    def cfg(steps1, steps2, devices=1):
        from gancomp_jax.train.config import default_train_config

        c = default_train_config()
        c.job = "dgl_gan"
        c.model.preset = "tiny16"
        c.batch_size = 8
        c.log_every_steps = 1
        c.checkpoint_every_steps = 1
        c.sample_every_steps = 0
        c.grid_rows, c.grid_cols = 0, 0
        c.progress = False
        c.r1_interval, c.pl_interval = 2, 2
        c.lr, c.r1_gamma, c.pl_weight, c.ema_kimg = 0.002, 10.0, 2.0, 1.0
        c.mesh_devices = devices
        c.mbstd_num_shards = 4
        c.method = dgl_gan.default_config()
        c.method.teacher = teacher
        c.method.stage1_kimg = steps1 * 8 / 1000
        c.method.stage2_kimg = steps2 * 8 / 1000
        return c

    out = job.run(cfg(2, 2), str(tmp_path / "a"))
    assert set(checkpoints.load_model(out["model"])) == {"G", "G_ema", "D"}
    job.run(cfg(2, 1), str(tmp_path / "b"))
    job.run(cfg(2, 2), str(tmp_path / "b"))
    job.run(cfg(2, 2, devices=4), str(tmp_path / "c"))
    a = checkpoints.load_model(tmp_path / "a" / "stage2" / "model")
    b = checkpoints.load_model(tmp_path / "b" / "stage2" / "model")
    c = checkpoints.load_model(tmp_path / "c" / "stage2" / "model")
    for name in a:
        for x, y, z in zip(jax.tree.leaves(a[name].variables), jax.tree.leaves(b[name].variables),
                           jax.tree.leaves(c[name].variables)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
            np.testing.assert_allclose(np.asarray(x), np.asarray(z), rtol=1e-4, atol=1e-5)
