"""CLIP ViT, DINO ViT and DINOv2 from Hugging Face directories: parity with transformers' torch models.

Directories are written by ``save_pretrained`` of small random-init configs (the
real architectures with fewer/narrower layers); the loaders read them offline.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
# The reference models need no torchvision; a torchvision wheel that does not match our torch
# (its import fails) would otherwise break transformers' lazy imports of the CLIP/ViT modules.
import transformers.utils.import_utils as _hf_import_utils  # noqa: E402

_hf_import_utils._torchvision_available = False

from gancomp_jax.nets import vit  # noqa: E402
from gancomp_jax.nets.weights import save_converted  # noqa: E402

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)


def _randomize(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 or "position" in name or "token" in name or "embedding" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _clip_full():
    cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50),
        vision_config=VISION, projection_dim=24)
    model = _randomize(transformers.CLIPModel(cfg))
    return model, lambda m, x, interp: m.get_image_features(pixel_values=x, interpolate_pos_encoding=interp)


def _clip_vision():
    cfg = transformers.CLIPVisionConfig(**VISION, projection_dim=20)
    model = _randomize(transformers.CLIPVisionModelWithProjection(cfg))
    return model, lambda m, x, interp: m(pixel_values=x, interpolate_pos_encoding=interp).image_embeds


def _dino_vit():
    model = _randomize(transformers.ViTModel(transformers.ViTConfig(**VISION), add_pooling_layer=True))
    return model, lambda m, x, interp: m(pixel_values=x, interpolate_pos_encoding=interp).last_hidden_state[:, 0]


def _dinov2(swiglu=False):
    cfg = transformers.Dinov2Config(**{**VISION, "mlp_ratio": 2, "layerscale_value": 0.7, "use_swiglu_ffn": swiglu})
    model = _randomize(transformers.Dinov2Model(cfg))
    return model, lambda m, x, interp: m(pixel_values=x).pooler_output


MODELS = {
    "clip_full": ("clip_vit", _clip_full),
    "clip_vision_projection": ("clip_vit", _clip_vision),
    "dino_vit": ("dino_vit", _dino_vit),
    "dinov2": ("dinov2", _dinov2),
    "dinov2_swiglu": ("dinov2", lambda: _dinov2(True)),
}


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """name -> (kind, torch model, reference fn, directory with config.json + model.safetensors)."""
    out = {}
    torch.manual_seed(0)
    for name, (kind, make) in MODELS.items():
        model, fn = make()
        directory = tmp_path_factory.mktemp(name)
        model.save_pretrained(directory)
        assert (directory / "model.safetensors").is_file()
        out[name] = (kind, model, fn, directory)
    return out


def _images(n=2, size=32, seed=1):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def _torch_out(model, fn, x, interp=False):
    with torch.no_grad():
        return fn(model, torch.from_numpy(x).permute(0, 3, 1, 2), interp).numpy()


def _assert_close(got, want, rel=1e-4):
    scale = float(np.abs(want).max())
    err = float(np.abs(np.asarray(got) - want).max())
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel} x output scale {scale:.3g}"


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", [32, 48])
def test_forward_matches_transformers_torch(hf_dirs, name, size):
    """At the checkpoint's size and at another (position embeddings resized as torch interpolates them)."""
    kind, model, fn, directory = hf_dirs[name]
    net = vit.load_vit(kind, directory, image_size=size)
    assert net.config["image_size"] == size and net.config["checkpoint_image_size"] == 32
    x = _images(size=size)
    out = jax.jit(net.apply)(net.params, jnp.asarray(x))
    assert out.dtype == jnp.float32
    _assert_close(out, _torch_out(model, fn, x, interp=size != 32))


@pytest.mark.parametrize("name", ["clip_full", "dino_vit", "dinov2"])
def test_gradient_wrt_image_matches_torch(hf_dirs, name):
    kind, model, fn, directory = hf_dirs[name]
    net = vit.load_vit(kind, directory, image_size=32)
    x = _images(n=1, seed=2)
    dim = _torch_out(model, fn, x).shape[-1]
    w = np.random.default_rng(3).normal(size=(1, dim)).astype(np.float32)
    grad = jax.jit(jax.grad(lambda img: jnp.sum(net.apply(net.params, img) * w)))(jnp.asarray(x))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    (fn(model, xt, False) * torch.from_numpy(w)).sum().backward()
    _assert_close(grad, xt.grad.permute(0, 2, 3, 1).numpy(), rel=1e-3)


def test_default_image_size(hf_dirs):
    """CLIP / DINO ViTs keep the checkpoint's size; DINOv2 (published at 518 px) defaults to 224."""
    assert vit.load_vit("dino_vit", hf_dirs["dino_vit"][3]).config["image_size"] == 32
    assert vit.load_vit("clip_vit", hf_dirs["clip_full"][3]).config["image_size"] == 32
    net = vit.load_vit("dinov2", hf_dirs["dinov2"][3])
    assert net.config["image_size"] == 224
    assert net.params["params"]["inner"]["embeddings"]["position_embeddings"].shape == (1, 28 * 28 + 1, 32)


def test_bicubic_matrix_matches_torch():
    grid = np.random.default_rng(0).normal(size=(1, 3, 7, 7)).astype(np.float32)
    for out in (3, 5, 16):
        want = torch.nn.functional.interpolate(torch.from_numpy(grid), size=(out, out), mode="bicubic",
                                               align_corners=False).numpy()
        m = vit.bicubic_matrix(7, out)
        got = np.einsum("oh,nchw,pw->ncop", m, grid, m)
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_bfloat16(hf_dirs):
    kind, model, fn, directory = hf_dirs["dinov2"]
    net = vit.load_vit(kind, directory, image_size=32, dtype=jnp.bfloat16)
    out = jax.jit(net.apply)(net.params, jnp.asarray(_images(), jnp.bfloat16))
    want = _torch_out(model, fn, _images())
    assert out.dtype == jnp.float32
    cos = np.sum(np.asarray(out) * want) / (np.linalg.norm(out) * np.linalg.norm(want))
    assert cos > 0.98


def test_pytorch_bin_only_directory(hf_dirs, tmp_path):
    """Only ``pytorch_model.bin``: read with the restricted unpickler (no torch.load)."""
    kind, model, fn, directory = hf_dirs["dino_vit"]
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    net = vit.load_vit(kind, tmp_path, image_size=32)
    x = _images()
    _assert_close(jax.jit(net.apply)(net.params, jnp.asarray(x)), _torch_out(model, fn, x))


def test_sharded_safetensors_and_prefixed_keys(hf_dirs, tmp_path):
    """A classification checkpoint (``dinov2.`` prefix) saved in shards."""
    kind, model, fn, _ = hf_dirs["dinov2"]
    clf = transformers.Dinov2ForImageClassification(model.config)
    clf.dinov2.load_state_dict(model.state_dict())
    clf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    net = vit.load_vit(kind, tmp_path, image_size=32)
    x = _images()
    _assert_close(jax.jit(net.apply)(net.params, jnp.asarray(x)), _torch_out(model, fn, x))


@pytest.mark.slow  # ~60 s: transformers initialises the whole Flax CLIP eagerly
def test_flax_msgpack_directory(hf_dirs, tmp_path):
    """``flax_model.msgpack`` written by transformers' own FlaxCLIPModel."""
    kind, model, fn, directory = hf_dirs["clip_full"]
    flax_model = transformers.FlaxCLIPModel.from_pretrained(directory, from_pt=True, local_files_only=True)
    flax_model.save_pretrained(tmp_path)
    assert (tmp_path / "flax_model.msgpack").is_file() and not (tmp_path / "model.safetensors").exists()
    net = vit.load_vit(kind, tmp_path, image_size=48)
    x = _images(size=48)
    _assert_close(jax.jit(net.apply)(net.params, jnp.asarray(x)), _torch_out(model, fn, x, interp=True))


def test_converted_directory_roundtrip(hf_dirs, tmp_path):
    kind, model, fn, directory = hf_dirs["clip_full"]
    net = vit.load_vit(kind, directory, image_size=32)
    out_dir = save_converted(tmp_path / "conv", kind, net.params, net.config, str(directory))
    again = vit.load_vit(kind, out_dir)
    x = jnp.asarray(_images())
    np.testing.assert_array_equal(jax.jit(again.apply)(again.params, x), jax.jit(net.apply)(net.params, x))
    with pytest.raises(ValueError, match="converted for 32 px"):
        vit.load_vit(kind, out_dir, image_size=48)


def test_malicious_pytorch_bin_refused(hf_dirs, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    _, _, _, directory = hf_dirs["dino_vit"]
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    torch.save({"embeddings.cls_token": Evil()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="refusing"):
        vit.load_vit("dino_vit", tmp_path)
    assert not marker.exists()


def test_bad_directories(hf_dirs, tmp_path):
    with pytest.raises(FileNotFoundError, match="DINOv2"):
        vit.load_vit("dinov2", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="config.json"):
        vit.load_vit("dinov2", tmp_path)
    _, _, _, directory = hf_dirs["dino_vit"]
    with pytest.raises(ValueError, match="model_type 'vit'.*'dinov2'"):
        vit.load_vit("dinov2", directory)
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="no weights"):
        vit.load_vit("dino_vit", tmp_path)
    from safetensors.numpy import load_file, save_file

    state = load_file(str(directory / "model.safetensors"))
    del state["encoder.layer.1.attention.attention.key.weight"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"encoder\.layer\.1\.attention\.attention\.key\.weight"):
        vit.load_vit("dino_vit", tmp_path)
    cfg = json.loads((directory / "config.json").read_text())
    with pytest.raises(ValueError, match="multiple of the patch size"):
        vit.load_vit("dino_vit", directory, image_size=30)
    assert cfg["model_type"] == "vit"
