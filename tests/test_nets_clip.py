"""CLIP RN50 image encoder: parity with a plain-torch ModifiedResNet, and its weight files.

The torch reference below is written from OpenAI CLIP's / open_clip's published
architecture (3-conv stem, average-pool strides, attention pooling). Weights
are random. The real RN50 (widths 64..2048, 32 heads) is checked once at
64 px (2x2 tokens); the other tests use a narrower network of the same design
(width 16, blocks (2, 1, 1, 1), 8 heads of 64 channels) to stay fast.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from gancomp_jax.nets import clip_resnet  # noqa: E402
from gancomp_jax.nets.torchscript import load_torchscript_state_dict  # noqa: E402
from gancomp_jax.nets.weights import save_converted  # noqa: E402
from tolerances import assert_gradients_match  # noqa: E402

IMAGE = 64
SMALL = dict(layers=(2, 1, 1, 1), width=16, heads=8, output_dim=64)


# --------------------------------------------------------------------------- torch reference
class RefBottleneck(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4)),
            ]))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class RefAttentionPool(nn.Module):
    def __init__(self, spacial: int, dim: int, heads: int, out_dim: int):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(spacial**2 + 1, dim) / dim**0.5)
        self.k_proj, self.q_proj, self.v_proj = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.c_proj = nn.Linear(dim, out_dim)
        self.num_heads = heads

    def forward(self, x):
        x = x.flatten(2).permute(2, 0, 1)  # (HW)NC, as OpenAI's code
        x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
        x = x + self.positional_embedding[:, None, :].to(x.dtype)
        out, _ = F.multi_head_attention_forward(
            query=x[:1], key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
            q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
            in_proj_weight=None, in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
            bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0.0,
            out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
            use_separate_proj_weight=True, training=False, need_weights=False,
        )
        return out.squeeze(0)


class RefModifiedResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), output_dim=1024, heads=32, image_size=224, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = RefAttentionPool(image_size // 32, width * 32, heads, output_dim)

    def _make_layer(self, planes, blocks, stride=1):
        layers = [RefBottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * 4
        layers += [RefBottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.avgpool(F.relu(self.bn3(self.conv3(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class RefCLIP(nn.Module):
    """Enough of OpenAI's CLIP module for the archive layout: ``visual`` plus text-side tensors."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        self.token_embedding = nn.Embedding(10, 8)
        self.positional_embedding = nn.Parameter(torch.randn(4, 8))
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.register_buffer("input_resolution", torch.tensor(IMAGE))

    def forward(self, image):
        return self.visual(image)


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
                p.copy_(0.5 + torch.rand(p.shape, generator=gen))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=gen))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return model.eval()


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return _randomize(RefModifiedResNet(image_size=IMAGE, **SMALL))


@pytest.fixture(scope="module")
def converted(reference):
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    return clip_resnet.convert_clip_rn50_state(state, "<reference>", architecture="custom")


@pytest.fixture(scope="module")
def jitted(converted):
    _, config = converted
    return jax.jit(lambda v, x: clip_resnet.clip_rn50_apply(v, x, config=config))


@pytest.fixture(scope="module")
def real_rn50():
    """The released RN50 architecture (real widths, blocks and heads), random weights, 64 px."""
    torch.manual_seed(1)
    model = _randomize(RefModifiedResNet(image_size=IMAGE), seed=1)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    return model, *clip_resnet.convert_clip_rn50_state(state, "<reference>")


def _images(n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, IMAGE, IMAGE, 3)).astype(np.float32)


def _torch_out(model, x_nhwc):
    with torch.no_grad():
        return model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)).numpy()


def _assert_close(got, want, rel=1e-4):
    scale = float(np.abs(want).max())
    err = float(np.abs(np.asarray(got) - want).max())
    assert err <= rel * scale, f"max abs error {err:.3g} > {rel} x output scale {scale:.3g}"


# --------------------------------------------------------------------------- parity
def test_real_rn50_forward_matches_torch(real_rn50):
    model, variables, config = real_rn50
    assert config == dict(layers=[3, 4, 6, 3], width=64, heads=32, output_dim=1024, image_size=IMAGE)
    x = _images()
    out = jax.jit(lambda v, img: clip_resnet.clip_rn50_apply(v, img, config=config))(variables, jnp.asarray(x))
    assert out.shape == (2, 1024) and out.dtype == jnp.float32
    _assert_close(out, _torch_out(model, x))


@pytest.mark.slow
def test_real_rn50_gradient_matches_torch(real_rn50):
    _check_gradient(*real_rn50)


def test_forward_matches_torch(reference, converted, jitted):
    variables, config = converted
    assert config == dict(layers=[2, 1, 1, 1], width=16, heads=8, output_dim=64, image_size=IMAGE)
    x = _images()
    _assert_close(jitted(variables, jnp.asarray(x)), _torch_out(reference, x))


def test_gradient_wrt_image_matches_torch(reference, converted):
    _check_gradient(reference, *converted)


def _check_gradient(reference, variables, config):
    x = _images(n=1, seed=2)
    w = np.random.default_rng(3).normal(size=(1, config["output_dim"])).astype(np.float32)
    grad = jax.jit(jax.grad(lambda img: jnp.sum(clip_resnet.clip_rn50_apply(variables, img, config=config) * w)))(
        jnp.asarray(x)
    )
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    (reference(xt) * torch.from_numpy(w)).sum().backward()
    assert_gradients_match(grad, xt.grad.permute(0, 2, 3, 1).numpy())  # tests/tolerances.py


def test_bfloat16_runs_close(converted, jitted):
    variables, config = converted
    x = jnp.asarray(_images(n=1))
    ref = jitted(variables, x)
    out = jax.jit(lambda v, img: clip_resnet.clip_rn50_apply(v, img, config=config, dtype=jnp.bfloat16))(
        variables, x.astype(jnp.bfloat16)
    )
    assert out.dtype == jnp.float32
    cos = float(jnp.sum(out * ref) / (jnp.linalg.norm(out) * jnp.linalg.norm(ref)))
    assert cos > 0.98


# --------------------------------------------------------------------------- file layouts
def _half_rounded(reference):
    """A float32 copy of ``reference`` whose weights are rounded to float16 (as RN50.pt stores them)."""
    model = RefModifiedResNet(image_size=IMAGE, **SMALL)
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in reference.state_dict().items()})
    return model.eval()


@pytest.fixture(scope="module")
def rn50_archive(tmp_path_factory, reference):
    """A TorchScript archive laid out like OpenAI's RN50.pt (traced CLIP module, float16 weights)."""
    path = tmp_path_factory.mktemp("clip") / "RN50.pt"
    clip = RefCLIP(_half_rounded(reference)).eval()
    traced = torch.jit.trace(clip, torch.zeros(1, 3, IMAGE, IMAGE))
    traced.half()
    traced.save(str(path))
    return path


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_archive_layout(rn50_archive):
    names = zipfile.ZipFile(rn50_archive).namelist()
    assert any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)
    data = zipfile.ZipFile(rn50_archive).read(next(n for n in names if n.endswith("/data.pkl")))
    assert b"__torch__" in data
    state = load_torchscript_state_dict(rn50_archive)
    assert state["visual.conv1.weight"].dtype == np.float16
    assert "visual.layer1.0.downsample.0.weight" in state and "token_embedding.weight" in state


def test_load_openai_torchscript_archive(rn50_archive, reference, converted, jitted):
    net = clip_resnet.load_clip_rn50(rn50_archive, architecture="custom")
    x = _images()
    _assert_close(jitted(net.params, jnp.asarray(x)), _torch_out(_half_rounded(reference), x))


def _timm_name(key: str) -> str:
    """OpenAI visual name -> timm resnet50_clip name (written independently of the loader)."""
    parts = key.split(".")
    if parts[0] in ("conv1", "conv2", "conv3"):
        return f"stem.{parts[0]}.conv.{parts[1]}"
    if parts[0] in ("bn1", "bn2", "bn3"):
        return f"stem.conv{parts[0][2]}.bn.{parts[1]}"
    if parts[0].startswith("layer"):
        stage, block, layer = int(parts[0][5]) - 1, parts[1], parts[2]
        if layer == "downsample":
            return f"stages.{stage}.{block}.shortcut.conv.{'conv' if parts[3] == '0' else 'bn'}.{parts[4]}"
        idx = layer[-1]
        kind = {"1": "conv1_1x1", "2": "conv2_kxk", "3": "conv3_1x1"}[idx]
        return f"stages.{stage}.{block}.{kind}.{'conv' if layer.startswith('conv') else 'bn'}.{parts[3]}"
    head = {"positional_embedding": "pos_embed", "q_proj": "q", "k_proj": "k", "v_proj": "v", "c_proj": "proj"}
    return "head." + ".".join(head.get(p, p) for p in parts[1:])


@pytest.mark.parametrize("layout", ["open_clip_safetensors", "timm_safetensors", "torch_zip"])
def test_load_other_layouts(layout, tmp_path, reference, jitted):
    from safetensors.numpy import save_file

    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    if layout == "open_clip_safetensors":
        path = tmp_path / "open_clip_model.safetensors"
        save_file({**{f"visual.{k}": v for k, v in state.items()}, "logit_scale": np.ones((), np.float32)}, str(path))
    elif layout == "timm_safetensors":
        path = tmp_path / "model.safetensors"
        save_file({_timm_name(k): v for k, v in state.items() if "num_batches" not in k}, str(path))
    else:
        path = tmp_path / "rn50_visual.pth"
        torch.save(reference.state_dict(), path)
    net = clip_resnet.load_clip_rn50(path, architecture="custom")
    x = _images()
    _assert_close(jitted(net.params, jnp.asarray(x)), _torch_out(reference, x))


def test_converted_directory_roundtrip(rn50_archive, tmp_path, jitted):
    net = clip_resnet.load_clip_rn50(rn50_archive, architecture="custom")
    out_dir = save_converted(tmp_path / "clip_rn50", "clip_rn50", net.params, net.config, str(rn50_archive))
    again = clip_resnet.load_clip_rn50(out_dir, architecture="custom")
    assert again.config == net.config
    x = jnp.asarray(_images(n=1))
    np.testing.assert_array_equal(jitted(again.params, x), jitted(net.params, x))


# --------------------------------------------------------------------------- bad files
def _evil_pickle(marker) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps({"visual.conv1.weight": Evil()}, protocol=2)


# a __torch__ class called with arguments (REDUCE) instead of being built with NEWOBJ + BUILD
_STUB_CALL = b"\x80\x02c__torch__\nCLIP\nX\x04\x00\x00\x00argsq\x00\x85R."


@pytest.mark.parametrize("variant", ["os_system", "stub_called_with_args"])
def test_malicious_torchscript_archive_refused(rn50_archive, tmp_path, variant):
    marker = tmp_path / "pwned"
    evil = tmp_path / "RN50_evil.pt"
    payload = _evil_pickle(marker) if variant == "os_system" else _STUB_CALL
    with zipfile.ZipFile(rn50_archive) as src, zipfile.ZipFile(evil, "w") as dst:
        for name in src.namelist():
            data = payload if name.endswith("/data.pkl") else src.read(name)
            dst.writestr(name, data)
    with pytest.raises(ValueError, match="refusing to load .*RN50_evil.pt"):
        clip_resnet.load_clip_rn50(evil)
    assert not marker.exists()


def test_malicious_torch_zip_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"visual.conv1.weight": Evil()}, path)
    with pytest.raises(ValueError, match="refus"):
        clip_resnet.load_clip_rn50(path)
    assert not marker.exists()


def test_missing_and_wrong_files(tmp_path, reference):
    with pytest.raises(FileNotFoundError, match="CLIP RN50"):
        clip_resnet.load_clip_rn50(tmp_path / "RN50.pt")
    state = {f"visual.{k}": v for k, v in reference.state_dict().items()}
    state["visual.attnpool.c_proj.bias"] = torch.zeros(7)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"attnpool\.c_proj\.bias.*shape \(7,\).*\(64,\)"):
        clip_resnet.load_clip_rn50(tmp_path / "bad.pth", architecture="custom")
    del state["visual.layer1.1.conv2.weight"]
    state["visual.attnpool.c_proj.bias"] = torch.zeros(64)
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"layer1\.1\.conv2\.weight"):
        clip_resnet.load_clip_rn50(tmp_path / "missing.pth", architecture="custom")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="CLIP RN50"):
        clip_resnet.load_clip_rn50(tmp_path / "junk.safetensors")
