"""Embedders (network + named preprocessing) for DiME: preprocessing parity with torch, the API contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from gancomp_jax.nets import embedders  # noqa: E402
from gancomp_jax.nets.embedders import CLIP_MEAN, CLIP_STD, load_embedder, preprocess_images  # noqa: E402
from gancomp_jax.nets.preprocess import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def _images(n=2, size=256, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, size, size, 3)).astype(np.float32)


def _nchw(x):
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def _nhwc(t):
    return t.permute(0, 2, 3, 1).numpy()


def test_released_clip_input_is_bilinear_resize_without_normalisation():
    """NICKEL & DiME: F.interpolate(x, size=224, mode='bilinear', align_corners=False) of the [-1, 1] image."""
    x = _images()
    want = _nhwc(F.interpolate(_nchw(x), size=224, mode="bilinear", align_corners=False))
    np.testing.assert_allclose(preprocess_images(jnp.asarray(x), "nd_clip", 224), want, atol=1e-6)
    assert embedders.RELEASED_PREPROCESS["clip_rn50"] == "nd_clip"


def test_released_dino_input_is_the_raw_image():
    x = jnp.asarray(_images(n=1))
    assert preprocess_images(x, "nd_dino", 224) is x
    assert embedders.RELEASED_PREPROCESS["dino_rn50"] == "nd_dino"


@pytest.mark.parametrize("mode, torch_mode, mean, std", [
    ("clip_224", "bicubic", CLIP_MEAN, CLIP_STD),
    ("imagenet_224", "bilinear", IMAGENET_MEAN, IMAGENET_STD),
])
def test_canonical_inputs(mode, torch_mode, mean, std):
    x = _images()
    x01 = F.interpolate(_nchw((x + 1) / 2), size=224, mode=torch_mode, align_corners=False, antialias=True)
    want = _nhwc((x01 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])
    np.testing.assert_allclose(preprocess_images(jnp.asarray(x), mode, 224), want, atol=2e-5)
    same = _images(size=224)
    np.testing.assert_allclose(preprocess_images(jnp.asarray(same), mode, 224),
                               ((same + 1) / 2 - np.array(mean)) / np.array(std), atol=1e-6)


def test_non_square_is_centre_cropped():
    x = _images(n=1, size=64)[:, :, 8:56]  # 64 x 48
    got = preprocess_images(jnp.asarray(x), "imagenet_224", 48)
    want = preprocess_images(jnp.asarray(x[:, 8:56]), "imagenet_224", 48)
    np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def dino_file(tmp_path_factory):
    from test_nets_dino import SMALL, RefResNet, _randomize

    torch.manual_seed(0)
    model = _randomize(RefResNet(**SMALL))
    path = tmp_path_factory.mktemp("dino") / "dino_resnet50_pretrain.pth"
    torch.save(model.state_dict(), path)
    return model, path


def test_load_embedder_released_vs_canonical(dino_file):
    model, path = dino_file
    x = _images(n=2, size=64)
    params, released = load_embedder("dino_rn50", path, preprocess="released", architecture="custom")
    _, canonical = load_embedder("dino_rn50", path, preprocess="canonical", architecture="custom")
    with torch.no_grad():
        want_released = model(_nchw(x)).numpy()
        x01 = F.interpolate(_nchw((x + 1) / 2), size=224, mode="bilinear", align_corners=False, antialias=True)
        norm = (x01 - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        want_canonical = model(norm).numpy()
    got = jax.jit(released)(params, jnp.asarray(x))
    assert got.shape == (2, 256) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want_released, atol=1e-4 * np.abs(want_released).max())
    np.testing.assert_allclose(jax.jit(canonical)(params, jnp.asarray(x)), want_canonical,
                               atol=1e-4 * np.abs(want_canonical).max())
    grad = jax.jit(jax.grad(lambda img: jnp.sum(canonical(params, img) ** 2)))(jnp.asarray(x))
    assert grad.shape == x.shape and bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0


def test_bfloat16_images(dino_file):
    _, path = dino_file
    params, apply_fn = load_embedder("dino_rn50", path, preprocess="released", dtype=jnp.bfloat16, architecture="custom")
    out = jax.jit(apply_fn)(params, jnp.asarray(_images(n=1, size=64), jnp.bfloat16))
    assert out.dtype == jnp.float32 and out.shape == (1, 256)


def test_bad_arguments(dino_file, tmp_path):
    _, path = dino_file
    with pytest.raises(ValueError, match="unknown embedder kind 'clip'"):
        load_embedder("clip", path)
    with pytest.raises(ValueError, match="unknown preprocess 'imagenet'"):
        load_embedder("dino_rn50", path, preprocess="imagenet")
    with pytest.raises(ValueError, match="ViT kinds only"):
        load_embedder("dino_rn50", path, image_size=256)
    with pytest.raises(FileNotFoundError, match="CLIP RN50"):
        load_embedder("clip_rn50", tmp_path / "RN50.pt")
