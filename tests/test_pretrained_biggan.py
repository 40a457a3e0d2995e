"""pytorch-pretrained-biggan (BigGAN-deep) files written by torch.save from random weights in its
real layout (``pytorch_model.bin`` state dict + ``config.json``): import with the architecture
inferred, eval-mode images equal to a torch restatement of its generator (≤ 1 uint8 level through
the generate job), and hostile / inconsistent files refused."""

import importlib.util
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gancomp_jax import checkpoints  # noqa: E402
from gancomp_jax.convert import UnrecognizedFileError, UnsupportedNetworkError, import_torch  # noqa: E402
from gancomp_jax.convert.pretrained_biggan import from_variables  # noqa: E402
from gancomp_jax.models.biggan.pretrained import PretrainedBigGANConfig, stats_weights  # noqa: E402
from tests import pretrained_biggan_torch_reference as ref  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# 32 px, ch 8: blocks 128->128->64(up)->32(up)->16->8(up), attention before block 3 (width 32, 16 px)
CFG = {"output_dim": 32, "z_dim": 16, "class_embed_dim": 16, "channel_width": 8, "num_classes": 5,
       "layers": [[False, 16, 16], [True, 16, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]],
       "attention_layer_position": 3, "eps": 1e-4, "n_stats": 11}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("pretrained_biggan")
    model = ref.BigGANDeep(CFG)
    ref.randomize(model, 0)
    torch.save(model.state_dict(), d / "pytorch_model.bin")
    (d / "config.json").write_text(json.dumps(CFG, indent=2))
    return d, model


def _torch_images(model, z, y, truncation):
    with torch.no_grad():
        onehot = torch.nn.functional.one_hot(torch.as_tensor(y), CFG["num_classes"]).float()
        return model(torch.from_numpy(z), onehot, truncation).numpy().transpose(0, 2, 3, 1)


def test_inferred_config_equals_the_built_one_and_names_round_trip(weights):
    d, model = weights
    result = import_torch(d)
    net = result["G_ema"]
    assert net.kind == "pretrained_biggan_generator"
    want = PretrainedBigGANConfig(resolution=32, z_dim=16, channel_width=8, n_classes=5,
                                  layers=tuple(tuple(x) for x in CFG["layers"]), attention_layer_position=3,
                                  eps=1e-4, n_stats=11)
    assert net.config == want
    assert PretrainedBigGANConfig.from_dict(json.loads(net.config.to_json())) == want
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    back = from_variables(net.variables)
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k], err_msg=k)
    # the .bin file itself (config.json beside it) is detected too
    assert import_torch(d / "pytorch_model.bin")["G_ema"].config == want


def test_legacy_torch_save_stream(weights, tmp_path):
    """The released files predate torch 1.6: the legacy (non-zip) torch.save stream reads too."""
    _, model = weights
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin", _use_new_zipfile_serialization=False)
    (tmp_path / "config.json").write_text(json.dumps(CFG))
    nets = checkpoints.load_any(tmp_path / "pytorch_model.bin")  # what every job's MODEL argument reads
    assert nets["G_ema"].kind == "pretrained_biggan_generator" and nets["G_ema"].config.n_stats == 11


def test_images_equal_the_torch_generator(weights):
    """Float images within 1e-4 of torch's (measured ~5e-7) for tabulated (1.0) and interpolated
    (0.43: 0.3 s[4] + 0.7 s[5]) standing statistics, several classes."""
    import jax

    from gancomp_jax.models.biggan.pretrained import PretrainedBigGANGenerator

    d, model = weights
    net = import_torch(d)["G_ema"]
    G = PretrainedBigGANGenerator(net.config)
    y = np.array([0, 4, 2])
    for truncation in (1.0, 0.43):
        z = (np.random.RandomState(1).randn(3, 16) * truncation).astype(np.float32)
        got = np.asarray(jax.jit(lambda v, z, y: G.apply(v, z, y, truncation=truncation))(net.variables, z, y))
        want = _torch_images(model, z, y, truncation)
        assert want.std() > 0.05  # a non-degenerate image
        np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"truncation {truncation}")


def test_stats_interpolation_is_the_released_one():
    assert stats_weights(1.0, 51) == (50, 1.0, 0.0)
    i, wa, wb = stats_weights(0.43, 11)  # 4.3 -> i 4, the released code puts 0.3 on s[4]
    assert i == 4 and wa == pytest.approx(0.3) and wb == pytest.approx(0.7)
    i, wa, wb = stats_weights(0.43, 11, "linear")
    assert i == 4 and wa == pytest.approx(0.7) and wb == pytest.approx(0.3)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            stats_weights(bad, 51)


def test_generate_job_matches_torch_within_one_level(weights, tmp_path):
    import ml_collections  # noqa: F401
    from PIL import Image

    from gancomp_jax.jobs.generate_biggan import biggan_latent
    from gancomp_jax.main import run_job
    from tests.test_generate import load_config

    d, model = weights
    out = tmp_path / "model"
    checkpoints.save_model(out, dict(import_torch(d)))
    cfg = load_config("generate")
    cfg.checkpoint, cfg.seeds, cfg.class_idx, cfg.truncation_psi, cfg.batch_size = str(out), "0-2", 3, 0.5, 2
    paths = run_job(cfg, str(tmp_path / "gen"))
    assert [p.name for p in paths] == ["seed0000.png", "seed0001.png", "seed0002.png"]
    z = np.stack([biggan_latent(s, 16, 0.5) for s in (0, 1, 2)])
    assert np.abs(z).max() <= 1.0 + 1e-6  # truncnorm(-2, 2) * 0.5
    want = _torch_images(model, z, np.full(3, 3), 0.5)
    want = np.clip(want * 127.5 + 128, 0, 255).astype(np.uint8)
    got = np.stack([np.asarray(Image.open(p)) for p in paths])
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def _save_hostile(path, marker):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    sd = {"embeddings.weight": torch.zeros(16, 5), "generator.gen_z.weight_orig": torch.zeros(2048, 32),
          "generator.conv_to_rgb.weight_orig": torch.zeros(8, 8, 3, 3),
          "generator.bn.running_means": torch.zeros(11, 8), "evil": Evil()}
    with open(path, "wb") as f:
        pickle.dump(sd, f)


def test_hostile_and_inconsistent_files_are_refused(weights, tmp_path):
    d, _ = weights
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    evil.mkdir()
    _save_hostile(evil / "pytorch_model.bin", marker)
    (evil / "config.json").write_text(json.dumps(CFG))
    with pytest.raises(UnrecognizedFileError):
        import_torch(evil)
    with pytest.raises(UnrecognizedFileError):
        import_torch(evil / "pytorch_model.bin")
    assert not marker.exists()
    # CLI: one error line, exit 2, nothing written
    spec = importlib.util.spec_from_file_location("convert_pt_weights", REPO / "tools" / "convert_pt_weights.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main([str(evil), str(tmp_path / "out")]) == 2
    assert not marker.exists() and not (tmp_path / "out").exists()

    sd = torch.load(d / "pytorch_model.bin")

    def variant(name, cfg=CFG, **change):
        v = tmp_path / name
        v.mkdir()
        bad = dict(sd)
        for k, t in change.items():
            if t is None:
                del bad[k.replace("__", ".")]
            else:
                bad[k.replace("__", ".")] = t
        torch.save(bad, v / "pytorch_model.bin")
        if cfg is not None:
            (v / "config.json").write_text(json.dumps(cfg))
        return v

    with pytest.raises(UnrecognizedFileError, match="config.json"):
        import_torch(variant("no_config", cfg=None))
    with pytest.raises(UnsupportedNetworkError, match="layers"):
        import_torch(variant("bad_layers", cfg=dict(CFG, layers=CFG["layers"][:-1])))
    with pytest.raises(UnsupportedNetworkError, match="upsampling layers give"):
        import_torch(variant("bad_res", cfg=dict(CFG, output_dim=64)))
    with pytest.raises(UnsupportedNetworkError, match="num_classes"):
        import_torch(variant("bad_classes", cfg=dict(CFG, num_classes=7)))
    with pytest.raises(UnsupportedNetworkError, match="weight_v"):
        import_torch(variant("missing", generator__layers__2__conv_1__weight_v=None))
    nan = torch.full_like(sd["generator.bn.running_vars"], float("nan"))
    with pytest.raises(UnsupportedNetworkError, match="non-finite"):
        import_torch(variant("nan", generator__bn__running_vars=nan))


def test_macs_equal_torch_flop_counter_and_profile_prints_them(weights, tmp_path, capsys):
    """Our analytic MACs = torch's FlopCounterMode / 2 less the one-hot class-embedding matmul
    (a lookup for us); tools/profile.py reports them for an imported model."""
    from torch.utils.flop_counter import FlopCounterMode

    from gancomp_jax.models.biggan.pretrained import generator_macs

    d, model = weights
    net = import_torch(d)["G_ema"]
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(torch.zeros(1, 16), torch.nn.functional.one_hot(torch.tensor([1]), 5).float(), 0.5)
    assert fc.get_total_flops() // 2 - 5 * 16 == generator_macs(net.config)
    out = tmp_path / "model"
    checkpoints.save_model(out, dict(import_torch(d)))
    spec = importlib.util.spec_from_file_location("gancomp_profile", REPO / "tools" / "profile.py")
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)
    assert prof.main([str(out)]) == 0
    assert f"{generator_macs(net.config) / 1e6:,.1f} M MACs/image" in capsys.readouterr().out
