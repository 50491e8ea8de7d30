"""The HTTP side against a real server: health endpoints, /status, /explain, probe metrics.

The helpers at the top (HTTP client, scrape parser, deadline polling, an Edge on its own loop
thread, the dynamic test zone) are shared by the other operations test modules.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gslb import __version__
from tests.conftest import write_zone
from tests.server import ServerThread, wait_until

pytestmark = pytest.mark.timeout(30)

# -- shared helpers -------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: Any
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def http(
    server: ServerThread,
    path: str,
    method: str = "GET",
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One real HTTP request; error statuses are returned, not raised."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server.url(path), data=data, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Reply(response.status, response.headers, response.read().decode())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers, exc.read().decode())


Samples = dict[tuple[str, frozenset], float]


def scrape(server: ServerThread) -> Samples:
    reply = http(server, "/metrics")
    assert reply.status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


HEAD = """\
'':
  - type: NS
    values: [ns1.example.com.]
ns1:
  type: A
  value: 192.0.2.53
www:
  type: A
  value: 192.0.2.1
"""

CHECKED = """\
NAME:
  type: A
  ttl: 30
  value: 192.0.2.99
  dynamic:
    pools:
      main:
        values:
          - {value: 127.0.0.1, weight: 100}
          - {value: 127.0.0.2, weight: 1}
    rules:
      - pool: main
  gslb:
    check: {type: http, port: PORT, path: /health, interval: 0.2, timeout: 0.15, rise: 1,
            fall: 1POLICY}
    targets:
      127.0.0.2: {check: false}
"""


def checked_record(port: int, name: str = "dyn", policy: str = "") -> str:
    """``name``: 127.0.0.1 (weight 100, checked on ``port``, check ``policy`` options
    appended) and 127.0.0.2 (unchecked)."""
    return CHECKED.replace("NAME", name).replace("PORT", str(port)).replace("POLICY", policy)


def checked_zone(directory: Path, port: int) -> Path:
    """example.com with ``dyn``: 127.0.0.1 (weight 100, checked on ``port``), 127.0.0.2."""
    return write_zone(directory, "example.com", HEAD + checked_record(port))


def answers(server: ServerThread, name: str = "dyn.example.com", count: int = 1) -> list[str]:
    out = []
    for _ in range(count):
        reply = server.udp(dns.message.make_query(name, "A"))
        out.extend(rr.address for rrset in reply.answer for rr in rrset)
    return out


def check_key(server: ServerThread) -> str:
    (key,) = server.app.config.checks
    return key


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db, edge_thread):
    zones = tmp_path_factory.mktemp("zones")
    checked_zone(zones, edge_thread.edge.port)
    with ServerThread(zones, geo_db) as server:
        yield server


# -- health endpoints -------------------------------------------------------------------------


def test_healthz_and_readyz(server):
    assert (http(server, "/healthz").status, http(server, "/healthz").text) == (200, "ok\n")
    assert http(server, "/readyz").status == 200


async def test_readyz_follows_start_and_stop():
    """503 before the first probe round is done and again once stopping began."""
    from gslb.web.app import WebServer

    class FakeApp:
        ready, stopping = asyncio.Event(), asyncio.Event()

    web = WebServer(FakeApp())
    assert (await web.readyz(None)).status == 503
    FakeApp.ready.set()
    assert (await web.readyz(None)).status == 200
    FakeApp.stopping.set()
    assert (await web.readyz(None)).status == 503


def test_read_only_endpoints_reject_post(server):
    assert http(server, "/status", "POST", body={}).status == 405


# -- /status --------------------------------------------------------------------------------


def test_status_describes_zones_config_health_and_version(server):
    status = http(server, "/status").json()
    config = server.app.config
    assert status["version"] == __version__ and status["ready"] is True
    (zone,) = status["config"]["zones"]
    assert zone["zone"] == "example.com."
    assert zone["serial"] == next(iter(config.zones.values())).serial
    assert zone["source"].endswith("example.com.yaml")
    assert status["config"]["digest"] == config.digest
    assert status["last_reload"] == {
        "ok": True, "at": status["last_reload"]["at"], "digest": config.digest, "errors": [],
    }  # fmt: skip
    assert "GSLB-Test" in status["geo"]
    assert set(status["health"]["checks"]) == set(config.checks)


def test_status_shows_target_going_down_with_reason_and_back(server, edge_thread):
    key = check_key(server)
    before = scrape(server)
    edge_thread.switch("status", 503)

    def down() -> dict | None:
        state = http(server, "/status").json()["health"]["checks"][key]
        return state if state["state"] == "down" else None

    state = wait_until(down, what="the check to go down")
    assert state["reason"] == "status 503"
    assert state["last"]["ok"] is False and state["last"]["status"] == 503
    assert state["transitions"][-1]["new"] == "down"
    assert state["transitions"][-1]["reason"] == "status 503"
    assert set(answers(server, count=10)) == {"127.0.0.2"}, "answers leave the down target"
    after = scrape(server)
    assert metric(after, "gslb_target_up", check=key) == 0
    delta = metric(after, "gslb_health_transitions_total", check=key, to="down") - metric(
        before, "gslb_health_transitions_total", check=key, to="down"
    )
    assert delta == 1
    assert metric(after, "gslb_probe_results_total", check=key, outcome="status") >= 1

    edge_thread.switch("healthy")
    wait_until(lambda: metric(scrape(server), "gslb_target_up", check=key) == 1, what="up again")
    samples = scrape(server)
    assert metric(samples, "gslb_health_transitions_total", check=key, to="up") >= 1
    assert metric(samples, "gslb_probe_results_total", check=key, outcome="success") >= 1
    assert metric(samples, "gslb_probe_duration_seconds_count", check=key) >= 2


# -- /explain -------------------------------------------------------------------------------


def test_explain_returns_the_chain_trace(server):
    reply = http(server, "/explain?name=dyn.example.com&client=192.0.2.1")
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    trace = reply.json()
    assert trace["record"] == "dyn.example.com."
    assert [step["step"] for step in trace["steps"]][0] == "rules"
    assert trace["answer"]["values"]


def test_explain_uses_ecs_and_qtype(server):
    reply = http(server, "/explain?name=DYN.example.com.&client=2001:db8::1&ecs=192.0.2.0/24")
    assert reply.status == 200
    assert reply.json()["query"]["ecs"] is not None


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("", 400, "name and client are required"),
        ("?name=dyn.example.com", 400, "name and client are required"),
        ("?name=dyn.example.com&client=not-an-ip", 400, "invalid client"),
        ("?name=dyn.example.com&client=192.0.2.1&qtype=MX", 400, "invalid qtype"),
        ("?name=dyn.example.com&client=192.0.2.1&ecs=300.1.2.3/8", 400, "invalid ecs"),
        ("?name=" + "x" * 70 + ".example.com&client=192.0.2.1", 400, "label"),
        ("?name=nothing.example.com&client=192.0.2.1", 404, "no dynamic A record"),
        ("?name=www.example.com&client=192.0.2.1", 404, "no dynamic A record"),
        ("?name=dyn.other.org&client=192.0.2.1", 404, "no dynamic A record"),
    ],
)
def test_explain_errors_are_clear_json(server, query, status, words):
    reply = http(server, "/explain" + query)
    assert reply.status == status
    assert words in reply.json()["error"]
