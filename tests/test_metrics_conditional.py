"""Class-conditional sampling in the metric runner and the ``class_accuracy_digits`` metric."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gancomp_jax.data import DigitsSource
from gancomp_jax.metrics import digits_classifier as dc
from gancomp_jax.metrics import registry
from gancomp_jax.metrics.runner import GeneratorSpec, LatentStream, generator_batches
from gancomp_jax.utils.images import to_uint8

# class k is drawn as a real digit of class MAP[k]: right for k < 5, wrong (k + 1) for k >= 5
MAP = np.array([0, 1, 2, 3, 4, 6, 7, 8, 9, 0])


def _templates() -> np.ndarray:
    """One real digit per class, float in [-1, 1], ``[10, 32, 32, 3]``."""
    src = DigitsSource(32)
    first = {}
    for i in range(len(src)):
        it = src[i]
        first.setdefault(int(it["label"]), it["image"])
        if len(first) == 10:
            break
    return np.stack([first[k] for k in range(10)]).astype(np.float32) / 127.5 - 1.0


class ClassOnlyG:
    """A conditional generator whose image depends only on the requested class (``MAP``)."""

    def __init__(self, biggan: bool):
        self.config = (SimpleNamespace(z_dim=3, n_classes=10) if biggan
                       else SimpleNamespace(z_dim=3, c_dim=10, img_resolution=32))
        self.biggan = biggan

    def apply(self, variables, z, c, **kw):
        if self.biggan:
            assert not kw  # BigGAN is called as G(z, y) (eval mode), no StyleGAN2 keywords
        t = variables["templates"][MAP]
        return jnp.einsum("nk,khwc->nhwc", c, t) + 0.0 * z[:, :1, None, None]


def _direct(templates, requested):
    """numpy / direct path: images of the mapped classes through the classifier's logits."""
    det = dc.digits_detector("logits")
    imgs = to_uint8(templates[MAP[requested]])
    logits = np.asarray(det.fn(det.params, jnp.asarray(imgs)))
    pred = logits.argmax(1)
    return float(np.mean(pred == requested)), pred


@pytest.mark.parametrize("biggan", [False, True])
def test_class_accuracy_metric_equals_direct_computation(biggan):
    templates = _templates()
    G = ClassOnlyG(biggan)
    spec = GeneratorSpec(G, {"templates": jnp.asarray(templates)}, class_sampling="uniform")
    opts = registry.MetricOptions(G=spec, num_gen=40, batch_size=16, seed=3, progress=False, cache=False)
    rec = registry.calc_metric("class_accuracy_digits", opts)
    requested = np.random.RandomState(3 + 1).randint(10, size=40)
    want, pred = _direct(templates, requested)
    assert rec["results"]["class_accuracy_digits"] == pytest.approx(want, abs=1e-12)
    # the classifier reads real digits right, so the wrongly mapped classes (>= 5) score 0
    assert np.array_equal(pred, MAP[requested])
    per = rec["results"]["class_accuracy_digits_per_class"]
    for k in range(10):
        if np.any(requested == k):
            assert per[k] == (1.0 if k < 5 else 0.0)
    assert 0.2 < want < 0.8


def test_requested_labels_reach_g():
    """balanced: class-major blocks across batches; dataset: the dataset's labels; uniform: seeded."""
    templates = _templates()
    spec = GeneratorSpec(ClassOnlyG(False), {"templates": jnp.asarray(templates)}, class_sampling="balanced")
    outs = list(generator_batches(spec, 30, batch_size=8, seed=0, progress=False, with_classes=True))
    imgs = np.concatenate([o for o, _ in outs])
    cls = np.concatenate([c for _, c in outs])
    np.testing.assert_array_equal(cls, np.repeat(np.arange(10), 3))
    np.testing.assert_array_equal(imgs, to_uint8(templates[MAP[cls]]))
    # dataset labels (all 7): every requested class is 7
    spec = GeneratorSpec(ClassOnlyG(True), {"templates": jnp.asarray(templates)}, labels=np.full(50, 7))
    (img, c), = list(generator_batches(spec, 5, batch_size=8, progress=False, with_classes=True))
    np.testing.assert_array_equal(c, np.full(5, 7))
    np.testing.assert_array_equal(img, to_uint8(templates[np.full(5, MAP[7])]))
    # uniform ignores dataset labels
    z, c = LatentStream(3, 10, seed=2, labels=np.full(50, 7), sampling="uniform").next(20)
    np.testing.assert_array_equal(c.argmax(1), np.random.RandomState(3).randint(10, size=20))
    with pytest.raises(ValueError, match="class_sampling"):
        GeneratorSpec(ClassOnlyG(False), {}, class_sampling="per_class")
    with pytest.raises(ValueError, match="truncation_psi=1"):
        GeneratorSpec(ClassOnlyG(True), {}, truncation_psi=0.5)


def test_class_accuracy_on_a_real_biggan_equals_numpy(tmp_path):
    """A tiny random BigGAN (10 classes): the metric equals G(z, y) → uint8 → classifier in numpy."""
    from gancomp_jax.models.biggan import BigGANGenerator, BigGANGeneratorConfig, init_generator

    cfg = BigGANGeneratorConfig.biggan(32, ch=2, attention="", dim_z=8, shared_dim=4, n_classes=10)
    G = BigGANGenerator(cfg)
    # the real variable tree (shapes by tracing init; compiling it costs ~20 s), random values
    rng = np.random.RandomState(0)
    v = jax.tree.map(lambda x: (rng.randn(*x.shape) * 0.3 + (1.0 if x.shape == (1,) else 0.0)).astype(np.float32),
                     jax.eval_shape(lambda k: init_generator(cfg, k), jax.random.key(0)))
    v["buffers"] = jax.tree_util.tree_map_with_path(
        lambda p, x: np.abs(x) + 0.5 if "stored_var" in jax.tree_util.keystr(p) else x, v["buffers"])
    spec = GeneratorSpec(G, v, class_sampling="balanced")
    opts = registry.MetricOptions(G=spec, num_gen=20, batch_size=20, seed=1, progress=False, cache=False)
    got = registry.calc_metric("class_accuracy_digits", opts)["results"]
    y = np.repeat(np.arange(10), 2)
    z = np.random.RandomState(1).randn(20, cfg.z_dim).astype(np.float32)
    imgs = to_uint8(np.asarray(jax.jit(G.apply)(v, z, y)))
    det = dc.digits_detector("logits")
    logits = np.asarray(det.fn(det.params, jnp.asarray(imgs)))
    assert got["class_accuracy_digits"] == pytest.approx(float(np.mean(logits.argmax(1) == y)), abs=1e-12)
    # the evaluate job on the saved model: same record (balanced classes, seed 1)
    import importlib.util
    import pathlib

    from gancomp_jax import checkpoints
    from gancomp_jax.jobs import evaluate
    from gancomp_jax.models.network import Network
    model = tmp_path / "model"
    checkpoints.save_model(model, {"G_ema": Network("biggan_generator", cfg, v)})
    path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "evaluate.py"
    mspec = importlib.util.spec_from_file_location("experiments_evaluate_c", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    config = module.get_config()
    config.model, config.metrics, config.num_gen, config.progress = str(model), "class_accuracy_digits", 20, False
    config.seed, config.batch_size, config.class_sampling = 1, 20, "balanced"
    rec = evaluate.run(config, str(tmp_path / "eval"))[0]
    assert rec["results"] == got
    spec3 = GeneratorSpec(SimpleNamespace(config=SimpleNamespace(z_dim=3, n_classes=3)), None)
    with pytest.raises(ValueError, match="10 digit classes"):
        registry.calc_metric("class_accuracy_digits", registry.MetricOptions(G=spec3, num_gen=4, progress=False))
