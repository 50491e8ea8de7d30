"""Commit metrics, built at scrape time from the service's status (labels: record, target,
origin, reason: all bounded by the configuration or fixed sets)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

GAUGES = (
    ("delivered_bytes", "delivered_bytes", "Period-to-date bytes per target (see origin)."),
    ("projected_bytes", "projected_bytes", "Projected end-of-period bytes at the current share."),
    ("pace_bytes", "pace_bytes", "Where delivery should be now to land on the commit."),
    ("progress_ratio", "progress", "Delivered over commit (p95: billed p95 over commit)."),
    ("pacing_error_ratio", "pacing_error", "(delivered - pace) / commit; 0 = on pace."),
    ("target_share", "target_share", "Delivered share the controller aims at from now on."),
    ("answer_share", "answer_share", "Answer weight share the controller hands the commit step."),
    ("p95_bps", "p95_bps", "p95 contracts: billed 95th percentile so far, bits/s."),
    ("free_slots_left", "free_slots_left", "p95 contracts: free top-5 % samples left."),
    ("feed_age_seconds", "feed_age", "Seconds since the usage feed last reported the target."),
    ("users_per_answer", "users_per_answer",
     "Estimate: users one answer stands for (resolver demand), over the record's average."),
)  # fmt: skip


class CommitCollector(Collector):
    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        status = self.service.status()
        labels = ("record", "target", "origin")
        families = {
            key: GaugeMetricFamily(f"gslb_commit_{name}", text, labels=labels)
            for name, key, text in GAUGES
        }
        infeasible = GaugeMetricFamily(
            "gslb_commit_infeasible_bytes",
            "commit-infeasible: bytes the commit is projected to miss without hurting users.",
            labels=("record", "target"),
        )
        events = CounterMetricFamily(
            "gslb_commit_events", "Controller events (period-rollover, commit-infeasible, ...).",
            labels=("record", "reason"),
        )  # fmt: skip
        for record, info in status["records"].items():
            for target, state in info["targets"].items():
                origin = "estimate" if state.get("estimate") else "feed"
                for key, family in families.items():
                    if state.get(key) is not None:
                        family.add_metric([record, target, origin], float(state[key]))
                short = (state.get("infeasible") or {}).get("short_bytes", 0)
                infeasible.add_metric([record, target], float(short))
            for reason, count in info["events"].items():
                events.add_metric([record, reason], count)
        yield from families.values()
        yield infeasible
        yield events
        feed = CounterMetricFamily(
            "gslb_commit_usage_items", "Usage feed items by result (accepted or why refused).",
            labels=("result",),
        )  # fmt: skip
        for reason, count in status["feed"].items():
            feed.add_metric([reason], count)
        yield feed
        fleet = CounterMetricFamily(
            "gslb_commit_fleet_usage_items", "Usage intervals from fleet peers by result.",
            labels=("result",),
        )  # fmt: skip
        for reason, count in status.get("fleet_feed", {}).items():
            fleet.add_metric([reason], count)
        yield fleet
        for key, name, text in (
            ("fleet_estimates", "fleet_estimates", "Fleet peers' own estimates by result."),
            ("fleet_states", "fleet_states", "Fleet peers' controller states by result."),
        ):
            family = CounterMetricFamily(f"gslb_commit_{name}", text, labels=("result",))
            for result, count in status.get(key, {}).items():
                family.add_metric([result], count)
            yield family
        problems = CounterMetricFamily(
            "gslb_commit_problems", "State file and controller problems by kind.", labels=("kind",)
        )
        for kind, count in status["problems"].items():
            problems.add_metric([kind], count)
        yield problems
