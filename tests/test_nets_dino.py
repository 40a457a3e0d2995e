"""DINO ResNet-50 (torchvision layout): parity with a plain-torch torchvision ResNet, and its files.

torchvision cannot be imported beside our torch, so the reference is torchvision's
ResNet-50 design (v1.5, stride on the 3x3 conv) written here in plain torch with
its key names. The real RN50 is checked once; other tests use a narrower
network of the same design to stay fast.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from gancomp_jax.nets import resnet  # noqa: E402
from gancomp_jax.nets.weights import save_converted  # noqa: E402
from tolerances import assert_gradients_match  # noqa: E402

SMALL = dict(layers=(1, 2, 1, 1), width=8)


class RefBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class RefResNet(nn.Module):
    """torchvision ``resnet50(num_classes=0)`` with ``fc = Identity`` as DINO / NICKEL & DiME build it."""

    def __init__(self, layers=(3, 4, 6, 3), width=64):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], 2)
        self.layer3 = self._make_layer(width * 4, layers[2], 2)
        self.layer4 = self._make_layer(width * 8, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Identity()

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes * 4))
        layers = [RefBottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * 4
        layers += [RefBottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _randomize(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_((0.5 + torch.rand(p.shape, generator=gen)) if name.endswith("weight")
                        else 0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return _randomize(RefResNet(**SMALL))


@pytest.fixture(scope="module")
def jitted():
    cache = {}

    def run(net, x):
        key = tuple(net.config["layers"]), net.config["width"]
        if key not in cache:
            cache[key] = jax.jit(net.apply)
        return cache[key](net.params, x)

    return run


def _images(n=2, size=40, seed=1):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def _torch_out(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()


def _assert_close(got, want, rel=1e-4):
    scale = float(np.abs(want).max())
    err = float(np.abs(np.asarray(got) - want).max())
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel} x output scale {scale:.3g}"


def _save(tmp_path, reference, name="dino_resnet50_pretrain.pth", wrap=None):
    state = reference.state_dict()
    if wrap == "teacher":  # a full DINO training checkpoint
        teacher = {f"module.backbone.{k}": v for k, v in state.items()}
        teacher["module.head.mlp.0.weight"] = torch.zeros(3, 5)
        state = {"student": {"module.backbone.conv1.weight": torch.zeros(1)}, "teacher": teacher, "epoch": 7}
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_real_rn50_forward_matches_torch(tmp_path, jitted):
    torch.manual_seed(1)
    model = _randomize(RefResNet(), seed=1)
    net = resnet.load_dino_rn50(_save(tmp_path, model))
    assert net.config == dict(layers=[3, 4, 6, 3], width=64)
    x = _images(size=64)
    out = jitted(net, jnp.asarray(x))
    assert out.shape == (2, 2048) and out.dtype == jnp.float32
    _assert_close(out, _torch_out(model, x))


@pytest.mark.parametrize("wrap", [None, "teacher"])
def test_forward_matches_torch(tmp_path, reference, jitted, wrap):
    net = resnet.load_dino_rn50(_save(tmp_path, reference, wrap=wrap), architecture="custom")
    x = _images()
    _assert_close(jitted(net, jnp.asarray(x)), _torch_out(reference, x))


def test_any_input_size(tmp_path, reference, jitted):
    net = resnet.load_dino_rn50(_save(tmp_path, reference), architecture="custom")
    x = _images(n=1, size=37, seed=4)
    _assert_close(jax.jit(net.apply)(net.params, jnp.asarray(x)), _torch_out(reference, x))


def test_gradient_wrt_image_matches_torch(tmp_path, reference):
    net = resnet.load_dino_rn50(_save(tmp_path, reference), architecture="custom")
    x = _images(n=1, seed=2)
    w = np.random.default_rng(3).normal(size=(1, 256)).astype(np.float32)
    grad = jax.jit(jax.grad(lambda img: jnp.sum(net.apply(net.params, img) * w)))(jnp.asarray(x))
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    (reference(xt) * torch.from_numpy(w)).sum().backward()
    assert_gradients_match(grad, xt.grad.permute(0, 2, 3, 1).numpy())  # tests/tolerances.py


def test_bfloat16(tmp_path, reference):
    net = resnet.load_dino_rn50(_save(tmp_path, reference), architecture="custom")
    x = jnp.asarray(_images(n=1))
    ref = jax.jit(net.apply)(net.params, x)
    out = jax.jit(lambda p, img: resnet.resnet_apply(p, img, config=net.config, dtype=jnp.bfloat16))(
        net.params, x.astype(jnp.bfloat16))
    assert out.dtype == jnp.float32
    assert float(jnp.sum(out * ref) / (jnp.linalg.norm(out) * jnp.linalg.norm(ref))) > 0.98


def test_safetensors_and_converted_dir(tmp_path, reference, jitted):
    from safetensors.numpy import save_file

    path = tmp_path / "dino_rn50.safetensors"
    save_file({k: v.numpy() for k, v in reference.state_dict().items()}, str(path))
    net = resnet.load_dino_rn50(path, architecture="custom")
    out_dir = save_converted(tmp_path / "conv", "dino_rn50", net.params, net.config, str(path))
    again = resnet.load_dino_rn50(out_dir, architecture="custom")
    x = jnp.asarray(_images(n=1))
    np.testing.assert_array_equal(jitted(again, x), jitted(net, x))
    _assert_close(jitted(again, x), _torch_out(reference, np.asarray(x)))


def test_malicious_file_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "dino_resnet50_pretrain.pth"
    torch.save({"conv1.weight": Evil()}, path)
    with pytest.raises(ValueError, match="refusing"):
        resnet.load_dino_rn50(path)
    assert not marker.exists()


def test_missing_and_wrong_files(tmp_path, reference):
    with pytest.raises(FileNotFoundError, match="DINO ResNet-50"):
        resnet.load_dino_rn50(tmp_path / "dino_resnet50_pretrain.pth")
    state = dict(reference.state_dict())
    del state["layer2.1.bn2.running_var"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"layer2\.1\.bn2\.running_var"):  # never left random (strict=False)
        resnet.load_dino_rn50(tmp_path / "partial.pth", architecture="custom")
    state = dict(reference.state_dict())
    state["layer4.0.conv3.weight"] = torch.zeros(3, 3, 1, 1)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"layer4\.0\.conv3\.weight.*\(3, 3, 1, 1\)"):
        resnet.load_dino_rn50(tmp_path / "shape.pth", architecture="custom")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="conv1.weight"):
        resnet.load_dino_rn50(tmp_path / "other.pth")
