"""Plain-torch restatement (our own words) of pytorch-pretrained-biggan's BigGAN-deep generator,
with its module names, so ``state_dict()`` has the released ``pytorch_model.bin`` layout.

Used by the tests only: random weights of a small config, standing statistics and spectral-norm
vectors set to non-trivial values, then eval-mode images compared with our Flax port.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _sn(module, eps):
    return nn.utils.spectral_norm(module, eps=eps)


class StandingBN(nn.Module):
    def __init__(self, c, cond_dim, n_stats, eps, conditional=True):
        super().__init__()
        self.eps, self.conditional, self.step = eps, conditional, 1.0 / (n_stats - 1)
        self.register_buffer("running_means", torch.zeros(n_stats, c))
        self.register_buffer("running_vars", torch.ones(n_stats, c))
        if conditional:
            self.scale = _sn(nn.Linear(cond_dim, c, bias=False), eps)
            self.offset = _sn(nn.Linear(cond_dim, c, bias=False), eps)
        else:
            self.weight = nn.Parameter(torch.ones(c))
            self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x, truncation, cond=None):
        frac, whole = math.modf(truncation / self.step)
        i = int(whole)
        if frac != 0.0:  # the package's weighting: frac on the lower entry
            m = self.running_means[i] * frac + self.running_means[i + 1] * (1 - frac)
            v = self.running_vars[i] * frac + self.running_vars[i + 1] * (1 - frac)
        else:
            m, v = self.running_means[i], self.running_vars[i]
        if not self.conditional:
            return F.batch_norm(x, m, v, self.weight, self.bias, training=False, momentum=0.0, eps=self.eps)
        gain = 1 + self.scale(cond)[:, :, None, None]
        return (x - m[None, :, None, None]) / torch.sqrt(v[None, :, None, None] + self.eps) * gain \
            + self.offset(cond)[:, :, None, None]


class Attn(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.snconv1x1_theta = _sn(nn.Conv2d(c, c // 8, 1, bias=False), eps)
        self.snconv1x1_phi = _sn(nn.Conv2d(c, c // 8, 1, bias=False), eps)
        self.snconv1x1_g = _sn(nn.Conv2d(c, c // 2, 1, bias=False), eps)
        self.snconv1x1_o_conv = _sn(nn.Conv2d(c // 2, c, 1, bias=False), eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.snconv1x1_theta(x).flatten(2)                       # [b, c/8, hw]
        k = F.max_pool2d(self.snconv1x1_phi(x), 2).flatten(2)        # [b, c/8, hw/4]
        a = torch.softmax(q.transpose(1, 2) @ k, dim=-1)             # [b, hw, hw/4]
        g = F.max_pool2d(self.snconv1x1_g(x), 2).flatten(2)          # [b, c/2, hw/4]
        o = (g @ a.transpose(1, 2)).reshape(b, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(o)


class Block(nn.Module):
    def __init__(self, cin, cout, cond_dim, up, n_stats, eps):
        super().__init__()
        mid = cin // 4
        self.up, self.cin, self.cout = up, cin, cout
        for k, (ci, co, ks) in enumerate(((cin, mid, 1), (mid, mid, 3), (mid, mid, 3), (mid, cout, 1))):
            setattr(self, f"bn_{k}", StandingBN(ci, cond_dim, n_stats, eps))
            setattr(self, f"conv_{k}", _sn(nn.Conv2d(ci, co, ks, padding=ks // 2), eps))

    def forward(self, x, cond, truncation):
        h = x
        for k in range(4):
            h = F.relu(getattr(self, f"bn_{k}")(h, truncation, cond))
            if k == 1 and self.up:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = getattr(self, f"conv_{k}")(h)
        if self.cin != self.cout:
            x = x[:, :self.cin // 2]
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return h + x


class Gen(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, cd, eps = cfg["channel_width"], 2 * cfg["z_dim"], cfg["eps"]
        self.ch = ch
        self.gen_z = _sn(nn.Linear(cd, 4 * 4 * 16 * ch), eps)
        layers = []
        for i, (up, a, b) in enumerate(cfg["layers"]):
            if i == cfg["attention_layer_position"]:
                layers.append(Attn(ch * a, eps))
            layers.append(Block(ch * a, ch * b, cd, up, cfg["n_stats"], eps))
        self.layers = nn.ModuleList(layers)
        self.bn = StandingBN(ch, None, cfg["n_stats"], eps, conditional=False)
        self.conv_to_rgb = _sn(nn.Conv2d(ch, ch, 3, padding=1), eps)

    def forward(self, cond, truncation):
        h = self.gen_z(cond).view(-1, 4, 4, 16 * self.ch).permute(0, 3, 1, 2)
        for layer in self.layers:
            h = layer(h, cond, truncation) if isinstance(layer, Block) else layer(h)
        h = self.conv_to_rgb(F.relu(self.bn(h, truncation)))
        return torch.tanh(h[:, :3])


class BigGANDeep(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = nn.Linear(cfg["num_classes"], cfg["z_dim"], bias=False)
        self.generator = Gen(cfg)

    def forward(self, z, one_hot, truncation):
        return self.generator(torch.cat([z, self.embeddings(one_hot)], 1), truncation)


def randomize(model: BigGANDeep, seed: int) -> None:
    """Random weights, standing statistics and SN vectors (u, v consistent as the package's
    converter leaves them: ``v = normalize(W^T u)``, ``u = normalize(W v)``)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(torch.tensor([0.7]))
            elif p.ndim == 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + (1.0 if name.endswith("bn.weight") else 0.0))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
        for name, b in model.named_buffers():
            if name.endswith("running_means"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.2)
            elif name.endswith("running_vars"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
        for m in model.modules():
            if hasattr(m, "weight_orig"):
                w = m.weight_orig.reshape(m.weight_orig.shape[0], -1)
                u = F.normalize(torch.randn(w.shape[0], generator=gen), dim=0)
                v = F.normalize(w.t() @ u, dim=0)
                m.weight_u.copy_(F.normalize(w @ v, dim=0))
                m.weight_v.copy_(v)
    model.eval()
