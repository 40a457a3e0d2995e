"""The ``biggan`` method (BigGAN-PyTorch's training step) and DGL-GAN on BigGAN: one step
through the trainer's own step functions — which parameters and buffers change, the losses by
hand, the frozen teacher D — the G EMA, orthogonal regularisation, and exact stop/resume."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from gancomp_jax import checkpoints
from gancomp_jax.methods import biggan, dgl_gan_biggan
from gancomp_jax.methods.base import BuildEnv, role_salt
from gancomp_jax.models import registry
from gancomp_jax.models.biggan import BigGANDiscriminatorConfig, BigGANGeneratorConfig
from gancomp_jax.train.state import init_state, lazy_adam
from gancomp_jax.train.steps import make_ema_fn, make_phase_fn, phase_key

B = 4


def tiny_method_config(**kw):
    c = ml_collections.ConfigDict({"batch_size": 2 * B, "data": {"resolution": 32}})
    c.method = biggan.default_config()
    m = c.method
    m.resolution, m.G_ch, m.D_ch, m.dim_z, m.shared_dim, m.hier, m.n_classes = 32, 2, 2, 8, 4, True, 3
    m.G_attn, m.D_attn, m.ema_start, m.ema_decay = "16", "0", 2, 0.9
    for k, v in kw.items():
        m[k] = v
    return c


def flat(t):
    return traverse_util.flatten_dict(dict(t), sep="/")


def changed(a, b):
    fa, fb = flat(a), flat(b)
    return {k for k in fa if not np.array_equal(np.asarray(fa[k]), np.asarray(fb[k]))}


class Driver:
    """The trainer's phase and EMA functions on a method's networks (no data pipeline)."""

    def __init__(self, method, batch_size, seed=0):
        self.method = method
        self.modules, initial, self.frozen = {}, {}, {}
        for i, (role, spec) in enumerate(method.networks.items()):
            if spec.source == "init":
                net = checkpoints.init_network(spec.kind, spec.config, jax.random.key(seed + i))
            else:
                net = checkpoints.load_any(spec.source, [spec.source_name])[spec.source_name]
            self.modules[role] = registry.make_module(spec.kind, net.config)
            v = jax.tree.map(jnp.asarray, dict(net.variables))
            (initial if spec.trainable else self.frozen)[role] = v
        self.txs = {r: lazy_adam(o.lr, o.betas, o.eps, None) for r, o in method.optimizers.items()}
        ema = tuple(r for r, s in method.networks.items() if s.ema)
        self.state = init_state(initial, self.txs, ema, method.extra_state, jax.random.key(seed + 100))
        self.fns = {p.name: jax.jit(make_phase_fn(p, k, method, self.modules, self.txs, batch_size))
                    for p, k in zip(method.phases, method.phase_key_ids())}
        self.ema = jax.jit(make_ema_fn(method, batch_size))


def batch(n=2 * B, seed=0):
    img = jax.random.uniform(jax.random.key(seed), (n, 32, 32, 3), minval=-1, maxval=1)
    return {"image": img, "label": jnp.arange(n, dtype=jnp.int32) % 3}


@pytest.mark.slow
def test_one_teacher_iteration_changes_only_intended_networks():
    method = biggan.build(tiny_method_config(), BuildEnv(batch_size=2 * B, num_devices=1, mbstd_num_shards=1))
    assert [p.name for p in method.phases] == ["D0", "D1", "G"]
    drv = Driver(method, 2 * B)
    s0 = drv.state
    real = batch()
    # D step 0 by hand: the same z, y (phase key, 'zD'/'yD'), G in train mode, hinge on [G(z); x_0]
    key = phase_key(s0, method.phase_key_ids()[0])
    z = jax.random.normal(jax.random.fold_in(key, role_salt("zD")), (B, 8))
    y = jax.random.randint(jax.random.fold_in(key, role_salt("yD")), (B,), 0, 3)
    G, D = drv.modules["G"], drv.modules["D"]
    fake, _ = G.apply(s0.params["G"], z, y, train=True, mutable=["buffers"])
    out, _ = D.apply(s0.params["D"], jnp.concatenate([fake, real["image"][:B]]),
                     jnp.concatenate([y, real["label"][:B]]), train=True, mutable=["buffers"])
    want = jnp.mean(jax.nn.relu(1 - out[B:])) + jnp.mean(jax.nn.relu(1 + out[:B]))

    s1, m1 = drv.fns["D0"](s0, {}, real)
    np.testing.assert_allclose(float(m1["D/loss"] if "D/loss" in m1 else m1["D/loss0"]), float(want), rtol=1e-5)
    assert not changed(s0.params["G"]["params"], s1.params["G"]["params"])
    assert changed(s0.params["D"]["params"], s1.params["D"]["params"]) == set(flat(s0.params["D"]["params"]))
    g_buf = changed(s0.params["G"]["buffers"], s1.params["G"]["buffers"])  # train-mode G: BN stats + SN u
    assert any(k.endswith("stored_mean") for k in g_buf) and any(k.endswith("u0") for k in g_buf)
    assert changed(s0.params["D"]["buffers"], s1.params["D"]["buffers"])
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s0.opt["G"]), jax.tree.leaves(s1.opt["G"])))
    s2, _ = drv.fns["D1"](s1, {}, real)
    s3, m3 = drv.fns["G"](s2, {}, real)
    assert not changed(s2.params["D"]["params"], s3.params["D"]["params"])
    assert changed(s2.params["D"]["buffers"], s3.params["D"]["buffers"])  # D's u update in the G step, as released
    assert changed(s2.params["G"]["params"], s3.params["G"]["params"])
    # EMA: copy before ema_start (iteration 1 < 2), then decay 0.9 over params and buffers
    s4, _ = drv.ema(s3)
    for coll in ("params", "buffers"):
        assert not changed(s4.ema["G"][coll], s3.params["G"][coll])
    s5 = s4.replace(params={**s4.params, "G": jax.tree.map(lambda a: a + 1.0, s4.params["G"])})
    s6, _ = drv.ema(s5)
    a, b, e = flat(s6.ema["G"]), flat(s5.params["G"]), flat(s4.ema["G"])
    for k in a:
        np.testing.assert_allclose(np.asarray(a[k]), 0.9 * np.asarray(e[k]) + 0.1 * np.asarray(b[k]), rtol=1e-6,
                                   atol=1e-6)


def test_biggan_ema_decay_start_and_buffers():
    """BigGAN-PyTorch's utils.ema: a copy while the 1-based iteration < start, then
    ema = decay·ema + (1 - decay)·net over params and buffers."""
    from gancomp_jax.methods.base import Method, NetworkSpec, OptimizerSpec, Phase
    from gancomp_jax.train.state import TrainState

    cfg = BigGANGeneratorConfig.biggan(32, ch=2, attention="16", dim_z=8, shared_dim=4, n_classes=3)
    method = Method(networks={"G": NetworkSpec("biggan_generator", cfg, ema=True)},
                    optimizers={"G": OptimizerSpec(1e-3)}, phases=[Phase("G", "G", lambda ctx: (0.0, {}))],
                    ema_decay=0.9, ema_start_step=3, ema_buffers=True)
    net = {"params": {"w": jnp.ones(3)}, "buffers": {"u": jnp.zeros(2)}}
    ema = {"params": {"w": jnp.zeros(3)}, "buffers": {"u": jnp.ones(2)}}
    fn = make_ema_fn(method, 8)
    st = TrainState(step=jnp.int32(1), params={"G": net}, opt={}, ema={"G": ema}, extra={}, key=jnp.zeros(2, jnp.uint32))
    out, m = fn(st)  # iteration 2 < 3: copy
    assert float(m["G/ema_beta"]) == 0.0 and int(out.step) == 2
    np.testing.assert_array_equal(out.ema["G"]["params"]["w"], 1.0)
    np.testing.assert_array_equal(out.ema["G"]["buffers"]["u"], 0.0)
    out, m = fn(st.replace(step=jnp.int32(2)))  # iteration 3: decay
    np.testing.assert_allclose(out.ema["G"]["params"]["w"], 0.1, rtol=1e-6)
    np.testing.assert_allclose(out.ema["G"]["buffers"]["u"], 0.9, rtol=1e-6)


def test_ortho_penalty_gradient_is_biggan_pytorch_ortho():
    """utils.ortho adds 2 ((W Wᵀ) ⊙ (1 - I)) W to the raw weight's gradient (W = [out, fan_in])."""
    rs = np.random.RandomState(0)
    params = {"conv": {"weight": jnp.asarray(rs.randn(3, 3, 4, 5), jnp.float32)},
              "lin": {"weight": jnp.asarray(rs.randn(6, 7), jnp.float32), "bias": jnp.ones(7)},
              "shared": {"embedding": jnp.asarray(rs.randn(3, 4), jnp.float32)}}
    g = jax.grad(biggan.ortho_penalty)(params)
    for path, torch_w, to_ours in ((("conv", "weight"), np.asarray(params["conv"]["weight"]).transpose(3, 2, 0, 1)
                                    .reshape(5, -1), lambda W: W.reshape(5, 4, 3, 3).transpose(2, 3, 1, 0)),
                                   (("lin", "weight"), np.asarray(params["lin"]["weight"]).T, lambda W: W.T)):
        W = torch_w.astype(np.float64)
        want = 2 * ((W @ W.T) * (1 - np.eye(W.shape[0]))) @ W
        np.testing.assert_allclose(np.asarray(g[path[0]][path[1]]), to_ours(want), rtol=1e-4, atol=1e-4)
    assert not np.any(np.asarray(g["shared"]["embedding"])) and not np.any(np.asarray(g["lin"]["bias"]))


@pytest.fixture(scope="module")
def teacher_and_stage1(tmp_path_factory):
    root = tmp_path_factory.mktemp("dglbg")
    g = BigGANGeneratorConfig.biggan(32, ch=4, attention="16", dim_z=8, shared_dim=4, n_classes=3)
    d = BigGANDiscriminatorConfig.biggan(32, ch=4, attention="0", n_classes=3)
    tG = checkpoints.init_network("biggan_generator", g, jax.random.key(1))
    tD = checkpoints.init_network("biggan_discriminator", d, jax.random.key(2))
    checkpoints.save_model(root / "teacher", {"G_ema": tG, "G": tG, "D": tD})
    c1 = tiny_method_config()
    c1.method = dgl_gan_biggan.default_config()
    c1.method.update(dict(stage=1, teacher=str(root / "teacher"), channel_divisor=2))
    m1 = dgl_gan_biggan.build(c1, BuildEnv(batch_size=2 * B, num_devices=1, mbstd_num_shards=1))
    assert "D_T" not in m1.networks
    assert m1.networks["G"].config.channels == tuple(c // 2 for c in g.channels)
    assert m1.networks["D"].config.channels == tuple(c // 2 for c in d.channels)
    sG = checkpoints.init_network("biggan_generator", m1.networks["G"].config, jax.random.key(3))
    sD = checkpoints.init_network("biggan_discriminator", m1.networks["D"].config, jax.random.key(4))
    checkpoints.save_model(root / "stage1", {"G": sG, "D": sD, "G_ema": sG})
    return root


def test_dgl_stage2_one_step(teacher_and_stage1):
    root = teacher_and_stage1
    c = tiny_method_config()
    c.method = dgl_gan_biggan.default_config()
    c.method.update(dict(stage=2, teacher=str(root / "teacher"), stage1=str(root / "stage1"), channel_divisor=2,
                         num_D_steps=1, alpha=0.1))
    c.batch_size = B
    method = dgl_gan_biggan.build(c, BuildEnv(batch_size=B, num_devices=1, mbstd_num_shards=1))
    assert not method.networks["D_T"].trainable and set(method.optimizers) == {"G", "D"}
    drv = Driver(method, B)
    teacher_before = jax.tree.map(np.array, drv.frozen["D_T"])
    s0 = drv.state
    s1, md = drv.fns["D0"](s0, drv.frozen, batch(B))
    assert not changed(s0.params["G"]["params"], s1.params["G"]["params"])
    s2, mg = drv.fns["G"](s1, drv.frozen, batch(B))
    assert not changed(s1.params["D"]["params"], s2.params["D"]["params"])
    assert changed(s1.params["G"]["params"], s2.params["G"]["params"])
    for k, v in flat(drv.frozen["D_T"]).items():  # the teacher is bit-identical
        assert np.array_equal(np.asarray(v), flat(teacher_before)[k])
    # the G loss is -mean D(G) + 0.1 · (-mean D_T(G)), D_T in eval mode on the same samples
    key = phase_key(s1, method.phase_key_ids()[1])
    z = jax.random.normal(jax.random.fold_in(key, role_salt("zG")), (B, 8))
    y = jax.random.randint(jax.random.fold_in(key, role_salt("yG")), (B,), 0, 3)
    img, _ = drv.modules["G"].apply(s1.params["G"], z, y, train=True, mutable=["buffers"])
    t = drv.modules["D_T"].apply(drv.frozen["D_T"], img, y)
    np.testing.assert_allclose(float(mg["G/teacher_term"]), float(-jnp.mean(t)), rtol=1e-5)
    np.testing.assert_allclose(float(mg["G/loss"]), float(mg["G/loss_adv"] + 0.1 * mg["G/teacher_term"]), rtol=1e-6)
    # stage 2 starts from stage 1's networks
    s1_G = checkpoints.load_model(root / "stage1", ["G"])["G"].variables
    assert not changed(s0.params["G"]["params"], s1_G["params"])


def test_config_errors(teacher_and_stage1):
    env = BuildEnv(batch_size=2 * B, num_devices=1, mbstd_num_shards=1)
    with pytest.raises(ValueError, match="multiple of config.method.num_D_steps"):
        biggan.build(tiny_method_config(num_D_steps=3), env)
    with pytest.raises(ValueError, match="needs config.method.teacher"):
        biggan.build(tiny_method_config(channel_divisor=2), env)
    c = tiny_method_config()
    c.method = dgl_gan_biggan.default_config()
    c.method.update(dict(stage=2, teacher=str(teacher_and_stage1 / "teacher")))
    with pytest.raises(ValueError, match="stage1"):
        dgl_gan_biggan.build(c, env)


@pytest.mark.slow
def test_stop_and_resume_is_exact(tmp_path):
    """Two iterations in one run equal one iteration, a stop, and a resumed second one."""
    import importlib.util
    from pathlib import Path

    from gancomp_jax.main import run_job

    spec = importlib.util.spec_from_file_location("bg_exp", Path(__file__).resolve().parents[1] / "experiments" /
                                                  "biggan.py")
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)

    def cfg(steps):
        c = exp.get_config("digits")
        c.method.G_ch = c.method.D_ch = 2
        c.method.dim_z, c.method.shared_dim = 8, 4
        c.batch_size, c.total_steps, c.progress = 8, steps, False
        c.checkpoint_every_steps, c.log_every_steps, c.async_checkpointing = 1, 1, False
        c.method.ema_start = 0
        return c

    run_job(cfg(2), str(tmp_path / "a"))
    run_job(cfg(1), str(tmp_path / "b"))
    run_job(cfg(2), str(tmp_path / "b"))
    a = checkpoints.load_model(tmp_path / "a" / "model")
    b = checkpoints.load_model(tmp_path / "b" / "model")
    assert set(a) == set(b) == {"G", "G_ema", "D"}
    for name in a:
        fa, fb = flat(a[name].variables), flat(b[name].variables)
        for k in fa:
            assert np.array_equal(fa[k], fb[k]), (name, k)
