"""A mergeable latency histogram with relative error: logarithmic bins (DDSketch's idea).

Bin ``i`` holds durations in ``[MIN_MS * GAMMA**i, MIN_MS * GAMMA**(i+1))``, so any quantile is
known within 2 % whatever the scale, two histograms merge by adding counts (time buckets,
levels, and later fleet nodes combine exactly), and the size is bounded: durations are clamped
to ``[MIN_MS, MAX_MS]``, which is at most ``MAX_BINS`` bins, usually a handful.
"""

from __future__ import annotations

import math

GAMMA = 1.04
MIN_MS = 0.1  # loopback fetches take well under a millisecond
MAX_MS = 60_000.0  # a fetch that takes a minute failed, whatever it says
_LOG_GAMMA = math.log(GAMMA)
MAX_BINS = int(math.log(MAX_MS / MIN_MS) / _LOG_GAMMA) + 1


def bin_of(ms: float) -> int:
    ms = min(max(ms, MIN_MS), MAX_MS)
    return min(int(math.log(ms / MIN_MS) / _LOG_GAMMA), MAX_BINS - 1)


def value_of(index: int) -> float:
    """The bin's representative duration: its geometric midpoint."""
    return MIN_MS * GAMMA ** (index + 0.5)


def add(bins: dict[int, float], ms: float, weight: float = 1.0) -> None:
    index = bin_of(ms)
    bins[index] = bins.get(index, 0.0) + weight


def merge(into: dict[int, float], other: dict[int, float]) -> None:
    for index, count in other.items():
        into[index] = into.get(index, 0.0) + count


def quantile(bins: dict[int, float], q: float) -> float | None:
    """The q-quantile (0..1) of the recorded durations, None when empty."""
    total = sum(bins.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index in sorted(bins):
        seen += bins[index]
        if seen >= rank:
            return value_of(index)
    return value_of(max(bins))


def quantiles(bins: dict[int, float], qs: tuple[float, ...]) -> tuple[float | None, ...]:
    """Several quantiles (ascending ``qs``) in one pass over the sorted bins."""
    total = sum(bins.values())
    if total <= 0:
        return tuple(None for _ in qs)
    out: list[float] = []
    seen = 0.0
    wanted = iter(qs)
    rank = next(wanted) * total
    for index in sorted(bins):
        seen += bins[index]
        while seen >= rank:
            out.append(value_of(index))
            following = next(wanted, None)
            if following is None:
                return tuple(out)
            rank = following * total
    while len(out) < len(qs):
        out.append(value_of(max(bins)))
    return tuple(out)
