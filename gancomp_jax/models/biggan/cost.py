"""Parameters and multiply-accumulates of one BigGAN generator image (analytic).

MACs count every conv (``H·W·k²·C_in·C_out``), linear (``in·out``) and the attention products
(``HW·(HW/4)·(C/8 + C/2)``); BatchNorm, activations, pooling and upsampling are not counted
(element-wise, as in our StyleGAN2 cost model).
"""

from __future__ import annotations

from gancomp_jax.models.biggan.config import BigGANGeneratorConfig


def generator_macs(cfg: BigGANGeneratorConfig) -> int:
    """MACs of ``G(z, shared(y))`` for one image (the class embedding lookup is free)."""
    macs = (cfg.z_dim // cfg.num_slots) * cfg.channels[0] * 16  # first linear
    res = 4
    for i in range(cfg.num_blocks):
        cin, hid, cout = cfg.channels[i], cfg.block_hidden(i), cfg.channels[i + 1]
        macs += 2 * cfg.cond_dim * (cin + hid)  # ccbn gain/bias linears
        res *= 2
        hw = res * res
        macs += hw * 9 * cin * hid + hw * 9 * hid * cout + hw * cin * cout  # conv1, conv2, 1x1 shortcut
        if cfg.block_resolutions[i] in cfg.attention:
            c = cout
            macs += hw * c * (c // 8) * 2 + hw * c * (c // 2) + hw * (c // 2) * c  # theta, phi, g, o
            macs += hw * (hw // 4) * (c // 8) + hw * (hw // 4) * (c // 2)  # theta·phi, beta·g
    macs += res * res * 9 * cfg.channels[-1] * cfg.img_channels  # output conv
    return int(macs)
