"""Cost accounting: parameters and multiply-accumulates (MACs) of generators and discriminators.

Everything is computed analytically from a :class:`GeneratorConfig` / :class:`DiscriminatorConfig`
(no weights needed), per layer, for **one image** (a batch-1 forward pass). Three MAC
conventions are reported side by side; each layer dict carries all three:

``macs`` (executed)
    What gancomp_jax actually runs, counted the way XLA's ``HloCostAnalysis`` counts it (XLA
    reports *FLOPs*: 2 per multiply-accumulate of a convolution or matrix product, 1 per
    elementwise multiply; ``2 * macs`` is compared against ``cost_analysis()['flops']``):

    * convolution taps that fall on zero padding are not counted;
    * the 2× up-convolution runs in polyphase form (``ops.conv2d_resample``): four 2×2
      phase kernels at the coarse resolution, i.e. ``16·I·O`` MACs per input pixel for a 3×3
      kernel (its 7 zero taps included), then the FIR filter;
    * FIR resampling (``ops.upfirdn2d``) is separable and runs on the zero-inserted signal:
      ``taps`` MACs per output sample of each of the two 1-D passes;
    * the modulated convolution follows the configured form (``'shared'``: scale activations by
      the styles, plain conv, scale outputs by the demodulation coefficients; ``'grouped'``:
      build each sample's kernel); both count the demodulation coefficients
      (``sum W²`` over taps, ``s² @ W²``), and each elementwise product (styles, demodulation
      coefficients, noise × strength, FIR taps) is one MAC;
    * weight preprocessing done at run time (equalised-learning-rate gains) is included, since
      a batch-1 forward pass executes it too;
    * not counted: additions without a product (biases, noise-free residual sums),
      activations, clamps, normalisation of z, minibatch-std (XLA counts those as FLOPs too;
      they are < 1 % for real widths).

``macs_nominal`` (textbook)
    Independent of the implementation: ``k²·I·O`` per output pixel of a stride-1 convolution
    (padding included), ``k²·I·O`` per *input* pixel of a stride-2 transposed convolution,
    ``I·O`` per dense layer, the FIR filter's non-zero 2-D taps per output sample
    (``(taps/2)²`` when upsampling by 2, ``taps²`` when downsampling), and the
    modulation/demodulation products of the configured form. No weight preprocessing.

``macs_cagc`` (CAGC's ``Util/Calculators.py::StyleGAN2_FLOPCal``, generator only)
    Styled 3×3 convs ``C_i·C_{i+1}·9·S_i²`` where ``S = (4, 4, 8, 8, 16, 16, ...)`` (so an
    up-conv is counted at its input resolution), ToRGB ``C·3·S²``, the mapping MLP's weight
    sizes and the style affines' weight sizes; nothing else (no demodulation, no FIR, no
    biases). It gives CAGC's constants 45,124,673,536 (256 px, rosinality channel
    multiplier 2) and 74,266,894,336 (1024 px). CAGC calls these "FLOPs"; they are MACs.

Parameters are trainable parameters as NVlabs counts them (const, weights, biases, noise
strengths); ``buffers`` counts the non-trainable state (noise maps, ``w_avg``).
"""

from __future__ import annotations

from typing import Any

from gancomp_jax.models.config import (DiscriminatorConfig, GeneratorConfig, block_resolutions,
                                       generator_layer_channels, resolution_log2)
from gancomp_jax.models.layers import RESAMPLE_TAPS

FIR_TAPS = len(RESAMPLE_TAPS)


# ----------------------------------------------------------------------------------------------
# Counting helpers (1-D, then squared for square images).


def _conv_out_len(length: int, k: int, lo: int, hi: int, stride: int) -> int:
    return (length + lo + hi - k) // stride + 1


def _valid_taps_1d(length: int, k: int, lo: int, hi: int, stride: int = 1) -> int:
    """Number of (output, tap) pairs of a 1-D correlation whose input index is not padding."""
    n_out = _conv_out_len(length, k, lo, hi, stride)
    total = 0
    for o in range(n_out):
        start = o * stride - lo
        total += max(0, min(start + k, length) - max(start, 0))
    return total


def _fir_separable(length: int, up: int, down: int, pad: tuple[int, int], channels: int,
                   taps: int = FIR_TAPS) -> tuple[int, int]:
    """(executed, nominal) MACs of ``upfirdn2d`` with a separable filter on a square
    ``[length, length, channels]`` image (``_fir_out_len`` gives the output size)."""
    padded = length * up + pad[0] + pad[1]
    out = (padded - taps) // down + 1
    executed = (padded * out + out * out) * taps * channels  # pass over W, then over H
    if up > 1:
        nominal = out * out * channels * (taps // up) ** 2
    else:
        nominal = out * out * channels * taps * taps
    return executed, nominal


def _fir_out_len(length: int, up: int, down: int, pad: tuple[int, int], taps: int = FIR_TAPS) -> int:
    return (length * up + pad[0] + pad[1] - taps) // down + 1


def _upsample2d_pad(up: int = 2, taps: int = FIR_TAPS, extra: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    return extra[0] + (taps + up - 1) // 2, extra[1] + (taps - up) // 2


def _downsample2d_pad(down: int = 2, taps: int = FIR_TAPS, extra: tuple[int, int] = (0, 0)) -> tuple[int, int]:
    return extra[0] + (taps - down + 1) // 2, extra[1] + (taps - down) // 2


# ----------------------------------------------------------------------------------------------
# Layer costs. Each returns a dict with params, macs (executed), macs_nominal and a breakdown.


def _layer(name: str, kind: str, in_ch: int, out_ch: int, resolution: int, params: int,
           detail: dict[str, int], nominal: int, macs_cagc: int = 0, **extra: Any) -> dict[str, Any]:
    d = dict(name=name, kind=kind, **{"in": int(in_ch), "out": int(out_ch)}, resolution=int(resolution),
             params=int(params), macs=int(sum(detail.values())), macs_nominal=int(nominal),
             macs_cagc=int(macs_cagc), macs_detail={k: int(v) for k, v in detail.items()})
    d.update(extra)
    return d


def _dense(name: str, in_f: int, out_f: int, kind: str = "fc", bias: bool = True,
           weight_gain: bool = True, resolution: int = 0) -> dict[str, Any]:
    """Equalised-lr dense layer: ``x @ (W * g) + b``."""
    detail = {"matmul": in_f * out_f}
    if weight_gain:
        detail["weight_gain"] = in_f * out_f
    return _layer(name, kind, in_f, out_f, resolution, in_f * out_f + (out_f if bias else 0),
                  detail, in_f * out_f)


def _conv_layer(name: str, in_ch: int, out_ch: int, in_res: int, k: int, up: int = 1, down: int = 1,
                bias: bool = True, kind: str = "conv") -> dict[str, Any]:
    """``models.layers.Conv2dLayer`` (equalised lr, ``conv2d_resample``) on a square input."""
    pad = k // 2
    detail: dict[str, int] = {"weight_gain": k * k * in_ch * out_ch}
    if up == 1 and down == 1:
        out_res = in_res
        detail["conv"] = _valid_taps_1d(in_res, k, pad, pad) ** 2 * in_ch * out_ch
        nominal = k * k * in_ch * out_ch * out_res ** 2
    elif down == 2 and k == 1:
        p = _downsample2d_pad(2, extra=(pad, pad))
        fir, fir_nom = _fir_separable(in_res, 1, 2, p, in_ch)
        out_res = _fir_out_len(in_res, 1, 2, p)
        detail["fir"] = fir
        detail["conv"] = out_res ** 2 * in_ch * out_ch
        nominal = fir_nom + out_res ** 2 * in_ch * out_ch
    elif down == 2:
        p = _downsample2d_pad(2, extra=(pad, pad))
        fir, fir_nom = _fir_separable(in_res, 1, 1, p, in_ch)
        filtered = _fir_out_len(in_res, 1, 1, p)
        out_res = _conv_out_len(filtered, k, 0, 0, 2)
        detail["fir"] = fir
        detail["conv"] = _valid_taps_1d(filtered, k, 0, 0, 2) ** 2 * in_ch * out_ch
        # Nominal: FIR at the kept positions only would be cheaper; count the filter pass as run.
        nominal = fir_nom + k * k * in_ch * out_ch * out_res ** 2
    elif up == 2 and k == 1:
        detail["conv"] = in_res ** 2 * in_ch * out_ch
        p = _upsample2d_pad(2, extra=(pad, pad))
        fir, fir_nom = _fir_separable(in_res, 2, 1, p, out_ch)
        detail["fir"] = fir
        out_res = _fir_out_len(in_res, 2, 1, p)
        nominal = in_res ** 2 * in_ch * out_ch + fir_nom
    else:
        raise ValueError(f"cost of a {k}x{k} conv with up={up}, down={down} is not modelled")
    params = k * k * in_ch * out_ch + (out_ch if bias else 0)
    return _layer(name, kind, in_ch, out_ch, out_res, params, detail, nominal, kernel=k, up=up, down=down)


def _upconv_polyphase(in_res: int, k: int, in_ch: int, out_ch: int) -> tuple[int, int, int]:
    """(executed conv MACs, executed FIR MACs, output resolution) of a k×k stride-2
    transposed conv (polyphase, ``ops.conv2d_resample``) followed by the FIR filter."""
    d = (k - 1) // 2
    conv = (2 * _valid_taps_1d(in_res, d + 1, d, d)) ** 2 * in_ch * out_ch
    full = 2 * (in_res - 1) + k  # transposed-conv output length
    p0, p1 = _upsample2d_pad(2, extra=(k // 2, k // 2))
    q = (p0 - (k - 1), p1 - (k - 2))
    fir, _ = _fir_separable(full, 1, 1, q, out_ch)
    return conv, fir, _fir_out_len(full, 1, 1, q)


def _resolve_impl(impl: str) -> str:
    from gancomp_jax.ops.modconv import resolve_impl
    return resolve_impl(impl)


def _modconv(name: str, in_ch: int, out_ch: int, in_res: int, w_dim: int, k: int, up: int,
             demodulate: bool, impl: str, kind: str, img_channels: int = 3) -> dict[str, Any]:
    """A SynthesisLayer (``kind='modconv'``) or ToRGBLayer (``kind='torgb'``)."""
    out_res = in_res * up
    detail: dict[str, int] = {"affine": 2 * w_dim * in_ch}  # matmul + equalised-lr weight gain
    nominal = w_dim * in_ch
    if kind == "torgb":
        detail["affine"] += in_ch  # styles * 1/sqrt(in)
    grouped = _resolve_impl(impl) == "grouped"
    if grouped:
        detail["modulation"] = k * k * in_ch * out_ch
    else:
        detail["modulation"] = in_res ** 2 * in_ch
    nominal += detail["modulation"]
    if demodulate:
        # sum_taps W² (k²·I·O), s² (I), s² @ W² (I·O), then scale outputs (or weights).
        coef = k * k * in_ch * out_ch + in_ch + in_ch * out_ch
        scale = k * k * in_ch * out_ch if grouped else out_res ** 2 * out_ch
        detail["demodulation"] = coef + scale
        nominal += in_ch * out_ch + k * k * in_ch * out_ch + scale
    if up == 1:
        detail["conv"] = _valid_taps_1d(in_res, k, k // 2, k // 2) ** 2 * in_ch * out_ch
        nominal += k * k * in_ch * out_ch * out_res ** 2
    else:
        conv, fir, res = _upconv_polyphase(in_res, k, in_ch, out_ch)
        assert res == out_res
        detail["conv"] = conv
        detail["fir"] = fir
        nominal += k * k * in_ch * out_ch * in_res ** 2 + out_res ** 2 * out_ch * (FIR_TAPS // 2) ** 2
    if kind == "modconv":
        detail["noise"] = out_res ** 2  # noise map * strength
        params = w_dim * in_ch + in_ch + k * k * in_ch * out_ch + out_ch + 1
        cagc_conv = in_ch * out_ch * 9 * in_res ** 2 if k == 3 else 0
    else:
        params = w_dim * in_ch + in_ch + in_ch * out_ch + out_ch
        cagc_conv = in_ch * out_ch * out_res ** 2
    macs_cagc = cagc_conv + in_ch * w_dim  # CAGC: conv + modulation weight size
    return _layer(name, kind, in_ch, out_ch, out_res, params, detail, nominal, macs_cagc,
                  kernel=k, up=up)


# ----------------------------------------------------------------------------------------------
# Networks.


def _sum(layers: list[dict[str, Any]], key: str, prefix: str | None = None) -> int:
    return int(sum(l[key] for l in layers if prefix is None or l["name"].startswith(prefix)))


def mapping_layers_cost(z_dim: int, c_dim: int, w_dim: int, num_layers: int,
                        layer_features: int | None, embed_features: int | None,
                        cagc: bool = True, prefix: str = "mapping") -> list[dict[str, Any]]:
    """Per-layer cost of ``MappingNetwork`` (label embedding, then ``num_layers`` FCs)."""
    layers = []
    embed = 0 if c_dim == 0 else (embed_features or w_dim)
    feat = layer_features or w_dim
    if c_dim > 0:
        layers.append(_dense(f"{prefix}.embed", c_dim, embed))
    width = z_dim + embed
    for i in range(num_layers):
        out = w_dim if i == num_layers - 1 else feat
        layer = _dense(f"{prefix}.fc{i}", width, out)
        if cagc:
            layer["macs_cagc"] = width * out  # CAGC: the weight's size
        layers.append(layer)
        width = out
    return layers


def generator_cost(cfg: GeneratorConfig) -> dict[str, Any]:
    """Parameters and MACs of a generator, per layer and in total, for one image.

    Returns a dict with
      ``params``, ``params_mapping``, ``params_synthesis`` (trainable parameters),
      ``buffers`` (noise maps and ``w_avg``),
      ``macs``, ``macs_mapping``, ``macs_synthesis`` (executed MACs, see the module docstring),
      ``macs_nominal``, ``macs_cagc`` (CAGC's convention), ``flops_xla_estimate`` (``2 * macs``),
      ``widths`` (``cfg.channels``) and ``layers``: one dict per layer, in forward order, named
      as NVlabs names it (``mapping.fc0``, ``b4.const``, ``b4.conv1``, ``b4.torgb``,
      ``b8.conv0``, ..., ``b8.img_upsample`` for the skip architecture's RGB upsampling,
      ``b8.skip`` for resnet), each with ``kind``, ``in``, ``out`` (widths), ``resolution``
      (output), ``params``, ``macs``, ``macs_nominal``, ``macs_cagc`` and ``macs_detail``.
    """
    if not isinstance(cfg, GeneratorConfig):
        raise ValueError(f"generator_cost expects a GeneratorConfig, got {type(cfg).__name__}")
    layers = mapping_layers_cost(cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.mapping_layers,
                                 cfg.mapping_layer_features, cfg.embed_features)
    impl = cfg.modconv_impl
    buffers = cfg.w_dim if cfg.w_avg_beta is not None else 0
    for res in block_resolutions(cfg.img_resolution):
        in_ch, c0, c1 = cfg.block_channels(res)
        is_last = res == cfg.img_resolution
        if res == 4:
            layers.append(_layer("b4.const", "const", 0, c0, 4, 16 * c0, {}, 0))
            layers.append(_modconv("b4.conv1", c0, c1, 4, cfg.w_dim, 3, 1, True, impl, "modconv"))
            buffers += 16
        else:
            if cfg.architecture == "resnet":
                layers.append(_conv_layer(f"b{res}.skip", in_ch, c1, res // 2, 1, up=2, bias=False,
                                          kind="skip"))
            layers.append(_modconv(f"b{res}.conv0", in_ch, c0, res // 2, cfg.w_dim, 3, 2, True, impl,
                                   "modconv"))
            layers.append(_modconv(f"b{res}.conv1", c0, c1, res, cfg.w_dim, 3, 1, True, impl, "modconv"))
            buffers += 2 * res * res
            if cfg.architecture == "skip":
                p = _upsample2d_pad(2)
                fir, fir_nom = _fir_separable(res // 2, 2, 1, p, cfg.img_channels)
                layers.append(_layer(f"b{res}.img_upsample", "fir", cfg.img_channels, cfg.img_channels,
                                     res, 0, {"fir": fir}, fir_nom))
        if is_last or cfg.architecture == "skip":
            layers.append(_modconv(f"b{res}.torgb", c1, cfg.img_channels, res, cfg.w_dim, 1, 1, False,
                                   impl, "torgb"))
    params_mapping = _sum(layers, "params", "mapping.")
    macs_mapping = _sum(layers, "macs", "mapping.")
    params = _sum(layers, "params")
    macs = _sum(layers, "macs")
    return dict(
        kind="generator",
        img_resolution=cfg.img_resolution,
        widths=[int(c) for c in cfg.channels],
        params=params, params_mapping=params_mapping, params_synthesis=params - params_mapping,
        buffers=int(buffers),
        macs=macs, macs_mapping=macs_mapping, macs_synthesis=macs - macs_mapping,
        macs_nominal=_sum(layers, "macs_nominal"),
        macs_cagc=_sum(layers, "macs_cagc"),
        flops_xla_estimate=2 * macs,
        modconv_impl=_resolve_impl(impl),
        layers=layers,
    )


def discriminator_cost(cfg: DiscriminatorConfig) -> dict[str, Any]:
    """Parameters and MACs of a discriminator, per layer and in total, for one image.

    Same conventions and keys as :func:`generator_cost` (``macs_cagc`` is 0: CAGC counts only
    the generator). Layers: ``b{R}.fromrgb``, ``b{r}.conv0``, ``b{r}.conv1``, ``b{r}.skip``
    (resnet), ``b{r}.img_downsample`` (skip), ``b4.conv``, ``b4.fc``, ``b4.out``, ``mapping.*``
    for a conditional D.
    """
    if not isinstance(cfg, DiscriminatorConfig):
        raise ValueError(f"discriminator_cost expects a DiscriminatorConfig, got {type(cfg).__name__}")
    layers: list[dict[str, Any]] = []
    c_img = cfg.img_channels
    for res in block_resolutions(cfg.img_resolution)[::-1][:-1]:
        tmp, out = cfg.width(res), cfg.width(res // 2)
        first = res == cfg.img_resolution
        if first or cfg.architecture == "skip":
            layers.append(_conv_layer(f"b{res}.fromrgb", c_img, tmp, res, 1, kind="fromrgb"))
            if cfg.architecture == "skip":
                p = _downsample2d_pad(2)
                fir, fir_nom = _fir_separable(res, 1, 2, p, c_img)
                layers.append(_layer(f"b{res}.img_downsample", "fir", c_img, c_img, res // 2, 0,
                                     {"fir": fir}, fir_nom))
        if cfg.architecture == "resnet":
            layers.append(_conv_layer(f"b{res}.skip", tmp, out, res, 1, down=2, bias=False, kind="skip"))
        layers.append(_conv_layer(f"b{res}.conv0", tmp, tmp, res, 3))
        layers.append(_conv_layer(f"b{res}.conv1", tmp, out, res, 3, down=2))
    c4 = cfg.width(4)
    if cfg.architecture == "skip":
        layers.append(_conv_layer("b4.fromrgb", c_img, c4, 4, 1, kind="fromrgb"))
    cmap_dim = 0
    if cfg.c_dim > 0:
        cmap_dim = cfg.cmap_dim or c4
        layers += mapping_layers_cost(0, cfg.c_dim, cmap_dim, cfg.mapping_layers, None, None, cagc=False)
    layers.append(_conv_layer("b4.conv", c4 + cfg.mbstd_num_channels, c4, 4, 3))
    layers.append(_dense("b4.fc", c4 * 16, c4))
    layers.append(_dense("b4.out", c4, cmap_dim or 1))
    for l in layers:
        l["macs_cagc"] = 0
    params = _sum(layers, "params")
    macs = _sum(layers, "macs")
    return dict(
        kind="discriminator",
        img_resolution=cfg.img_resolution,
        widths=[int(c) for c in cfg.channels],
        params=params, buffers=0,
        macs=macs, macs_nominal=_sum(layers, "macs_nominal"), macs_cagc=0,
        flops_xla_estimate=2 * macs,
        layers=layers,
    )


def compression_rate(student_macs: int | float, teacher_macs: int | float) -> float:
    """MAC reduction of a student against its teacher: ``1 - student / teacher`` (0.9 means the
    student needs 10 % of the teacher's MACs; the speed-up factor is ``1 / (1 - rate)``)."""
    if teacher_macs <= 0:
        raise ValueError(f"teacher MACs must be positive, got {teacher_macs}")
    if student_macs < 0:
        raise ValueError(f"student MACs must be >= 0, got {student_macs}")
    return 1.0 - float(student_macs) / float(teacher_macs)


def rosinality_channels(size: int, channel_multiplier: int = 2) -> tuple[int, ...]:
    """Per-layer widths of rosinality's ``Generator(size, channel_multiplier=...)`` (CAGC's
    ``net_shape``): 512 up to 32 px, then ``{64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}``
    times the multiplier."""
    resolution_log2(size)
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier,
             128: 128 * channel_multiplier, 256: 64 * channel_multiplier,
             512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    per_res = {r: table[r] for r in block_resolutions(size)}
    return generator_layer_channels(per_res)


def fmt_int(n: int) -> str:
    """``24,767,458``."""
    return f"{n:,}"


def human(n: float) -> str:
    """``45.125 G``, ``1.042 M``."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {unit}"
    return f"{n:g}"


def format_cost_table(cost: dict, title: str, show_mapping: bool = False) -> str:
    """A per-layer text table (widths, params, MACs in the three conventions) and totals of a
    :func:`generator_cost` / :func:`discriminator_cost` result; the mapping network's layers
    are summed into one row unless ``show_mapping``."""
    rows = [f"{title}: {cost['kind']} {cost['img_resolution']}px, widths {cost['widths']}"]
    head = f"{'layer':<20} {'kind':<8} {'in':>5} {'out':>5} {'res':>5} {'params':>13} {'MACs':>17} {'nominal':>17} {'CAGC':>17}"
    rows += [head, "-" * len(head)]
    hidden = {"params": 0, "macs": 0, "n": 0}
    for l in cost["layers"]:
        if l["name"].startswith("mapping.") and not show_mapping and cost["kind"] == "generator":
            hidden["params"] += l["params"]
            hidden["macs"] += l["macs"]
            hidden["n"] += 1
            continue
        rows.append(f"{l['name']:<20} {l['kind']:<8} {l['in']:>5} {l['out']:>5} {l['resolution']:>5} "
                    f"{fmt_int(l['params']):>13} {fmt_int(l['macs']):>17} {fmt_int(l['macs_nominal']):>17} "
                    f"{fmt_int(l['macs_cagc']):>17}")
    if hidden["n"]:
        rows.append(f"{'mapping (' + str(hidden['n']) + ' fc)':<20} {'fc':<8} {'':>5} {'':>5} {'':>5} "
                    f"{fmt_int(hidden['params']):>13} {fmt_int(hidden['macs']):>17}")
    rows.append("-" * len(head))
    rows.append(f"{'total':<44} {fmt_int(cost['params']):>13} {fmt_int(cost['macs']):>17} "
                f"{fmt_int(cost['macs_nominal']):>17} {fmt_int(cost['macs_cagc']):>17}")
    if cost["kind"] == "generator":
        rows.append(f"params: mapping {fmt_int(cost['params_mapping'])}, synthesis {fmt_int(cost['params_synthesis'])}, "
                    f"total {fmt_int(cost['params'])} (+ {fmt_int(cost['buffers'])} buffer values)")
        rows.append(f"MACs/image: executed {human(cost['macs'])} (XLA FLOPs ≈ {human(2 * cost['macs'])}), "
                    f"nominal {human(cost['macs_nominal'])}, CAGC convention {human(cost['macs_cagc'])}")
    else:
        rows.append(f"MACs/image: executed {human(cost['macs'])}, nominal {human(cost['macs_nominal'])}")
    return "\n".join(rows)
