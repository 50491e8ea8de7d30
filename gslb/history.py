"""Bounded in-memory history for the status page: answers per minute, health transitions.

Nothing here runs on the answer path. The DNS path already counts every GSLB decision in
``gslb.stats`` (``answers[(record, target, reason)] += 1``, the counter behind
``gslb_answers_total``); a ``HistorySampler`` in the supervisor reads those cumulative counts
every few seconds, the same way ``/metrics`` does (summed over ``--workers`` processes), and
files the increase under the current wall-clock minute. Health transitions arrive as prober
events, which happen a few times an hour, not per query.

Memory, bounded by the configuration: one ring of ``MINUTES`` counters (``array('L')``) per
(record, target, reason) series that had an answer in the last hour, plus its last total for
the deltas and its place in the per-record index: about 0.8 KiB per series (835 bytes measured
in ``tests/test_history.py``), so 1,000 GSLB names x 3 targets x 2 reasons take about 5 MiB.
A series with no answer for an hour is dropped. Transitions: the last ``TRANSITIONS`` (a few
hundred bytes each).
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from gslb.stats import merge
from gslb.tasks import stop_task

log = logging.getLogger(__name__)

MINUTES = 60  # ring length: the page shows the last 5 minutes and the last hour
TRANSITIONS = 200  # health transitions kept for the timeline
SAMPLE_INTERVAL = 5.0  # seconds between samples of the answer counters
SAMPLE_TIMEOUT = 5.0  # a sample never waits longer on the DNS processes than this

Key = tuple[str, str, str]  # (record, target, reason), as in gslb.stats.Stats.answers


class AnswerHistory:
    """Answers per minute per (record, target, reason) over the last ``minutes`` minutes.

    Fed with cumulative totals; keeps the increase since the previous sample. A total that
    went down (a worker whose snapshot was late this time) keeps the higher baseline, so its
    answers are counted once, when it reports again, and never twice.
    """

    def __init__(self, minutes: int = MINUTES) -> None:
        if minutes < 1:
            raise ValueError("minutes must be at least 1")
        self.minutes = minutes
        self.current: int | None = None  # the minute number (epoch seconds // 60) now filled
        self.series: dict[Key, array] = {}  # one ring of per-minute counts per series
        self.by_record: dict[str, set[Key]] = {}  # record -> its series, for per_minute
        self.baseline: dict[Key, int] = {}

    def observe(self, totals: Mapping[Key, int], now: float) -> None:
        """File the increase of ``totals`` since the last call under ``now``'s minute."""
        self._advance(int(now // 60))
        slot = self.current % self.minutes
        baseline = self.baseline
        for key, total in totals.items():
            delta = total - baseline.get(key, 0)
            if delta <= 0:
                continue
            baseline[key] = total
            counts = self.series.get(key)
            if counts is None:
                counts = self.series[key] = array("L", [0]) * self.minutes
                self.by_record.setdefault(key[0], set()).add(key)
            counts[slot] += delta

    def _advance(self, minute: int) -> None:
        """Move to ``minute``, zeroing the slots of minutes that fell out of the ring. A clock
        that stepped back keeps filing the current minute."""
        if self.current is not None and minute <= self.current:
            return
        first = minute - self.minutes + 1
        if self.current is not None:
            first = max(first, self.current + 1)
        slots = [m % self.minutes for m in range(first, minute + 1)]
        for key, counts in list(self.series.items()):
            for slot in slots:
                counts[slot] = 0
            if not any(counts):
                del self.series[key]
                keys = self.by_record[key[0]]
                keys.discard(key)
                if not keys:
                    del self.by_record[key[0]]
        self.current = minute

    def window(self, minutes: int, now: float) -> dict[Key, int]:
        """Answers per series in the last ``minutes`` minutes, the current one included."""
        self._advance(int(now // 60))
        minutes = max(1, min(minutes, self.minutes))
        end = self.current % self.minutes + 1  # slots are contiguous modulo the ring
        start = end - minutes
        out = {}
        for key, counts in self.series.items():
            total = span_sum(counts, start, end)
            if total:
                out[key] = total
        return out

    def summary(self, recent: int, now: float) -> dict[str, dict[tuple[str, str], tuple]]:
        """In one pass: record -> {(target, reason): (answers in the last ``recent`` minutes,
        answers in the whole ring)}; the current minute counts as recent."""
        self._advance(int(now // 60))
        end = self.current % self.minutes + 1  # slots are contiguous modulo the ring
        start = end - max(1, min(recent, self.minutes))
        out: dict[str, dict] = {}
        for (record, target, reason), counts in self.series.items():
            last = span_sum(counts, start, end)
            out.setdefault(record, {})[(target, reason)] = (last, sum(counts))
        return out

    def per_minute(self, record: str, now: float) -> tuple[int, dict[str, list[int]]]:
        """(first minute number, answers per minute for each target, oldest minute first) of
        one record over the whole ring; reasons are summed."""
        self._advance(int(now // 60))
        start = self.current - self.minutes + 1
        pivot = start % self.minutes
        out: dict[str, list[int]] = {}
        for key in self.by_record.get(record, ()):
            counts = self.series[key]
            ordered = (counts[pivot:] + counts[:pivot]).tolist()
            previous = out.get(key[1])
            if previous is not None:  # the same target under another reason
                ordered = list(map(sum, zip(previous, ordered, strict=True)))
            out[key[1]] = ordered
        return start, out

    def records(self) -> set[str]:
        return set(self.by_record)


def span_sum(counts: array, start: int, end: int) -> int:
    """Sum of the slots from ``start`` (negative: wrapping round the ring) up to ``end``."""
    if start >= 0:
        return sum(counts[start:end])
    return sum(counts[start:]) + sum(counts[:end])


@dataclass(frozen=True, slots=True)
class Change:
    """One health transition as the timeline shows it."""

    at: float  # wall clock
    check: str
    old: str
    new: str
    reason: str
    region: str = ""  # "" standalone; the fleet fills in where the change was seen


class Timeline:
    """The last ``TRANSITIONS`` health transitions, newest last (a prober event listener)."""

    def __init__(self, size: int = TRANSITIONS) -> None:
        self.changes: deque[Change] = deque(maxlen=size)

    def on_transition(self, transition: object) -> None:
        """``gslb.health.prober.Events.transition`` listener (a ``state.Transition``)."""
        self.add(
            Change(transition.at, transition.key, transition.old, transition.new, transition.reason)
        )

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def recent(self, since: float) -> list[Change]:
        """Changes at or after ``since``, newest first."""
        return [c for c in reversed(self.changes) if c.at >= since]


class History:
    """What the status page reads: answers per minute and the health timeline."""

    def __init__(self, minutes: int = MINUTES, transitions: int = TRANSITIONS) -> None:
        self.answers = AnswerHistory(minutes)
        self.timeline = Timeline(transitions)
        self.sampled_at: float | None = None


SnapshotSource = Callable[[], Awaitable[Iterable[dict]]]


class HistorySampler:
    """Owns the task that feeds ``History.answers`` from the processes' answer counters.

    ``source`` returns ``Stats.snapshot()`` dicts, one per DNS process (``App.stats_snapshots``,
    bounded by its own timeout); they are summed as ``/metrics`` sums them. ``sample()`` can also
    be called by a reader that wants the current minute up to date (the status page does);
    samples never overlap.
    """

    def __init__(
        self,
        history: History,
        source: SnapshotSource,
        interval: float = SAMPLE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self.source = source
        self.interval = interval
        self.clock = clock
        self.lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        async with self.lock:
            try:
                async with asyncio.timeout(SAMPLE_TIMEOUT):
                    snapshots = list(await self.source())
            except TimeoutError:
                log.warning("history: answer counters not read within %.0f s", SAMPLE_TIMEOUT)
                return
            now = self.clock()
            self.history.answers.observe(merge(snapshots)["answers"], now)
            self.history.sampled_at = now

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:  # the page may lag; the sampler must not die
                log.exception("history: sample failed")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name="gslb-history")

    async def stop(self) -> None:
        task, self.task = self.task, None
        await stop_task(task)
