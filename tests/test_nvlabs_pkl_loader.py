"""NVlabs network pickles: realistic fakes made with torch, loaded without torch_utils/dnnlib."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gancomp_jax.io.nvlabs_pkl import (  # noqa: E402
    NetworkRecord,
    get_network,
    load_nvlabs_pkl,
)
from gancomp_jax.io.torch_pickle import (  # noqa: E402
    CheckpointFormatError,
    UnsafePickleError,
)

FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
PROTOCOLS = (2, 4, pickle.HIGHEST_PROTOCOL)


# --------------------------------------------------------------------------- fake NVlabs code


class FakeNVlabs:
    """Stand-ins for NVlabs' ``torch_utils.persistence`` and ``dnnlib`` registered in sys.modules.

    Persistent networks pickle exactly like NVlabs' ``persistent_class``
    decorator: ``_reconstruct_persistent_obj(meta)`` with the module ``__dict__``
    as ``meta['state']`` and the bare class name.
    """

    def __init__(self, module_src: str) -> None:
        self.module_src = module_src
        self.modules = {name: types.ModuleType(name) for name in FAKE_MODULES}

        def _reconstruct_persistent_obj(meta: dict) -> None:
            raise AssertionError("never called while pickling")

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        self.modules["torch_utils.persistence"]._reconstruct_persistent_obj = (
            _reconstruct_persistent_obj
        )

        class EasyDict(dict):
            def __getattr__(self, name: str) -> Any:
                try:
                    return self[name]
                except KeyError:
                    raise AttributeError(name) from None

            def __setattr__(self, name: str, value: Any) -> None:
                self[name] = value

        EasyDict.__module__ = "dnnlib.util"
        EasyDict.__qualname__ = "EasyDict"
        self.modules["dnnlib.util"].EasyDict = EasyDict
        self.modules["dnnlib"].EasyDict = EasyDict
        self.EasyDict = EasyDict
        self.reconstruct = _reconstruct_persistent_obj
        self._classes: dict[str, type] = {}

    def install(self) -> None:
        sys.modules.update(self.modules)

    def uninstall(self) -> None:
        for name in FAKE_MODULES:
            sys.modules.pop(name, None)

    def persistent(self, class_name: str) -> type[torch.nn.Module]:
        """A torch.nn.Module subclass that pickles like an NVlabs persistent class."""
        if class_name not in self._classes:
            fake = self

            def __reduce__(module: torch.nn.Module) -> tuple:
                fields = list(object.__reduce__(module))
                meta = dict(
                    type="class",
                    version=6,
                    module_src=fake.module_src,
                    class_name=class_name,
                    state=fields[2],
                )
                return fake.reconstruct, (meta,)

            self._classes[class_name] = type(
                class_name.rsplit(".", 1)[-1], (torch.nn.Module,), {"__reduce__": __reduce__}
            )
        return self._classes[class_name]

    def net(self, class_name: str, *init_args: Any, **init_kwargs: Any) -> torch.nn.Module:
        module = self.persistent(class_name)()
        module._init_args = copy.deepcopy(init_args)
        module._init_kwargs = copy.deepcopy(init_kwargs)
        return module


def fc(fake: FakeNVlabs, gen: torch.Generator, in_f: int, out_f: int) -> torch.nn.Module:
    layer = fake.net("FullyConnectedLayer", in_f, out_f, lr_multiplier=0.01)
    layer.weight = torch.nn.Parameter(torch.randn(out_f, in_f, generator=gen))
    layer.bias = torch.nn.Parameter(torch.randn(out_f, generator=gen))
    layer.activation = "lrelu"
    layer.weight_gain = 0.01 / np.sqrt(in_f)
    return layer


def synthesis_layer(
    fake: FakeNVlabs, gen: torch.Generator, cin: int, cout: int, res: int, up: int
) -> torch.nn.Module:
    layer = fake.net("SynthesisLayer", in_channels=cin, out_channels=cout, resolution=res, up=up)
    layer.affine = fc(fake, gen, 8, cin)
    layer.weight = torch.nn.Parameter(torch.randn(cout, cin, 3, 3, generator=gen))
    layer.register_buffer("noise_const", torch.randn(res, res, generator=gen))
    layer.noise_strength = torch.nn.Parameter(torch.randn([], generator=gen))
    layer.bias = torch.nn.Parameter(torch.randn(cout, generator=gen))
    layer.register_buffer("resample_filter", torch.ones(4, 4) / 16)
    layer.register_buffer("scratch", torch.zeros(2), persistent=False)
    layer.up = up
    return layer


def make_generator(fake: FakeNVlabs, seed: int, class_name: str = "Generator") -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    E = fake.EasyDict
    G = fake.net(
        class_name,
        z_dim=8,
        c_dim=0,
        w_dim=8,
        img_resolution=8,
        img_channels=3,
        mapping_kwargs=E(num_layers=2),
        synthesis_kwargs=E(channel_base=64, channel_max=16, num_fp16_res=0, conv_clamp=None),
    )
    G.z_dim, G.w_dim, G.img_resolution = 8, 8, 8
    synthesis = fake.net("SynthesisNetwork", w_dim=8, img_resolution=8, img_channels=3)
    b4 = fake.net("SynthesisBlock", 0, 16, w_dim=8, resolution=4, architecture="skip")
    b4.const = torch.nn.Parameter(torch.randn(16, 4, 4, generator=gen))
    b4.conv1 = synthesis_layer(fake, gen, 16, 16, 4, 1)
    b4.torgb = fake.net("ToRGBLayer", 16, 3, w_dim=8)
    b4.torgb.affine = fc(fake, gen, 8, 16)
    b4.torgb.weight = torch.nn.Parameter(torch.randn(3, 16, 1, 1, generator=gen))
    b4.torgb.bias = torch.nn.Parameter(torch.zeros(3))
    b8 = fake.net("SynthesisBlock", 16, 8, w_dim=8, resolution=8, architecture="skip")
    b8.register_buffer("resample_filter", torch.ones(4, 4) / 16)
    b8.conv0 = synthesis_layer(fake, gen, 16, 8, 8, 2)
    b8.conv1 = synthesis_layer(fake, gen, 8, 8, 8, 1)
    b8.half_precision = torch.nn.Parameter(torch.randn(2, generator=gen).half())
    synthesis.b4, synthesis.b8 = b4, b8
    mapping = fake.net("MappingNetwork", z_dim=8, c_dim=0, w_dim=8, num_ws=6, num_layers=2)
    mapping.fc0 = fc(fake, gen, 8, 8)
    mapping.fc1 = fc(fake, gen, 8, 8)
    mapping.register_buffer("w_avg", torch.randn(8, generator=gen))
    G.synthesis, G.mapping = synthesis, mapping  # NVlabs order: synthesis first
    return G


def make_discriminator(fake: FakeNVlabs, seed: int) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    D = fake.net("Discriminator", c_dim=0, img_resolution=8, img_channels=3,
                 epilogue_kwargs=fake.EasyDict(mbstd_group_size=4))
    b8 = fake.net("DiscriminatorBlock", 0, 8, 16, resolution=8, architecture="resnet")
    b8.fromrgb = fake.net("Conv2dLayer", 3, 8, kernel_size=1)
    b8.fromrgb.weight = torch.nn.Parameter(torch.randn(8, 3, 1, 1, generator=gen))
    b8.fromrgb.bias = torch.nn.Parameter(torch.randn(8, generator=gen))
    b8.skip = fake.net("Conv2dLayer", 8, 16, kernel_size=1, bias=False)
    b8.skip.weight = torch.nn.Parameter(torch.randn(16, 8, 1, 1, generator=gen))
    b8.skip.bias = None  # NVlabs keeps a None parameter when bias=False
    b4 = fake.net("DiscriminatorEpilogue", 16, cmap_dim=0, resolution=4)
    b4.mbstd = fake.net("MinibatchStdLayer", group_size=4, num_channels=1)
    b4.fc = fc(fake, gen, 16 * 4 * 4, 16)
    b4.out = fc(fake, gen, 16, 1)
    D.b8, D.b4 = b8, b4
    return D


def torch_state_dict(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeNVlabs]:
    marker = tmp_path / "module_src_was_executed"
    source = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('exec ran')\n"
    fake = FakeNVlabs(source)
    fake.marker = marker  # type: ignore[attr-defined]
    fake.install()
    yield fake
    fake.uninstall()


def dump_without_fakes(fake: FakeNVlabs, obj: Any, path: Path, protocol: int) -> Path:
    """Pickle with the fake modules present, then remove them: the loader must not need them."""
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    fake.uninstall()
    return path


def snapshot(fake: FakeNVlabs) -> dict[str, Any]:
    return dict(
        G=make_generator(fake, 1),
        D=make_discriminator(fake, 2),
        G_ema=make_generator(fake, 3),
        augment_pipe=None,
        training_set_kwargs=fake.EasyDict(
            class_name="training.dataset.ImageFolderDataset", path="ffhq.zip", resolution=8,
            use_labels=False, max_size=70000, xflip=True,
        ),
    )


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_loads_networks_like_state_dict(fake: FakeNVlabs, tmp_path: Path, protocol: int) -> None:
    data = snapshot(fake)
    expected = {key: torch_state_dict(data[key]) for key in ("G", "D", "G_ema")}
    path = dump_without_fakes(fake, data, tmp_path / "network-snapshot.pkl", protocol)

    records = load_nvlabs_pkl(path)

    assert list(records) == ["G", "D", "G_ema"]
    for key, record in records.items():
        assert isinstance(record, NetworkRecord)
        assert list(record.state_dict) == list(expected[key])  # same names, same order
        for name, value in expected[key].items():
            actual = record.state_dict[name]
            assert type(actual) is np.ndarray and actual.dtype == value.dtype
            assert actual.shape == value.shape and actual.tobytes() == value.tobytes(), name
    assert not any(name in sys.modules for name in FAKE_MODULES)
    assert not fake.marker.exists()  # type: ignore[attr-defined]


def test_generator_names_and_metadata(fake: FakeNVlabs, tmp_path: Path) -> None:
    path = dump_without_fakes(fake, snapshot(fake), tmp_path / "net.pkl", 4)
    G = get_network(load_nvlabs_pkl(path), "G_ema")

    assert G.class_name == "Generator"
    names = list(G.state_dict)
    assert names[0] == "synthesis.b4.const"
    for name in (
        "mapping.fc0.weight", "mapping.fc1.bias", "mapping.w_avg",
        "synthesis.b4.conv1.affine.bias", "synthesis.b8.conv0.noise_const",
        "synthesis.b8.conv0.resample_filter", "synthesis.b8.resample_filter",
        "synthesis.b4.torgb.weight", "synthesis.b8.conv1.noise_strength",
    ):
        assert name in G.state_dict, name
    assert "synthesis.b8.conv0.scratch" not in G.state_dict  # non-persistent buffer
    assert G.state_dict["synthesis.b8.conv0.weight"].shape == (8, 16, 3, 3)
    assert G.state_dict["synthesis.b8.conv1.noise_strength"].shape == ()
    assert G.state_dict["synthesis.b8.half_precision"].dtype == np.float16

    assert G.init_kwargs == {
        "z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 2},
        "synthesis_kwargs": {
            "channel_base": 64, "channel_max": 16, "num_fp16_res": 0, "conv_clamp": None,
        },
    }
    assert type(G.init_kwargs["mapping_kwargs"]) is dict
    assert G.module_classes[""] == "Generator"
    assert G.module_classes["synthesis.b8.conv0"] == "SynthesisLayer"
    assert G.module_classes["mapping.fc0"] == "FullyConnectedLayer"
    source_hash = hashlib.sha256(fake.module_src.encode()).hexdigest()
    assert G.module_src_sha256 == source_hash
    assert G.extra["training_set_kwargs"]["path"] == "ffhq.zip"
    assert type(G.extra["training_set_kwargs"]) is dict
    assert G.extra["augment_pipe"] is None


def test_discriminator_skips_none_parameters(fake: FakeNVlabs, tmp_path: Path) -> None:
    path = dump_without_fakes(fake, snapshot(fake), tmp_path / "net.pkl", 4)
    D = load_nvlabs_pkl(path)["D"]
    assert D.class_name == "Discriminator"
    assert "b8.skip.weight" in D.state_dict and "b8.skip.bias" not in D.state_dict
    assert D.state_dict["b4.fc.weight"].shape == (16, 256)
    assert D.init_kwargs["epilogue_kwargs"] == {"mbstd_group_size": 4}


def test_module_src_is_never_executed(fake: FakeNVlabs, tmp_path: Path) -> None:
    exec_check = {}
    exec(fake.module_src, exec_check)  # sanity: running the source would create the marker
    assert fake.marker.exists()  # type: ignore[attr-defined]
    fake.marker.unlink()  # type: ignore[attr-defined]

    path = dump_without_fakes(fake, {"G": make_generator(fake, 0)}, tmp_path / "g.pkl", 4)
    records = load_nvlabs_pkl(path)
    assert list(records) == ["G"]
    assert not fake.marker.exists()  # type: ignore[attr-defined]


def test_augment_pipe_summarised(fake: FakeNVlabs, tmp_path: Path) -> None:
    pipe = fake.net("AugmentPipe", xflip=1, rotate90=1)
    pipe.register_buffer("p", torch.zeros([]))
    data = {"G_ema": make_generator(fake, 0), "augment_pipe": pipe, "progress": {"kimg": 5}}
    path = dump_without_fakes(fake, data, tmp_path / "g.pkl", 4)
    record = load_nvlabs_pkl(path)["G_ema"]
    assert record.extra == {"augment_pipe": "AugmentPipe", "progress": {"kimg": 5}}


def test_torch_container_modules_are_state_only(fake: FakeNVlabs, tmp_path: Path) -> None:
    G = make_generator(fake, 0)
    G.extras = torch.nn.ModuleList([fc(fake, torch.Generator().manual_seed(5), 2, 2)])
    expected = torch_state_dict(G)
    path = dump_without_fakes(fake, {"G": G}, tmp_path / "g.pkl", 4)
    record = load_nvlabs_pkl(path)["G"]
    assert list(record.state_dict) == list(expected)
    assert record.module_classes["extras"] == "torch.nn.modules.container.ModuleList"
    np.testing.assert_array_equal(record.state_dict["extras.0.weight"], expected["extras.0.weight"])


def test_plain_torch_layer_is_refused(fake: FakeNVlabs, tmp_path: Path) -> None:
    G = make_generator(fake, 0)
    G.linear = torch.nn.Linear(2, 2)
    path = dump_without_fakes(fake, {"G": G}, tmp_path / "g.pkl", 4)
    with pytest.raises(UnsafePickleError, match="torch.nn.modules.linear.Linear"):
        load_nvlabs_pkl(path)


def test_malicious_value_in_state_is_refused(fake: FakeNVlabs, tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple:
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    G = make_generator(fake, 0)
    G.synthesis.b4._init_kwargs["evil"] = Exploit()
    path = dump_without_fakes(fake, {"G": G}, tmp_path / "g.pkl", 4)
    with pytest.raises(UnsafePickleError, match=r"'(os|posix)\.system'"):
        load_nvlabs_pkl(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("variant", ["dotted_class_name", "synthesis_input"])
def test_stylegan3_is_rejected(fake: FakeNVlabs, tmp_path: Path, variant: str) -> None:
    if variant == "dotted_class_name":
        G = make_generator(fake, 0, class_name="training.networks_stylegan3.Generator")
    else:  # what real StyleGAN3 pickles look like: bare names, a SynthesisInput layer
        G = make_generator(fake, 0)
        G.synthesis.input = fake.net("SynthesisInput", w_dim=8, channels=16, size=4)
        G.synthesis.input.freqs = torch.nn.Parameter(torch.randn(16, 2))
    data = {"G": G, "D": make_discriminator(fake, 1)}
    path = dump_without_fakes(fake, data, tmp_path / "sg3.pkl", 4)
    with pytest.raises(CheckpointFormatError, match="StyleGAN3 generators are not supported yet"):
        load_nvlabs_pkl(path)


def test_get_network_reports_what_is_there(fake: FakeNVlabs, tmp_path: Path) -> None:
    data = {"G": make_generator(fake, 0), "D": make_discriminator(fake, 1)}
    path = dump_without_fakes(fake, data, tmp_path / "g.pkl", 4)
    records = load_nvlabs_pkl(path)
    assert get_network(records, "G").class_name == "Generator"
    with pytest.raises(CheckpointFormatError) as info:
        get_network(records, "G_ema")
    assert "requested network 'G_ema' not in file (found: G, D)" in str(info.value)


def test_tensorflow_pickle_is_refused(tmp_path: Path) -> None:
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    modules = {name: types.ModuleType(name) for name in names}
    module = modules["dnnlib.tflib.network"]

    class Network:
        def __getstate__(self) -> dict:
            return {"version": 4, "name": "G"}

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"
    module.Network = Network
    sys.modules.update(modules)
    try:
        data = pickle.dumps((Network(), Network(), Network()))
    finally:
        for name in names:
            del sys.modules[name]
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    path.write_bytes(data)
    with pytest.raises(CheckpointFormatError, match="legacy.py") as info:
        load_nvlabs_pkl(path)
    assert "TensorFlow" in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ([1, 2, 3], "expected a dict"),
        ({"training_set_kwargs": {}}, "no networks found"),
        ({"G": {"mapping.fc0.weight": np.zeros(2)}}, "not an NVlabs persistent network"),
    ],
)
def test_structural_errors(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(content, protocol=4))
    with pytest.raises(CheckpointFormatError, match=message) as info:
        load_nvlabs_pkl(path)
    assert str(path) in str(info.value)


def test_not_a_pickle(tmp_path: Path) -> None:
    path = tmp_path / "x.pkl"
    path.write_bytes(b"\x00\x01 definitely not a pickle")
    with pytest.raises(CheckpointFormatError, match="x.pkl"):
        load_nvlabs_pkl(path)
