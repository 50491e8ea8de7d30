"""Several worker processes on one port: all answer, all see health changes, metrics are summed."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request

import dns.message
import dns.query
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ZONE_HEAD, write_zone
from tests.server import ServerThread, wait_until

ZONE = (
    ZONE_HEAD
    + """\
content:
  type: A
  ttl: 30
  value: 192.0.2.10
  dynamic:
    pools:
      edge:
        values:
          - value: 127.0.0.1
    rules:
      - pool: edge
  gslb:
    check: {type: tcp, port: PORT, interval: 30, timeout: 1}
"""
)
QUERIES = 200


@pytest.fixture(scope="module")
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory, geo_db, listener):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", ZONE.replace("PORT", str(listener.getsockname()[1])))
    with ServerThread(zones, geo_db, workers=2) as server:
        yield server


def ask(server: ServerThread, name: str = "content.example.com") -> dns.message.Message:
    """Each call uses a new socket, so SO_REUSEPORT spreads queries over the workers."""
    return server.udp(dns.message.make_query(name, "A"))


def answers(reply: dns.message.Message) -> set[str]:
    return {rr.address for rrset in reply.answer for rr in rrset}


def scrape_queries(server: ServerThread) -> float:
    with urllib.request.urlopen(server.url("/metrics"), timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "gslb_queries":
            return sum(s.value for s in family.samples if s.name == "gslb_queries_total")
    return 0.0


def test_queries_land_on_more_than_one_worker_and_metrics_sum_them(pool_server):
    before = scrape_queries(pool_server)
    for _ in range(QUERIES):
        assert answers(ask(pool_server)) == {"127.0.0.1"}
    snapshots = pool_server.call(pool_server.app.stats_snapshots())
    per_worker = [sum(s["queries"].values()) for s in snapshots]
    assert len(per_worker) == 2
    assert all(count > 0 for count in per_worker), per_worker
    assert scrape_queries(pool_server) - before == QUERIES


def test_status_page_history_sums_the_workers(pool_server):
    """The page's per-minute history reads the workers' counters as /metrics does."""
    app = pool_server.app

    def answered() -> int:
        pool_server.call(app.sampler.sample())
        return sum(app.history.answers.window(60, time.time()).values())

    before = answered()
    for _ in range(QUERIES):
        ask(pool_server)
    wait_until(lambda: answered() - before == QUERIES, what="every worker's answers")
    with urllib.request.urlopen(pool_server.url("/"), timeout=5) as response:
        assert "content.example.com." in response.read().decode()


def test_health_change_reaches_every_worker(pool_server):
    prober = pool_server.app.prober
    (key,) = pool_server.app.config.checks
    for override, expected in (("down", {"192.0.2.10"}), (None, {"127.0.0.1"})):
        pool_server.loop.call_soon_threadsafe(prober.set_override, key, override)
        deadline = time.monotonic() + 10
        while answers(ask(pool_server)) != expected and time.monotonic() < deadline:
            pass
        # One worker answers from the new view, so the view went down every pipe; each pipe is
        # applied in order, so a stats round trip returns once every worker has applied it.
        assert len(pool_server.call(pool_server.app.pool.stats())) == 2
        replies = [answers(ask(pool_server)) for _ in range(50)]
        assert all(r == expected for r in replies), "every worker answers from the new view"


def big_zone(records: int, address: str) -> str:
    lines = [ZONE_HEAD]
    lines += [f"r{i}:\n  type: A\n  value: {address}\n" for i in range(records)]
    return "".join(lines)


def test_large_config_reaches_uvloop_workers_at_start_and_reload(tmp_path, geo_db):
    """A config of several MB must cross the pipes whole, also when the supervisor runs on
    uvloop (whose poller once made the shared pipe non-blocking and cut it mid-message)."""
    write_zone(tmp_path, "example.com", big_zone(10_000, "192.0.2.1"))
    with ServerThread(tmp_path, geo_db, workers=2, uvloop=True) as server:
        assert answers(ask(server, "r9999.example.com")) == {"192.0.2.1"}
        write_zone(tmp_path, "example.com", big_zone(10_001, "192.0.2.2"))
        result = server.call(server.app.reload(), timeout=120)
        assert result.ok, result.errors
        replies = [answers(ask(server, "r10000.example.com")) for _ in range(20)]
        assert all(r == {"192.0.2.2"} for r in replies), "every worker got the new config"


def test_sampled_query_log_comes_from_the_workers(tmp_path, geo_db):
    """With workers, queries are answered in other processes: they must log them."""
    write_zone(tmp_path / "zones", "example.com", ZONE_HEAD)
    command = [sys.executable, "-m", "gslb", "serve", "--zones", str(tmp_path / "zones"),
               "--geoip", str(geo_db), "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0",
               "--workers", "2", "--watch-interval", "0", "--query-log-sample", "1",
               "--allow-root"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True).start()
    try:
        ready = wait_until(lambda: [x for x in lines if "listening for DNS" in x], 30, "start")
        port = int(ready[0].rsplit("port ", 1)[1].split()[0])
        query = dns.message.make_query("ns1.example.com", "A")
        dns.query.udp(query, "127.0.0.1", port=port, timeout=5)
        logged = wait_until(lambda: [x for x in lines if "gslb.query" in x], 10, "query log")
        assert "name=ns1.example.com." in logged[0] and "rcode=NOERROR" in logged[0]
    finally:
        process.terminate()
        process.wait(10)


def test_one_client_socket_is_spread_over_every_worker(pool_server):
    """SO_REUSEPORT alone hashes a client's address and port to one worker: all the queries
    of one resolver socket (or of a load generator's few) would load one worker only."""
    before = [sum(s["queries"].values())
              for s in pool_server.call(pool_server.app.stats_snapshots())]  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.bind(("127.0.0.1", 0))
        for _ in range(QUERIES):
            reply = dns.query.udp(dns.message.make_query("content.example.com", "A"),
                                  "127.0.0.1", port=pool_server.dns_port, sock=sock,
                                  timeout=2)  # fmt: skip
            assert answers(reply) == {"127.0.0.1"}
    after = [sum(s["queries"].values())
             for s in pool_server.call(pool_server.app.stats_snapshots())]  # fmt: skip
    served = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(served) == QUERIES
    assert min(served) >= QUERIES // 4, f"one socket's queries per worker: {served}"
