"""One-screen, human-readable summary of an :class:`~gancomp_jax.convert.ImportResult`."""

from __future__ import annotations

from typing import Any

__all__ = ["format_summary"]

_READER_NAMES = {"torch": "torch.load(weights_only=True)",
                 "builtin": "gancomp_jax restricted unpickler (no torch, nothing executed)"}


def _widths(values) -> str:
    return " ".join(str(v) for v in values)


def _biggan_lines(name: str, facts: dict[str, Any]) -> list[str]:
    cfg = facts["config"]
    head = f"  {name:<6} {facts['kind']:<20} {facts['num_params']:>12,} params  {cfg['resolution']}px"
    att = _widths(cfg["attention"]) or "none"
    if facts["kind"] == "biggan_generator":
        return [f"{head}  z {cfg['dim_z']}  shared {cfg['shared_dim']}  hier {cfg['hier']}  "
                f"classes {cfg['n_classes']}  attention {att}  mybn {cfg['mybn']}",
                f"         widths (linear, block outputs): {_widths(cfg['channels'])}"]
    return [f"{head}  classes {cfg['n_classes']}  attention {att}",
            f"         widths (block outputs): {_widths(cfg['channels'])}"]


def _network_lines(name: str, facts: dict[str, Any]) -> list[str]:
    if facts.get("kind") == "pretrained_biggan_generator":  # pytorch-pretrained-biggan's BigGAN-deep
        cfg = facts["config"]
        return [f"  {name:<6} {facts['kind']:<28} {facts['num_params']:>12,} params  {cfg['resolution']}px  "
                f"z {cfg['z_dim']}  ch {cfg['channel_width']}  classes {cfg['n_classes']}  "
                f"attention before block {cfg['attention_layer_position']}  stats {cfg['n_stats']}",
                f"         blocks (upsample, in, out multipliers): "
                f"{' '.join(f'{int(u)}:{i}/{o}' for u, i, o in cfg['layers'])}"]
    if str(facts.get("kind", "")).startswith("biggan"):
        return _biggan_lines(name, facts)
    cfg = facts["config"]
    clamp = cfg.get("conv_clamp")
    clamp = "none" if clamp is None else f"{clamp:g}"
    head = f"  {name:<6} {facts['kind']:<13} {facts['num_params']:>12,} params  {cfg['img_resolution']}px"
    schedule = ""
    if "widths_follow_channel_base" in facts:
        follows = "follow" if facts["widths_follow_channel_base"] else "differ from"
        schedule = f"  ({follows} channel_base {facts['channel_base']}, channel_max {facts['channel_max']})"
    if facts["kind"] == "generator":
        w_avg = "yes" if facts.get("w_avg_present") else "NO (zeros)"
        lines = [
            f"{head}  z {cfg['z_dim']}  w {cfg['w_dim']}  c {cfg['c_dim']}  "
            f"mapping {cfg['mapping_layers']} layers (lr {cfg['mapping_lr_multiplier']:g})",
            f"         arch {cfg['architecture']}  conv_clamp {clamp}  w_avg {w_avg}",
            f"         widths per layer (const, b4.conv1, b8.conv0, ...): {_widths(cfg['channels'])}{schedule}",
        ]
    else:
        group = cfg.get("mbstd_group_size")
        lines = [
            f"{head}  c {cfg['c_dim']}  arch {cfg['architecture']}  conv_clamp {clamp}  "
            f"mbstd group {group if group is not None else 'all'} x {cfg['mbstd_num_channels']}",
            f"         widths per resolution ({cfg['img_resolution']}..4): {_widths(cfg['channels'])}{schedule}",
        ]
    if facts.get("num_fp16_res"):
        lines.append(f"         file used fp16 in its top {facts['num_fp16_res']} resolutions; converted to float32")
    return lines


def format_summary(metadata: dict[str, Any], out_dir: str | None = None,
                   timings: dict[str, float] | None = None) -> str:
    """The conversion report the CLI prints (``metadata`` is ``ImportResult.metadata``)."""
    src = metadata["source"]
    size_mb = src["size_bytes"] / 2 ** 20
    lines = [
        f"source   : {src['path']}",
        f"format   : {src['description']} ({size_mb:.1f} MiB, sha256 {src['sha256'][:16]}...)",
        f"read by  : {_READER_NAMES.get(src.get('reader'), src.get('reader'))}",
        f"in file  : {', '.join(metadata['file_networks'])}",
        "converted:",
    ]
    for name, facts in metadata["networks"].items():
        lines += _network_lines(name, facts)
    warnings = metadata.get("warnings") or []
    lines.append(f"warnings : {'none' if not warnings else len(warnings)}")
    lines += [f"  - {w}" for w in warnings]
    if out_dir:
        lines.append(f"wrote    : {out_dir}")
    if timings:
        total = sum(timings.values())
        parts = ", ".join(f"{k} {v:.2f} s" for k, v in timings.items())
        lines.append(f"time     : {total:.2f} s ({parts})")
    return "\n".join(lines)
