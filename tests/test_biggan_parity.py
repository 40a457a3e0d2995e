"""BigGAN networks vs BigGAN-PyTorch's (restated in tests/biggan_torch_reference.py).

Error analysis: float32 throughout; the deepest path is ~12 convs/linears with fan-in ≤ 9·64
and BN divisions, so relative rounding differences stay ~1e-5; images are compared at 2e-4
absolute (0.03 uint8 levels; the acceptance bound is 1 level) and D logits at 1e-4 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flax import traverse_util  # noqa: E402

from gancomp_jax.convert.biggan import to_state_dict, to_variables  # noqa: E402
from gancomp_jax.models.biggan import (BigGANDiscriminator, BigGANDiscriminatorConfig, BigGANGenerator,  # noqa: E402
                                       BigGANGeneratorConfig)
from tests import biggan_torch_reference as ref  # noqa: E402



@pytest.fixture(autouse=True)
def _highest_matmul_precision():
    """Full float32 matmuls for the parity checks, scoped to this module's tests (a global
    config update would leak into every test collected after this module)."""
    with jax.default_matmul_precision("highest"):
        yield


def g_config(**kw):
    base = dict(ch=4, attention="16", dim_z=20, shared_dim=12, n_classes=7, sn_eps=1e-6)
    base.update(kw)
    return BigGANGeneratorConfig.biggan(32, **base)


def d_config(**kw):
    base = dict(ch=4, attention="16", n_classes=7, sn_eps=1e-6)
    base.update(kw)
    return BigGANDiscriminatorConfig.biggan(32, **base)


def torch_g(cfg, seed=0):
    torch.manual_seed(seed)
    G = ref.Generator(cfg)
    ref.randomize_state(G, seed + 1)
    return G


def torch_d(cfg, seed=0):
    torch.manual_seed(seed)
    D = ref.Discriminator(cfg)
    ref.randomize_state(D, seed + 1)
    return D


def sd_numpy(net):
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def inputs(cfg, n=4, seed=0):
    rs = np.random.RandomState(seed)
    return rs.randn(n, cfg.z_dim).astype(np.float32), rs.randint(0, cfg.n_classes, n)


def flat(tree):
    return traverse_util.flatten_dict(dict(tree), sep="/")


def assert_buffers_equal(jax_buffers, torch_net, tol=1e-5):
    want = to_variables(sd_numpy(torch_net))["buffers"]
    a, b = flat(jax_buffers), flat(want)
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), b[k], rtol=tol, atol=tol, err_msg=k)


@pytest.mark.parametrize("kw", [dict(), pytest.param(dict(hier=False, attention="8"), marks=pytest.mark.slow),
                                dict(mybn=True, num_svs=2, num_itrs=2)])
def test_generator_eval_parity(kw):
    cfg = g_config(**kw)
    G = torch_g(cfg).eval()
    z, y = inputs(cfg)
    with torch.no_grad():
        want = G(torch.from_numpy(z), G.shared(torch.from_numpy(y))).numpy().transpose(0, 2, 3, 1)
    v = to_variables(sd_numpy(G))
    got = np.asarray(BigGANGenerator(cfg).apply(v, jnp.asarray(z), jnp.asarray(y)))
    np.testing.assert_allclose(got, want, atol=2e-4)
    u8 = lambda a: np.clip(np.round(a * 127.5 + 128), 0, 255).astype(np.int32)  # noqa: E731
    assert np.abs(u8(got) - u8(want)).max() <= 1
    # eval mode writes nothing
    _, upd = BigGANGenerator(cfg).apply(v, jnp.asarray(z), jnp.asarray(y), mutable=["buffers"])
    for k, val in flat(upd["buffers"]).items():
        np.testing.assert_array_equal(np.asarray(val), flat(v["buffers"])[k])
    # one-hot labels and the embedded form give the same images
    onehot = jax.nn.one_hot(y, cfg.n_classes)
    np.testing.assert_array_equal(np.asarray(BigGANGenerator(cfg).apply(v, jnp.asarray(z), onehot)), got)


@pytest.mark.parametrize("kw", [pytest.param(dict(), marks=pytest.mark.slow), dict(mybn=True, num_svs=2, num_itrs=2)])
def test_generator_train_mode_parity(kw):
    cfg = g_config(**kw)
    G = torch_g(cfg).train()
    z, y = inputs(cfg, n=5)
    v = to_variables(sd_numpy(G))
    with torch.no_grad():
        want = G(torch.from_numpy(z), G.shared(torch.from_numpy(y))).numpy().transpose(0, 2, 3, 1)
    got, upd = BigGANGenerator(cfg).apply(v, jnp.asarray(z), jnp.asarray(y), train=True, mutable=["buffers"])
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-4)
    assert_buffers_equal(upd["buffers"], G)


@pytest.mark.slow
def test_standing_stats_pass_parity():
    cfg = g_config(mybn=True)
    G = torch_g(cfg).train()
    v = to_variables(sd_numpy(G))
    for m in G.modules():
        if isinstance(m, ref.MyBN):
            m.stored_mean.zero_(), m.stored_var.zero_(), m.accumulation_counter.zero_()
            m.accumulate_standing = True
    v = {**v, "buffers": to_variables(sd_numpy(G))["buffers"]}
    for seed in (0, 1):
        z, y = inputs(cfg, n=3, seed=seed)
        with torch.no_grad():
            G(torch.from_numpy(z), G.shared(torch.from_numpy(y)))
        _, upd = BigGANGenerator(cfg).apply(v, jnp.asarray(z), jnp.asarray(y), train=True, bn_mode="standing",
                                            mutable=["buffers"])
        v = {**v, "buffers": upd["buffers"]}
    assert_buffers_equal(v["buffers"], G)
    G.eval()
    z, y = inputs(cfg, n=2, seed=5)
    with torch.no_grad():
        want = G(torch.from_numpy(z), G.shared(torch.from_numpy(y))).numpy().transpose(0, 2, 3, 1)
    got = BigGANGenerator(cfg).apply(v, jnp.asarray(z), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(got), want, atol=2e-4)


@pytest.mark.parametrize("train", [pytest.param(False, marks=pytest.mark.slow), True])
def test_discriminator_parity(train):
    cfg = d_config(num_svs=2)
    D = torch_d(cfg).train(train)
    rs = np.random.RandomState(3)
    x = rs.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    y = rs.randint(0, cfg.n_classes, 4)
    v = to_variables(sd_numpy(D))
    with torch.no_grad():
        want = D(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    got, upd = BigGANDiscriminator(cfg).apply(v, jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(y),
                                              train=train, mutable=["buffers"])
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert_buffers_equal(upd["buffers"], D)


@pytest.mark.slow
def test_discriminator_64_attention_parity():
    cfg = BigGANDiscriminatorConfig.biggan(64, ch=8, attention="32", n_classes=5)
    D = torch_d(cfg).eval()
    rs = np.random.RandomState(4)
    x = rs.uniform(-1, 1, (2, 3, 64, 64)).astype(np.float32)
    y = rs.randint(0, 5, 2)
    with torch.no_grad():
        want = D(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    got = BigGANDiscriminator(cfg).apply(to_variables(sd_numpy(D)), jnp.asarray(x.transpose(0, 2, 3, 1)),
                                         jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def assert_grads_close(grads, torch_grads):
    """Each gradient within 2e-4 relative, or 1e-4 of the network's largest gradient (some are
    exactly zero in exact arithmetic, e.g. conv biases followed by BatchNorm, and are noise)."""
    want = flat(to_variables(torch_grads)["params"])
    scale = max(float(np.abs(w).max()) for w in want.values())
    got = flat(grads)
    assert set(got) == set(want)
    for k, g in got.items():
        np.testing.assert_allclose(np.asarray(g), want[k], rtol=2e-4, atol=1e-4 * scale, err_msg=k)


def test_one_training_step_losses_and_gradients():
    """BigGAN-PyTorch's D step then G step (hinge, G and D in train mode): losses and gradients."""
    gcfg, dcfg = g_config(), d_config()
    G, D = torch_g(gcfg).train(), torch_d(dcfg, seed=3).train()
    gv, dv = to_variables(sd_numpy(G)), to_variables(sd_numpy(D))
    z, gy = inputs(gcfg, n=4, seed=7)
    rs = np.random.RandomState(8)
    x = rs.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    dy = rs.randint(0, 7, 4)
    # torch: D step
    with torch.no_grad():
        G_z = G(torch.from_numpy(z), G.shared(torch.from_numpy(gy)))
    out = D(torch.cat([G_z, torch.from_numpy(x)]), torch.cat([torch.from_numpy(gy), torch.from_numpy(dy)]))
    d_fake, d_real = torch.split(out, [4, 4])
    d_loss = torch.mean(torch.relu(1 - d_real)) + torch.mean(torch.relu(1 + d_fake))
    D.zero_grad()
    d_loss.backward()
    d_grads = {k: p.grad.numpy().copy() for k, p in D.named_parameters()}
    # ours
    Gm, Dm = BigGANGenerator(gcfg), BigGANDiscriminator(dcfg)
    img, gupd = Gm.apply(gv, jnp.asarray(z), jnp.asarray(gy), train=True, mutable=["buffers"])

    def d_loss_fn(params):
        o, upd = Dm.apply({"params": params, "buffers": dv["buffers"]},
                          jnp.concatenate([img, jnp.asarray(x.transpose(0, 2, 3, 1))]),
                          jnp.concatenate([jnp.asarray(gy), jnp.asarray(dy)]), train=True, mutable=["buffers"])
        return jnp.mean(jax.nn.relu(1 - o[4:])) + jnp.mean(jax.nn.relu(1 + o[:4])), upd

    (loss, dupd), grads = jax.jit(jax.value_and_grad(d_loss_fn, has_aux=True))(dv["params"])
    np.testing.assert_allclose(float(loss), float(d_loss), rtol=1e-5)
    assert_grads_close(grads, d_grads)
    assert_buffers_equal(dupd["buffers"], D)
    # G step (D after its step's u update; same D params for both sides)
    z2, gy2 = inputs(gcfg, n=4, seed=9)
    g_out = D(G(torch.from_numpy(z2), G.shared(torch.from_numpy(gy2))), torch.from_numpy(gy2))
    g_loss = -torch.mean(g_out)
    G.zero_grad()
    g_loss.backward()
    g_grads = {k: p.grad.numpy().copy() for k, p in G.named_parameters()}

    def g_loss_fn(params):
        im, u1 = Gm.apply({"params": params, "buffers": gupd["buffers"]}, jnp.asarray(z2), jnp.asarray(gy2),
                          train=True, mutable=["buffers"])
        o, u2 = Dm.apply({"params": dv["params"], "buffers": dupd["buffers"]}, im, jnp.asarray(gy2), train=True,
                         mutable=["buffers"])
        return -jnp.mean(o), (u1, u2)

    (gl, (u1, u2)), ggrads = jax.jit(jax.value_and_grad(g_loss_fn, has_aux=True))(gv["params"])
    np.testing.assert_allclose(float(gl), float(g_loss), rtol=1e-5, atol=1e-6)
    assert_grads_close(ggrads, g_grads)
    assert_buffers_equal(u1["buffers"], G)
    assert_buffers_equal(u2["buffers"], D)


def test_state_dict_round_trip():
    for net, cfg in ((torch_g(g_config(mybn=True)), None), (torch_g(g_config()), None), (torch_d(d_config()), None)):
        sd = sd_numpy(net)
        back = to_state_dict(to_variables(sd))
        assert set(back) == set(sd)
        for k in sd:
            np.testing.assert_array_equal(back[k], sd[k].astype(np.float32), err_msg=k)
