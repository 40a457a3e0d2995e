"""BiSeNet face parser in Flax vs a plain-torch model of face-parsing.PyTorch's published architecture.

face-parsing.PyTorch is not a package, so its ``model.py`` / ``resnet.py`` architecture is
written here in plain torch (same module names, so the state dict has ``79999_iter.pth``'s keys;
the ResNet-18 ImageNet download in its ``init_weight`` is left out). Random weights are saved as
a legacy ``torch.save`` state dict, as the 2019 file is.
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
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from gancomp_jax import nets  # noqa: E402
from gancomp_jax.nets import bisenet  # noqa: E402
from tolerances import assert_gradients_match  # noqa: E402


# --------------------------------------------------------------------------- torch reference
class ConvBNReLU(nn.Module):
    def __init__(self, cin, cout, ks=3, stride=1, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class BiSeNetOutput(nn.Module):
    def __init__(self, cin, mid, n_classes):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(F.avg_pool2d(feat, feat.size()[2:]))))
        return feat * atten


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        r = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + r)


class Resnet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)

        def layer(cin, cout, stride):
            return nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))

        self.layer1, self.layer2 = layer(64, 64, 1), layer(64, 128, 2)
        self.layer3, self.layer4 = layer(128, 256, 2), layer(256, 512, 2)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = Resnet18()
        self.arm16 = AttentionRefinementModule(256, 128)
        self.arm32 = AttentionRefinementModule(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x):
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(F.avg_pool2d(feat32, feat32.size()[2:]))
        avg_up = F.interpolate(avg, feat32.shape[2:], mode="nearest")
        feat32_up = self.conv_head32(F.interpolate(self.arm32(feat32) + avg_up, feat16.shape[2:], mode="nearest"))
        feat16_up = self.conv_head16(F.interpolate(self.arm16(feat16) + feat32_up, feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, fsp, fcp):
        feat = self.convblk(torch.cat([fsp, fcp], 1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(F.avg_pool2d(feat, feat.size()[2:])))))
        return feat * atten + feat


class TorchBiSeNet(nn.Module):
    def __init__(self, n_classes=19):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusionModule(256, 256)
        self.conv_out = BiSeNetOutput(256, 256, n_classes)
        self.conv_out16 = BiSeNetOutput(128, 64, n_classes)
        self.conv_out32 = BiSeNetOutput(128, 64, n_classes)

    def forward(self, x):
        size = x.shape[2:]
        feat8, cp8, cp16 = self.cp(x)
        outs = (self.conv_out(self.ffm(feat8, cp8)), self.conv_out16(cp8), self.conv_out32(cp16))
        return tuple(F.interpolate(o, size, mode="bilinear", align_corners=True) for o in outs)


def _randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (2.0 / p[0].numel()) ** 0.5)
            elif name.endswith("weight"):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


@pytest.fixture(scope="module")
def model_and_file(tmp_path_factory):
    torch.manual_seed(0)
    model = TorchBiSeNet(19)
    _randomize(model, 0)
    model.eval()
    path = tmp_path_factory.mktemp("bisenet") / "79999_iter.pth"
    torch.save(model.state_dict(), path, _use_new_zipfile_serialization=False)
    return model, path


def _nchw(x):
    return torch.tensor(np.asarray(x).transpose(0, 3, 1, 2))


def test_parity_logits_and_gradient(model_and_file):
    model, path = model_and_file
    net = nets.load("bisenet", path, preprocess="none", aux=True)
    x = np.random.default_rng(1).standard_normal((2, 100, 84, 3)).astype(np.float32)  # odd sizes: nearest/pool edges
    xt = _nchw(x).requires_grad_(True)
    refs = model(xt)
    r = torch.tensor(np.random.default_rng(2).standard_normal(refs[0].shape).astype(np.float32))
    (refs[0] * r).sum().backward()
    grad_t = xt.grad.numpy().transpose(0, 2, 3, 1)

    outs = jax.jit(net.apply)(net.params, jnp.asarray(x))
    for got, ref in zip(outs, refs):
        ref = ref.detach().numpy().transpose(0, 2, 3, 1)
        assert got.shape == ref.shape == (2, 100, 84, 19)
        assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))
    main = nets.load("bisenet", path, preprocess="none")  # aux=False: main head only
    rj = jnp.asarray(r.numpy().transpose(0, 2, 3, 1))
    grad = jax.jit(jax.grad(lambda im: jnp.sum(main.apply(main.params, im) * rj)))(jnp.asarray(x))
    assert_gradients_match(grad, grad_t)  # error analysis: tests/tolerances.py


def _torch_mask(model, images, parse_size, quantize, resize_back):
    """CAGC's mask pipeline in torch (clamp, optional uint8 rounding, resize, ImageNet norm, argmax, rule, resize back)."""
    x = _nchw(images).clamp(-1, 1).add(1).div(2)
    if quantize:
        x = torch.floor((x * 255 + 0.5).clamp(0, 255)) / 255
    x = F.interpolate(x, (parse_size, parse_size), mode="bilinear", align_corners=False)
    x = (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        labels = model(x)[0].argmax(1)
    mask = ((labels > 0) & (labels != 16)).float()[:, None]
    h, w = images.shape[1:3]
    if resize_back == "nearest":
        mask = F.interpolate(mask, (h, w), mode="nearest-exact") > 0.5
    else:
        mask = F.interpolate(mask, (h, w), mode="bilinear", align_corners=False) > 0.5
    return mask[:, 0].numpy()


@pytest.mark.parametrize("quantize,resize_back", [(True, "nearest"), (False, "bilinear")])
def test_face_mask_matches_cagc_rule(model_and_file, quantize, resize_back):
    model, path = model_and_file
    images = np.random.default_rng(3).uniform(-1, 1, (2, 48, 48, 3)).astype(np.float32)
    variables = nets.load("bisenet", path).params
    got = jax.jit(lambda v, im: bisenet.face_mask(v, im, resize_back=resize_back, quantize=quantize,
                                                   parse_size=64))(variables, jnp.asarray(images))
    ref = _torch_mask(model, images, 64, quantize, resize_back)
    assert got.dtype == jnp.bool_ and got.shape == (2, 48, 48)
    assert np.mean(np.asarray(got) != ref) <= 2e-3  # argmax ties aside, identical
    assert 0 < np.mean(ref) < 1


def test_prune_mask_integration(model_and_file):
    """gancomp_jax.prune.masks finds the parser through gancomp_jax.nets.make_face_mask_fn."""
    _, path = model_and_file
    from gancomp_jax.prune.masks import get_mask_fn

    fn = get_mask_fn("face_parser", path)
    mask = fn(np.zeros((1, 32, 32, 3), np.float32))
    assert mask.shape == (1, 32, 32) and mask.dtype == bool


def test_convert_prefix_and_errors(model_and_file, tmp_path):
    model, path = model_and_file
    out = tmp_path / "bisenet_conv"
    res = subprocess.run([sys.executable, "tools/convert_feature_net.py", "bisenet", str(path), str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a, b = nets.load("bisenet", path), nets.load("face_parser", out)
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    # DataParallel checkpoints: 'module.' prefix, zip format
    torch.save({"module." + k: v for k, v in model.state_dict().items()}, tmp_path / "dp.pth")
    c = nets.load("bisenet", tmp_path / "dp.pth")
    jax.tree.map(np.testing.assert_array_equal, a.params, c.params)
    # safetensors copy of the same state dict
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "parser.safetensors"))
    d = nets.load("bisenet", tmp_path / "parser.safetensors")
    jax.tree.map(np.testing.assert_array_equal, a.params, d.params)
    state = model.state_dict()
    state["cp.arm16.conv_atten.weight"] = state["cp.arm16.conv_atten.weight"][:64]
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="BiSeNet face parser: .*'cp.arm16.conv_atten.weight' has shape "
                                         "\\(64, 128, 1, 1\\), expected \\(128, 128, 1, 1\\)"):
        nets.load("bisenet", tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError, match="BiSeNet face parser: weight file .* does not exist"):
        nets.make_face_mask_fn(tmp_path / "missing.pth")
    res = subprocess.run([sys.executable, "tools/convert_feature_net.py", "bisenet", str(tmp_path / "bad.pth"),
                          str(tmp_path / "x")], capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("error: BiSeNet face parser") and not (tmp_path / "x").exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/gancomp_bisenet_pwned",))


def test_malicious_file_refused(tmp_path):
    marker = "/tmp/gancomp_bisenet_pwned"
    for i, kw in enumerate([{}, {"_use_new_zipfile_serialization": False}]):
        evil = tmp_path / f"79999_iter_{i}.pth"
        torch.save({"cp.resnet.conv1.weight": _Evil()}, evil, **kw)
        with pytest.raises(ValueError, match="BiSeNet face parser: refusing to load"):
            nets.load("bisenet", evil)
    with open(tmp_path / "p.pkl", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ValueError, match="refusing to load"):
        nets.make_face_mask_fn(tmp_path / "p.pkl")
    assert not os.path.exists(marker)
