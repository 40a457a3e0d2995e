"""ITGC: spectral normalisation vs torch, the energy network and one Langevin step vs a torch
transcription of the released ResnetEBM, the EBM losses, and one step on tiny models."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import distil_harness as H
from gancomp_jax.losses.ebm import ebm_generator_term, ebm_loss, langevin_sample
from gancomp_jax.methods import itgc
from gancomp_jax.models import energy as E
from test_cagc_kd import _config as cagc_config
from test_cagc_kd import check_phase, run_all_phases

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_spectral_norm_equals_torch(kind):
    torch.manual_seed(0)
    mod = torch.nn.Conv2d(4, 6, 3, padding=1) if kind == "conv" else torch.nn.Linear(5, 3)
    mod = torch.nn.utils.spectral_norm(mod)  # training mode: one power iteration per forward
    w_orig = mod.weight_orig.detach().numpy().copy()
    u0 = mod.weight_u.detach().numpy().copy()
    x = torch.randn(2, 4, 5, 5) if kind == "conv" else torch.randn(2, 5)
    out = mod(x)
    w_t = mod.weight.detach().numpy()
    w = jnp.asarray(w_orig.transpose(2, 3, 1, 0) if kind == "conv" else w_orig.T)
    w_sn, u1 = E.spectral_normalize(w, jnp.asarray(u0), sigma_grad=True)
    got = np.asarray(w_sn).transpose(3, 2, 0, 1) if kind == "conv" else np.asarray(w_sn).T
    np.testing.assert_allclose(got, w_t, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(u1), mod.weight_u.detach().numpy(), rtol=1e-5, atol=1e-6)
    # gradient through sigma (torch's spectral_norm differentiates sigma w.r.t. the weight)
    r = torch.randn(out.shape)
    (out * r).sum().backward()
    g_t = mod.weight_orig.grad.numpy()
    r_np, x_np = r.numpy(), x.numpy()

    def f(w):
        wn, _ = E.spectral_normalize(w, jnp.asarray(u0), sigma_grad=True)
        if kind == "conv":
            y = jax.lax.conv_general_dilated(jnp.asarray(x_np.transpose(0, 2, 3, 1)), wn, (1, 1), ((1, 1), (1, 1)),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
            return jnp.sum(y * jnp.asarray(r_np.transpose(0, 2, 3, 1)))
        return jnp.sum((jnp.asarray(x_np) @ wn) * jnp.asarray(r_np))
    g = np.asarray(jax.grad(f)(w))
    g = g.transpose(3, 2, 0, 1) if kind == "conv" else g.T
    np.testing.assert_allclose(g, g_t, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------ torch transcription of ResnetEBM

def _torch_sn(w, u, lower_bound=False):
    """Released ``max_singular_value`` (Ip=1) + SNConv2d/SNLinear ``W_``; w in torch layout."""
    wm = w.reshape(w.shape[0], -1).detach()
    v = u @ wm
    v = v / (torch.norm(v) + 1e-12)
    u2 = v @ wm.T
    u2 = u2 / (torch.norm(u2) + 1e-12)
    sigma = torch.sum(F.linear(u2, wm.T) * v)
    if lower_bound:
        sigma = sigma + 1e-6
        return w / sigma * torch.minimum(sigma, torch.ones_like(sigma)), u2
    return w / sigma, u2


def _torch_energy(p, u, t, s):
    """``ResnetEBM.forward`` with explicit params (torch layout) and u state (dict of [1, out])."""
    u = dict(u)

    def conv(x, name, lb=False):
        w, u[name] = _torch_sn(p[name]["weight"], u[name], lb)
        return F.conv2d(x, w, p[name]["bias"], padding=1)
    lrelu = torch.nn.LeakyReLU()
    x = torch.cat([F.avg_pool2d(t, 3, 2, 1), F.avg_pool2d(s, 3, 2, 1)], 1)
    x = lrelu(conv(x, "fromRGB"))
    i = 0
    while f"primal_{i}/conv1" in p:
        q = f"primal_{i}"
        h = conv(lrelu(conv(x, f"{q}/conv1")), f"{q}/conv2", lb=True)
        short = conv(x, f"{q}/shortcut") if f"{q}/shortcut" in p else x
        x = lrelu(F.avg_pool2d(short + h, 2, 2))
        i += 1
    x = torch.relu(x).reshape(x.shape[0], x.shape[1], -1).mean(2)
    w, u["linear"] = _torch_sn(p["linear"]["weight"], u["linear"])
    return F.linear(x, w, p["linear"]["bias"])[:, 0], u


def _to_torch(params, u):
    tp = {}
    for k, v in params.items():
        w = np.asarray(v["weight"])
        w = w.transpose(3, 2, 0, 1) if w.ndim == 4 else w.T
        tp[k] = {"weight": torch.tensor(w), "bias": torch.tensor(np.asarray(v["bias"]))}
    return tp, {k: torch.tensor(np.asarray(x))[None] for k, x in u.items()}


def _nchw(x):
    return torch.tensor(np.asarray(x).transpose(0, 3, 1, 2))


def test_energy_and_one_langevin_step_match_torch_transcription():
    params, u = E.init_energy(jax.random.key(3), base_channels=4, n_blocks=3)
    # break the released near-zero init of conv2 so every layer matters
    params = jax.tree.map(lambda a: a, params)
    for k in params:
        if k.endswith("conv2"):
            params[k]["weight"] = 0.3 * jax.random.normal(jax.random.key(9), params[k]["weight"].shape)
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    s = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    e, u1 = E.energy_apply(params, u, jnp.asarray(t), jnp.asarray(s))
    tp, tu = _to_torch(params, u)
    e_t, u1_t = _torch_energy(tp, tu, _nchw(t), _nchw(s))
    np.testing.assert_allclose(np.asarray(e), e_t.detach().numpy(), rtol=1e-4, atol=1e-5)
    for k in u1:
        np.testing.assert_allclose(np.asarray(u1[k]), u1_t[k][0].numpy(), rtol=1e-4, atol=1e-6)
    # one Langevin step from the student image (released Langevin_dynamics with langevin_steps=1)
    key = jax.random.key(4)
    energy = lambda a, b, uu: E.energy_apply(params, uu, a, b)  # noqa: E731
    x1, u2 = langevin_sample(energy, jnp.asarray(s), u, key, steps=1, step_size=50.0, sigma=0.005)
    noise = np.asarray(jax.random.normal(jax.random.split(key, 1)[0], s.shape))
    xm = _nchw(s).clone().requires_grad_(True)
    e_m, u2_t = _torch_energy(tp, tu, xm, _nchw(s))
    (g,) = torch.autograd.grad(e_m.sum(), [xm])
    ref = (xm.detach() - 50.0 * g + 0.005 * _nchw(noise)).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(np.asarray(x1), ref, rtol=1e-4, atol=1e-5)
    for k in u2:
        np.testing.assert_allclose(np.asarray(u2[k]), u2_t[k][0].numpy(), rtol=1e-4, atol=1e-6)


def test_ebm_losses_by_hand():
    pos, neg = jnp.asarray([1.0, -2.0]), jnp.asarray([0.5, 3.0])
    np.testing.assert_allclose(ebm_generator_term(pos, neg), ((1 - 0.5) + (-2 - 3)) / 2)
    np.testing.assert_allclose(ebm_loss(pos, neg, 0.05), -0.5 - 1.75 + 0.05 * (1 + 4 + 0.25 + 9) / 2, rtol=1e-6)


# ------------------------------------------------------------ one step

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return H.make_models(tmp_path_factory.mktemp("itgc"), divisor=2)


def _config(teacher, student, **kw):
    c = cagc_config(teacher, student)
    for k, v in itgc.default_config().items():
        if k not in c.method:
            c.method[k] = v
    c.method.name = "itgc"
    c.method.ebm_channels, c.method.ebm_blocks, c.method.langevin_steps = 8, 3, 2
    for k, v in kw.items():
        c.method[k] = v
    return c


def test_one_step(models):
    teacher, student = models
    method = itgc.build(_config(teacher, student), H.env())
    assert {r for r, s in method.networks.items() if s.trainable} == {"G_S", "D_S", "EBM"}
    assert method.optimizers["EBM"].lr == 1e-4 and method.optimizers["EBM"].betas == (0.0, 0.999)
    assert [(p.name, p.updates) for p in method.phases][2] == ("Dmain", ("D_S", "EBM"))
    before, res = run_all_phases(method, ["Gmain", "Dmain"])
    check_phase(before, res, "Gmain", {"G_S"})   # the EBM is not updated by G's term (stale-gradient fix)
    check_phase(before, res, "Dmain", {"D_S", "EBM"})
    assert np.isfinite(float(res["Gmain"][1]["G_S/kd_mi"]))
    assert np.isfinite(float(res["Dmain"][1]["EBM/loss"]))
    # the spectral-norm state advanced
    extra = res["Dmain"][4]
    assert any(not np.array_equal(np.asarray(extra[k]), np.asarray(method.extra_state[k]))
               for k in method.extra_state if k.startswith("ebm_u."))


def test_config_errors(models):
    teacher, student = models
    with pytest.raises(ValueError, match="ebm_blocks"):
        itgc.build(_config(teacher, student, ebm_blocks=7), H.env())
