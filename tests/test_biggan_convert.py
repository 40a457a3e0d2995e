"""BigGAN-PyTorch files (G.pth, G_ema.pth, D.pth, state_dict.pth) written by torch.save from
random weights: import (architecture inferred), hostile variants refused, export back, and
generation equal to BigGAN-PyTorch's ``G(z, G.shared(y))`` in eval mode."""

import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from flax import traverse_util  # noqa: E402

from gancomp_jax import checkpoints  # noqa: E402
from gancomp_jax.convert import UnrecognizedFileError, UnsupportedNetworkError, import_torch  # noqa: E402
from gancomp_jax.convert.biggan import infer_discriminator_config, infer_generator_config, to_variables  # noqa: E402
from gancomp_jax.models.biggan import BigGANDiscriminatorConfig, BigGANGeneratorConfig  # noqa: E402
from tests import biggan_torch_reference as ref  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GCFG = BigGANGeneratorConfig.biggan(32, ch=4, attention="16", dim_z=20, shared_dim=12, n_classes=7, sn_eps=1e-8)
DCFG = BigGANDiscriminatorConfig.biggan(32, ch=4, attention="16", n_classes=7, sn_eps=1e-8)
RUN_CONFIG = {"SN_eps": 1e-8, "BN_eps": 1e-5, "dim_z": 21, "hier": True, "G_attn": "16_64", "D_attn": "16",
              "resolution": 32, "n_classes": 7, "shared_dim": 12, "G_ch": 4, "D_ch": 4}


def make_nets(seed=0):
    torch.manual_seed(seed)
    G, G_ema, D = ref.Generator(GCFG), ref.Generator(GCFG), ref.Discriminator(DCFG)
    for i, n in enumerate((G, G_ema, D)):
        ref.randomize_state(n, seed + 10 + i)
    return G.eval(), G_ema.eval(), D.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("biggan") / "weights"
    d.mkdir()
    G, G_ema, D = make_nets()
    torch.save(G.state_dict(), d / "G.pth")
    torch.save(G_ema.state_dict(), d / "G_ema.pth")
    torch.save(D.state_dict(), d / "D.pth")
    torch.save({"itr": 1234, "epoch": 3, "best_IS": 0, "config": RUN_CONFIG}, d / "state_dict.pth")
    return d, (G, G_ema, D)


def flat(t):
    return traverse_util.flatten_dict(dict(t), sep="/")


def test_import_weights_folder(weights):
    d, (G, G_ema, D) = weights
    res = import_torch(d)
    assert list(res) == ["G_ema", "G", "D"] and res.format == "biggan-pytorch"
    assert res["G"].config == GCFG and res["G_ema"].config == GCFG and res["D"].config == DCFG
    assert res.metadata["itr"] == 1234 and not res.warnings
    for name, net in (("G", G), ("G_ema", G_ema), ("D", D)):
        want = to_variables({k: v.numpy() for k, v in net.state_dict().items()})
        got = res[name].variables
        for coll in ("params", "buffers"):
            a, b = flat(got[coll]), flat(want[coll])
            assert set(a) == set(b)
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])


def test_single_file_without_run_config(weights, tmp_path):
    d, _ = weights
    f = tmp_path / "G_ema_copy0.pth"
    f.write_bytes((d / "G_ema.pth").read_bytes())
    res = import_torch(f)
    assert list(res) == ["G_ema"]
    assert res["G_ema"].config == GCFG.replace(sn_eps=1e-6)  # launch-script default, with a warning
    assert "no state_dict.pth" in res.warnings[0]


@pytest.mark.parametrize("gkw,dkw", [
    (dict(resolution=64, ch=8, attention="32", dim_z=120, shared_dim=16, hier=False, mybn=True, num_svs=2),
     dict(resolution=64, ch=8, attention="32", num_svs=2)),
    (dict(resolution=128, ch=4, attention="64", dim_z=121, shared_dim=8, hier=True),
     dict(resolution=128, ch=8, attention="64", wide=False)),
])
def test_inferred_architecture_equals_the_built_one(gkw, dkw):
    gkw, dkw = dict(gkw), dict(dkw)
    g = BigGANGeneratorConfig.biggan(gkw.pop("resolution"), n_classes=5, sn_eps=1e-6, **gkw)
    d = BigGANDiscriminatorConfig.biggan(dkw.pop("resolution"), n_classes=5, sn_eps=1e-6, **dkw)
    gsd = {k: v.numpy() for k, v in ref.Generator(g).state_dict().items()}
    dsd = {k: v.numpy() for k, v in ref.Discriminator(d).state_dict().items()}
    gi = infer_generator_config(gsd)
    assert gi == g.replace(dim_z=g.z_dim)  # hier rounds dim_z down to a multiple of the slots, as released
    assert infer_discriminator_config(dsd) == d


def _save_hostile(path, payload_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {payload_path}",))
    sd = {"shared.weight": torch.zeros(7, 12), "linear.weight": torch.zeros(16, 5), "evil": Evil()}
    with open(path, "wb") as f:
        pickle.dump(sd, f)


def test_hostile_and_damaged_files_are_refused(weights, tmp_path):
    d, _ = weights
    marker = tmp_path / "pwned"
    evil = tmp_path / "G.pth"
    _save_hostile(evil, marker)
    with pytest.raises(UnrecognizedFileError):
        import_torch(evil)
    assert not marker.exists()
    sd = torch.load(d / "G.pth")
    bad = dict(sd)
    bad["blocks.1.0.conv2.weight"] = torch.zeros(3, 16, 3, 3)
    torch.save(bad, tmp_path / "bad_shape.pth")
    with pytest.raises(UnsupportedNetworkError, match="conv widths do not chain|shape"):
        import_torch(tmp_path / "bad_shape.pth")
    bad = dict(sd)
    del bad["blocks.2.0.bn2.bias.u0"]
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(UnsupportedNetworkError, match="blocks_2_0/bn2/bias/u0"):
        import_torch(tmp_path / "missing.pth")
    bad = dict(sd)
    bad["output_layer.0.gain"] = torch.full_like(sd["output_layer.0.gain"], float("nan"))
    torch.save(bad, tmp_path / "nan.pth")
    with pytest.raises(UnsupportedNetworkError, match="non-finite"):
        import_torch(tmp_path / "nan.pth")


def test_cli_refuses_hostile_file_with_one_line(tmp_path):
    spec = importlib.util.spec_from_file_location("convert_pt_weights", REPO / "tools" / "convert_pt_weights.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    marker = tmp_path / "pwned"
    _save_hostile(tmp_path / "G.pth", marker)
    assert cli.main([str(tmp_path / "G.pth"), str(tmp_path / "out")]) == 2
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_export_round_trip_and_generation(weights, tmp_path):
    """Folder → our model dir → BigGAN-PyTorch files (strict load) and the generate job's PNGs
    equal BigGAN-PyTorch's eval-mode G(z, G.shared(y)) for the same z (≤ 1 uint8 level)."""
    import ml_collections  # noqa: F401

    from gancomp_jax.export import export_model
    from gancomp_jax.jobs.generate_biggan import biggan_latent
    from gancomp_jax.main import run_job
    from PIL import Image
    from tests.test_generate import load_config

    d, (G, G_ema, D) = weights
    model = tmp_path / "model"
    checkpoints.save_model(model, dict(import_torch(d)))
    export_model(model, tmp_path / "exp")
    for name, net in (("G", G), ("G_ema", G_ema), ("D", D)):
        fresh = ref.Generator(GCFG) if name != "D" else ref.Discriminator(DCFG)
        fresh.load_state_dict(torch.load(tmp_path / "exp" / f"{name}.pth"), strict=True)
        for k, v in net.state_dict().items():
            assert torch.equal(fresh.state_dict()[k], v), k
    cfg = load_config("generate")
    cfg.checkpoint, cfg.seeds, cfg.class_idx, cfg.truncation_psi, cfg.batch_size = str(model), "0-2", 3, 0.5, 2
    paths = run_job(cfg, str(tmp_path / "gen"))
    z = np.stack([biggan_latent(s, GCFG.z_dim, 0.5) for s in (0, 1, 2)])
    assert np.abs(z).max() <= 1.0 + 1e-6
    with torch.no_grad():
        want = G_ema(torch.from_numpy(z), G_ema.shared(torch.full((3,), 3, dtype=torch.long))).numpy()
    want = np.clip(want.transpose(0, 2, 3, 1) * 127.5 + 128, 0, 255).astype(np.uint8)
    got = np.stack([np.asarray(Image.open(p)) for p in paths])
    assert [p.name for p in paths] == ["seed0000.png", "seed0001.png", "seed0002.png"]
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    # psi = 1 is plain RandomState(seed).randn
    np.testing.assert_array_equal(biggan_latent(5, 20, 1.0), np.random.RandomState(5).randn(20).astype(np.float32))


def test_stylegan2_paths_do_not_import_biggan():
    """Jobs, the trainer, the converters and checkpoints import the BigGAN family only when used."""
    import subprocess
    import sys

    code = ("import sys, gancomp_jax.checkpoints, gancomp_jax.convert, gancomp_jax.jobs.generate, "
            "gancomp_jax.train.trainer, gancomp_jax.methods.dgl_gan, gancomp_jax.export, gancomp_jax.jobs.prune, "
            "gancomp_jax.jobs.report; "
            "from gancomp_jax.models import registry; assert 'biggan_generator' in registry.KINDS; "
            "bad = [m for m in sys.modules if 'biggan' in m]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
