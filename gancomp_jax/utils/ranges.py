"""Parsing of seed lists such as ``'0-7'`` or ``'1,5,10-12'`` (NVlabs ``num_range``)."""

from __future__ import annotations


def parse_seeds(spec: str | int) -> list[int]:
    """``'0-3,7'`` → ``[0, 1, 2, 3, 7]``; seeds must be integers in [0, 2**32)."""
    if isinstance(spec, int):
        spec = str(spec)
    seeds: list[int] = []
    for part in str(spec).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                seeds.extend(range(lo_i, hi_i + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ValueError(f"invalid seed list {spec!r}: {part!r} is not an integer or a range a-b") from None
    if not seeds:
        raise ValueError(f"invalid seed list {spec!r}: no seeds")
    bad = [s for s in seeds if not 0 <= s < 2 ** 32]
    if bad:
        raise ValueError(f"invalid seed list {spec!r}: seeds must be in [0, 2**32), got {bad[:3]}")
    return seeds
