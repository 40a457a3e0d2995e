"""Inception-v3, FID variant (pytorch-fid's ``fid_inception_v3``), in Flax.

The network is torchvision's Inception-v3 with ``num_classes=1008`` and no auxiliary head,
whose blocks Mixed_5b-5d, Mixed_6b-6e and Mixed_7b average-pool without counting the zero
padding (TensorFlow's behaviour) and whose last block Mixed_7c max-pools in its pool branch
(pytorch-fid's ``FIDInceptionE_2``; the TensorFlow graph the weights come from does this).
Convolutions have no bias and are followed by BatchNorm (eps 1e-3, running statistics) and
ReLU.

Weights: pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a state dict with
torchvision key names, ``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``,
..., ``fc.weight [1008, 2048]``), or a directory converted from it by
``tools/convert_feature_net.py inception_fid SRC OUT``.

Outputs of :func:`apply`: ``pool`` ``[N, 2048]`` (the final average pool: pytorch-fid's
2048-d block-3 features used by FID and KID) and ``logits`` ``[N, 1008]`` (``fc`` on the pool,
dropout off, as ``fid_inception_v3()(x)`` in eval mode).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from .loaded import LoadedNet
from .preprocess import fid_inception_input
from .weights import check_variables, is_converted_dir, load_converted, read_state_dict, torch_to_flax

__all__ = ["InceptionV3FID", "PREPROCESS", "apply", "init_variables", "load_inception_fid"]

NETWORK = "Inception-v3 (FID)"
KIND = "inception_fid"
NUM_CLASSES = 1008
PREPROCESS = ("pytorch_fid", "none")


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=1e-3) -> ReLU; torch names ``conv`` and ``bn``."""

    features: int
    kernel: Sequence[int] = (1, 1)
    strides: Sequence[int] = (1, 1)
    padding: Sequence[int] = (0, 0)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        ph, pw = self.padding
        x = nn.Conv(self.features, tuple(self.kernel), tuple(self.strides), ((ph, ph), (pw, pw)),
                    use_bias=False, dtype=self.dtype, name="conv")(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, dtype=self.dtype, name="bn")(x)
        return nn.relu(x)


def _avg_pool_same(x):
    """3x3 stride-1 average pool, padding 1, padded zeros not counted (TensorFlow's)."""
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_valid(x):
    return nn.max_pool(x, (3, 3), (2, 2), "VALID")


class InceptionA(nn.Module):
    """FIDInceptionA (Mixed_5b/5c/5d)."""

    pool_features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        C = partial(BasicConv2d, dtype=self.dtype)
        b1 = C(64, name="branch1x1")(x)
        b5 = C(48, name="branch5x5_1")(x)
        b5 = C(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = C(64, name="branch3x3dbl_1")(x)
        b3 = C(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = C(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = C(self.pool_features, name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    """torchvision InceptionB (Mixed_6a, grid reduction)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        C = partial(BasicConv2d, dtype=self.dtype)
        b3 = C(384, (3, 3), (2, 2), name="branch3x3")(x)
        bd = C(64, name="branch3x3dbl_1")(x)
        bd = C(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = C(96, (3, 3), (2, 2), name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_valid(x)], axis=-1)


class InceptionC(nn.Module):
    """FIDInceptionC (Mixed_6b-6e), factorised 7x7 convolutions."""

    channels_7x7: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        C = partial(BasicConv2d, dtype=self.dtype)
        c7 = self.channels_7x7
        b1 = C(192, name="branch1x1")(x)
        b7 = C(c7, name="branch7x7_1")(x)
        b7 = C(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = C(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = C(c7, name="branch7x7dbl_1")(x)
        bd = C(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = C(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = C(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = C(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = C(192, name="branch_pool")(_avg_pool_same(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    """torchvision InceptionD (Mixed_7a, grid reduction)."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        C = partial(BasicConv2d, dtype=self.dtype)
        b3 = C(192, name="branch3x3_1")(x)
        b3 = C(320, (3, 3), (2, 2), name="branch3x3_2")(b3)
        b7 = C(192, name="branch7x7x3_1")(x)
        b7 = C(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = C(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = C(192, (3, 3), (2, 2), name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_valid(x)], axis=-1)


class InceptionE(nn.Module):
    """FIDInceptionE_1 (Mixed_7b, average pool) or FIDInceptionE_2 (Mixed_7c, ``max_pool=True``)."""

    max_pool: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        C = partial(BasicConv2d, dtype=self.dtype)
        b1 = C(320, name="branch1x1")(x)
        b3 = C(384, name="branch3x3_1")(x)
        b3 = jnp.concatenate([C(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              C(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = C(448, name="branch3x3dbl_1")(x)
        bd = C(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([C(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              C(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        if self.max_pool:  # pytorch-fid FIDInceptionE_2: max_pool2d(3, stride 1, padding 1)
            pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
        else:
            pooled = _avg_pool_same(x)
        bp = C(192, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3FID(nn.Module):
    """The FID Inception-v3 on network-range input ``[N, H, W, 3]`` in ``[-1, 1]`` (H, W >= 75).

    Returns ``{'pool': [N, 2048], 'logits': [N, 1008]}``.
    """

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        C = partial(BasicConv2d, dtype=self.dtype)
        x = x.astype(self.dtype)
        x = C(32, (3, 3), (2, 2), name="Conv2d_1a_3x3")(x)
        x = C(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = C(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_valid(x)
        x = C(80, name="Conv2d_3b_1x1")(x)
        x = C(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_valid(x)
        x = InceptionA(32, dtype=self.dtype, name="Mixed_5b")(x)
        x = InceptionA(64, dtype=self.dtype, name="Mixed_5c")(x)
        x = InceptionA(64, dtype=self.dtype, name="Mixed_5d")(x)
        x = InceptionB(dtype=self.dtype, name="Mixed_6a")(x)
        x = InceptionC(128, dtype=self.dtype, name="Mixed_6b")(x)
        x = InceptionC(160, dtype=self.dtype, name="Mixed_6c")(x)
        x = InceptionC(160, dtype=self.dtype, name="Mixed_6d")(x)
        x = InceptionC(192, dtype=self.dtype, name="Mixed_6e")(x)
        x = InceptionD(dtype=self.dtype, name="Mixed_7a")(x)
        x = InceptionE(False, dtype=self.dtype, name="Mixed_7b")(x)
        x = InceptionE(True, dtype=self.dtype, name="Mixed_7c")(x)
        pool = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        logits = nn.Dense(NUM_CLASSES, dtype=self.dtype, name="fc")(pool.astype(self.dtype))
        return {"pool": pool, "logits": logits.astype(jnp.float32)}


def init_variables(dtype: Any = jnp.float32) -> Any:
    """Abstract variable tree (shapes only) of :class:`InceptionV3FID`."""
    module = InceptionV3FID(dtype=dtype)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), jnp.zeros((1, 75, 75, 3)))


def apply(variables: Any, images: jnp.ndarray, *, preprocess: str = "pytorch_fid",
          dtype: Any = jnp.float32) -> dict[str, jnp.ndarray]:
    """Inception features of ``images [N, H, W, 3]`` (NHWC).

    ``preprocess``:
      * ``'pytorch_fid'``: images in ``[0, 1]``; bilinear resize to 299 (``align_corners=False``,
        no antialiasing) then ``2x - 1`` — pytorch-fid's ``InceptionV3(resize_input=True,
        normalize_input=True)``.
      * ``'none'``: images already in network range (``[-1, 1]``), any size >= 75; for callers
        that do their own resizing and scaling (e.g. NVlabs-style ``(x - 128) / 128`` of uint8).

    Returns ``{'pool': [N, 2048], 'logits': [N, 1008]}`` in float32; differentiable in ``images``.
    """
    if preprocess == "pytorch_fid":
        images = fid_inception_input(images)
    elif preprocess != "none":
        raise ValueError(f"{NETWORK}: unknown preprocess {preprocess!r}; choose from {PREPROCESS}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"{NETWORK}: expected images [N, H, W, 3], got shape {tuple(images.shape)}")
    if min(images.shape[1:3]) < 75:
        raise ValueError(f"{NETWORK}: images must be at least 75x75 after preprocessing, got {tuple(images.shape[1:3])}")
    return InceptionV3FID(dtype=dtype).apply(variables, images)


def convert_state_dict(state: dict, source: str) -> dict[str, Any]:
    """pytorch-fid state dict -> Flax variables (checks every key and shape)."""
    return torch_to_flax(state, init_variables(), NETWORK, source)


def load_inception_fid(path: Any, *, dtype: Any = jnp.float32, preprocess: str = "pytorch_fid") -> LoadedNet:
    """Load pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` or a converted directory.

    ``dtype`` is the compute dtype (parameters stay float32); ``preprocess`` the default of the
    returned ``apply`` (see :func:`apply`).
    """
    if preprocess not in PREPROCESS:
        raise ValueError(f"{NETWORK}: unknown preprocess {preprocess!r}; choose from {PREPROCESS}")
    if is_converted_dir(path):
        variables, _ = load_converted(path, KIND, NETWORK)
        check_variables(variables, init_variables(), NETWORK, str(path))
    else:
        variables = convert_state_dict(read_state_dict(path, NETWORK), str(path))
    variables = jax.tree.map(jnp.asarray, variables)
    return LoadedNet(KIND, variables, partial(apply, preprocess=preprocess, dtype=dtype),
                     {"dtype": jnp.dtype(dtype).name, "preprocess": preprocess}, str(path))
