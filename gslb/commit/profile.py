"""The traffic profile: how much a record carries at each hour of the week.

Commits are paced on expected traffic, not on the clock: a month's last Sunday night carries far
less than its Tuesday evenings, so "30 % of the month elapsed" is not "30 % of the traffic
delivered". The profile keeps one moving average of bytes per 5-minute slot for each of the 168
hours of the week (diurnal and weekly shape, carried from period to period), and a level that
follows the last day's traffic against that shape (growth, holidays).
"""

from __future__ import annotations

from typing import Any

from gslb.commit.contract import SAMPLE_SECONDS

HOURS = 168
LEARN = 0.2  # moving-average weight of a new slot in its hour-of-week bin
LEVEL_SLOTS = 288  # the level compares the last day with the profile
# The level is bounded: traffic a thousand times above or below its usual shape is a broken
# feed, not a holiday (a hostile feed of denormal byte counts made the expected traffic
# a few 1e-303 bytes and the level infinite).
LEVEL_RANGE = (1e-3, 1e3)


def hour_of_week(moment: float) -> int:
    """0 = Monday 00:00 UTC (the epoch was a Thursday)."""
    return int((moment // 3600 + 72) % HOURS)


class Profile:
    def __init__(self) -> None:
        self.bins: list[float | None] = [None] * HOURS  # bytes per slot, moving average
        self.recent: list[tuple[float, float]] = []  # (actual, expected) of the last slots
        self._prefix: list[float] | None = None  # cumulative bytes per hour of the week
        self._level: float | None = None

    def learn(self, slot_start: float, total_bytes: float) -> None:
        """Account one completed slot's total volume over every target."""
        index = hour_of_week(slot_start)
        expected = self.rate(index)
        old = self.bins[index]
        self.bins[index] = total_bytes if old is None else old + LEARN * (total_bytes - old)
        self._prefix = None
        if expected is not None:
            self.recent.append((total_bytes, expected))
            del self.recent[:-LEVEL_SLOTS]
            self._level = None

    def rate(self, index: int) -> float | None:
        """Expected bytes per slot in hour ``index``; unseen hours take the mean of seen ones."""
        value = self.bins[index]
        if value is not None:
            return value
        seen = [b for b in self.bins if b is not None]
        return sum(seen) / len(seen) if seen else None

    def level(self) -> float:
        """Recent traffic over what the shape expected (1.0 = as usual)."""
        if self._level is None:
            self._level = self._compute_level()
        return self._level

    def _compute_level(self) -> float:
        actual = sum(a for a, _ in self.recent)
        expected = sum(e for _, e in self.recent)
        if expected < 1.0 or actual <= 0:  # under one byte expected: nothing to compare
            return 1.0
        low, high = LEVEL_RANGE
        return min(high, max(low, actual / expected))

    def expected(self, start: float, end: float) -> float | None:
        """Expected bytes over ``[start, end)``; None before anything was learned."""
        if end <= start:
            return 0.0
        if self._cumulative(start + 3600 * HOURS) - self._cumulative(start) <= 0:
            return None  # nothing learned yet
        return (self._cumulative(end) - self._cumulative(start)) * self.level()

    def _cumulative(self, moment: float) -> float:
        """Expected bytes from the first Monday before the epoch until ``moment``."""
        if self._prefix is None:
            prefix, total = [0.0], 0.0
            for index in range(HOURS):
                total += (self.rate(index) or 0.0) * 3600 / SAMPLE_SECONDS
                prefix.append(total)
            self._prefix = prefix
        hours = moment / 3600 + 72
        weeks, within = divmod(hours, HOURS)
        index = int(within)
        partial = self._prefix[index + 1] - self._prefix[index]
        return weeks * self._prefix[-1] + self._prefix[index] + (within - index) * partial

    def to_json(self) -> dict[str, Any]:
        return {"bins": self.bins, "recent": self.recent[-LEVEL_SLOTS:]}

    def restore(self, data: dict[str, Any]) -> None:
        bins = data.get("bins")
        if bins is not None and len(bins) == HOURS:
            self.bins = [None if b is None else float(b) for b in bins]
            self._prefix = None
        self.recent = [(float(a), float(e)) for a, e in data.get("recent", [])]
        self._level = None
