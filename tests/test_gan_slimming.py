"""GAN Slimming: the sparsity term by hand, one step per phase on tiny models, the chained job."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import distil_harness as H
from gancomp_jax import checkpoints
from gancomp_jax.methods import gan_slimming as gs
from gancomp_jax.models import GeneratorConfig


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return H.make_models(tmp_path_factory.mktemp("gs"), divisor=2)


def _config(teacher, student, **method):
    c = ml_collections.ConfigDict()
    c.lr, c.r1_gamma, c.pl_weight, c.ema_kimg = 0.002, 10.0, 2.0, 10.0
    c.method = gs.default_config()
    c.method.teacher, c.method.student = teacher, student
    c.method.kd_percept_mode = "none"
    c.method.kd_l1_mode = "Output_Only"   # off by default (as released); the KD term these tests check
    for k, v in method.items():
        c.method[k] = v
    return c


def test_sparsity_term_by_hand():
    cfg = GeneratorConfig(img_resolution=16, channels=(12, 10, 8, 8, 6, 6), z_dim=8, w_dim=8, mapping_layers=1)
    rng = np.random.default_rng(0)
    v = jax.tree.map(lambda a: rng.standard_normal(a.shape).astype(np.float32),
                     checkpoints.abstract_variables("generator", cfg))
    ws = rng.standard_normal((5, cfg.num_ws, cfg.w_dim)).astype(np.float32)
    syn = v["params"]["synthesis"]
    # NVlabs SynthesisNetwork order and w index of every layer with an affine (16 px: 6 ws)
    layers = [("b4", "conv1", 0), ("b4", "torgb", 1), ("b8", "conv0", 1), ("b8", "conv1", 2), ("b8", "torgb", 3),
              ("b16", "conv0", 3), ("b16", "conv1", 4), ("b16", "torgb", 5)]
    assert cfg.num_ws == 6
    total = 0.0
    for blk, layer, i in layers:
        A_torch = np.asarray(syn[blk][layer]["affine"]["weight"], np.float64).T      # [out, in]
        b = np.asarray(syn[blk][layer]["affine"]["bias"], np.float64)
        styles = ws[:, i].astype(np.float64) @ (A_torch * (1 / np.sqrt(cfg.w_dim))).T + b
        if layer == "torgb":
            styles = styles * (1 / np.sqrt(styles.shape[1] * 1 * 1))
        total += np.sum(np.abs(np.mean(styles, axis=0)))
    got = gs.sparsity_term(gs.modulation_styles(v["params"], jnp.asarray(ws)))
    np.testing.assert_allclose(float(got), total, rtol=1e-5)
    assert [(b, l, i) for b, l, i in gs.style_layers(syn)] == layers


def _grads_of(method, phase_name):
    modules, variables = H.build_networks(method)
    extra = {k: jnp.asarray(v) for k, v in method.extra_state.items()}
    phase = next(p for p in method.phases if p.name == phase_name)
    return variables, H.run_phase(method, phase, modules, variables, extra, 0, H.real_batch())


def test_stage1_one_step(models):
    teacher, _ = models
    method = gs.build(_config(teacher, teacher, student_g_name="G_ema", sparsity_eta=1.0), H.env())
    assert {r for r, s in method.networks.items() if s.trainable} == {"G_S", "D_S"}
    assert [p.name for p in method.phases] == ["Gmain", "Greg", "Dmain", "Dreg"]  # CAGC's (tested there)
    for name, roles in (("Gmain", {"G_S"}), ("Dmain", {"D_S"})):
        before, (loss, metrics, new_vars, _, grads) = _grads_of(method, name)
        assert np.isfinite(float(loss)) and all(np.isfinite(np.asarray(m)).all() for m in metrics.values())
        for role in before:
            did = H.changed(before[role], new_vars[role])
            assert did == (role in roles), (name, role)
            if role not in roles:
                for x, y in zip(jax.tree.leaves(before[role]), jax.tree.leaves(new_vars[role])):
                    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        if name == "Gmain":
            assert float(metrics["G_S/sparse"]) > 0 and float(metrics["G_S/kd_l1"]) == 0  # student = teacher
            g_sparse = grads["G_S"]["synthesis"]["b4"]["conv1"]["affine"]["bias"]
            sparse = float(metrics["G_S/sparse"])
    # the sparsity term's gradient: with η = 0 the affine-bias gradient changes
    method0 = gs.build(_config(teacher, teacher, student_g_name="G_ema", sparsity_eta=0.0), H.env())
    _, (_, metrics0, _, _, grads0) = _grads_of(method0, "Gmain")
    g0 = grads0["G_S"]["synthesis"]["b4"]["conv1"]["affine"]["bias"]
    assert float(jnp.abs(g_sparse - g0).max()) > 1e-3
    np.testing.assert_allclose(float(metrics0["G_S/sparse"]), sparse, rtol=1e-6)


def test_finetune_one_step_has_no_sparsity(models):
    teacher, student = models
    method = gs.build(_config(teacher, student, sparse_loss=False, d_student="pruned"), H.env())
    before, (loss, metrics, new_vars, _, _) = _grads_of(method, "Gmain")
    assert "G_S/sparse" not in metrics and float(metrics["G_S/kd_l1"]) > 0 and np.isfinite(float(loss))
    assert H.changed(before["G_S"], new_vars["G_S"]) and not H.changed(before["G_T"], new_vars["G_T"])


def test_config_errors(models):
    teacher, _ = models
    with pytest.raises(ValueError, match="sparsity_eta"):
        gs.build(_config(teacher, teacher, sparsity_eta=-1.0), H.env())
    with pytest.raises(ValueError, match="vgg16"):
        gs.build(_config(teacher, teacher, kd_percept_mode="VGG"), H.env())


def _job_config(teacher, steps1=1, steps3=1):
    from gancomp_jax.train.config import default_train_config
    c = default_train_config()
    c.job = "gan_slimming"
    c.model.preset = "tiny16"
    c.batch_size = 4
    c.log_every_steps = 1
    c.checkpoint_every_steps = 1
    c.sample_every_steps = 0
    c.grid_rows, c.grid_cols = 0, 0
    c.progress = False
    c.lr, c.r1_gamma, c.pl_weight, c.ema_kimg = 0.002, 10.0, 0.0, 1.0
    c.method = gs.default_config()
    c.method.teacher = teacher
    c.method.kd_percept_mode = "none"
    c.method.sparsity_eta = 1.0
    c.method.stage1_kimg = steps1 * 4 / 1000
    c.method.stage3_kimg = steps3 * 4 / 1000
    c.prune = ml_collections.ConfigDict({"criterion": "gan_slimming", "ratio": 0.5, "n_sample": 8,
                                         "batch_size": 8, "progress": False, "grid_seeds": "0-1"})
    return c


def test_stage_configs(models, tmp_path):
    from gancomp_jax.jobs import gan_slimming as job
    teacher, _ = models
    c = _job_config(teacher)
    s1, s3 = job.stage_config(c, 1, tmp_path), job.stage_config(c, 3, tmp_path)
    assert s1.job == s3.job == "train" and "prune" not in s1 and "stage1_kimg" not in s1.method
    assert s1.method.sparse_loss and s1.method.student == teacher and s1.method.student_g_name == "G_ema"
    assert not s3.method.sparse_loss and s3.method.student == str(tmp_path / "stage2" / "model")
    assert s3.method.d_student == "pruned" and s3.total_kimg == pytest.approx(0.004)
    p = job.prune_config(c, tmp_path)
    assert p.criterion == "gan_slimming" and p.ratio == 0.5 and p.teacher == str(tmp_path / "stage1" / "model")
    c.prune.criterion = "l1_out"
    with pytest.raises(ValueError, match="gan_slimming"):
        job.run(c, str(tmp_path / "bad"))


@pytest.mark.slow
def test_chain_end_to_end(models, tmp_path):
    from gancomp_jax.jobs import gan_slimming as job
    teacher, _ = models
    out = job.run(_job_config(teacher), str(tmp_path / "run"))
    final = checkpoints.load_model(out["model"])
    assert set(final) == {"G", "G_ema", "D"}
    t = checkpoints.load_model(teacher, ["G_ema"])["G_ema"]
    pruned = checkpoints.load_model(tmp_path / "run" / "stage2" / "model")
    assert final["G"].config.channels == pruned["G"].config.channels
    assert all(s < c or c == 1 for s, c in zip(final["G"].config.channels, t.config.channels))
    desc = checkpoints.read_description(tmp_path / "run" / "stage2" / "model")
    assert desc["metadata"]["pruning"]["criterion"] == "gan_slimming"
    for n in final:
        assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(final[n].variables))
