"""Tests for gancomp_jax.data.pipeline (Grain input pipeline)."""

import itertools
import json

import numpy as np
import pytest

from gancomp_jax import data

RES = 8


class IndexedSource:
    """N random images; the label is the example's index (an identity tag)."""

    def __init__(self, n):
        self.n = n
        self.images = np.random.default_rng(0).integers(0, 256, (n, RES, RES, 3), np.uint8)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"image": self.images[i], "label": int(i)}


def _take(it, n):
    return list(itertools.islice(it, n))


def _assert_same(batches_a, batches_b):
    assert len(batches_a) == len(batches_b)
    for a, b in zip(batches_a, batches_b):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


@pytest.fixture(scope="module")
def digits():
    return data.DigitsSource(32)


def test_batches_shapes_and_range(digits):
    it = data.make_pipeline(digits, global_batch_size=16, seed=0, xflip=True)
    for batch in _take(it, 3):
        assert set(batch) == {"image", "label"}
        assert batch["image"].shape == (16, 32, 32, 3)
        assert batch["image"].dtype == np.float32
        assert batch["label"].shape == (16,) and batch["label"].dtype == np.int32
        assert batch["image"].min() >= -1.0 and batch["image"].max() <= 1.0
        assert batch["image"].min() == -1.0  # black background maps to -1
    it.close()


def test_scaling_matches_source():
    src = IndexedSource(10)
    batch = next(data.make_pipeline(src, global_batch_size=10, seed=3))
    for img, label in zip(batch["image"], batch["label"]):
        np.testing.assert_allclose(img, src.images[label] / 127.5 - 1, atol=1e-6)


def test_deterministic_and_seed_dependent():
    src = IndexedSource(50)
    run = lambda seed: _take(data.make_pipeline(src, global_batch_size=8, seed=seed, xflip=True), 9)
    first = run(1)
    _assert_same(first, run(1))
    assert not all(np.array_equal(a["label"], b["label"]) for a, b in zip(first, run(2)))


def test_epochs_are_reshuffled_permutations():
    src = IndexedSource(40)
    it = data.make_pipeline(src, global_batch_size=8, seed=0)
    labels = np.concatenate([b["label"] for b in _take(it, 15)])  # 3 epochs
    epochs = labels.reshape(3, 40)
    for e in epochs:
        assert sorted(e) == list(range(40))
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[0], np.arange(40))


def test_finite_epochs_and_remainder():
    src = IndexedSource(37)
    it = data.make_pipeline(src, global_batch_size=8, seed=0, num_epochs=2)
    batches = list(it)
    assert it.num_batches == len(batches) == 9  # 74 examples -> 9 full batches
    it = data.make_pipeline(src, global_batch_size=8, seed=0, num_epochs=2, drop_remainder=False)
    batches = list(it)
    assert [len(b["label"]) for b in batches] == [8] * 9 + [2]
    assert sorted(np.concatenate([b["label"] for b in batches])) == sorted(list(range(37)) * 2)
    with pytest.raises(ValueError, match="do not fill one global batch"):
        data.make_pipeline(IndexedSource(5), global_batch_size=8, seed=0, num_epochs=1)


@pytest.mark.parametrize("process_count", [1, 2])
def test_checkpoint_resume_is_exact(process_count):
    src = IndexedSource(23)  # batches straddle epoch boundaries
    kwargs = dict(
        global_batch_size=6, seed=7, xflip=True, process_index=0, process_count=process_count
    )
    it = data.make_pipeline(src, **kwargs)
    _take(it, 5)
    state = json.loads(json.dumps(it.get_state()))  # JSON round trip
    expected = _take(it, 3)
    it.close()

    resumed = data.make_pipeline(src, **kwargs)
    resumed.set_state(state)
    _assert_same(_take(resumed, 3), expected)
    # Restoring into a running pipeline rewinds it too (bytes accepted).
    resumed.set_state(json.dumps(state).encode())
    _assert_same(_take(resumed, 3), expected)
    assert resumed.get_state()["next_batch"] == 8

    other = data.make_pipeline(src, **{**kwargs, "seed": 8})
    with pytest.raises(ValueError, match="seed"):
        other.set_state(state)


def test_process_shards_partition_global_batch():
    # 32 = 4 global batches per epoch, so no batch straddles two epochs (which
    # could legitimately contain the same example twice).
    src = IndexedSource(32)
    kw = dict(global_batch_size=8, seed=5, xflip=True)
    single = _take(data.make_pipeline(src, **kw), 6)
    shards = [
        _take(data.make_pipeline(src, process_index=p, process_count=2, **kw), 6) for p in range(2)
    ]
    for b, full in enumerate(single):
        parts = [shards[p][b] for p in range(2)]
        assert all(part["image"].shape == (4, RES, RES, 3) for part in parts)
        assert not set(parts[0]["label"]) & set(parts[1]["label"])
        # Documented order: global row p * L + o is row o of process p.
        for p in range(2):
            np.testing.assert_array_equal(parts[p]["label"], full["label"][p * 4:(p + 1) * 4])
            np.testing.assert_array_equal(parts[p]["image"], full["image"][p * 4:(p + 1) * 4])
    with pytest.raises(ValueError, match="multiple of process_count"):
        data.make_pipeline(src, global_batch_size=7, seed=0, process_count=2)


def test_resume_with_different_process_count():
    src = IndexedSource(20)
    kw = dict(global_batch_size=4, seed=2, xflip=True)
    single = data.make_pipeline(src, **kw)
    _take(single, 4)
    state = single.get_state()
    expected = next(single)
    shard = data.make_pipeline(src, process_index=1, process_count=2, **kw)
    shard.set_state(state)
    got = next(shard)
    np.testing.assert_array_equal(got["label"], expected["label"][2:4])
    np.testing.assert_array_equal(got["image"], expected["image"][2:4])


def test_xflip_some_flipped_and_deterministic():
    src = IndexedSource(64)
    plain = next(data.make_pipeline(src, global_batch_size=64, seed=11))
    flip_a = next(data.make_pipeline(src, global_batch_size=64, seed=11, xflip=True))
    flip_b = next(data.make_pipeline(src, global_batch_size=64, seed=11, xflip=True))
    _assert_same([flip_a], [flip_b])
    np.testing.assert_array_equal(plain["label"], flip_a["label"])
    flipped = []
    for p, f in zip(plain["image"], flip_a["image"]):
        if np.array_equal(p, f):
            flipped.append(False)
        else:
            np.testing.assert_array_equal(p[:, ::-1], f)
            flipped.append(True)
    assert 10 < sum(flipped) < 54  # ~Binomial(64, 1/2)


def test_worker_processes_give_identical_batches(digits):
    kw = dict(global_batch_size=8, seed=3, xflip=True)
    expected = _take(data.make_pipeline(digits, **kw), 4)
    with data.make_pipeline(digits, worker_count=2, **kw) as it:
        _assert_same(_take(it, 4), expected)
