"""Parsing of seed lists such as ``'0-7'`` or ``'1,5,10-12'`` (NVlabs ``num_range``), and checks of
the numeric settings every sampling / metric entry point shares (``truncation_psi``, ``num_gen``)."""

from __future__ import annotations


MAX_SEEDS = 1_000_000


def parse_seeds(spec: str | int, max_count: int = MAX_SEEDS) -> list[int]:
    """``'0-3,7'`` → ``[0, 1, 2, 3, 7]``; seeds must be integers in [0, 2**32), at most
    ``max_count`` of them (counted before the list is built: ``0-10000000000`` is one error)."""
    if isinstance(spec, int):
        spec = str(spec)
    if len(str(spec)) > 100_000:
        raise ValueError(f"invalid seed list: {len(str(spec))} characters; give ranges such as 0-999")
    count = 0
    for part in str(spec).split(","):
        part = part.strip()
        if "-" in part[1:]:
            lo, hi = part.split("-", 1)
            try:
                count += max(int(hi) - int(lo) + 1, 0)
            except ValueError:
                pass  # reported below
        elif part:
            count += 1
    if count > max_count:
        raise ValueError(f"invalid seed list {str(spec)[:60]!r}: {count} seeds, more than {max_count}; split the "
                         f"work into several runs")
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


MAX_BATCH = 4096


def check_batch_size(value, key: str = "batch_size", maximum: int = MAX_BATCH) -> int:
    """``value`` as an int in [1, maximum] (a batch is held in memory at once)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if not 1 <= int(value) <= maximum:
        raise ValueError(f"{key} must be in [1, {maximum}] (images held in memory at once), got {value!r}")
    return int(value)


def check_truncation_psi(value, key: str = "truncation_psi") -> float:
    """``value`` as a float if it is a finite number (NaN or infinity would give images of NaN)."""
    import math

    try:
        psi = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(psi):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return psi


def check_sample_count(value, key: str = "num_gen", minimum: int = 2):
    """``value`` (None: the metric's default) as an int of at least ``minimum`` (statistics such as a
    covariance need at least 2 samples)."""
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ValueError(f"{key} must be at least {minimum} (0: the metric's own count), got {value!r}")
    return int(value)
