"""VGG16 + LPIPS v0.1 in Flax vs the lpips package, with lpips' own shipped v0.1 heads.

lpips imports torchvision (not importable here), so tests/fake_torchvision.py supplies a
plain-torch ``vgg16`` with torchvision's layer indices; its "pretrained" weights are our random
trunk, which is also written as torchvision's ``vgg16-397923af.pth`` for our loader. The heads
are the real ``lpips/weights/v0.1/vgg.pth`` of the installed lpips 0.1.4 wheel, read by both.
"""

from __future__ import annotations

import os
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
lpips = pytest.importorskip("lpips")

from gancomp_jax import nets  # noqa: E402
from gancomp_jax.nets import vgg_lpips  # noqa: E402
from tolerances import assert_gradients_match  # noqa: E402


def _vgg_state(seed: int = 0) -> dict:
    """Random torchvision VGG16 ``features.*`` (the 120M-parameter classifier is left out)."""
    torch.manual_seed(seed)
    layers, cin = [], 3
    for v in fake_torchvision.VGG16_CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
        else:
            layers += [torch.nn.Conv2d(cin, v, 3, padding=1), torch.nn.ReLU(True)]
            cin = v
    features = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for name, p in features.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape))
            else:  # He-normal keeps activations O(1) through the 13 layers
                p.copy_(torch.randn(p.shape) * (2.0 / p[0].numel()) ** 0.5)
    return {f"features.{k}": v.clone() for k, v in features.state_dict().items()}


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    """Random VGG16 features written as torchvision's vgg16-397923af.pth (legacy torch.save)."""
    state = _vgg_state()
    path = tmp_path_factory.mktemp("vgg") / "vgg16-397923af.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path, state


@pytest.fixture(scope="module")
def reference(trunk):
    _, state = trunk
    fake_torchvision.VGG16_STATE = state
    try:
        model = lpips.LPIPS(net="vgg", version="0.1", verbose=False).eval()
    finally:
        fake_torchvision.VGG16_STATE = None
    return model


def test_shipped_heads_reproduce_lpips(trunk, reference):
    path, _ = trunk
    net = nets.load("lpips_vgg", path)  # heads: lpips/weights/v0.1/vgg.pth from the installed wheel
    assert net.config["lin_source"].endswith(os.path.join("lpips", "weights", "v0.1", "vgg.pth"))
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-1, 1, (3, 3, 48, 40)).astype(np.float32)
    x1 = np.clip(x0 + 0.3 * rng.standard_normal(x0.shape), -1, 1).astype(np.float32)
    t0, t1 = torch.tensor(x0, requires_grad=True), torch.tensor(x1)
    ref = reference(t0, t1).flatten()
    ref.sum().backward()
    grad_t = t0.grad.numpy().transpose(0, 2, 3, 1)
    ref = ref.detach().numpy()

    j0, j1 = jnp.asarray(x0.transpose(0, 2, 3, 1)), jnp.asarray(x1.transpose(0, 2, 3, 1))
    got = jax.jit(net.apply)(net.params, j0, j1)
    assert got.shape == (3,)
    assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref)), (got, ref)
    grad = jax.jit(jax.grad(lambda a: jnp.sum(net.apply(net.params, a, j1))))(j0)
    assert_gradients_match(grad, grad_t)  # error analysis: tests/tolerances.py
    # identical images: distance 0
    assert np.allclose(jax.jit(net.apply)(net.params, j0, j0), 0.0)


def test_per_layer_and_vgg_taps(trunk, reference):
    path, _ = trunk
    net = nets.load("lpips_vgg", path)
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    x1 = rng.uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    ref_total, ref_layers = reference(torch.tensor(x0), torch.tensor(x1), retPerLayer=True)
    total, layers = net.apply(net.params, jnp.asarray(x0.transpose(0, 2, 3, 1)),
                              jnp.asarray(x1.transpose(0, 2, 3, 1)), per_layer=True)
    for got, ref in zip(layers, ref_layers):
        ref = ref.detach().numpy().reshape(-1)
        assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))
    # bfloat16 compute, float32 result
    half = nets.load("lpips_vgg", path, dtype=jnp.bfloat16)
    d16 = half(jnp.asarray(x0.transpose(0, 2, 3, 1)), jnp.asarray(x1.transpose(0, 2, 3, 1)))
    assert d16.dtype == jnp.float32 and np.max(np.abs(d16 - total)) <= 0.05 * np.max(np.abs(total))
    # the VGG taps themselves
    vgg = nets.load("vgg16", path, preprocess="none")
    assert vgg.config["classifier"] is False
    feats = vgg(jnp.asarray(x0.transpose(0, 2, 3, 1)))
    taps = reference.net(torch.tensor(x0))
    for name in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"):
        ref = getattr(taps, name).detach().numpy().transpose(0, 2, 3, 1)
        assert np.max(np.abs(feats[name] - ref)) <= 1e-4 * np.max(np.abs(ref)), name


def test_convert_lpips(trunk, tmp_path):
    path, _ = trunk
    out = tmp_path / "lpips_conv"
    res = subprocess.run([sys.executable, "tools/convert_feature_net.py", "lpips_vgg", str(path), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a, b = nets.load("lpips_vgg", path), nets.load("lpips_vgg", out)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    res = subprocess.run([sys.executable, "tools/convert_feature_net.py", "lpips_vgg", str(path), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("error:") and "already exists" in res.stderr


def test_heads_errors(trunk, tmp_path):
    path, _ = trunk
    heads = torch.load(vgg_lpips.find_lpips_heads(), weights_only=True, map_location="cpu")
    heads["lin2.model.1.weight"] = heads["lin2.model.1.weight"][:, :128]
    torch.save(heads, tmp_path / "bad.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="LPIPS v0.1 \\(VGG\\).*'lin2.model.1.weight' has shape \\(1, 128, 1, 1\\), "
                                         "expected \\(1, 256, 1, 1\\)"):
        nets.load("lpips_vgg", path, lin_path=tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="LPIPS v0.1 \\(VGG\\).*does not exist"):
        nets.load("lpips_vgg", tmp_path / "nope.pth")
    # the heads file given as the trunk
    with pytest.raises(ValueError, match="vgg.pth has no tensor 'features.0.bias' \\(and 25 more\\), expected shape \\(64,\\)"):
        nets.load("lpips_vgg", vgg_lpips.find_lpips_heads())


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/gancomp_lpips_pwned",))


def test_malicious_heads_refused(trunk, tmp_path):
    path, _ = trunk
    marker = "/tmp/gancomp_lpips_pwned"
    evil = tmp_path / "vgg.pth"
    torch.save({"lin0.model.1.weight": _Evil()}, evil, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="LPIPS v0.1 \\(VGG\\): refusing to load"):
        nets.load("lpips_vgg", path, lin_path=evil)
    torch.save({"features.0.weight": _Evil()}, tmp_path / "vgg16.pth")
    with pytest.raises(ValueError, match="refusing to load"):
        nets.load("vgg16", tmp_path / "vgg16.pth")
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ValueError, match="refusing to load"):
        nets.load("lpips_vgg", tmp_path / "p.pkl")
    assert not os.path.exists(marker)


@pytest.mark.slow
def test_vgg16_fc7_full_classifier(tmp_path):
    """torchvision VGG16 with its 120M-parameter classifier: fc7 [N, 4096] and logits (slow: ~0.5 GB file)."""
    torch.manual_seed(3)
    model = fake_torchvision.VGG().eval()
    path = tmp_path / "vgg16-397923af.pth"
    torch.save(model.state_dict(), path)
    net = nets.load("vgg16", path)
    x = np.random.default_rng(3).uniform(-1, 1, (2, 64, 48, 3)).astype(np.float32)
    # reference: the same preprocessing in torch, then features / classifier
    xt = torch.tensor(x.transpose(0, 3, 1, 2))
    xt = torch.nn.functional.interpolate((xt + 1) / 2, size=(224, 224), mode="bilinear", align_corners=False)
    xt = (xt - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        h = torch.flatten(model.avgpool(model.features(xt)), 1)
        fc7 = model.classifier[:5](h).numpy()
        logits = model.classifier(h).numpy()
    out = jax.jit(net.apply)(net.params, jnp.asarray(x))
    assert out["fc7"].shape == (2, 4096)
    assert np.max(np.abs(out["fc7"] - fc7)) <= 1e-4 * np.max(np.abs(fc7))
    assert np.max(np.abs(out["logits"] - logits)) <= 1e-4 * np.max(np.abs(logits))
