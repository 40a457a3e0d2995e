"""CAGC distillation: KD terms against numpy / the lpips package, and one step on tiny models.

Feature networks use random weights of the real architectures: a random BiSeNet written as a
converted ``bisenet`` directory, a random torchvision VGG16 trunk written as
``vgg16-397923af.pth`` (shared with tests/test_nets_lpips.py) with lpips' shipped v0.1 heads.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import distil_harness as H
from gancomp_jax.losses import kd as K
from gancomp_jax.methods import cagc
from gancomp_jax.methods.base import Context


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return H.make_models(tmp_path_factory.mktemp("cagc"), divisor=2)


@pytest.fixture(scope="module")
def face_parser(tmp_path_factory):
    from gancomp_jax.nets.bisenet import BiSeNet
    from gancomp_jax.nets.weights import save_converted

    variables = BiSeNet().init(jax.random.key(5), jnp.zeros((1, 64, 64, 3)))
    out = tmp_path_factory.mktemp("bisenet") / "parser"
    save_converted(out, "bisenet", variables, {})
    return str(out)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from test_nets_lpips import _vgg_state

    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(_vgg_state(3), path, _use_new_zipfile_serialization=False)
    return str(path)


def _config(teacher, student, **method):
    c = ml_collections.ConfigDict()
    c.lr, c.r1_gamma, c.pl_weight, c.ema_kimg = 0.002, 10.0, 2.0, 10.0
    c.method = cagc.default_config()
    c.method.teacher, c.method.student = teacher, student
    c.method.mask = "none"
    c.method.kd_percept_mode = "none"
    for k, v in method.items():
        c.method[k] = v
    return c


def _context(method, variables, modules, key=0):
    return Context(step=jnp.int32(0), key=jax.random.key(key), batch=H.real_batch(), batch_size=4,
                   variables=variables, modules=modules, specs=method.networks,
                   extra={k: jnp.asarray(v) for k, v in method.extra_state.items()},
                   style_mixing_prob=method.style_mixing_prob, noise=method.noise)


def run_all_phases(method, names=None):
    modules, variables = H.build_networks(method)
    extra = {k: jnp.asarray(v) for k, v in method.extra_state.items()}
    results = {}
    for phase in method.phases:
        if names is not None and phase.name not in names:
            continue
        loss, metrics, new_vars, extra_out, grads = H.run_phase(method, phase, modules, variables, extra, 0,
                                                                H.real_batch())
        results[phase.name] = (loss, metrics, new_vars, grads, extra_out)
    return variables, results


def check_phase(before, results, name, expect_changed):
    loss, metrics, new_vars, grads, _ = results[name]
    assert np.isfinite(float(loss)), name
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values()), (name, metrics)
    for role in before:
        did = H.changed(before[role], new_vars[role])
        assert did == (role in expect_changed), (name, role)
        if role not in expect_changed:  # frozen / untouched networks bit-identical
            for x, y in zip(jax.tree.leaves(before[role]), jax.tree.leaves(new_vars[role])):
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for role in expect_changed:
        assert any(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads[role])), (name, role)


# ----------------------------------------------------------------------------- loss references

def test_masked_l1_intermediate_and_vgg_perceptual_match_numpy():
    rng = np.random.default_rng(0)
    t, s = rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32), rng.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    mask = rng.uniform(size=(2, 8, 8)) > 0.5
    ref = np.mean(np.abs(t * mask[..., None] - s * mask[..., None]))
    np.testing.assert_allclose(K.masked_l1(jnp.asarray(t), jnp.asarray(s), jnp.asarray(mask)), ref, rtol=1e-6)
    np.testing.assert_allclose(K.masked_l1(jnp.asarray(t), jnp.asarray(s)), np.mean(np.abs(t - s)), rtol=1e-6)
    tf = {"img4": t[:, :4, :4], "img8": t, "b8": t}
    sf = {"img4": s[:, :4, :4], "img8": s, "b8": s}
    ref = np.mean(np.abs(t[:, :4, :4] - s[:, :4, :4])) + np.mean(np.abs(t - s))
    np.testing.assert_allclose(K.intermediate_rgb_l1(tf, sf), ref, rtol=1e-6)
    # VGG content + Gram (CAGC utils/perceptual.py) in NCHW numpy
    feats_s = {l: rng.standard_normal((2, 4, 4, 5)).astype(np.float32) for l in K.VGG_STYLE_LAYERS}
    feats_t = {l: rng.standard_normal((2, 4, 4, 5)).astype(np.float32) for l in K.VGG_STYLE_LAYERS}

    def gram(f):
        x = f.transpose(0, 3, 1, 2).reshape(2, 5, 16)
        return x @ x.transpose(0, 2, 1) / (5 * 16)
    content = np.mean(np.abs(feats_s["relu1_2"] - feats_t["relu1_2"]))
    style = sum(np.mean((gram(feats_s[l]) - gram(feats_t[l])) ** 2) for l in K.VGG_STYLE_LAYERS)
    total, c, st = K.vgg_perceptual({k: jnp.asarray(v) for k, v in feats_s.items()},
                                    {k: jnp.asarray(v) for k, v in feats_t.items()})
    np.testing.assert_allclose([total, c, st], [content + 1e5 * style, content, style], rtol=1e-5)


def test_masked_l1_and_lpips_terms_match_references(models, face_parser, vgg_file):
    """The method's KD terms on its own G_T / G_S images equal numpy L1 and the lpips package on
    the masked images (mask from the random BiSeNet on the teacher image, CAGC's rule)."""
    torch = pytest.importorskip("torch")
    import fake_torchvision
    from test_nets_lpips import _vgg_state

    fake_torchvision.install()
    lpips = pytest.importorskip("lpips")
    teacher, student = models
    cfg = _config(teacher, student, mask="face", face_parser=face_parser, parse_size=64,
                  kd_percept_mode="LPIPS", lpips_vgg=vgg_file)
    method = cagc.build(cfg, H.env())
    assert {"P", "LPIPS"} <= set(method.networks)
    modules, variables = H.build_networks(method)
    ctx = _context(method, variables, modules)
    s, t = ctx.generate("G_S"), ctx.generate("G_T")
    loss, metrics = jax.jit(lambda: cagc.make_kd_terms(cfg.method)(ctx, s, t))()
    mask = np.asarray(ctx.apply("P", t.img))
    assert mask.dtype == bool and mask.shape == (4, 16, 16)
    m = mask[..., None].astype(np.float32)
    ti, si = np.asarray(t.img) * m, np.asarray(s.img) * m
    np.testing.assert_allclose(metrics["G_S/kd_l1"], np.mean(np.abs(ti - si)), rtol=1e-5, atol=1e-7)
    fake_torchvision.VGG16_STATE = _vgg_state(3)
    try:
        ref_net = lpips.LPIPS(net="vgg", version="0.1", verbose=False).eval()
    finally:
        fake_torchvision.VGG16_STATE = None
    ref = ref_net(torch.tensor(si.transpose(0, 3, 1, 2)), torch.tensor(ti.transpose(0, 3, 1, 2))).mean().item()
    np.testing.assert_allclose(metrics["G_S/kd_lpips"], ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss, 3 * metrics["G_S/kd_l1"] + 3 * metrics["G_S/kd_lpips"], rtol=1e-5)


# ----------------------------------------------------------------------------- one step

def test_one_step_output_only(models):
    teacher, student = models
    method = cagc.build(_config(teacher, student), H.env())
    assert {r for r, s in method.networks.items() if s.trainable} == {"G_S", "D_S"}
    assert [(p.name, p.updates, p.interval) for p in method.phases] == [
        ("Gmain", ("G_S",), 1), ("Greg", ("G_S",), 4), ("Dmain", ("D_S",), 1), ("Dreg", ("D_S",), 16)]
    before, res = run_all_phases(method)
    for name, roles in (("Gmain", {"G_S"}), ("Greg", {"G_S"}), ("Dmain", {"D_S"}), ("Dreg", {"D_S"})):
        check_phase(before, res, name, roles)
    assert float(res["Gmain"][1]["G_S/kd_l1"]) > 0
    # the student's D starts from the teacher's D
    from gancomp_jax import checkpoints
    d_t = checkpoints.load_any(teacher, ["D"])["D"].variables["params"]
    for x, y in zip(jax.tree.leaves(d_t), jax.tree.leaves(before["D_S"]["params"])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_one_step_intermediate_vgg_shared_noise(models, vgg_file):
    teacher, student = models
    method = cagc.build(_config(teacher, student, kd_l1_mode="Intermediate", kd_percept_mode="VGG", vgg16=vgg_file,
                                noise="shared"), H.env())
    assert method.noise == "shared"
    before, res = run_all_phases(method, ["Gmain"])
    check_phase(before, res, "Gmain", {"G_S"})
    metrics = res["Gmain"][1]
    assert float(metrics["G_S/kd_l1"]) > 0 and float(metrics["G_S/kd_vgg"]) > 0


def test_config_errors(models):
    teacher, student = models
    with pytest.raises(ValueError, match="kd_l1_mode"):
        cagc.build(_config(teacher, student, kd_l1_mode="all"), H.env())
    with pytest.raises(ValueError, match="face_parser"):
        cagc.build(_config(teacher, student, mask="face"), H.env())
    with pytest.raises(ValueError, match="lpips_vgg"):
        cagc.build(_config(teacher, student, kd_percept_mode="LPIPS"), H.env())
    with pytest.raises(FileNotFoundError):
        cagc.build(_config(teacher, "/nonexistent/student"), H.env())


def test_experiment_configs():
    """Released settings and digits variants of experiments/{cagc_kd,stylekd,itgc}.py."""
    import importlib.util

    from conftest import REPO

    def load(name):
        spec = importlib.util.spec_from_file_location(f"exp_{name}", REPO / "experiments" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    c = load("cagc_kd").get_config("ffhq256")
    m = c.method
    assert (c.batch_size, c.lr, c.r1_gamma, m.kd_l1_lambda, m.kd_percept_lambda) == (16, 0.002, 10.0, 3.0, 3.0)
    assert (m.kd_l1_mode, m.kd_percept_mode, m.mask, m.d_student, m.noise) == (
        "Output_Only", "LPIPS", "face", "teacher", "independent")
    assert load("cagc_kd").get_config("digits").method.mask == "none"
    s = load("stylekd").get_config("ffhq256").method
    assert (s.name, s.relation_lambda, s.offset_weight, s.offset_mode, s.main_direction) == (
        "stylekd", 30.0, 5.0, "main", "split")
    assert tuple(load("stylekd").get_config("digits").method.relation_blocks) == ("b8", "b16", "b32")
    i = load("itgc").get_config("ffhq256").method
    assert (i.name, i.langevin_steps, i.langevin_step_size, i.langevin_sigma, i.ebm_lr, tuple(i.ebm_betas),
            i.ebm_channels, i.ebm_blocks) == ("itgc", 10, 50.0, 0.005, 1e-4, (0.0, 0.999), 64, 7)
    with pytest.raises(ValueError, match="variant"):
        load("itgc").get_config("nope")
