"""The estimate without a feed: answers per target, re-weighted by the demand behind them.

Each read of the answer counters gives, per record, the answers each target got since the
last read (exact) and the users the sampled ones stood for (``gslb.dns.demand``, one answer in
N weighed by its resolver cache's demand). A target's *users per answer* is its demand over
its answers, as decayed sums over about an hour (``HALF_LIFE``), so it follows a change of
resolver mix but not the noise of one read. Each read's answers are then multiplied by their
target's users per answer relative to the record's average (over the same decayed sums):
over time the total stays the answer count (``bytes_per_answer`` keeps its meaning), the
split between targets follows the users.

A target with no sample yet counts at the record's average, which is the plain answer count;
so is every target when demand sampling is off (``--commit-demand-sample 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

HALF_LIFE = 3600.0  # seconds for the users-per-answer sums to halve


class DemandWeights:
    """Decayed (answers, users) sums per target of one record."""

    def __init__(self, half_life: float = HALF_LIFE) -> None:
        self.half_life = half_life
        self.sums: dict[str, list[float]] = {}  # target -> [answers, users]
        self.at: float | None = None

    def units(
        self, answers: Mapping[str, float], users: Mapping[str, float], now: float
    ) -> dict[str, float]:
        """Estimate units per target for one read: ``answers`` (this read's, TTL-weighted)
        re-weighted by each target's users per answer; ``users`` is this read's demand."""
        self._decay(now)
        for target, count in answers.items():
            self.sums.setdefault(target, [0.0, 0.0])[0] += count
        for target, value in users.items():
            self.sums.setdefault(target, [0.0, 0.0])[1] += value
        average = self.average()
        if average is None:
            return dict(answers)
        return {t: count * self.per_answer(t, average) / average for t, count in answers.items()}

    def per_answer(self, target: str, average: float) -> float:
        """Users per answer of ``target`` (the record's average while it has no sample)."""
        counts = self.sums.get(target)
        if counts is None or counts[0] <= 0 or counts[1] <= 0:
            return average
        return counts[1] / counts[0]

    def relative(self, target: str) -> float:
        """``target``'s users per answer over the record's average: what one of its answers
        counts for in the estimate (1.0 while nothing is sampled)."""
        average = self.average()
        return 1.0 if average is None else self.per_answer(target, average) / average

    def average(self) -> float | None:
        """Users per answer over the record's sampled targets; None before any sample."""
        sampled = [s for s in self.sums.values() if s[0] > 0 and s[1] > 0]
        if not sampled:
            return None
        return sum(s[1] for s in sampled) / sum(s[0] for s in sampled)

    def _decay(self, now: float) -> None:
        if self.at is not None and now > self.at:
            factor = math.exp(-math.log(2) * (now - self.at) / self.half_life)
            for counts in self.sums.values():
                counts[0] *= factor
                counts[1] *= factor
        if self.at is None or now > self.at:
            self.at = now
