"""config.data.source='teacher': images sampled from the frozen (shipped digits) teacher."""

from pathlib import Path

import jax
import numpy as np
import pytest

from gancomp_jax import checkpoints, data
from gancomp_jax.data.teacher_source import TeacherSource
from gancomp_jax.models import Generator

ASSET = Path(__file__).resolve().parents[1] / "gancomp_jax" / "assets" / "digits_teacher"


def _cfg(**kw):
    c = data.default_data_config()
    c.source = "teacher"
    c.path = str(ASSET)
    c.num_images = 40
    c.update(kw)
    return c


@pytest.fixture(scope="module")
def const_source():
    return data.build_source(_cfg(noise_mode="const", truncation_psi=0.7, teacher_seed=5))


def test_elements_are_the_teachers_seeded_images(const_source):
    src = const_source
    assert len(src) == 40 and src.resolution == 32 and src.num_classes == 0
    a, b = src[3], src[3]
    assert a["image"].dtype == np.uint8 and a["image"].shape == (32, 32, 3) and a["label"] == -1
    np.testing.assert_array_equal(a["image"], b["image"])
    # element 3 is NVlabs' seed 5 + 3, truncation 0.7, const noise, quantised as NVlabs saves it
    net = checkpoints.load_model(ASSET, ["G_ema"])["G_ema"]
    z = np.random.RandomState(8).randn(1, net.config.z_dim).astype(np.float32)
    img = Generator(net.config).apply(net.variables, z, truncation_psi=0.7, noise_mode="const")
    want = np.clip(np.asarray(img)[0] * 127.5 + 128, 0, 255).astype(np.uint8)
    assert np.abs(a["image"].astype(int) - want.astype(int)).max() <= 1  # rounding at .5 boundaries
    assert not np.array_equal(src[4]["image"], a["image"])
    with pytest.raises(IndexError):
        src[40]


def test_random_noise_is_seeded_per_image():
    src = data.build_source(_cfg())
    again = data.build_source(_cfg())
    np.testing.assert_array_equal(src[1]["image"], again[1]["image"])
    other = data.build_source(_cfg(noise_mode="const"))
    assert not np.array_equal(src[1]["image"], other[1]["image"])


def test_pipeline_xflip_and_exact_resume(const_source):
    it = data.make_pipeline(const_source, global_batch_size=4, seed=1, xflip=True)
    first = next(it)
    assert first["image"].shape == (4, 32, 32, 3) and first["image"].dtype == np.float32
    assert -1.0 <= first["image"].min() and first["image"].max() <= 1.0
    state = it.get_state()
    nxt = next(it)
    it2 = data.make_pipeline(const_source, global_batch_size=4, seed=1, xflip=True)
    it2.set_state(state)
    np.testing.assert_array_equal(next(it2)["image"], nxt["image"])


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="needs config.path"):
        data.build_source(_cfg(path=""))
    with pytest.raises(FileNotFoundError):
        data.build_source(_cfg(path=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="network 'G_x' not in"):
        data.build_source(_cfg(teacher_network="G_x"))
    with pytest.raises(ValueError, match="worker_count=0"):
        data.build_source(_cfg(worker_count=2))
    with pytest.raises(ValueError, match="does not match the teacher's 32 px"):
        data.build_source(_cfg(resolution=64))
    with pytest.raises(ValueError, match="num_images=0"):
        data.build_source(_cfg(num_images=0))
    with pytest.raises(ValueError, match="noise_mode"):
        data.build_source(_cfg(noise_mode="loud"))


@pytest.mark.slow
def test_trainer_distils_from_teacher_samples(tmp_path):
    """Two NICKEL & DiME digits steps whose 'reals' are teacher samples."""
    import importlib.util

    from gancomp_jax.train.trainer import train

    spec = importlib.util.spec_from_file_location("nd_exp", ASSET.parents[2] / "experiments" / "nickel_dime.py")
    exp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exp)
    c = exp.get_config("digits")
    c.method.teacher = c.method.student = str(ASSET)
    c.method.student_g_name = "G_ema"
    c.data.source, c.data.path, c.data.num_images = "teacher", str(ASSET), 64
    c.total_steps, c.log_every_steps, c.checkpoint_every_steps = 2, 1, 0
    c.sample_every_steps, c.progress, c.mesh_devices, c.mbstd_num_shards = 0, False, 1, 1
    r = train(c, tmp_path / "run")
    assert r.step == 2 and (tmp_path / "run" / "samples" / "reals.png").is_file()
    assert jax.tree.leaves(r.state.params)
