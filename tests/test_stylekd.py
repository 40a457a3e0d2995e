"""StyleKD: relation KL and main directions against numpy, offsets, one step on tiny models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import distil_harness as H
from gancomp_jax.losses import kd as K
from gancomp_jax.methods import stylekd
from test_cagc_kd import _config as cagc_config
from test_cagc_kd import _context, check_phase, run_all_phases


def _np_relation(s1, s2, t1, t2):
    def probs(a, b):
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        cos = (a @ b.T) / (np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :])
        e = np.exp(cos - cos.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    ps, pt = probs(s1, s2), probs(t1, t2)
    return np.sum(pt * (np.log(pt) - np.log(ps))) / len(s1)


def test_relation_kl_matches_numpy_and_torch():
    rng = np.random.default_rng(0)
    s1, s2, t1, t2 = (rng.standard_normal((4, 3, 3, 5)).astype(np.float32) for _ in range(4))
    got = float(K.relation_kl(*map(jnp.asarray, (s1, s2, t1, t2))))
    np.testing.assert_allclose(got, _np_relation(s1, s2, t1, t2), rtol=1e-5)
    assert got > 0
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    f = lambda a: torch.tensor(a.reshape(4, -1))  # noqa: E731
    ss = F.cosine_similarity(f(s1)[:, None, :], f(s2)[None, :, :], dim=2)
    ts = F.cosine_similarity(f(t1)[:, None, :], f(t2)[None, :, :], dim=2)
    ref = F.kl_div(F.log_softmax(ss, dim=1), F.softmax(ts, dim=1), reduction="batchmean").item()
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # identical relations give 0
    assert abs(float(K.relation_kl(*map(jnp.asarray, (s1, s2, s1, s2))))) < 1e-6


def test_main_directions_and_offsets():
    rng = np.random.default_rng(1)
    params = {"synthesis": {b: {c: {"affine": {"weight": rng.standard_normal((6, 4))}} for c in ("conv0", "conv1")}
                            for b in ("b8", "b16")}}
    d = stylekd.main_directions(params, ["b8", "b16"], per_layer=2, mode="split")
    assert d.shape == (4, 6)
    for i, b in enumerate(("b8", "b16")):
        w = np.concatenate([params["synthesis"][b]["conv0"]["affine"]["weight"],
                            params["synthesis"][b]["conv1"]["affine"]["weight"]], axis=1)
        w = w / np.linalg.norm(w, axis=0, keepdims=True)
        vals, vecs = np.linalg.eig(w @ w.T)
        order = np.argsort(vals.real)[::-1][:2]
        for j, k in enumerate(order):  # eigenvectors up to sign
            np.testing.assert_allclose(np.abs(d[2 * i + j] @ vecs[:, k].real), 1.0, rtol=1e-5)
    g = stylekd.main_directions(params, ["b8", "b16"], per_layer=2, mode="global")
    assert g.shape == (4, 6)
    off = stylekd.sample_offsets(jax.random.key(0), jnp.asarray(d), 64, 6, 5.0)
    assert off.shape == (64, 1, 6)
    norms = np.linalg.norm(np.asarray(off[:, 0]), axis=1)
    assert 2.5 < np.sqrt(np.mean(norms ** 2)) < 7.5  # |ε| with ε ~ N(0, 25)
    unit = np.asarray(off[:, 0]) / norms[:, None]
    assert np.all(np.max(np.abs(unit @ d.T / np.linalg.norm(d, axis=1)), axis=1) > 1 - 1e-5)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("skd")
    teacher, student = H.make_models(root, divisor=2)
    return teacher, stylekd.transplant_teacher_mapping(teacher, student, str(root / "student_tmap"))


def _config(teacher, student, **kw):
    c = cagc_config(teacher, student)
    base = stylekd.default_config()
    for k, v in base.items():
        if k not in c.method:
            c.method[k] = v
    c.method.name = "stylekd"
    c.method.relation_blocks = ("b8", "b16")
    for k, v in kw.items():
        c.method[k] = v
    return c


def test_relation_term_nonzero_with_offsets(models):
    teacher, student = models
    method = stylekd.build(_config(teacher, student), H.env())
    assert "offset_directions" in method.networks
    modules, variables = H.build_networks(method)
    ctx = _context(method, variables, modules)
    g_main = method.phases[0].loss
    _, metrics = jax.jit(lambda: g_main(ctx))()
    assert float(metrics["G_S/relation_b8"]) > 0 and float(metrics["G_S/relation_b16"]) > 0
    # the offset views differ from the first views (offsets are non-zero)
    assert float(metrics["G_S/relation"]) == pytest.approx(
        float(metrics["G_S/relation_b8"]) + float(metrics["G_S/relation_b16"]), rel=1e-6)


def test_one_step(models):
    teacher, student = models
    method = stylekd.build(_config(teacher, student), H.env())
    before, res = run_all_phases(method, ["Gmain", "Dmain"])  # Greg / Dreg: CAGC's (test_cagc_kd)
    check_phase(before, res, "Gmain", {"G_S"})
    check_phase(before, res, "Dmain", {"D_S"})
    assert "G_S/relation" in res["Gmain"][1]


def test_mapping_check(tmp_path_factory):
    teacher, student = H.make_models(tmp_path_factory.mktemp("skd2"), divisor=2)
    with pytest.raises(ValueError, match="transplant_teacher_mapping"):
        stylekd.build(_config(teacher, student), H.env())
    with pytest.raises(ValueError, match="relation_blocks"):
        stylekd.build(_config(teacher, student, relation_blocks=("b64",), mapping_from_teacher=False), H.env())
