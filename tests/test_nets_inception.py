"""Inception-v3 (FID) in Flax vs pytorch-fid on random weights in pytorch-fid's file layout.

pytorch-fid imports torchvision, which cannot be installed beside this torch, so a plain-torch
stand-in (tests/fake_torchvision.py) provides torchvision's Inception3 building blocks; the FID
blocks (FIDInceptionA/C/E_1/E_2, including E_2's max pool) and InceptionV3 are pytorch-fid's own.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
import fake_torchvision  # noqa: E402

fake_torchvision.install()
pfi = pytest.importorskip("pytorch_fid.inception")

from gancomp_jax import nets  # noqa: E402
from gancomp_jax.nets import inception  # noqa: E402
from gancomp_jax.nets.preprocess import fid_inception_input  # noqa: E402
from tolerances import assert_gradients_match  # noqa: E402


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif name.endswith("bn.weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def _fid_model_without_weights():
    """pytorch-fid's fid_inception_v3 architecture (same patching), weights not loaded."""
    m = fake_torchvision.inception_v3(num_classes=1008, aux_logits=False, init_weights=False)
    m.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    m.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    m.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    m.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    m.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    m.Mixed_7b = pfi.FIDInceptionE_1(1280)
    m.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return m


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    """Random weights written as pytorch-fid's pt_inception-2015-12-05-6726825d.pth (legacy torch.save)."""
    torch.manual_seed(0)
    m = _fid_model_without_weights()
    _randomize(m, 0)
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(m.state_dict(), path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def reference(weight_file):
    """pytorch-fid's own InceptionV3 and fid_inception_v3, loading our file instead of downloading."""
    state = torch.load(weight_file, weights_only=True)
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda url, progress=True: state
    try:
        blocks = pfi.InceptionV3([3], resize_input=False, normalize_input=False).eval()
        classifier = pfi.fid_inception_v3().eval()
    finally:
        pfi.load_state_dict_from_url = orig
    return blocks, classifier


def test_parity_pool_logits_and_gradient(weight_file, reference):
    blocks, classifier = reference
    net = nets.load("inception_fid", weight_file, preprocess="none")
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(2, 3, 96, 83)).astype(np.float32)  # odd width exercises the pools
    xt = torch.tensor(x, requires_grad=True)
    pool_t = blocks(xt)[0].flatten(1)
    logits_t = classifier(xt)
    r = torch.tensor(rng.standard_normal((2, 2048)).astype(np.float32))
    (pool_t * r).sum().backward()
    grad_t = xt.grad.numpy().transpose(0, 2, 3, 1)

    x_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
    out = jax.jit(net.apply)(net.params, x_nhwc)
    pool_t, logits_t = pool_t.detach().numpy(), logits_t.detach().numpy()
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert np.max(np.abs(out["pool"] - pool_t)) <= 1e-4 * np.max(np.abs(pool_t))
    assert np.max(np.abs(out["logits"] - logits_t)) <= 1e-4 * np.max(np.abs(logits_t))

    grad = jax.jit(jax.grad(lambda im: jnp.sum(net.apply(net.params, im)["pool"] * jnp.asarray(r.numpy()))))(x_nhwc)
    assert_gradients_match(grad, grad_t)  # error analysis: tests/tolerances.py


def test_pytorch_fid_preprocessing_matches():
    """Resize to 299 (bilinear, align_corners=False) and 2x-1, as InceptionV3(resize_input, normalize_input)."""
    rng = np.random.default_rng(2)
    for shape in [(2, 3, 64, 64), (1, 3, 300, 411)]:
        x = rng.uniform(0, 1, size=shape).astype(np.float32)
        ref = 2 * torch.nn.functional.interpolate(torch.tensor(x), size=(299, 299), mode="bilinear",
                                                  align_corners=False) - 1
        got = fid_inception_input(jnp.asarray(x.transpose(0, 2, 3, 1)))
        np.testing.assert_allclose(np.asarray(got), ref.numpy().transpose(0, 2, 3, 1), atol=5e-6)


def test_convert_and_load_converted_dir(weight_file, tmp_path):
    out = tmp_path / "inception_conv"
    res = subprocess.run([sys.executable, "tools/convert_feature_net.py", "inception_fid", str(weight_file), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a = nets.load("inception_fid", weight_file, preprocess="none")
    b = nets.load("inception_fid", out, preprocess="none")
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    with pytest.raises(ValueError, match="holds a converted 'inception_fid' network, expected 'lpips_vgg'"):
        nets.load("lpips_vgg", out)


def test_bfloat16_runs(weight_file, reference):
    blocks, _ = reference
    net = nets.load("inception_fid", weight_file, preprocess="none", dtype=jnp.bfloat16)
    x = np.random.default_rng(4).uniform(-1, 1, (1, 75, 75, 3)).astype(np.float32)
    with torch.no_grad():
        ref = blocks(torch.tensor(x.transpose(0, 3, 1, 2)))[0].flatten(1).numpy()
    got = jax.jit(net.apply)(net.params, jnp.asarray(x))["pool"]
    assert got.dtype == jnp.float32
    assert np.max(np.abs(got - ref)) <= 0.1 * np.max(np.abs(ref))


def test_errors(weight_file, tmp_path):
    with pytest.raises(FileNotFoundError, match="Inception-v3 \\(FID\\).*does not exist"):
        nets.load("inception_fid", tmp_path / "missing.pth")
    state = torch.load(weight_file, weights_only=True)
    del state["Mixed_6c.branch7x7dbl_3.bn.running_var"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(ValueError, match="no tensor 'Mixed_6c.branch7x7dbl_3.bn.running_var'.*expected shape \\(160,\\)"):
        nets.load("inception_fid", tmp_path / "cut.pth")
    state = torch.load(weight_file, weights_only=True)
    state["fc.weight"] = state["fc.weight"][:1000]
    torch.save(state, tmp_path / "imagenet.pth")
    with pytest.raises(ValueError, match="'fc.weight' has shape \\(1000, 2048\\), expected \\(1008, 2048\\)"):
        nets.load("inception_fid", tmp_path / "imagenet.pth")


class _Evil:
    def __reduce__(self):
        return (__import__("os").system, ("touch /tmp/gancomp_inception_pwned",))


def test_malicious_file_refused(tmp_path):
    marker = "/tmp/gancomp_inception_pwned"
    evil = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "payload": _Evil()}, evil)
    with pytest.raises(ValueError, match="Inception-v3 \\(FID\\): refusing to load.*system"):
        nets.load("inception_fid", evil)
    import os

    assert not os.path.exists(marker)
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ValueError, match="refusing"):
        nets.load("inception_fid", tmp_path / "plain.pkl")
    assert not os.path.exists(marker)
