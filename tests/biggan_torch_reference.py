"""BigGAN-PyTorch's networks (ajbrock/BigGAN-PyTorch ``BigGAN.py``/``layers.py``) restated in
plain torch for the parity tests: same computations, same state-dict keys (``blocks.i.j``,
``output_layer.k``, ``u0``/``sv0``, ``stored_mean``/``stored_var``, ``bn.*`` for myBN).

Written from reading the released code; only the default paths are restated (G_shared, SN,
ReLU, 'bn' norm style, optional myBN, no cross-replica BN, no fp16).
"""

from __future__ import annotations

import torch
import torch.nn as tnn
import torch.nn.functional as F


def _orth_against(x, basis):
    for b in basis:
        x = x - (b @ x.t()) * b / (b @ b.t())
    return x


class SpectralNormed:
    """Mixin: ``u{i}``/``sv{i}`` buffers and the released power iteration (``W_``)."""

    def _sn_setup(self, num_svs, num_itrs, rows, eps, transposed=False):
        self.num_svs, self.num_itrs, self.eps, self.transposed = num_svs, num_itrs, eps, transposed
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, rows))
            self.register_buffer(f"sv{i}", torch.ones(1))

    def normalized_weight(self):
        W = self.weight.reshape(self.weight.shape[0], -1)
        if self.transposed:
            W = W.t()
        us = [getattr(self, f"u{i}") for i in range(self.num_svs)]
        for _ in range(self.num_itrs):
            new_us, vs, svs = [], [], []
            for i, u in enumerate(us):
                with torch.no_grad():
                    v = F.normalize(_orth_against(u @ W, vs), eps=self.eps)
                    vs.append(v)
                    u = F.normalize(_orth_against(v @ W.t(), new_us), eps=self.eps)
                    new_us.append(u)
                    if self.training:
                        getattr(self, f"u{i}")[:] = u
                svs.append(torch.squeeze((v @ W.t()) @ u.t()))
        if self.training:
            with torch.no_grad():
                for i, s in enumerate(svs):
                    getattr(self, f"sv{i}")[:] = s
        return self.weight / svs[0]


class SNConv2d(tnn.Conv2d, SpectralNormed):
    def __init__(self, cin, cout, kernel_size=3, padding=1, bias=True, num_svs=1, num_itrs=1, eps=1e-12):
        tnn.Conv2d.__init__(self, cin, cout, kernel_size, padding=padding, bias=bias)
        self._sn_setup(num_svs, num_itrs, cout, eps)

    def forward(self, x):
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)


class SNLinear(tnn.Linear, SpectralNormed):
    def __init__(self, cin, cout, bias=True, num_svs=1, num_itrs=1, eps=1e-12):
        tnn.Linear.__init__(self, cin, cout, bias)
        self._sn_setup(num_svs, num_itrs, cout, eps)

    def forward(self, x):
        return F.linear(x, self.normalized_weight(), self.bias)


class SNEmbedding(tnn.Embedding, SpectralNormed):
    def __init__(self, n, dim, num_svs=1, num_itrs=1, eps=1e-12):
        tnn.Embedding.__init__(self, n, dim)
        self._sn_setup(num_svs, num_itrs, n, eps)

    def forward(self, y):
        return F.embedding(y, self.normalized_weight())


class MyBN(tnn.Module):
    def __init__(self, c, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum, self.accumulate_standing = eps, momentum, False
        self.register_buffer("stored_mean", torch.zeros(c))
        self.register_buffer("stored_var", torch.ones(c))
        self.register_buffer("accumulation_counter", torch.zeros(1))

    def forward(self, x, gain, bias):
        if self.training:
            m = x.float().mean([0, 2, 3], keepdim=True)
            var = (x.float() ** 2).mean([0, 2, 3], keepdim=True) - m ** 2
            if self.accumulate_standing:
                self.stored_mean[:] = self.stored_mean + m.squeeze().detach()
                self.stored_var[:] = self.stored_var + var.squeeze().detach()
                self.accumulation_counter += 1.0
            else:
                self.stored_mean[:] = self.stored_mean * (1 - self.momentum) + m.squeeze() * self.momentum
                self.stored_var[:] = self.stored_var * (1 - self.momentum) + var.squeeze() * self.momentum
        else:
            m, var = self.stored_mean.view(1, -1, 1, 1), self.stored_var.view(1, -1, 1, 1)
            if self.accumulate_standing:
                m, var = m / self.accumulation_counter, var / self.accumulation_counter
        scale = torch.rsqrt(var + self.eps) * gain
        return x * scale - (m * scale - bias)


class CCBN(tnn.Module):
    def __init__(self, c, cond, mybn=False, bn_eps=1e-5, **sn):
        super().__init__()
        eps = bn_eps
        self.gain = SNLinear(cond, c, bias=False, **sn)
        self.bias = SNLinear(cond, c, bias=False, **sn)
        self.eps, self.mybn = eps, mybn
        if mybn:
            self.bn = MyBN(c, eps)
        else:
            self.register_buffer("stored_mean", torch.zeros(c))
            self.register_buffer("stored_var", torch.ones(c))

    def forward(self, x, y):
        gain = (1 + self.gain(y)).view(y.shape[0], -1, 1, 1)
        bias = self.bias(y).view(y.shape[0], -1, 1, 1)
        if self.mybn:
            return self.bn(x, gain=gain, bias=bias)
        return F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, self.eps) * gain + bias


class BN(tnn.Module):
    def __init__(self, c, mybn=False, eps=1e-5):
        super().__init__()
        self.gain = tnn.Parameter(torch.ones(c))
        self.bias = tnn.Parameter(torch.zeros(c))
        self.eps, self.mybn = eps, mybn
        if mybn:
            self.bn = MyBN(c, eps)
        else:
            self.register_buffer("stored_mean", torch.zeros(c))
            self.register_buffer("stored_var", torch.ones(c))

    def forward(self, x):
        if self.mybn:
            return self.bn(x, gain=self.gain.view(1, -1, 1, 1), bias=self.bias.view(1, -1, 1, 1))
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, self.training, 0.1, self.eps)


class Attention(tnn.Module):
    def __init__(self, ch, **sn):
        super().__init__()
        self.ch = ch
        kw = dict(kernel_size=1, padding=0, bias=False, **sn)
        self.theta, self.phi = SNConv2d(ch, ch // 8, **kw), SNConv2d(ch, ch // 8, **kw)
        self.g, self.o = SNConv2d(ch, ch // 2, **kw), SNConv2d(ch // 2, ch, **kw)
        self.gamma = tnn.Parameter(torch.tensor(0.0))

    def forward(self, x, y=None):
        n, _, h, w = x.shape
        theta = self.theta(x).view(n, self.ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), [2, 2]).view(n, self.ch // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), [2, 2]).view(n, self.ch // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).view(n, self.ch // 2, h, w))
        return self.gamma * o + x


class GBlock(tnn.Module):
    def __init__(self, cin, cout, hidden, cond, mybn, bn_eps, **sn):
        super().__init__()
        self.conv1 = SNConv2d(cin, hidden, **sn)
        self.conv2 = SNConv2d(hidden, cout, **sn)
        self.conv_sc = SNConv2d(cin, cout, kernel_size=1, padding=0, **sn)
        self.bn1 = CCBN(cin, cond, mybn, bn_eps, **sn)
        self.bn2 = CCBN(hidden, cond, mybn, bn_eps, **sn)

    def forward(self, x, y):
        h = F.relu(self.bn1(x, y))
        h = F.interpolate(h, scale_factor=2)
        x = F.interpolate(x, scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(x)


class Generator(tnn.Module):
    """From one of our ``BigGANGeneratorConfig`` (widths as given)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        sn = dict(num_svs=cfg.num_svs, num_itrs=cfg.num_itrs, eps=cfg.sn_eps)
        self.shared = tnn.Embedding(cfg.n_classes, cfg.shared_dim)
        self.linear = SNLinear(cfg.z_dim // cfg.num_slots, cfg.channels[0] * 16, **sn)
        blocks = []
        for i in range(cfg.num_blocks):
            b = [GBlock(cfg.channels[i], cfg.channels[i + 1], cfg.block_hidden(i), cfg.cond_dim, cfg.mybn,
                        cfg.bn_eps, **sn)]
            if cfg.block_resolutions[i] in cfg.attention:
                b.append(Attention(cfg.channels[i + 1], **sn))
            blocks.append(tnn.ModuleList(b))
        self.blocks = tnn.ModuleList(blocks)
        self.output_layer = tnn.Sequential(BN(cfg.channels[-1], cfg.mybn, cfg.bn_eps), tnn.ReLU(),
                                           SNConv2d(cfg.channels[-1], cfg.img_channels, **sn))
        for m in self.modules():
            if isinstance(m, (tnn.Conv2d, tnn.Linear, tnn.Embedding)):
                tnn.init.orthogonal_(m.weight)

    def forward(self, z, y):
        c = self.cfg
        if c.hier:
            zs = torch.split(z, c.z_chunk_size, 1)
            z, ys = zs[0], [torch.cat([y, zi], 1) for zi in zs[1:]]
        else:
            ys = [y] * c.num_blocks
        h = self.linear(z).view(z.shape[0], -1, 4, 4)
        for i, blocklist in enumerate(self.blocks):
            for block in blocklist:
                h = block(h, ys[i])
        return torch.tanh(self.output_layer(h))


class DBlock(tnn.Module):
    def __init__(self, cin, cout, hidden, preactivation, downsample, **sn):
        super().__init__()
        self.conv1 = SNConv2d(cin, hidden, **sn)
        self.conv2 = SNConv2d(hidden, cout, **sn)
        self.pre, self.down = preactivation, downsample
        self.learnable_sc = cin != cout or downsample
        if self.learnable_sc:
            self.conv_sc = SNConv2d(cin, cout, kernel_size=1, padding=0, **sn)

    def forward(self, x):
        h = F.relu(x) if self.pre else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        if self.pre:
            if self.learnable_sc:
                x = self.conv_sc(x)
            if self.down:
                x = F.avg_pool2d(x, 2)
        else:
            if self.down:
                x = F.avg_pool2d(x, 2)
            if self.learnable_sc:
                x = self.conv_sc(x)
        return h + x


class Discriminator(tnn.Module):
    def __init__(self, cfg):
        super().__init__()
        from gancomp_jax.models.biggan.config import d_downsample
        sn = dict(num_svs=cfg.num_svs, num_itrs=cfg.num_itrs, eps=cfg.sn_eps)
        att = set(cfg.attention_blocks())
        blocks, prev = [], cfg.img_channels
        for i, down in enumerate(d_downsample(cfg.resolution)):
            b = [DBlock(prev, cfg.channels[i], cfg.block_hidden(i), i > 0, down, **sn)]
            if i in att:
                b.append(Attention(cfg.channels[i], **sn))
            blocks.append(tnn.ModuleList(b))
            prev = cfg.channels[i]
        self.blocks = tnn.ModuleList(blocks)
        self.linear = SNLinear(prev, 1, **sn)
        self.embed = SNEmbedding(cfg.n_classes, prev, **sn)
        for m in self.modules():
            if isinstance(m, (tnn.Conv2d, tnn.Linear, tnn.Embedding)):
                tnn.init.orthogonal_(m.weight)

    def forward(self, x, y):
        h = x
        for blocklist in self.blocks:
            for block in blocklist:
                h = block(h)
        h = torch.sum(F.relu(h), [2, 3])
        return self.linear(h) + torch.sum(self.embed(y) * h, 1, keepdim=True)


def randomize_state(net: tnn.Module, seed: int) -> None:
    """Non-trivial BN statistics, SN vectors/values, attention gains and biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            leaf = name.split(".")[-1]
            if leaf == "stored_mean":
                t.copy_(0.3 * torch.randn(t.shape, generator=g))
            elif leaf == "stored_var":
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif leaf.startswith("u"):
                t.copy_(torch.randn(t.shape, generator=g))
            elif leaf.startswith("sv"):
                t.copy_(1 + torch.rand(t.shape, generator=g))
            elif leaf == "gamma":
                t.copy_(torch.tensor(0.7))
            elif leaf == "bias" or leaf == "gain":
                t.copy_(t + 0.1 * torch.randn(t.shape, generator=g))
