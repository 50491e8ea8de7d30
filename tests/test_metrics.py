"""/metrics: counters move by exactly the traffic sent, over real sockets; collector units."""

from __future__ import annotations

from types import SimpleNamespace

import dns.edns
import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gslb.metrics import Metrics, probe_outcome
from gslb.stats import LATENCY_BUCKETS, Stats, merge
from tests.test_web import http, metric, scrape

pytestmark = pytest.mark.timeout(30)

UDP_A = {"zone": "example.com.", "qtype": "A", "rcode": "NOERROR", "transport": "udp"}


def delta(before, after, name: str, **labels: str) -> float:
    return metric(after, name, **labels) - metric(before, name, **labels)


def parse(text: str) -> dict:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


# -- over the wire (conftest's core_server: the RFC test zone) ------------------------------


def test_query_counters_move_by_exactly_the_queries_sent(core_server):
    before = scrape(core_server)
    for _ in range(7):
        core_server.udp(dns.message.make_query("www.example.com", "A"))
    for _ in range(3):
        core_server.tcp(dns.message.make_query("www.example.com", "A"))
    for _ in range(2):
        core_server.udp(dns.message.make_query("nope.other.org", "A"))
    after = scrape(core_server)
    assert delta(before, after, "gslb_queries_total", **UDP_A) == 7
    assert delta(before, after, "gslb_queries_total", **{**UDP_A, "transport": "tcp"}) == 3
    refused = {"zone": "", "rcode": "REFUSED", "transport": "udp"}
    assert delta(before, after, "gslb_queries_total", **refused) == 2
    assert delta(before, after, "gslb_queries_total") == 12
    assert delta(before, after, "gslb_tcp_connections_total") == 3
    assert delta(before, after, "gslb_query_duration_seconds_count") == 12
    assert delta(before, after, "gslb_query_duration_seconds_bucket", le="+Inf") == 12
    assert delta(before, after, "gslb_query_duration_seconds_sum") > 0


def test_truncated_malformed_and_ecs_counters(core_server):
    before = scrape(core_server)
    reply = core_server.udp(dns.message.make_query("many.example.com", "A"))  # 100 A, 512 B
    assert reply.flags & dns.flags.TC
    assert core_server.raw_udp(b"\x12\x34garbage") is None
    ecs = dns.edns.ECSOption("198.51.100.0", 24)
    for _ in range(4):
        core_server.udp(dns.message.make_query("www.example.com", "A", use_edns=0, options=[ecs]))
    after = scrape(core_server)
    assert delta(before, after, "gslb_truncated_total", transport="udp") == 1
    assert delta(before, after, "gslb_malformed_total", transport="udp") == 1
    assert delta(before, after, "gslb_ecs_queries_total", family="ipv4", scope="0") == 4


def test_labels_never_carry_client_addresses(core_server):
    core_server.udp(dns.message.make_query("www.example.com", "A"))
    for _, labels in scrape(core_server):
        assert all("127.0.0.1" not in value for _, value in labels)


def test_config_and_zone_series(core_server):
    samples = scrape(core_server)
    config = core_server.app.config
    assert metric(samples, "gslb_config_info", digest=config.digest) == 1
    zone = config.zones[next(iter(config.zones))]
    assert metric(samples, "gslb_zone_serial", zone=zone.fqdn) == zone.serial
    assert metric(samples, "gslb_config_last_reload_success_timestamp_seconds") == pytest.approx(
        config.loaded_at
    )
    assert ("gslb_config_reloads_total", frozenset({("result", "failure")})) in samples


def test_openmetrics_when_asked(core_server):
    plain = http(core_server, "/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "_created" not in plain.text
    reply = http(core_server, "/metrics", headers={"Accept": "application/openmetrics-text"})
    assert reply.headers["Content-Type"].startswith("application/openmetrics-text")
    assert reply.text.endswith("# EOF\n")


# -- the collector on its own ---------------------------------------------------------------


def test_histogram_buckets_are_cumulative_and_snapshots_merge():
    one, two = Stats(), Stats()
    one.observe_latency(0.00001)  # first bucket
    one.observe_latency(1.0)  # above the last bound: +Inf only
    two.observe_latency(0.003)
    two.queries[("example.com.", "A", "NOERROR", "udp")] += 5
    one.queries[("example.com.", "A", "NOERROR", "udp")] += 2
    one.ecs[(2, 56)] += 1
    metrics = Metrics(lambda: pytest.fail("the pinned snapshot must be used"))
    body, _ = metrics.render(None, merge([one.snapshot(), two.snapshot()]))
    samples = parse(body.decode())
    bucket = "gslb_query_duration_seconds_bucket"
    assert metric(samples, bucket, le=str(LATENCY_BUCKETS[0])) == 1
    assert metric(samples, bucket, le="0.005") == 2
    assert metric(samples, bucket, le="+Inf") == 3
    assert metric(samples, "gslb_query_duration_seconds_count") == 3
    assert metric(samples, "gslb_queries_total", **UDP_A) == 7
    assert metric(samples, "gslb_ecs_queries_total", family="ipv6", scope="56") == 1


def test_source_is_read_at_every_scrape():
    stats = Stats()
    metrics = Metrics(stats.snapshot)
    stats.tcp_refused += 3
    assert metric(parse(metrics.render(None)[0].decode()), "gslb_tcp_refused_total") == 3
    stats.tcp_refused += 1
    assert metric(parse(metrics.render(None)[0].decode()), "gslb_tcp_refused_total") == 4


@pytest.mark.parametrize(
    ("ok", "reason", "outcome"),
    [
        (True, "ok 200 in 3 ms", "success"),
        (False, "status 503", "status"),
        (False, "timeout after 2.0 s", "timeout"),
        (False, "TLS error: certificate has expired", "tls"),
        (False, "connection refused", "refused"),
        (False, "name does not resolve", "dns"),
        (False, "bad response: 400 garbage", "bad_response"),
        (False, "something nobody foresaw", "error"),
    ],
)
def test_probe_outcome_is_a_bounded_label(ok, reason, outcome):
    assert probe_outcome(ok, reason) == outcome


def test_series_of_removed_checks_are_dropped_on_reload():
    metrics = Metrics(Stats().snapshot)
    for key in ("keep", "gone"):
        metrics.on_probe(key, SimpleNamespace(ok=False, reason="connection refused", latency=0.01))
        metrics.on_transition(SimpleNamespace(key=key, new="down"))
    metrics.on_reload(False, ["keep"])  # a failed reload changes nothing
    assert 'check="gone"' in metrics.render(None)[0].decode()
    metrics.on_reload(True, ["keep"])
    text = metrics.render(None)[0].decode()
    assert 'check="gone"' not in text and 'check="keep"' in text
    samples = parse(text)
    assert metric(samples, "gslb_config_reloads_total", result="success") == 1
    assert metric(samples, "gslb_config_reloads_total", result="failure") == 1


def test_query_log_samples_one_in_n(caplog):
    from gslb.metrics import install_query_log

    calls = []

    class Responder:
        def handle(self, data, client, transport="udp"):
            calls.append(data)
            return dns.message.make_response(dns.message.from_wire(data)).to_wire()

    responder = Responder()
    untouched = responder.handle
    install_query_log(responder, 0)
    assert responder.handle == untouched, "off means the answer path is not wrapped at all"
    install_query_log(responder, 3)
    wire = dns.message.make_query("www.example.com", "AAAA").to_wire()
    with caplog.at_level("INFO", logger="gslb.query"):
        for _ in range(7):
            assert responder.handle(wire, "192.0.2.7", "udp") is not None
    lines = [r.getMessage() for r in caplog.records if r.name == "gslb.query"]
    assert len(lines) == 2 and len(calls) == 7
    assert "name=www.example.com. type=AAAA rcode=NOERROR" in lines[0]
