"""BigGAN-PyTorch's ``Generator`` and ``Discriminator`` (``BigGAN.py``) as Flax modules, NHWC.

Generator: ``G(z [N, z_dim], y)`` with ``y`` class indices ``[N]`` or one-hot ``[N, n_classes]``
(embedded by ``shared``) or, with ``embedded=True``, the shared embedding itself
``[N, shared_dim]`` (BigGAN-PyTorch's ``G(z, G.shared(y))``). With ``hier`` the first z chunk
feeds the linear layer and chunk ``i+1`` is concatenated to the embedding for block ``i``'s two
ccbn layers. Images ``[N, R, R, 3]`` in [-1, 1] (tanh).

Discriminator: ``D(x [N, R, R, 3], y)`` → logits ``[N, 1]``: ResNet blocks (pre-activation
except the first), sum pooling of ``relu(h)``, ``linear(h) + <embed(y), h>`` (projection).

Modes: ``train`` (spectral-norm vectors updated) and ``bn_mode`` (see ``layers``); BigGAN-
PyTorch's ``module.train()`` is ``train=True, bn_mode='train'`` and ``eval()`` is
``train=False, bn_mode='eval'``. Updates land in the ``buffers`` collection
(``mutable=['buffers']``).

Parameter paths follow BigGAN-PyTorch's state-dict keys: ``blocks_{i}_0`` (GBlock/DBlock),
``blocks_{i}_1`` (attention), ``output_layer_0`` (BN), ``output_layer_2`` (conv); non-``myBN``
statistics sit in a ``bn`` child (``bn1.stored_mean`` ↔ ``bn1/bn/stored_mean``).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from gancomp_jax.models.biggan.config import (BigGANDiscriminatorConfig, BigGANGeneratorConfig,
                                              d_downsample)
from gancomp_jax.models.biggan.layers import (BN, CCBN, Attention, SNConv, SNEmbedding, SNLinear,
                                              avg_pool2, embed, orthogonal_torch, upsample_nearest2)


class GBlock(nn.Module):
    out_ch: int
    hidden_ch: int
    cfg: BigGANGeneratorConfig

    @nn.compact
    def __call__(self, x, y, bn_mode, train):
        c = self.cfg
        sn = dict(num_svs=c.num_svs, num_itrs=c.num_itrs, eps=c.sn_eps)
        bn = dict(mybn=c.mybn, eps=c.bn_eps, num_svs=c.num_svs, num_itrs=c.num_itrs, sn_eps=c.sn_eps,
                  axis_name=c.bn_axis_name)
        h = jax.nn.relu(CCBN(x.shape[-1], **bn, name="bn1")(x, y, bn_mode, train))
        h = upsample_nearest2(h)
        x = upsample_nearest2(x)
        h = SNConv(self.hidden_ch, 3, **sn, name="conv1")(h, train)
        h = jax.nn.relu(CCBN(self.hidden_ch, **bn, name="bn2")(h, y, bn_mode, train))
        h = SNConv(self.out_ch, 3, **sn, name="conv2")(h, train)
        # learnable shortcut: always (every G block upsamples)
        x = SNConv(self.out_ch, 1, **sn, name="conv_sc")(x, train)
        return h + x


class BigGANGenerator(nn.Module):
    config: BigGANGeneratorConfig

    def setup(self):
        c = self.config
        self.shared = nn.Embed(c.n_classes, c.shared_dim, name="shared",
                               embedding_init=lambda key, s, dtype=jnp.float32: orthogonal_torch(*s)(key))

    def embed_classes(self, y):
        """``G.shared(y)``: ``y`` class indices ``[N]`` or one-hot ``[N, n_classes]`` → ``[N, shared_dim]``."""
        return embed(self.shared.embedding, y)

    @nn.compact
    def __call__(self, z, y, train: bool = False, bn_mode: str | None = None, embedded: bool = False):
        c = self.config
        bn_mode = bn_mode or ("train" if train else "eval")
        y = y if embedded else self.embed_classes(y)
        sn = dict(num_svs=c.num_svs, num_itrs=c.num_itrs, eps=c.sn_eps)
        if c.hier:
            k = c.z_chunk_size
            zs = [z[:, i * k:(i + 1) * k] for i in range(c.num_slots)]
            z0, ys = zs[0], [jnp.concatenate([y, zi], axis=1) for zi in zs[1:]]
        else:
            z0, ys = z, [y] * c.num_blocks
        h = SNLinear(c.channels[0] * 16, **sn, name="linear")(z0, train)
        # torch .view(N, C, 4, 4) -> NHWC
        h = h.reshape(h.shape[0], c.channels[0], 4, 4).transpose(0, 2, 3, 1)
        for i in range(c.num_blocks):
            h = GBlock(c.channels[i + 1], c.block_hidden(i), c, name=f"blocks_{i}_0")(h, ys[i], bn_mode, train)
            if c.block_resolutions[i] in c.attention:
                h = Attention(**sn, name=f"blocks_{i}_1")(h, train)
        h = BN(c.channels[-1], mybn=c.mybn, eps=c.bn_eps, axis_name=c.bn_axis_name, name="output_layer_0")(h, bn_mode)
        h = SNConv(c.img_channels, 3, **sn, name="output_layer_2")(jax.nn.relu(h), train)
        return jnp.tanh(h)


class DBlock(nn.Module):
    out_ch: int
    hidden_ch: int
    preactivation: bool
    downsample: bool
    cfg: BigGANDiscriminatorConfig

    @nn.compact
    def __call__(self, x, train):
        c = self.cfg
        sn = dict(num_svs=c.num_svs, num_itrs=c.num_itrs, eps=c.sn_eps)
        h = jax.nn.relu(x) if self.preactivation else x
        h = SNConv(self.hidden_ch, 3, **sn, name="conv1")(h, train)
        h = SNConv(self.out_ch, 3, **sn, name="conv2")(jax.nn.relu(h), train)
        if self.downsample:
            h = avg_pool2(h)
        learnable_sc = x.shape[-1] != self.out_ch or self.downsample
        sc = SNConv(self.out_ch, 1, **sn, name="conv_sc") if learnable_sc else None
        if self.preactivation:
            if sc is not None:
                x = sc(x, train)
            if self.downsample:
                x = avg_pool2(x)
        else:
            if self.downsample:
                x = avg_pool2(x)
            if sc is not None:
                x = sc(x, train)
        return h + x


class BigGANDiscriminator(nn.Module):
    config: BigGANDiscriminatorConfig

    @nn.compact
    def __call__(self, x, y, train: bool = False, return_features: bool = False):
        """``x [N, R, R, 3]``, ``y`` class indices ``[N]`` or one-hot ``[N, n_classes]`` → ``[N, 1]``
        (and ``{'b{i}': block i output}`` with ``return_features``)."""
        c = self.config
        sn = dict(num_svs=c.num_svs, num_itrs=c.num_itrs, eps=c.sn_eps)
        att = set(c.attention_blocks())
        h, feats = x, {}
        for i, down in enumerate(d_downsample(c.resolution)):
            h = DBlock(c.channels[i], c.block_hidden(i), i > 0, down, c, name=f"blocks_{i}_0")(h, train)
            if i in att:
                h = Attention(**sn, name=f"blocks_{i}_1")(h, train)
            feats[f"b{i}"] = h
        h = jnp.sum(jax.nn.relu(h), axis=(1, 2))
        out = SNLinear(1, **sn, name="linear")(h, train)
        e = SNEmbedding(c.n_classes, c.channels[-1], **sn, name="embed")(y, train)
        out = out + jnp.sum(e * h, axis=1, keepdims=True)
        return (out, feats) if return_features else out


def init_generator(config: BigGANGeneratorConfig, key: jax.Array) -> dict:
    """Fresh variables (orthogonal weights, ``u ~ N(0, 1)``, BN stats 0/1): ``{'params', 'buffers'}``."""
    z = jnp.zeros((2, config.z_dim))
    return dict(BigGANGenerator(config).init({"params": key}, z, jnp.zeros((2,), jnp.int32)))


def init_discriminator(config: BigGANDiscriminatorConfig, key: jax.Array) -> dict:
    x = jnp.zeros((1, config.resolution, config.resolution, config.img_channels))
    return dict(BigGANDiscriminator(config).init({"params": key}, x, jnp.zeros((1,), jnp.int32)))


def standing_stats(G: BigGANGenerator, variables: dict, key: jax.Array, batch_size: int,
                   num_accumulations: int = 16) -> dict:
    """BigGAN-PyTorch's ``accumulate_standing_stats`` (``myBN`` generators): stored statistics
    reset to 0, then ``num_accumulations`` train-mode passes on fresh ``z ~ N(0, I)`` and uniform
    classes summing batch statistics (spectral-norm vectors update as in the released train-mode
    passes). Returns the new variables; eval mode then uses the averages."""
    if not G.config.mybn:
        raise ValueError("standing statistics need a myBN generator (config.mybn=True)")

    def reset(path, v):
        name = path[-1].key
        return jnp.zeros_like(v) if name in ("stored_mean", "stored_var", "accumulation_counter") else v
    buffers = jax.tree_util.tree_map_with_path(reset, variables["buffers"])
    v = {**variables, "buffers": buffers}
    for i in range(num_accumulations):
        kz, ky = jax.random.split(jax.random.fold_in(key, i))
        z = jax.random.normal(kz, (batch_size, G.config.z_dim))
        y = jax.random.randint(ky, (batch_size,), 0, G.config.n_classes)
        _, upd = G.apply(v, z, y, train=True, bn_mode="standing", mutable=["buffers"])
        v = {**v, "buffers": upd["buffers"]}
    return v
