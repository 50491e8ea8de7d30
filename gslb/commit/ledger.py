"""Delivered volume per target, in 5-minute slots: from a usage feed, else estimated.

A usage feed (``POST /admin/usage``) reports bytes per target per interval, as CDN logs and
billing APIs do; intervals are spread over the 5-minute slots they cover (the slots are also
the samples of 95th-percentile billing). Without a feed for a slot, the slot's volume is the
estimate from gslb's own answers (``demand`` units x bytes per unit, calibrated against the
feed when one exists), and everything built on it says ``estimate``.

Bad feed input never corrupts the ledger: each item is accepted or refused with a reason, and
refusals are counted by reason.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gslb.commit.contract import SAMPLE_SECONDS

FUTURE_SLACK = 120.0  # seconds a feed interval may end after our clock (clock skew)
MAX_INTERVAL = 86400.0  # a feed item longer than a day is refused: too coarse to pace with
MIN_INTERVAL = 1.0  # billing feeds report whole seconds; shorter would make the rate absurd
CALIBRATION_SLOTS = 12
MAX_UNITS = 1e15  # a peer's estimate beyond this many answers in a period is not traffic
REASONS = ("accepted", "duplicate", "overlap", "unknown-target", "ambiguous-target", "future",
           "previous-period", "invalid")  # fmt: skip


def slot_of(moment: float) -> int:
    return math.floor(moment / SAMPLE_SECONDS)


@dataclass(slots=True)
class TargetLedger:
    """One target's period: feed and estimate per slot, accepted feed intervals."""

    period: tuple[float, float]
    feed: dict[int, float] = field(default_factory=dict)  # slot -> bytes from the feed
    estimate: dict[int, float] = field(default_factory=dict)  # slot -> demand units
    intervals: list[tuple[float, float, float]] = field(default_factory=list)  # start, end, bytes
    feed_end: float | None = None  # end of the latest accepted feed interval
    feed_seen: float | None = None  # when the feed last delivered anything for this target
    feed_total: float = 0.0  # sum of ``feed``
    estimate_total: float = 0.0  # sum of ``estimate``
    # fleet peers' estimates of the same period: node -> (their period total, their recent
    # slots); each node counts only the answers it gave, the commit is for all of them
    # (counted before its last restart, its total since, its slots)
    peers: dict[str, tuple[float, float, dict[int, float]]] = field(default_factory=dict)

    def estimate_at(self, slot: int) -> float:
        """Estimate units of one slot, this node's and its fleet peers'."""
        return self.estimate.get(slot, 0.0) + sum(p[2].get(slot, 0.0) for p in self.peers.values())

    def estimate_sum(self) -> float:
        """Estimate units of the period so far, this node's and its fleet peers'."""
        return self.estimate_total + sum(p[0] + p[1] for p in self.peers.values())

    def covered(self, slot: int) -> bool:
        return self.feed_end is not None and (slot + 1) * SAMPLE_SECONDS <= self.feed_end + 1e-6

    def to_json(self) -> dict[str, Any]:
        return {
            "period": list(self.period),
            "feed": {str(k): v for k, v in self.feed.items()},
            "estimate": {str(k): v for k, v in self.estimate.items()},
            "intervals": [list(i) for i in self.intervals],
            "feed_end": self.feed_end,
            "feed_seen": self.feed_seen,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TargetLedger:
        ledger = cls._from_json(data)
        ledger.feed_total = sum(ledger.feed.values())
        ledger.estimate_total = sum(ledger.estimate.values())
        return ledger

    @classmethod
    def _from_json(cls, data: dict[str, Any]) -> TargetLedger:
        return cls(
            period=(float(data["period"][0]), float(data["period"][1])),
            feed={int(k): float(v) for k, v in data.get("feed", {}).items()},
            estimate={int(k): float(v) for k, v in data.get("estimate", {}).items()},
            intervals=[(float(a), float(b), float(c)) for a, b, c in data.get("intervals", [])],
            feed_end=data.get("feed_end"),
            feed_seen=data.get("feed_seen"),
        )


class Ledger:
    """Delivered volume of one record's targets in their current billing periods."""

    def __init__(self, bytes_per_unit: float, feed_stale: float) -> None:
        self.targets: dict[str, TargetLedger] = {}
        self.bytes_per_unit = bytes_per_unit  # configured; ``calibration`` refines it
        self.calibration: float | None = None  # feed bytes per estimate unit, when learned
        self.feed_stale = feed_stale
        self.refused: Counter[str] = Counter()

    # -- periods ---------------------------------------------------------------------------

    def ensure(self, target: str, period: tuple[float, float]) -> str | None:
        """Start ``target``'s ledger for ``period``; a different period (rollover, or a
        reload that moved the contract) starts empty. Returns the reason when it reset."""
        current = self.targets.get(target)
        if current is not None and current.period == period:
            return None
        self.targets[target] = TargetLedger(period)
        if current is None:
            return None
        return "period-rollover" if period[0] >= current.period[1] else "period-changed"

    # -- the usage feed --------------------------------------------------------------------

    def add_feed(self, target: str, start: float, end: float, amount: float, now: float) -> str:
        """Account one feed interval; returns ``accepted`` or the reason it was refused."""
        ledger = self.targets.get(target)
        if ledger is None:
            return "unknown-target"
        if not (math.isfinite(start) and math.isfinite(end) and math.isfinite(amount)):
            return "invalid"
        if not MIN_INTERVAL <= end - start <= MAX_INTERVAL or amount < 0:
            return "invalid"
        if end > now + FUTURE_SLACK:
            return "future"
        begin, finish = ledger.period
        if end <= begin:
            return "previous-period"
        for other in _neighbours(ledger.intervals, start, end):
            if (other[0], other[1]) == (start, end) and math.isclose(other[2], amount):
                return "duplicate"  # a retried post: idempotent
            return "overlap"  # double counting, or a counter that jumped backwards
        insort(ledger.intervals, (start, end, amount))
        self._spread(
            ledger, max(start, begin), min(end, finish), amount * _inside(start, end, ledger.period)
        )
        ledger.feed_end = max(ledger.feed_end or end, end)
        ledger.feed_seen = now
        return "accepted"

    @staticmethod
    def _spread(ledger: TargetLedger, start: float, end: float, amount: float) -> None:
        """Spread ``amount`` evenly over the slots ``[start, end)`` covers."""
        if end <= start:
            return
        rate = amount / (end - start)
        for slot in range(slot_of(start), slot_of(end - 1e-9) + 1):
            lo, hi = max(start, slot * SAMPLE_SECONDS), min(end, (slot + 1) * SAMPLE_SECONDS)
            if hi > lo:
                ledger.feed[slot] = ledger.feed.get(slot, 0.0) + rate * (hi - lo)
                ledger.feed_total += rate * (hi - lo)

    # -- the estimate ------------------------------------------------------------------------

    def add_estimate(self, target: str, moment: float, units: float) -> None:
        """Demand units (answers weighted by TTL and resolver demand) seen at ``moment``."""
        ledger = self.targets.get(target)
        if ledger is None or units <= 0 or not ledger.period[0] <= moment < ledger.period[1]:
            return
        slot = slot_of(moment)
        ledger.estimate[slot] = ledger.estimate.get(slot, 0.0) + units
        ledger.estimate_total += units

    def unit_bytes(self) -> float:
        return self.calibration if self.calibration is not None else self.bytes_per_unit

    def calibrate(self) -> None:
        """Learn bytes per estimate unit from the last hour both the feed and the answers
        cover (a moving average, so one odd slot does not swing the estimate)."""
        feed = units = 0.0
        for ledger in self.targets.values():
            if ledger.feed_end is None:
                continue
            last = slot_of(ledger.feed_end) - 1
            for slot in range(last - CALIBRATION_SLOTS + 1, last + 1):
                estimated = ledger.estimate_at(slot)  # the feed counts every node's traffic
                if estimated > 0 and slot in ledger.feed:
                    feed += ledger.feed[slot]
                    units += estimated
        if units > 0 and feed > 0:
            ratio = feed / units
            old = self.calibration
            self.calibration = ratio if old is None else old + 0.2 * (ratio - old)

    def own_estimate(self, target: str, slots: int) -> dict[str, Any] | None:
        """What this node shares with its fleet peers: its period, its own estimate total
        and its last ``slots`` slots (None before it estimated anything)."""
        ledger = self.targets.get(target)
        if ledger is None or not ledger.estimate:
            return None
        newest = max(ledger.estimate)
        recent = {str(s): v for s, v in ledger.estimate.items() if s > newest - slots}
        return {"period": list(ledger.period), "total": ledger.estimate_total, "slots": recent}

    def set_peer_estimate(self, target: str, node: str, data: dict[str, Any]) -> str:
        """A fleet peer's estimate (``own_estimate``'s form) replaces what it said before."""
        ledger = self.targets.get(target)
        if ledger is None:
            return "unknown-target"
        period = (float(data["period"][0]), float(data["period"][1]))
        total = float(data["total"])
        slots = {int(k): float(v) for k, v in data["slots"].items()}
        values = [total, *slots.values()]
        if not all(math.isfinite(v) and 0 <= v <= MAX_UNITS for v in values):
            return "invalid"
        if period != ledger.period:
            return "previous-period"
        first, last = slot_of(period[0]), slot_of(period[1] - 1e-9)
        if any(not first <= slot <= last for slot in slots):
            return "invalid"
        # A peer re-sends its last hours each time: merged with what it said before, so
        # slots older than that stay counted (p95 samples, a feed's lagging tail). Its total
        # only grows within a period, unless it restarted without its state: it counts from
        # zero again, and what it counted before stays counted on top.
        before, reported, old_slots = ledger.peers.get(node, (0.0, 0.0, {}))
        if total < reported:
            before += reported
        ledger.peers[node] = (before, total, old_slots | slots)
        return "accepted"

    # -- reading -----------------------------------------------------------------------------

    def slot_bytes(self, target: str, slot: int) -> tuple[float, bool]:
        """``(bytes, measured)`` of one slot: the feed where it covers, else the estimate."""
        ledger = self.targets.get(target)
        if ledger is None:
            return 0.0, False
        if ledger.covered(slot):
            return ledger.feed.get(slot, 0.0), True
        return ledger.estimate_at(slot) * self.unit_bytes(), False

    def delivered(self, target: str, now: float) -> tuple[float, str]:
        """Period-to-date bytes and their origin: ``feed``, ``estimate`` or ``mixed``: the
        feed up to where it reaches, the estimate after that (lag, or a feed that stopped)."""
        ledger = self.targets.get(target)
        if ledger is None:
            return 0.0, "none"
        unit = self.unit_bytes()
        if ledger.feed_end is None:
            total = ledger.estimate_sum() * unit
            return total, "estimate" if total > 0 else "none"
        first = max(slot_of(ledger.feed_end), slot_of(ledger.period[0]))
        last = slot_of(min(now, ledger.period[1]) - 1e-9)
        tail = [s for s in range(first, last + 1)]
        partial = sum(ledger.feed.get(s, 0.0) for s in tail)
        estimated = sum(ledger.estimate_at(s) for s in tail) * unit
        total = ledger.feed_total - partial + estimated
        return total, "mixed" if estimated > 0 else "feed"

    def window(self, target: str, end_slot: int, slots: int) -> float:
        return sum(self.slot_bytes(target, s)[0] for s in range(end_slot - slots + 1, end_slot + 1))

    def samples(self, target: str, now: float) -> list[float]:
        """Bits per second of every complete 5-minute slot of the period so far."""
        ledger = self.targets[target]
        first, last = slot_of(ledger.period[0]), slot_of(now) - 1
        return [self.slot_bytes(target, s)[0] * 8 / SAMPLE_SECONDS for s in range(first, last + 1)]

    def feed_age(self, target: str, now: float) -> float | None:
        ledger = self.targets.get(target)
        if ledger is None or ledger.feed_seen is None:
            return None
        return max(0.0, now - ledger.feed_seen)

    def feed_fresh(self, now: float) -> bool:
        ages = [self.feed_age(t, now) for t in self.targets]
        return bool(ages) and all(a is not None and a <= self.feed_stale for a in ages)

    def measured_end(self) -> float | None:
        """The latest time every target's feed covers (None: some target has no feed)."""
        ends = [t.feed_end for t in self.targets.values()]
        return None if not ends or any(e is None for e in ends) else min(ends)  # type: ignore[type-var]

    def to_json(self) -> dict[str, Any]:
        return {
            "targets": {t: ledger.to_json() for t, ledger in self.targets.items()},
            "calibration": self.calibration,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.targets = {t: TargetLedger.from_json(v) for t, v in data.get("targets", {}).items()}
        self.calibration = data.get("calibration")


def _neighbours(intervals: list[tuple[float, float, float]], start: float, end: float):
    """Accepted intervals that overlap ``[start, end)``."""
    index = bisect_left(intervals, (start, -math.inf, -math.inf))
    for other in intervals[max(0, index - 1) : index + 1]:
        if other[0] < end and start < other[1]:
            yield other
    for other in intervals[index + 1 :]:
        if other[0] >= end:
            break
        yield other


def _inside(start: float, end: float, period: tuple[float, float]) -> float:
    """The fraction of ``[start, end)`` inside the period (an item may straddle its start)."""
    lo, hi = max(start, period[0]), min(end, period[1])
    return max(0.0, hi - lo) / (end - start)
