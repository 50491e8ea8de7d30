"""RUM metrics, read from the service at scrape time: beacons and samples by result, keys per
level, decisions per level, set changes (flaps), and the cost of a decision round. Labels are
records, levels and fixed reasons: never a network or an address."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gslb.rum.fleet import FLEET_REASONS
from gslb.rum.ingest import BEACON_REASONS, SAMPLE_REASONS
from gslb.rum.store import PARENTS


class RumCollector(Collector):
    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        ingest = service.ingest
        beacons = CounterMetricFamily(
            "gslb_rum_beacons", "RUM beacons by result (accepted or the rejection reason).",
            labels=("result",),
        )  # fmt: skip
        for result in ("accepted", *BEACON_REASONS):
            beacons.add_metric([result], ingest.beacons.get(result, 0))
        yield beacons
        samples = CounterMetricFamily(
            "gslb_rum_samples", "RUM measurements in beacons by result.", labels=("result",)
        )
        for result in ("accepted", "clamped", *SAMPLE_REASONS):
            samples.add_metric([result], ingest.samples.get(result, 0))
        yield samples
        bulk = CounterMetricFamily(
            "gslb_rum_bulk_samples", "Bulk-feed samples by result.", labels=("result",)
        )
        for result in ("accepted", "rejected"):
            bulk.add_metric([result], ingest.bulk.get(result, 0))
        yield bulk
        fleet = CounterMetricFamily(
            "gslb_rum_fleet_values",
            "Peers' RUM aggregates received through the fleet: accepted or the refusal reason.",
            labels=("result",),
        )
        for result in ("accepted", *FLEET_REASONS):
            fleet.add_metric([result], service.fleet_values.get(result, 0))
        yield fleet
        yield from self._store(service)

    def _store(self, service: Any) -> Iterator[Metric]:
        keys = GaugeMetricFamily(
            "gslb_rum_keys", "Level keys holding measurements (all records).", labels=("level",)
        )
        for level, count in service.store.keys().items():
            keys.add_metric([level], count)
        yield keys
        decided = GaugeMetricFamily(
            "gslb_rum_decisions",
            "Level keys whose own decision is in the snapshot (a finer key deciding the same "
            "as its parent is left out, so its clients get the parent's wider ECS scope).",
            labels=("record", "level"),
        )
        changes = CounterMetricFamily(
            "gslb_rum_set_changes", "Changes of a level key's kept set (flaps).",
            labels=("record", "level"),
        )  # fmt: skip
        for name, _ in sorted(service.records):
            for level in PARENTS:
                decided.add_metric([name, level], service.decider.decided.get((name, level), 0))
                changes.add_metric([name, level], service.decider.changes.get((name, level), 0))
        yield decided
        yield changes
        yield GaugeMetricFamily(
            "gslb_rum_round_seconds", "Duration of the last decision round.",
            service.last_round_seconds,
        )  # fmt: skip
        yield CounterMetricFamily(
            "gslb_rum_evicted_networks", "Client-network keys dropped to bound memory.",
            sum(t.evicted for t in service.store.tables.values()),
        )  # fmt: skip
