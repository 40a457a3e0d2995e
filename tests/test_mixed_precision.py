"""Mixed precision (config.model.mixed_precision) for every method family, through the trainer's
own method building, networks and jitted steps: one bfloat16 step's losses are within a stated
tolerance of float32 from the same initial state; the networks really run in bfloat16; the
master weights and optimiser state stay float32; (slow) 50 digits steps stay finite.

Tolerance: bfloat16 keeps 8 significant bits (u = 2^-9 ≈ 2e-3 per rounding). The tiny16 models
compute their 8- and 16-px blocks (NVlabs' top-4-resolution rule) in bfloat16, ~6 roundings
deep, so activations carry ~√6·u ≈ 5e-3 relative error; a loss built from logits and feature
differences (softplus, L1, feature moments, path lengths) moves by about that relative to its
own scale. We allow 5 % of max(|loss|, 1) — 10× that estimate — and require that bfloat16 did
change the loss (a run silently staying in float32 would give exactly the float32 value).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import distil_harness as H
from gancomp_jax import checkpoints
from gancomp_jax.accel import device_check as dc
from gancomp_jax.train.networks import mixed_precision_config

RTOL = 5e-2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    teacher, student = H.make_models(root, divisor=2, pruned_d_divisor=2)
    return root, teacher, student


def _steps_losses(config, names=("Gmain", "Dmain")):
    """Losses of the named phases, each from the same initial state (fp32 weights)."""
    built = dc.build_training(config, state_on_host=False)
    out = {}
    for phase, fn in built.steps.phases:
        if phase.name not in names:
            continue
        state, metrics = fn(dc._copy(built.state), built.frozen, H.real_batch(8))
        out.update({f"{phase.name}:{k}": float(v) for k, v in jax.device_get(metrics).items()})
        for role in phase.updates:
            leaves = jax.tree.leaves(state.params[role]["params"]) + jax.tree.leaves(state.opt[role])
            assert all(x.dtype != jnp.bfloat16 for x in leaves), f"{role}: bf16 master weights / optimiser state"
    return built, out


def _compare(config_fn):
    fp32_built, fp32 = _steps_losses(config_fn(False))
    bf16_built, bf16 = _steps_losses(config_fn(True))
    assert set(fp32) == set(bf16)
    for k in fp32:
        assert abs(bf16[k] - fp32[k]) <= RTOL * max(abs(fp32[k]), 1.0), (k, fp32[k], bf16[k])
    assert any(bf16[k] != fp32[k] for k in fp32), "bfloat16 run gave the float32 losses bit for bit"
    for role, cfg in bf16_built.prepared.nets.configs.items():
        if hasattr(cfg, "num_mixed_res"):
            assert cfg.num_mixed_res == 4 and cfg.conv_clamp == 256.0, role
    return fp32, bf16


def _base(c):
    c.model.preset = "tiny16"
    c.batch_size = 8
    c.mesh_devices = 1
    c.mbstd_num_shards = 1
    c.total_steps = 1
    c.r1_gamma, c.pl_weight, c.lr = 1.0, 2.0, 0.002
    return c


def test_stylegan2_teacher_bf16_close_to_fp32():
    def cfg(mixed):
        return dc.teacher_config("tiny16", 8, mixed)
    _compare(cfg)


@pytest.mark.slow  # ~1 min of CPU each: the fast path is the StyleGAN2 family
def test_nickel_dime_bf16_close_to_fp32(models):
    _, teacher, student = models
    seen = []

    def factory(path, preprocess, dtype=jnp.float32):
        seen.append(dtype)
        w = jax.random.normal(jax.random.key(3), (3, 6))
        return {"w": w}, lambda p, x: jnp.mean(x.astype(dtype), axis=(1, 2)) @ p["w"].astype(dtype)

    from gancomp_jax.methods import nickel_dime
    nickel_dime.EMBEDDER_FACTORIES["mp_test"] = factory
    try:
        emb = {"tdisc": {"kind": "teacher_d", "weights": "", "weight": 20.0, "preprocess": "none",
                         "blocks": ("b16", "b8")},
               "tiny": {"kind": "mp_test", "weights": "x", "weight": 15.0, "preprocess": "none", "blocks": ()}}

        def cfg(mixed):
            return dc.nickel_config("tiny16", 8, teacher, student, emb, mixed=mixed)
        _compare(cfg)
    finally:
        nickel_dime.EMBEDDER_FACTORIES.pop("mp_test", None)
    assert seen == [jnp.float32, jnp.bfloat16]


@pytest.mark.slow  # ~1 min of CPU each: the fast path is the StyleGAN2 family
def test_cagc_family_bf16_close_to_fp32(models, tmp_path):
    """CAGC KD (StyleKD, ITGC, GAN Slimming, DCP-GAN and SVS fine-tuning share its networks)
    with the LPIPS term: random-weight VGG16 trunk in bfloat16."""
    torch = pytest.importorskip("torch")
    from test_nets_lpips import _vgg_state

    from gancomp_jax.methods import cagc
    from gancomp_jax.train.config import default_train_config

    _, teacher, student = models
    vgg = tmp_path / "vgg16-397923af.pth"
    torch.save(_vgg_state(3), vgg, _use_new_zipfile_serialization=False)

    def cfg(mixed):
        c = _base(default_train_config())
        c.model.mixed_precision = mixed
        c.method = cagc.default_config()
        c.method.teacher, c.method.student = teacher, student
        c.method.mask = "none"
        c.method.kd_percept_mode = "LPIPS"
        c.method.lpips_vgg = str(vgg)
        return c
    _compare(cfg)


@pytest.mark.slow  # ~1 min of CPU each: the fast path is the StyleGAN2 family
def test_dgl_gan_bf16_close_to_fp32(models):
    from gancomp_jax.methods import dgl_gan
    from gancomp_jax.train.config import default_train_config

    root, teacher, _ = models
    stage1 = root / "dgl_stage1"
    if not stage1.exists():
        c = _base(default_train_config())
        c.method = dgl_gan.default_config()
        c.method.stage, c.method.teacher = 1, teacher
        s1 = dgl_gan.build(c, H.env())
        checkpoints.save_model(stage1, {n: checkpoints.init_network(s.kind, s.config, jax.random.key(i))
                                        for i, (n, s) in enumerate(s1.networks.items())})

    def cfg(mixed):
        c = _base(default_train_config())
        c.model.mixed_precision = mixed
        c.method = dgl_gan.default_config()
        c.method.stage, c.method.teacher, c.method.stage1 = 2, teacher, str(stage1)
        return c
    _compare(cfg)


def test_mixed_precision_config_rule():
    from gancomp_jax.models import get_preset

    g = get_preset("paper256").generator
    m = mixed_precision_config(g)
    assert (m.num_mixed_res, m.conv_clamp) == (4, 256.0)
    assert mixed_precision_config(g.replace(conv_clamp=128.0)).conv_clamp == 128.0


@pytest.mark.slow
def test_digits_nickel_dime_bf16_50_steps_finite(tmp_path):
    """50 bfloat16 NICKEL & DiME steps on the digits teacher: every logged loss finite."""
    import importlib.util
    import json

    from gancomp_jax.train.trainer import train

    spec = importlib.util.spec_from_file_location("nd_exp", dc.REFERENCE.parents[2] / "experiments" / "nickel_dime.py")
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    c = exp.get_config("digits")
    assets = dc.REFERENCE.parents[2] / "gancomp_jax" / "assets" / "digits_teacher"
    c.method.teacher = c.method.student = str(assets)
    c.method.student_g_name = "G_ema"
    c.model.mixed_precision = True
    c.total_steps = 50
    c.log_every_steps = 1
    c.checkpoint_every_steps = 0
    c.sample_every_steps = 0
    c.grid_rows = c.grid_cols = 0
    c.progress = False
    c.mesh_devices = 1
    c.mbstd_num_shards = 1
    train(c, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) >= 50
    assert all(np.isfinite(v) for r in rows for k, v in r.items() if isinstance(v, float))
