"""Student widths: which generator layers exist, and how many channels each keeps.

Generator *layers* are named as NVlabs names them, one per entry of
``GeneratorConfig.channels`` (and of CAGC's ``net_shape``)::

    b4.const, b4.conv1, b8.conv0, b8.conv1, ..., bR.conv0, bR.conv1

A layer's width is the number of its *output* channels (for ``b4.const``: the constant's
channels). Removing an output channel of layer i also removes an input channel of the layer that
reads it (layer i+1, and the ToRGB of the block for ``conv1`` layers).

Width rules (exactly one per student):

* ``ratio`` r ∈ [0, 1): remove ``int(r * C)`` channels from every layer — the released CAGC /
  NICKEL & DiME rule (``(np.array(net_shape) * ratio).astype(int)``, i.e. the float product
  truncated), so paper256 at r = 0.9 keeps 512→52, 256→26, 128→13, 64→7.
* ``channel_multiplier`` k ≥ 1: every width of G (and D) becomes ``C // k`` (DGL-GAN's
  ``channels_fraction``; note DGL-GAN keeps the 512-wide const, which an override reproduces).
* ``target_reduction`` t ∈ (0, 1): the ratio whose student comes closest to a MAC reduction of
  t (``1 - MACs_student / MACs_teacher``), found by :func:`ratio_for_reduction`.

Per-layer ``overrides`` ({layer name: width}) replace the rule's width for those layers.
"""

from __future__ import annotations

import bisect
from typing import Callable, Mapping

from gancomp_jax.models.config import DiscriminatorConfig, GeneratorConfig, block_resolutions


def layer_names(cfg: GeneratorConfig) -> list[str]:
    """NVlabs names of the generator layers, aligned with ``cfg.channels``."""
    names = []
    for res in block_resolutions(cfg.img_resolution):
        names += ["b4.const", "b4.conv1"] if res == 4 else [f"b{res}.conv0", f"b{res}.conv1"]
    return names


def removed_count(channels: int, ratio: float) -> int:
    """Channels CAGC removes from a layer of ``channels`` at ``ratio``: ``int(channels * ratio)``."""
    return int(channels * ratio)


def check_ratio(ratio: float) -> float:
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise ValueError(f"pruning ratio must be a number in [0, 1), got {ratio!r}") from None
    if not 0.0 <= r < 1.0:
        raise ValueError(f"pruning ratio must be in [0, 1) (the fraction of channels removed), got {ratio}")
    return r


def check_multiplier(k) -> int:
    if isinstance(k, bool) or not float(k).is_integer() or int(k) < 1:
        raise ValueError(f"channel_multiplier must be an integer >= 1 (widths are divided by it), got {k!r}")
    return int(k)


def parse_overrides(overrides: str | Mapping[str, int] | None) -> dict[str, int]:
    """``'b4.const=256,b8.conv0=100'`` or a mapping → ``{layer: width}``."""
    if not overrides:
        return {}
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for part in str(overrides).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"width override {part!r} must look like LAYER=WIDTH (e.g. b4.const=256)")
            items.append((name.strip(), value.strip()))
    out = {}
    for name, value in items:
        try:
            out[str(name)] = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"width override for {name!r} must be an integer, got {value!r}") from None
    return out


def _apply_overrides(cfg: GeneratorConfig, widths: list[int], overrides: Mapping[str, int]) -> list[int]:
    names = layer_names(cfg)
    for name, width in overrides.items():
        if name not in names:
            raise ValueError(f"width override names unknown generator layer {name!r}; layers: {', '.join(names)}")
        i = names.index(name)
        if not 1 <= width <= cfg.channels[i]:
            raise ValueError(f"width override {name}={width} must be in [1, {cfg.channels[i]}] "
                             f"(the teacher's width)")
        widths[i] = int(width)
    return widths


def _check_nonzero(names: list[str], teacher: tuple[int, ...], widths: list[int], rule: str) -> None:
    empty = [f"{n} ({c}→0)" for n, c, w in zip(names, teacher, widths) if w < 1]
    if empty:
        raise ValueError(f"{rule} leaves generator layer(s) with 0 channels: {', '.join(empty)}; "
                         f"use a smaller ratio/multiplier or a width override")


def student_widths(cfg: GeneratorConfig, ratio: float | None = None, channel_multiplier: int | None = None,
                   overrides: str | Mapping[str, int] | None = None) -> tuple[int, ...]:
    """Per-layer student widths (aligned with :func:`layer_names`) under one width rule."""
    if (ratio is None) == (channel_multiplier is None):
        raise ValueError("give exactly one width rule: ratio or channel_multiplier")
    names = layer_names(cfg)
    if ratio is not None:
        r = check_ratio(ratio)
        widths = [c - removed_count(c, r) for c in cfg.channels]
        rule = f"ratio {r}"
    else:
        k = check_multiplier(channel_multiplier)
        widths = [c // k for c in cfg.channels]
        rule = f"channel_multiplier {k}"
    widths = _apply_overrides(cfg, widths, parse_overrides(overrides))
    _check_nonzero(names, cfg.channels, widths, rule)
    return tuple(widths)


def discriminator_widths(cfg: DiscriminatorConfig, ratio: float | None = None,
                         channel_multiplier: int | None = None) -> tuple[int, ...]:
    """Per-resolution D widths narrowed by the same rule as the generator (DGL-GAN)."""
    if ratio is not None:
        r = check_ratio(ratio)
        widths = [c - removed_count(c, r) for c in cfg.channels]
    elif channel_multiplier is not None:
        k = check_multiplier(channel_multiplier)
        widths = [c // k for c in cfg.channels]
    else:
        return tuple(cfg.channels)
    if min(widths) < 1:
        raise ValueError(f"narrowing the discriminator {cfg.channels} leaves a block with 0 channels")
    return tuple(widths)


def candidate_ratios(cfg: GeneratorConfig) -> list[float]:
    """Every ratio at which some layer's width changes (``j / C``), sorted, starting at 0."""
    cands = {0.0}
    for c in set(cfg.channels):
        cands.update(j / c for j in range(1, c))
    return sorted(cands)


def ratio_for_reduction(cfg: GeneratorConfig, target: float,
                        macs_fn: Callable[[GeneratorConfig], int] | None = None,
                        overrides: str | Mapping[str, int] | None = None) -> tuple[float, float]:
    """The ratio whose student's MAC reduction ``1 - MACs_s / MACs_t`` is closest to ``target``.

    Reductions grow monotonically with the ratio, so the candidates (:func:`candidate_ratios`,
    those that leave every layer ≥ 1 channel) are bisected. Ties go to the smaller ratio.
    ``macs_fn(cfg) -> int`` defaults to :func:`gancomp_jax.metrics.cost.generator_cost`'s
    ``"macs"``. Returns ``(ratio, achieved_reduction)``.
    """
    try:
        t = float(target)
    except (TypeError, ValueError):
        raise ValueError(f"target_reduction must be a number in (0, 1), got {target!r}") from None
    if not 0.0 < t < 1.0:
        raise ValueError(f"target_reduction must be in (0, 1) (e.g. 0.9573 for 95.73 % fewer MACs), got {target}")
    if macs_fn is None:
        macs_fn = default_macs_fn()
    teacher_macs = float(macs_fn(cfg))
    cache: dict[float, float] = {}

    def reduction(r: float) -> float:
        if r not in cache:
            w = student_widths(cfg, ratio=r, overrides=overrides)
            cache[r] = 1.0 - float(macs_fn(cfg.replace(channels=w))) / teacher_macs
        return cache[r]

    cands = []
    for r in candidate_ratios(cfg):
        try:
            student_widths(cfg, ratio=r, overrides=overrides)
        except ValueError:
            break  # larger ratios leave even fewer channels
        cands.append(r)
    keys = _LazyKeys(cands, reduction)
    i = bisect.bisect_left(keys, t)
    best = [cands[j] for j in (i - 1, i) if 0 <= j < len(cands)]
    r = min(best, key=lambda c: (abs(reduction(c) - t), c))
    return r, reduction(r)


class _LazyKeys:
    """A sequence view ``keys[i] = fn(items[i])`` evaluated on demand (for bisect)."""

    def __init__(self, items, fn):
        self.items, self.fn = items, fn

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.fn(self.items[i])


MACS_KEYS = ("macs", "macs_nominal", "macs_cagc")


def default_macs_fn(key: str = "macs") -> Callable[[GeneratorConfig], int]:
    """``cfg -> total MACs`` from the project's cost accounting (``gancomp_jax.metrics.cost``).

    ``key`` picks the counting convention: ``'macs'`` (executed), ``'macs_nominal'`` or
    ``'macs_cagc'`` (CAGC's ``Util/Calculators.py`` convention).
    """
    if key not in MACS_KEYS:
        raise ValueError(f"MAC convention must be one of {MACS_KEYS}, got {key!r}")
    try:
        from gancomp_jax.metrics.cost import generator_cost
    except ImportError as e:
        raise ValueError("target_reduction needs MAC counting from gancomp_jax.metrics.cost "
                         f"(generator_cost), which is not available: {e}") from None
    return lambda cfg: int(generator_cost(cfg)[key])
