"""Per-process counters on the answer path: plain dicts, read by the metrics exporter at scrape.

Incrementing a dict entry costs a fraction of a microsecond; a prometheus-client ``labels()``
call costs several. So the hot path counts here, and ``gslb.metrics`` turns these into
Prometheus families when scraped (and sums them across worker processes).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

# Query handling latency buckets, seconds (Prometheus histogram upper bounds).
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


@dataclass(slots=True)
class Stats:
    # (zone, qtype, rcode, transport) -> count; zone "" when no zone of ours matched
    queries: defaultdict = field(default_factory=lambda: defaultdict(int))
    # (record, target, reason) -> count
    answers: defaultdict = field(default_factory=lambda: defaultdict(int))
    # (family, scope) -> count, for queries carrying EDNS Client Subnet
    ecs: defaultdict = field(default_factory=lambda: defaultdict(int))
    # transport -> count
    truncated: defaultdict = field(default_factory=lambda: defaultdict(int))
    malformed: defaultdict = field(default_factory=lambda: defaultdict(int))
    tcp_connections: int = 0
    tcp_refused: int = 0
    # reason (idle, read_timeout, write_timeout, oversize) -> TCP connections we cut
    tcp_closed: defaultdict = field(default_factory=lambda: defaultdict(int))
    # response kind (gslb.dns.rrl.KINDS) -> UDP responses dropped / sent as TC=1 by RRL
    rrl_dropped: defaultdict = field(default_factory=lambda: defaultdict(int))
    rrl_slipped: defaultdict = field(default_factory=lambda: defaultdict(int))
    # zone -> DNSSEC signatures made / served from the signature cache / denials refused
    # because the zone's per-second ration of fresh signatures was spent
    dnssec_signatures: defaultdict = field(default_factory=lambda: defaultdict(int))
    dnssec_cache_hits: defaultdict = field(default_factory=lambda: defaultdict(int))
    dnssec_budget_drops: defaultdict = field(default_factory=lambda: defaultdict(int))
    # latency histogram: bucket counts (last = +Inf), sum of seconds
    latency_buckets: list = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    # (record, target, reason) -> users the sampled answers stood for (gslb.dns.demand), for
    # records with commits; the sampler's kept answers are weighed when a snapshot is taken
    demand: defaultdict = field(default_factory=lambda: defaultdict(float))
    demand_sampler: Any = None

    def observe_latency(self, seconds: float, count: int = 1) -> None:
        """``count`` queries that each took ``seconds`` (a batch shares its average)."""
        self.latency_sum += seconds * count
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += count

    def snapshot(self) -> dict:
        """A picklable copy, for summing across worker processes."""
        if self.demand_sampler is not None:
            self.demand_sampler.flush(self.demand, time.time())
        return {
            "queries": dict(self.queries),
            "answers": dict(self.answers),
            "ecs": dict(self.ecs),
            "truncated": dict(self.truncated),
            "malformed": dict(self.malformed),
            "tcp_connections": self.tcp_connections,
            "tcp_refused": self.tcp_refused,
            "tcp_closed": dict(self.tcp_closed),
            "rrl_dropped": dict(self.rrl_dropped),
            "rrl_slipped": dict(self.rrl_slipped),
            "dnssec_signatures": dict(self.dnssec_signatures),
            "dnssec_cache_hits": dict(self.dnssec_cache_hits),
            "dnssec_budget_drops": dict(self.dnssec_budget_drops),
            "latency_buckets": list(self.latency_buckets),
            "latency_sum": self.latency_sum,
            "demand": dict(self.demand),
        }


LABELLED = ("queries", "answers", "ecs", "truncated", "malformed", "tcp_closed", "rrl_dropped",
             "rrl_slipped", "dnssec_signatures", "dnssec_cache_hits",
             "dnssec_budget_drops", "demand")  # fmt: skip


def merge(snapshots: list[dict]) -> dict:
    """Sum several ``Stats.snapshot()`` dicts into one of the same shape."""
    total: dict = {
        "queries": defaultdict(int),
        "answers": defaultdict(int),
        "ecs": defaultdict(int),
        "truncated": defaultdict(int),
        "malformed": defaultdict(int),
        "tcp_connections": 0,
        "tcp_refused": 0,
        "tcp_closed": defaultdict(int),
        "rrl_dropped": defaultdict(int),
        "rrl_slipped": defaultdict(int),
        "dnssec_signatures": defaultdict(int),
        "dnssec_cache_hits": defaultdict(int),
        "dnssec_budget_drops": defaultdict(int),
        "latency_buckets": [0] * (len(LATENCY_BUCKETS) + 1),
        "latency_sum": 0.0,
        "demand": defaultdict(float),
    }
    for snap in snapshots:
        for key in LABELLED:
            for label, count in snap.get(key, {}).items():
                total[key][label] += count
        for key in ("tcp_connections", "tcp_refused", "latency_sum"):
            total[key] += snap[key]
        total["latency_buckets"] = [
            a + b for a, b in zip(total["latency_buckets"], snap["latency_buckets"], strict=True)
        ]
    return total
