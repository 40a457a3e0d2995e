"""The audit's default fixes and the ``released`` preset of every method, key by key.

Expected values are the released codes' (sources in each entry; digests in
/work/shared/research: cagc_and_dgl.md, nickel_and_dime.md). Each default fix here failed on the
code before it (EMA 10 kimg, GAN Slimming's L1 KD on, LPIPS inputs average-pooled).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax.methods import cagc, gan_slimming
from gancomp_jax.methods._distil_common import path_length_rounds
from gancomp_jax.methods.base import Method, mixing_cutoffs
from gancomp_jax.models.generator import sample_mixing_cutoff
from gancomp_jax.train.state import TrainState
from gancomp_jax.train.steps import make_ema_fn, sanitize_gradients

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def experiment_config(name: str, variant: str = ""):
    spec = importlib.util.spec_from_file_location(f"_exp_{name}", EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(variant) if variant else mod.get_config()


def lookup(config, dotted: str):
    v = config
    for k in dotted.split("."):
        v = v[k]
    return tuple(v) if isinstance(v, (list, tuple)) else v


# --------------------------------------------------------------------------- EMA (CAGC, StyleKD, ITGC)


@pytest.mark.parametrize("name", ["cagc_kd", "stylekd", "itgc"])
@pytest.mark.parametrize("variant", ["ffhq256", "released"])
def test_ema_matches_rosinality_accum(name, variant):
    """rosinality ``accumulate(g_ema, g, 0.5 ** (32 / (10 * 1000)))`` per iteration at batch 16,
    through our EMA step (``0.5^(B / (ema_kimg·1000))``)."""
    c = experiment_config(name, variant)
    assert c.batch_size == 16
    method = Method(networks={}, optimizers={}, phases=[], ema_kimg=float(c.ema_kimg),
                    ema_rampup=float(c.ema_rampup) or None)
    state = TrainState(step=jnp.int32(1000), params={"G": {"params": {"w": jnp.float32(1.0)}}}, opt={},
                       ema={"G": {"params": {"w": jnp.float32(0.0)}}}, extra={},
                       key=jax.random.key_data(jax.random.key(0)))
    new, metrics = jax.jit(make_ema_fn(method, c.batch_size))(state)
    accum = 0.5 ** (32 / 10000)
    np.testing.assert_allclose(float(metrics["G/ema_beta"]), accum, rtol=1e-6)
    np.testing.assert_allclose(float(new.ema["G"]["params"]["w"]), 1.0 - accum, rtol=1e-5)


# --------------------------------------------------------------------------- GAN Slimming without L1 KD


def test_gan_slimming_has_no_l1_kd_by_default():
    assert gan_slimming.default_config().kd_l1_mode == "none"
    for variant in ("ffhq256", "released"):
        m = experiment_config("gan_slimming", variant).method
        assert (m.kd_l1_mode, m.kd_percept_mode, m.mask) == ("none", "VGG", "none")
    m = gan_slimming.default_config()
    m.kd_percept_mode = "none"
    kd = cagc.make_kd_terms(m)
    img = jnp.ones((2, 8, 8, 3))
    s = type("G", (), {"img": img, "features": {}})()
    t = type("G", (), {"img": -img, "features": {}})()
    loss, metrics = kd(None, s, t)
    assert float(loss) == 0.0 and "G_S/kd_l1" not in metrics


# --------------------------------------------------------------------------- CAGC LPIPS above 256 px


class _CaptureCtx:
    def __init__(self):
        self.seen = []

    def apply(self, role, *args):
        self.seen.append((role, args))
        return jnp.zeros((args[0].shape[0],))


def test_cagc_lpips_inputs_resized_bilinearly_like_torch():
    torch = pytest.importorskip("torch")
    m = cagc.default_config()
    assert m.kd_resize == "bilinear" and m.kd_image_size == 256
    m.mask, m.kd_l1_mode = "none", "none"
    rng = np.random.default_rng(0)
    s_img = rng.uniform(-1, 1, (2, 1024, 1024, 3)).astype(np.float32)
    t_img = rng.uniform(-1, 1, (2, 1024, 1024, 3)).astype(np.float32)
    ctx = _CaptureCtx()
    gen = lambda x: type("G", (), {"img": jnp.asarray(x), "features": {}})()  # noqa: E731
    cagc.make_kd_terms(m)(ctx, gen(s_img), gen(t_img))
    (role, (s_in, t_in)), = ctx.seen
    assert role == "LPIPS" and s_in.shape == (2, 256, 256, 3)

    def torch_resize(x):
        y = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(256, 256),
                                            mode="bilinear", align_corners=False)
        return y.permute(0, 2, 3, 1).numpy()

    # bilinear of two neighbours of values in [-1, 1]: float32 rounding well below 1e-5
    np.testing.assert_allclose(np.asarray(s_in), torch_resize(s_img), atol=1e-5)
    np.testing.assert_allclose(np.asarray(t_in), torch_resize(t_img), atol=1e-5)
    # the option matters at 1024 px (average pooling reads all 16 pixels of each 4x4 cell)
    pooled = np.asarray(cagc.resize_to(jnp.asarray(s_img), 256, "avg_pool"))
    assert np.abs(pooled - torch_resize(s_img)).max() > 0.1
    # and agrees with bilinear at 512 px
    x = jnp.asarray(s_img[:, :512, :512])
    np.testing.assert_allclose(np.asarray(cagc.resize_to(x, 256, "avg_pool")),
                               np.asarray(cagc.resize_to(x, 256, "bilinear")), atol=1e-6)


# --------------------------------------------------------------------------- gradient sanitising, rounds


def test_sanitize_gradients_as_nvlabs_nan_to_num():
    g = {"a": jnp.array([np.nan, np.inf, -np.inf, 2.5], jnp.float32), "b": {"c": jnp.float32(np.nan)}}
    out = sanitize_gradients(g)
    np.testing.assert_array_equal(np.asarray(out["a"]), np.array([0.0, 1e5, -1e5, 2.5], np.float32))
    assert float(out["b"]["c"]) == 0.0


def test_mixing_cutoff_drawn_per_round():
    key = jax.random.key(3)
    one = mixing_cutoffs(key, 64, 14, 0.9, rounds=1)
    assert one.shape == () and int(one) == int(sample_mixing_cutoff(key, 14, 0.9))
    per = np.asarray(mixing_cutoffs(key, 64, 14, 0.9, rounds=8))
    assert per.shape == (64,)
    chunks = per.reshape(8, 8)
    assert (chunks == chunks[:, :1]).all()          # one crossover per 8-sample round
    assert len(set(chunks[:, 0].tolist())) > 1      # rounds draw independently
    for i in range(8):
        assert chunks[i, 0] == int(sample_mixing_cutoff(jax.random.fold_in(key, i), 14, 0.9))
    with pytest.raises(ValueError, match="does not split"):
        mixing_cutoffs(key, 60, 14, 0.9, rounds=8)


def test_path_length_mean_per_round():
    lengths = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2.0, 32).astype(np.float32))
    pen, mean = path_length_rounds(lengths, jnp.float32(0.7), 0.01, 8)
    m, want = 0.7, []
    for chunk in np.asarray(lengths, np.float64).reshape(8, 4):   # NVlabs: one lerp per round
        m = m + 0.01 * (chunk.mean() - m)
        want.append((chunk - m) ** 2)
    # float32: |L - m| <= 2 carries ~4e-7 absolute error, so its square ~2e-6 at most
    np.testing.assert_allclose(np.asarray(pen), np.concatenate(want), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(float(mean), m, rtol=1e-6)


# --------------------------------------------------------------------------- released presets, key by key

ADA_LOOP = {"model.mixed_precision": True, "model.conv_clamp": 256.0, "grad_nan_to_num": True}
ROSINALITY_LOOP = {"model.mixed_precision": False, "grad_nan_to_num": False}
CAGC_TRAIN = {  # CAGC train.py / train_hyperparams.py
    "model.preset": "paper256", "batch_size": 16, "lr": 0.002, "betas": (0.0, 0.99), "r1_gamma": 10.0,
    "r1_interval": 16, "pl_weight": 2.0, "pl_interval": 4, "pl_batch_shrink": 2, "style_mixing_prob": 0.9,
    "ema_kimg": 5.0, "ema_rampup": 0.0, "total_kimg": 7200.0, "data.xflip": True,
    "method.kd_l1_mode": "Output_Only", "method.kd_l1_lambda": 3.0, "method.kd_percept_mode": "LPIPS",
    "method.kd_percept_lambda": 3.0, "method.kd_image_size": 256, "method.kd_resize": "bilinear",
    "method.mask": "face", "method.parse_size": 512, "method.noise": "independent", "method.d_student": "teacher",
}
RELEASED = {
    "cagc_kd": {**CAGC_TRAIN, **ROSINALITY_LOOP},
    # xuguodong03/StyleKD distributed_train.py README flags; mimic layers 2..5 from b8 = b16..b128; --load 0
    "stylekd": {**CAGC_TRAIN, **ROSINALITY_LOOP, "method.relation_lambda": 30.0, "method.offset_weight": 5.0,
                "method.offset_mode": "main", "method.main_direction": "split", "method.kd_style_lambda": 0.0,
                "method.mapping_from_teacher": True, "method.relation_blocks": ("b16", "b32", "b64", "b128"),
                "method.d_student": "fresh"},
    # NICKEL & DiME train_CAGC_with_VEM.py (stylegan2-ada loop) + main_utils_CAGC_with_VEM.py
    "itgc": {**CAGC_TRAIN, **ADA_LOOP, "method.ebm_blocks": 7, "method.langevin_steps": 10,
             "method.langevin_step_size": 50.0, "method.langevin_sigma": 0.005, "method.ebm_lr": 1e-4,
             "method.mi_lambda": 0.05, "method.l2_lambda": 0.05},
    # NICKEL & DiME DD-Pruned-ratio-0.9-ffhq-256.yaml, cfg paper256, 4 GPUs x 2 rounds of 8
    "nickel_dime": {**ADA_LOOP, "model.preset": "paper256", "batch_size": 64, "lr": 0.0025, "betas": (0.0, 0.99),
                    "r1_gamma": 1.0, "r1_interval": 16, "pl_weight": 2.0, "pl_interval": 4, "pl_batch_shrink": 2,
                    "style_mixing_prob": 0.9, "ema_kimg": 20.0, "ema_rampup": 0.0, "total_kimg": 40000.0,
                    "data.xflip": True, "method.mixing_rounds": 8, "method.pl_rounds": 8, "method.dime.groups": 8,
                    "method.d_student": "fresh", "method.nickel": True, "method.train_teacher_d": True,
                    "method.fm_weight": 10.0, "method.fm_levels": 4, "method.noise": "independent",
                    "method.dime.form": "moments", "method.dime.use": ("dino", "clip"),
                    "method.dime.embedders.dino.weight": 20.0, "method.dime.embedders.clip.weight": 15.0,
                    "method.dime.embedders.dino.preprocess": "released",
                    "method.dime.embedders.clip.preprocess": "released"},
    # SVS scripts/templates/gs + NICKEL & DiME loss_GS.py / train_GS.py (stylegan2-ada loop)
    "gan_slimming": {**ADA_LOOP, "model.preset": "paper256", "batch_size": 32, "lr": 0.002, "r1_gamma": 10.0,
                     "pl_weight": 2.0, "style_mixing_prob": 0.9, "data.xflip": True, "method.sparsity_eta": 1e-5,
                     "method.kd_l1_mode": "none", "method.kd_percept_mode": "VGG", "method.kd_percept_lambda": 3.0,
                     "method.mask": "none", "prune.criterion": "gan_slimming", "prune.ratio": 0.7,
                     "prune.n_sample": 400, "prune.batch_size": 8, "prune.surgery": "as_released"},
    # DGL-GAN stylegan2_dgl (TF StyleGAN2 loop: float32, no gradient sanitising), G_dg_pathreg, D_logistic_r1
    "dgl_gan": {**ROSINALITY_LOOP, "batch_size": 32, "lr": 0.002, "r1_gamma": 10.0, "pl_weight": 2.0,
                "style_mixing_prob": 0.9, "ema_kimg": 10.0, "data.xflip": True, "method.alpha": 0.1,
                "method.g_teacher_term": "dg", "method.d_loss": "logistic", "method.channel_divisor": 2,
                "method.keep_const": True},
    # stylegan2-ada-pytorch train.py --cfg=paper256
    "train_stylegan2": {**ADA_LOOP, "model.preset": "paper256", "model.mbstd_group_size": 8, "batch_size": 64,
                        "lr": 0.0025, "r1_gamma": 1.0, "r1_interval": 16, "pl_weight": 2.0, "pl_interval": 4,
                        "style_mixing_prob": 0.9, "ema_kimg": 20.0, "ema_rampup": 0.0},
    # NICKEL & DiME configs/prune/CAGC-Pruning-ratio-0.9-ffhq-256.yml
    "prune": {"criterion": "content_aware", "ratio": 0.9, "n_sample": 400, "batch_size": 8, "noise_prob": 0.05,
              "noise_mode": "random", "mask": "face_parser", "surgery": "as_released", "discriminator": "teacher",
              "student_init": "sliced"},
    # DCP-GAN prune.py (rosinality; rebuilt student); SVS prune_dcp.py (edit strength 10)
    "dcp_gan": {"criterion": "dcp", "ratio": 0.7, "n_sample": 5000, "batch_size": 5, "dcp.edit_strength": 5.0,
                "dcp.n_direction": 10, "dcp.n_pca": 10000, "dcp.stop_perturbed_grad": False,
                "surgery": "as_released", "noise_mode": "random"},
    "svs": {"criterion": "dcp", "ratio": 0.7, "n_sample": 5000, "batch_size": 5, "dcp.edit_strength": 10.0,
            "svs": True, "surgery": "as_released", "noise_mode": "random"},
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_preset_key_by_key(name):
    c = experiment_config(name, "released")
    wrong = {k: (lookup(c, k), v) for k, v in RELEASED[name].items() if lookup(c, k) != v}
    assert not wrong, f"{name}:released differs from the release ({{key: (ours, released)}}): {wrong}"


def test_prune_released_cagc():
    c = experiment_config("prune", "released_cagc")  # CAGC prune.py defaults
    assert (c.ratio, c.batch_size, c.n_sample, c.mask, c.surgery) == (0.7, 10, 400, "face_parser", "as_released")


def test_released_excludes_digits():
    for name in ("cagc_kd", "nickel_dime"):
        with pytest.raises(ValueError, match="exclude"):
            experiment_config(name, "released+digits")


def test_grad_nan_to_num_reaches_the_optimiser():
    """A phase whose gradient is NaN and +inf: with the option they become 0 and 1e5 (SGD at lr
    1e-5 moves the parameters by 0 and -1), without it the parameter becomes NaN."""
    import optax

    from gancomp_jax.methods._distil_common import FunctionModule
    from gancomp_jax.methods.base import NetworkSpec, OptimizerSpec, Phase
    from gancomp_jax.train.steps import make_phase_fn

    def loss(ctx):
        x = ctx.variables("X")["params"]["x"]
        # gradients: sqrt at -1 -> NaN, log at 0 -> +inf, identity -> 1
        return jnp.sqrt(x[0]) + jnp.log(x[1]) + x[2], {}

    spec = NetworkSpec("module", source="init", trainable=True, module=FunctionModule(lambda p: p, "X"),
                       init=lambda key: {"params": {"x": jnp.zeros(3)}})
    method = Method(networks={"X": spec}, optimizers={"X": OptimizerSpec(lr=1e-5)},
                    phases=[Phase("P", "X", loss)])
    txs = {"X": optax.sgd(1e-5)}
    x0 = jnp.array([-1.0, 0.0, 1.0])
    state = TrainState(step=jnp.int32(0), params={"X": {"params": {"x": x0}}}, opt={"X": txs["X"].init({"x": x0})},
                       ema={}, extra={}, key=jax.random.key_data(jax.random.key(0)))
    for flag, want in ((True, [-1.0, -1.0, 1.0 - 1e-5]), (False, None)):
        fn = make_phase_fn(method.phases[0], 0, method, {"X": spec.module}, txs, 1, nan_to_num=flag)
        new, _ = fn(state, {}, {"image": jnp.zeros((1, 1, 1, 1))})
        x = np.asarray(new.params["X"]["params"]["x"])
        if flag:
            np.testing.assert_allclose(x, want, rtol=1e-6)   # NaN -> 0, +inf -> 1e5 (1e5 · 1e-5 = 1)
        else:
            assert np.isnan(x[0])
