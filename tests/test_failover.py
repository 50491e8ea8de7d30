"""Failover end to end: real HTTP edges go down and come back; DNS answers follow.

Three local edges stand in for three CDNs and one for the origin. The record's values are
distinct addresses; each value's check is pointed at its own edge (``address`` + ``port``).
"""

from __future__ import annotations

import dns.message
import pytest

from tests.conftest import ZONE_HEAD, write_zone
from tests.edges import EdgeThread
from tests.server import ServerThread, wait_until

CDNS = {"127.0.0.11": "a", "127.0.0.12": "b", "127.0.0.13": "c"}
ORIGIN = "192.0.2.10"

ZONE = (
    ZONE_HEAD
    + """\
content:
  type: A
  ttl: 30
  value: {origin}
  dynamic:
    pools:
      cdns:
        values:
          - {{value: 127.0.0.11}}
          - {{value: 127.0.0.12}}
          - {{value: 127.0.0.13}}
    rules:
      - pool: cdns
  gslb:
    chain: [rules, health, weighted]  # failover, not the performance step's latency judgement
    answers: 3
    degraded_ttl: 5
    fail_open: true
    check: {{type: http, path: /health, interval: 0.2, timeout: 0.15, rise: 2, fall: 2}}
    origin_check: {{type: http, address: 127.0.0.1, port: {origin_port}, path: /health,
                   interval: 0.2, timeout: 0.15, rise: 1, fall: 1}}
    targets:
{targets}
"""
)


@pytest.fixture(scope="module")
def edges():
    threads = {name: EdgeThread() for name in (*CDNS.values(), "origin")}
    yield threads
    for thread in threads.values():
        thread.stop()


@pytest.fixture(scope="module")
def failover_server(tmp_path_factory, geo_db, edges):
    targets = "\n".join(
        f"      {value}:\n        check: {{address: 127.0.0.1, port: {edges[name].edge.port}}}"
        for value, name in CDNS.items()
    )
    text = ZONE.format(origin=ORIGIN, origin_port=edges["origin"].edge.port, targets=targets)
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", text)
    with ServerThread(zones, geo_db) as server:
        yield server


def answer(server) -> tuple[set[str], int]:
    reply = server.udp(dns.message.make_query("content.example.com", "A"))
    rrset = reply.answer[0]
    return {rr.address for rr in rrset}, rrset.ttl


def test_all_up_answers_every_cdn(failover_server):
    assert answer(failover_server) == (set(CDNS), 30)


def test_failed_edge_leaves_the_answers_and_comes_back(failover_server, edges):
    edges["b"].switch("status", 503)
    wait_until(lambda: "127.0.0.12" not in answer(failover_server)[0], what="b pulled")
    assert answer(failover_server)[0] == {"127.0.0.11", "127.0.0.13"}
    status = failover_server.app.prober.status()
    reasons = [c.get("reason", "") for c in status["checks"].values()] if "checks" in status else []
    assert any("503" in r for r in reasons) or "503" in str(status)
    edges["b"].switch("healthy")
    wait_until(lambda: answer(failover_server)[0] == set(CDNS), what="b back after rise")


def test_every_cdn_down_fails_over_to_the_origin_with_degraded_ttl(failover_server, edges):
    for name in CDNS.values():
        edges[name].switch("refuse")
    wait_until(lambda: answer(failover_server)[0] == {ORIGIN}, what="origin answered")
    assert answer(failover_server) == ({ORIGIN}, 5)
    stats = failover_server.app.stats
    assert stats.answers[("content.example.com.", "origin", "origin")] > 0
    for name in CDNS.values():
        edges[name].switch("healthy")
    wait_until(lambda: answer(failover_server)[0] == set(CDNS), what="CDNs back")


def test_origin_down_too_is_answered_fail_open_and_counted(failover_server, edges):
    for name in (*CDNS.values(), "origin"):
        edges[name].switch("status", 500)
    wait_until(lambda: answer(failover_server)[0] == {ORIGIN}, what="origin answered")
    key = ("content.example.com.", "origin", "fail-open")
    # the origin's own check must go down too before the answer counts as fail-open
    wait_until(lambda: answer(failover_server) and failover_server.app.stats.answers[key] > 0)
    assert answer(failover_server) == ({ORIGIN}, 5)
    for name in (*CDNS.values(), "origin"):
        edges[name].switch("healthy")
    wait_until(lambda: answer(failover_server)[0] == set(CDNS), what="CDNs back")


def test_hanging_edge_is_pulled_without_stalling_dns(failover_server, edges):
    edges["c"].switch("slow", 30)
    wait_until(lambda: "127.0.0.13" not in answer(failover_server)[0], what="c pulled")
    edges["c"].switch("healthy")
    wait_until(lambda: answer(failover_server)[0] == set(CDNS), what="c back")
