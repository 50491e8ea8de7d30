"""The status page's history: per-minute answer counts from cumulative counters, the timeline."""

from __future__ import annotations

import tracemalloc

from gslb.health.state import Transition
from gslb.history import AnswerHistory, History, HistorySampler, Timeline
from gslb.stats import Stats

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 60  # a minute boundary
A = ("content.example.com.", "cdn-a.net.", "pool")
B = ("content.example.com.", "cdn-b.net.", "pool")
O = ("content.example.com.", "origin", "origin")  # noqa: E741


def test_increase_since_the_last_sample_is_filed_under_its_minute():
    history = AnswerHistory()
    history.observe({A: 10, B: 5}, T0 + 1)
    history.observe({A: 16, B: 5}, T0 + 30)  # same minute: +6 for A
    history.observe({A: 20, B: 9, O: 2}, T0 + 61)  # next minute
    assert history.window(1, T0 + 61) == {A: 4, B: 4, O: 2}
    assert history.window(5, T0 + 61) == {A: 20, B: 9, O: 2}
    start, columns = history.per_minute(A[0], T0 + 61)
    assert start + 59 == int((T0 + 61) // 60)
    assert {target: counts[-2:] for target, counts in columns.items()} == {
        "cdn-a.net.": [16, 4], "cdn-b.net.": [5, 4], "origin": [0, 2]}  # fmt: skip
    assert all(len(counts) == 60 and not any(counts[:-2]) for counts in columns.values())


def test_minutes_older_than_the_ring_fall_out_and_idle_series_are_dropped():
    history = AnswerHistory(minutes=60)
    history.observe({A: 10}, T0)
    history.observe({A: 10, B: 3}, T0 + 30 * 60)
    assert history.window(60, T0 + 30 * 60) == {A: 10, B: 3}
    assert history.window(60, T0 + 60 * 60) == {B: 3}  # A's minute is 60 minutes old
    assert set(history.series) == {B}
    assert history.window(60, T0 + 3 * 3600) == {}
    assert history.series == {}


def test_a_late_worker_is_counted_once_when_it_reports_again():
    """Merged totals dip when one worker's snapshot is missing; nothing is counted twice."""
    history = AnswerHistory()
    history.observe({A: 100}, T0)  # workers 1 + 2: 60 + 40
    history.observe({A: 70}, T0 + 5)  # worker 2 late: only worker 1 (now 70)
    history.observe({A: 130}, T0 + 10)  # both again: 80 + 50
    assert history.window(1, T0 + 10) == {A: 130}


def test_a_clock_stepping_back_keeps_filing_the_current_minute():
    history = AnswerHistory()
    history.observe({A: 1}, T0 + 120)
    history.observe({A: 3}, T0)  # the wall clock went back two minutes
    assert history.window(1, T0 + 120) == {A: 3}


def test_memory_per_series_is_under_a_kilobyte():
    """The figure the module docstring and README state: ~0.6 KiB per (record, target, reason)."""
    keys = [(f"r{i}.example.com.", f"cdn-{t}.net.", r) for i in range(1000) for t in "abc"
            for r in ("pool", "fallback")]  # fmt: skip
    history = AnswerHistory()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for minute in range(60):  # a full hour of traffic on every series
        history.observe({key: minute * 1000 + 500 for key in keys}, T0 + 60 * minute)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    per_series = used / len(keys)  # the ring, its dict entry, the last total for deltas
    assert len(history.series) == 6000
    print(f"history: {per_series:.0f} bytes per series")
    assert per_series < 1024, per_series


def test_timeline_keeps_the_newest_and_filters_by_age():
    timeline = Timeline(size=3)
    for i in range(5):
        timeline.on_transition(Transition(f"check{i}", T0 + i, "up", "down", "status 503"))
    assert [c.check for c in timeline.recent(T0)] == ["check4", "check3", "check2"]
    assert [c.check for c in timeline.recent(T0 + 3.5)] == ["check4"]


async def test_sampler_sums_the_processes_like_metrics_does():
    one, two = Stats(), Stats()
    one.answers[A] += 3
    two.answers[A] += 4
    two.answers[B] += 1
    history = History()

    async def source():
        return [one.snapshot(), two.snapshot()]

    sampler = HistorySampler(history, source, clock=lambda: T0 + 5)
    await sampler.sample()
    assert history.answers.window(5, T0 + 5) == {A: 7, B: 1}
    assert history.sampled_at == T0 + 5


def test_summary_gives_both_windows_per_record_in_one_pass():
    history = AnswerHistory()
    history.observe({A: 10, O: 1}, T0 - 20 * 60)  # 20 minutes ago: in the hour, not in 5 min
    history.observe({A: 14, O: 1, B: 2}, T0 + 30)
    summary = history.summary(5, T0 + 30)
    assert summary == {A[0]: {A[1:]: (4, 14), O[1:]: (0, 1), B[1:]: (2, 2)}}
    assert {k: v[0] for k, v in summary[A[0]].items() if v[0]} == {
        (a, b): n for (_, a, b), n in history.window(5, T0 + 30).items()}  # fmt: skip
