"""Prometheus metrics: built at scrape time from plain counters, plus probe and reload metrics.

The answer path counts in ``gslb.stats`` dicts (a fraction of a microsecond per query); the
collector here turns a ``Stats.snapshot()``-shaped dict into metric families only when
Prometheus scrapes. It reads whatever ``stats_source`` returns, so a multi-process server can
hand it merged snapshots without anything here changing.

Probes and reloads are rare, so those use ordinary prometheus-client objects fed from the
prober's events. Every label is bounded by the configuration (zones, records, targets, check
keys) or by a fixed set (qtype, rcode, transport, reason, outcome): never a client address.
Series of checks that a reload removed are dropped, so editing check options (which changes
the key) does not grow the series count forever.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from gslb import __version__
from gslb.dnssec.status import describe as describe_signing
from gslb.stats import LATENCY_BUCKETS

StatsSource = Callable[[], dict]
log = logging.getLogger(__name__)
query_log = logging.getLogger("gslb.query")

PROBE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ECS_FAMILIES = {1: "ipv4", 2: "ipv6"}
RELOAD_RESULTS = ("success", "failure")

# Probe failure reasons (gslb.health.checks) -> a bounded ``outcome`` label.
OUTCOMES = (
    ("ok", "success"),
    ("status", "status"),
    ("timeout", "timeout"),
    ("TLS error", "tls"),
    ("connection refused", "refused"),
    ("connection reset", "reset"),
    ("connection closed", "closed"),
    ("name does not resolve", "dns"),
    ("body does not match", "body"),
    ("bad response", "bad_response"),
    ("connect error", "connect_error"),
)


def probe_outcome(ok: bool, reason: str) -> str:
    """``success`` or the failure class of ``reason``; ``error`` for anything unforeseen."""
    if ok:
        return "success"
    for prefix, outcome in OUTCOMES[1:]:
        if reason.startswith(prefix):
            return outcome
    return "error"


class StatsCollector(Collector):
    """DNS answer-path metrics from a ``Stats.snapshot()``-shaped dict, read at scrape."""

    def __init__(self, source: StatsSource) -> None:
        self.source = source
        self.pinned: dict | None = None  # a snapshot handed in for one render (merged, async)

    def collect(self) -> Iterator[Metric]:
        snap = self.pinned if self.pinned is not None else self.source()
        yield _counter(
            "gslb_queries", "DNS queries answered (or refused), by zone, type, rcode, transport.",
            ("zone", "qtype", "rcode", "transport"), snap["queries"].items(),
        )  # fmt: skip
        yield _counter(
            "gslb_answers", "GSLB decisions by record, chosen target and why it was chosen.",
            ("record", "target", "reason"), snap["answers"].items(),
        )  # fmt: skip
        ecs = defaultdict(int)
        for (family, scope), count in snap["ecs"].items():
            ecs[(ECS_FAMILIES.get(family, str(family)), str(scope))] += count
        yield _counter(
            "gslb_ecs_queries", "Queries with EDNS Client Subnet, by family and returned scope.",
            ("family", "scope"), ecs.items(),
        )  # fmt: skip
        yield _counter(
            "gslb_truncated", "Replies truncated (TC) to fit the transport limit.",
            ("transport",), (((k,), v) for k, v in snap["truncated"].items()),
        )  # fmt: skip
        yield _counter(
            "gslb_malformed", "Messages dropped or answered FORMERR as unparseable.",
            ("transport",), (((k,), v) for k, v in snap["malformed"].items()),
        )  # fmt: skip
        yield CounterMetricFamily(
            "gslb_tcp_connections", "TCP connections accepted.", snap["tcp_connections"]
        )
        yield CounterMetricFamily(
            "gslb_tcp_refused", "TCP connections refused by the connection limits.",
            snap["tcp_refused"],
        )  # fmt: skip
        yield from _limits(snap)
        yield _latency(snap["latency_buckets"], snap["latency_sum"])


def _limits(snap: dict) -> Iterator[Metric]:
    """What the untrusted-client limits did (``.get``: snapshots of older workers lack them)."""
    for name, doc, key, label in (
        ("gslb_tcp_closed", "TCP connections cut by a limit (idle, read/write timeout, size).",
         "tcp_closed", "reason"),
        ("gslb_rrl_dropped", "UDP responses dropped by response rate limiting, by kind.",
         "rrl_dropped", "kind"),
        ("gslb_rrl_slipped", "UDP responses sent as TC=1 by response rate limiting, by kind.",
         "rrl_slipped", "kind"),
        ("gslb_dnssec_signatures", "DNSSEC signatures computed, by zone.",
         "dnssec_signatures", "zone"),
        ("gslb_dnssec_signature_cache_hits", "DNSSEC signatures taken from the signature cache.",
         "dnssec_cache_hits", "zone"),
        ("gslb_dnssec_budget_dropped", "Denials answered SERVFAIL: the zone's per-second ration "
         "of fresh signatures was spent.", "dnssec_budget_drops", "zone"),
    ):  # fmt: skip
        items = snap.get(key, {}).items()
        yield _counter(name, doc, (label,), (((k,), v) for k, v in items))


def _counter(
    name: str, doc: str, labels: tuple[str, ...], items: Iterable[tuple[tuple, int]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, count in items:
        family.add_metric([str(part) for part in key], count)
    return family


def _latency(counts: list[int], total: float) -> HistogramMetricFamily:
    """Stats keeps one count per bucket; Prometheus wants cumulative ``le`` buckets."""
    buckets, running = [], 0
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), counts, strict=True):
        running += count
        buckets.append((floatToGoString(bound), running))
    return HistogramMetricFamily(
        "gslb_query_duration_seconds",
        "Time from receiving a query to handing the reply to the socket.",
        buckets=buckets,
        sum_value=total,
    )


def _signing(config: Any) -> Iterator[Metric]:
    """Per zone: signed or not (with the active key); per signed zone, how long the signatures
    served now stay valid."""
    signed = GaugeMetricFamily(
        "gslb_dnssec_zone_signed", "1 for each zone signed online, with its active key; 0 for "
        "each zone served unsigned (key_tag and algorithm empty).",
        labels=("zone", "key_tag", "algorithm"),
    )  # fmt: skip
    expiry = GaugeMetricFamily(
        "gslb_dnssec_signature_expiry_days",
        "Days until the signatures being served now expire (at least 3 when the clock is right).",
        labels=("zone",),
    )
    for settings in config.signing.values():
        info = describe_signing(settings)
        signed.add_metric([settings.fqdn, str(info["key_tag"]), info["algorithm"]], 1)
        expiry.add_metric([settings.fqdn], info["days_until_expiry"])
    for origin, zone in config.zones.items():
        if origin not in config.signing:
            signed.add_metric([zone.fqdn, "", ""], 0)
    yield signed
    yield expiry


class StateCollector(Collector):
    """Configuration and health state of the running app, read at scrape."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "gslb_build_info", "Always 1; the version as a label.", labels=("version",)
        )
        info.add_metric([__version__], 1)
        yield info
        config = self.app.config
        if config is None:
            return
        yield from self._config(config)
        yield self._targets(config)
        if self.app.fleet is not None:
            yield from fleet_metrics(self.app.fleet)
        if getattr(self.app, "web", None) is not None:
            yield admin_requests(self.app.web.admin_requests)

    def _config(self, config: Any) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "gslb_config_info", "Always 1; the digest of the zone files being served.",
            labels=("digest",),
        )  # fmt: skip
        info.add_metric([config.digest], 1)
        yield info
        yield GaugeMetricFamily(
            "gslb_config_last_reload_success_timestamp_seconds",
            "When the configuration being served was loaded (start or last good reload).",
            config.loaded_at,
        )
        last = self.app.last_reload
        yield GaugeMetricFamily(
            "gslb_config_last_reload_successful",
            "1 when the last load or reload attempt succeeded, 0 when it failed.",
            1.0 if last is None or last.ok else 0.0,
        )
        yield GaugeMetricFamily(
            "gslb_config_warnings",
            "Warnings of the configuration being served (skipped URLFWD, ignored geo blocks, "
            "ALIAS targets gslb cannot answer for, occluded data); /status lists them.",
            len(config.warnings),
        )
        serial = GaugeMetricFamily(
            "gslb_zone_serial", "SOA serial of each zone served.", labels=("zone",)
        )
        for zone in config.zones.values():
            serial.add_metric([zone.fqdn], zone.serial)
        yield serial
        yield from _signing(config)

    def _targets(self, config: Any) -> Metric:
        up = GaugeMetricFamily(
            "gslb_target_up",
            "1 when answers treat the check as up (probes or override), 0 when down or drained.",
            labels=("check",),
        )
        fleet = self.app.fleet
        if fleet is not None:
            view = fleet.view
            for key in sorted(config.checks):
                up.add_metric([key], 1.0 if view.effective(key) == "up" else 0.0)
        return up


def admin_requests(counts: Mapping[tuple[str, int], int]) -> Metric:
    requests = CounterMetricFamily(
        "gslb_admin_requests",
        "Requests under /admin/ by endpoint and HTTP status (refused ones included).",
        labels=("endpoint", "code"),
    )
    for (endpoint, code), count in sorted(counts.items()):
        requests.add_metric([endpoint, str(code)], count)
    return requests


FLEET_COUNTERS = (
    ("override_changes", "gslb_fleet_override_changes", "Overrides set, cleared or expired."),
    ("fallbacks_to_local", "gslb_fleet_fallbacks_to_local",
     "Times the last peer observation aged out and decisions fell back to the local vantage."),
    ("watcher_resyncs", "gslb_fleet_watcher_resyncs",
     "Engine watchers re-created because their consumer disappeared."),
)  # fmt: skip


def fleet_metrics(fleet: Any) -> Iterator[Metric]:
    """The fleet node: engine link, nodes seen, per-region verdicts, vote ages, rejections."""
    snapshot = fleet.metrics()
    if snapshot["engine"] is not None:
        yield GaugeMetricFamily("gslb_fleet_engine_connected",
                                "1 while the fleet engine (NATS JetStream) is usable.",
                                1.0 if snapshot["engine"] else 0.0)  # fmt: skip
    yield GaugeMetricFamily("gslb_fleet_overrides_matching_nothing",
                            "Overrides that name no check or value of the served config.",
                            snapshot["matching_nothing"])  # fmt: skip
    yield GaugeMetricFamily("gslb_fleet_nodes_seen",
                            "Fleet nodes with a live heartbeat, this one included.",
                            snapshot["nodes"])  # fmt: skip
    up = GaugeMetricFamily(
        "gslb_fleet_target_up",
        "Per region with fresh votes (and region=global): 1 when that verdict is up.",
        labels=("check", "region"),
    )
    for (check, region), value in sorted(snapshot["verdicts"].items()):
        up.add_metric([check, region], value)
    yield up
    age = GaugeMetricFamily(
        "gslb_fleet_observation_age_seconds",
        "Seconds since the newest observation from each peer node arrived.",
        labels=("node",),
    )
    for node, seconds in sorted(snapshot["ages"].items()):
        age.add_metric([node], seconds)
    yield age
    counters = snapshot["counters"]
    for key, name, text in FLEET_COUNTERS:
        yield CounterMetricFamily(name, text, counters.get(key, 0))
    rejected = CounterMetricFamily(
        "gslb_fleet_rejected", "Values from the engine ignored, by kind and reason.",
        labels=("kind", "reason"),
    )  # fmt: skip
    for (kind, reason), count in sorted(snapshot["rejected"].items()):
        rejected.add_metric([kind, reason], count)
    yield rejected


class Metrics:
    """The registry of one server: scrape-time collectors plus probe and reload metrics."""

    def __init__(self, stats_source: StatsSource, app: Any | None = None) -> None:
        disable_created_metrics()  # process-wide; *_created series only double the output
        self.registry = CollectorRegistry(auto_describe=False)
        self.stats_collector = StatsCollector(stats_source)
        self.registry.register(self.stats_collector)
        if app is not None:
            self.registry.register(StateCollector(app))
        self.probe_results = Counter(
            "gslb_probe_results", "Health probe results by check and outcome.",
            ("check", "outcome"), registry=self.registry,
        )  # fmt: skip
        self.probe_duration = Histogram(
            "gslb_probe_duration_seconds", "Health probe duration until the verdict.",
            ("check",), buckets=PROBE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.transitions = Counter(
            "gslb_health_transitions", "Health state changes by check and new state.",
            ("check", "to"), registry=self.registry,
        )  # fmt: skip
        self.reloads = Counter(
            "gslb_config_reloads", "Configuration reload attempts by result.",
            ("result",), registry=self.registry,
        )  # fmt: skip
        for result in RELOAD_RESULTS:
            self.reloads.labels(result)  # present at 0, so increase() sees the first failure
        self._series: dict[str, set[tuple[Counter | Histogram, tuple[str, ...]]]] = {}

    def attach(self, events: Any) -> None:
        """Subscribe to a prober's ``events`` (gslb.health.prober.Events)."""
        events.probe.append(self.on_probe)
        events.transition.append(self.on_transition)

    def on_probe(self, key: str, result: Any) -> None:
        outcome = probe_outcome(result.ok, result.reason)
        self.probe_results.labels(key, outcome).inc()
        self.probe_duration.labels(key).observe(result.latency)
        self._remember(key, self.probe_results, (key, outcome))
        self._remember(key, self.probe_duration, (key,))

    def on_transition(self, transition: Any) -> None:
        self.transitions.labels(transition.key, transition.new).inc()
        self._remember(transition.key, self.transitions, (transition.key, transition.new))

    def on_reload(self, ok: bool, checks: Iterable[str] = ()) -> None:
        """Count a reload; after a good one, drop the series of checks no longer configured."""
        self.reloads.labels("success" if ok else "failure").inc()
        if ok:
            self.forget_checks(set(checks))

    def forget_checks(self, keep: set[str]) -> None:
        for key in [key for key in self._series if key not in keep]:
            for metric, labels in self._series.pop(key):
                metric.remove(*labels)

    def _remember(self, key: str, metric: Counter | Histogram, labels: tuple[str, ...]) -> None:
        self._series.setdefault(key, set()).add((metric, labels))

    def render(self, accept: str | None, stats: dict | None = None) -> tuple[bytes, str]:
        """The exposition (OpenMetrics when the scraper asks for it) and its content type.

        ``stats`` replaces ``stats_source`` for this render: the caller gathered (and merged)
        the snapshots of several processes, which takes awaiting. Rendering is synchronous,
        so nothing else can render in between."""
        encoder, content_type = choose_encoder(accept or "")
        self.stats_collector.pinned = stats
        try:
            return encoder(self.registry), content_type
        finally:
            self.stats_collector.pinned = None


def install_query_log(responder: Any, every: int) -> None:
    """Log one query in ``every`` (0: off). Off means the responder is left untouched, so
    the answer path pays nothing; on, it pays one counter step per query."""
    if every <= 0:
        return
    handle = responder.handle
    counter = itertools.count(1)

    def sampled(data: bytes, client: str, transport: str = "udp") -> bytes | None:
        reply = handle(data, client, transport)
        if next(counter) % every == 0:
            _log_query(client, transport, reply)
        return reply

    responder.handle = sampled
    log.info("query log: one query in %d", every)


def _log_query(client: str, transport: str, reply: bytes | None) -> None:
    if reply is None:
        query_log.info("client=%s transport=%s dropped", client, transport)
        return
    try:
        message = DNSRecord.parse(reply)
    except Exception:  # a sampled log line must never break the answer
        query_log.info("client=%s transport=%s unparseable reply", client, transport)
        return
    question = message.questions[0] if message.questions else None
    answers = " ".join(str(rr.rdata) for rr in message.rr) or "-"
    query_log.info(
        "client=%s transport=%s name=%s type=%s rcode=%s answer=%s",
        client, transport, question.qname if question else "-",
        QTYPE.get(question.qtype) if question else "-", RCODE.get(message.header.rcode), answers,
    )  # fmt: skip
