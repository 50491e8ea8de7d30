"""The fleet engine's edges on a single real nats-server (fast; the three-node cluster suite is
tests/test_fleet_cluster.py, ``make test-fleet``): start with the engine down, a server too old
for per-key TTL, and the fleet settings' validation."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from gslb.fleet.config import FleetConfigError, FleetSettings, fleet_settings
from tests.natscluster import NatsCluster
from tests.server import ServerThread, wait_until
from tests.test_web import answers, checked_zone, http

pytestmark = pytest.mark.timeout(60)
TOKEN = "engine-test-token"


@pytest.fixture
def zones(tmp_path, edge_thread):
    zones = tmp_path / "zones"
    checked_zone(zones, edge_thread.edge.port)
    (tmp_path / "token").write_text(TOKEN)
    return zones


def fleet_server(zones, geo_db, urls, node, tmp_path) -> ServerThread:
    settings = FleetSettings(urls, node, "EU", refresh=0.5, replicas=1)
    return ServerThread(zones, geo_db, fleet=settings, state_dir=tmp_path / f"state-{node}",
                        admin_token_file=tmp_path / "token")  # fmt: skip


def counters(server: ServerThread) -> dict:
    return http(server, "/fleet").json()["counters"]


def engine(server: ServerThread) -> dict:
    return http(server, "/fleet").json()["engine"]


def test_engine_down_at_start_serves_at_once_then_joins(zones, geo_db, tmp_path):
    nats = NatsCluster(tmp_path / "nats", size=1)  # ports reserved, server not started yet
    try:
        with fleet_server(zones, geo_db, nats.urls, "a", tmp_path) as first:
            assert answers(first, count=5), "answers at once, without any engine"
            status = http(first, "/fleet").json()
            assert status["state"] == "degraded" and status["engine"]["connected"] is False
            refused = http(first, "/admin/targets/127.0.0.2/drain", "POST", token=TOKEN, body=b"")
            assert refused.status == 503 and "not connected" in refused.json()["error"]

            nats.start()
            wait_until(lambda: engine(first)["connected"], timeout=20, what="a late engine")
            with fleet_server(zones, geo_db, nats.urls, "b", tmp_path) as second:
                wait_until(lambda: set(engine(first)["nodes"]) == {"a", "b"}, timeout=10)
                reply = http(second, "/admin/targets/127.0.0.2/drain", "POST", token=TOKEN,
                             body=json.dumps({"reason": "r", "by": "bob"}).encode())  # fmt: skip
                assert reply.status == 200, reply.text
                wait_until(lambda: http(first, "/fleet").json()["overrides"], timeout=5)
            # b stopped: its heartbeat key expires in the engine (per-key TTL), a forgets it.
            wait_until(lambda: set(engine(first)["nodes"]) == {"a"}, timeout=15,
                       what="the stopped node's heartbeat to expire")  # fmt: skip
    finally:
        nats.stop()


class OldNatsServer:
    """Speaks just enough of the NATS protocol to look like nats-server 2.9.10 (Debian 12's),
    which silently ignores per-key TTL: INFO, then PONG to every PING."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _start(self):
        return await asyncio.start_server(self._client, "127.0.0.1", 0)

    async def _client(self, reader, writer) -> None:
        info = {"server_id": "OLD", "server_name": "old", "version": "2.9.10", "proto": 1,
                "host": "127.0.0.1", "port": 4222, "headers": True, "max_payload": 1048576,
                "jetstream": True}  # fmt: skip
        writer.write(f"INFO {json.dumps(info)}\r\n".encode())
        while line := await reader.readline():
            if line.startswith(b"PING"):
                writer.write(b"PONG\r\n")
                await writer.drain()
        writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_a_server_older_than_2_11_is_refused_with_a_clear_message(zones, geo_db, tmp_path):
    old = OldNatsServer()
    try:
        urls = [f"nats://127.0.0.1:{old.port}"]
        with fleet_server(zones, geo_db, urls, "a", tmp_path) as server:
            refused = wait_until(lambda: engine(server)["refused"], timeout=10)
            assert "2.9.10" in refused and "2.11" in refused and "TTL" in refused
            assert answers(server, count=5), "still answering from local probes"
            reply = http(server, "/admin/targets/127.0.0.2/drain", "POST", token=TOKEN, body=b"")
            assert reply.status == 503 and "refused" in reply.json()["error"]
    finally:
        old.stop()


def test_fleet_settings_collect_every_problem(tmp_path):
    assert fleet_settings(None, None, None) is None  # standalone
    with pytest.raises(FleetConfigError) as caught:
        fleet_settings("http://x:1,nats://ok:4222", "bad name", None)
    text = str(caught.value)
    assert "invalid server 'http://x:1'" in text and "invalid or missing node" in text
    assert "invalid or missing region" in text
    config = tmp_path / "fleet.yaml"
    config.write_text("servers: [nats://a:4222]\nnode: fra-1\nregion: eu-west\n"
                      "regions: {eu-west: [EU], us: [NA]}\nrefresh: 1\nreplicas: 1\n")  # fmt: skip
    settings = fleet_settings(None, None, None, config)
    assert (settings.node, settings.region, settings.refresh, settings.key_ttl) == (
        "fra-1", "eu-west", 1.0, 3,
    )  # fmt: skip
    flagged = fleet_settings(None, "fra-2", None, config)
    assert flagged.node == "fra-2", "flags win over the file"
    config.write_text("servers: [nats://a:4222]\nnode: x\nregion: mars\nregions: {eu: [EU]}\n"
                      "colour: red\n")  # fmt: skip
    with pytest.raises(FleetConfigError) as caught:
        fleet_settings(None, None, None, config)
    assert "unknown key(s) colour" in str(caught.value)
    assert "region 'mars' is not one of the regions: eu" in str(caught.value)


def test_a_channel_shares_other_data_and_rejects_bad_values(zones, geo_db, tmp_path):
    """Other data (RUM, commits; here a made-up "example" channel) joins through the same
    layer: each node's own keys, peers called back, withdrawn and expired values reported,
    bad envelopes counted."""
    nats = NatsCluster(tmp_path / "nats", size=1).start()
    try:
        with fleet_server(zones, geo_db, nats.urls, "b", tmp_path) as b:
            a = fleet_server(zones, geo_db, nats.urls, "a", tmp_path).start()
            try:
                wait_until(lambda: engine(a)["connected"] and engine(b)["connected"], timeout=20)
                seen: list[tuple] = []

                async def open_channel(server, on_value, ttl=None):
                    return server.app.fleet.channel("example", on_value, ttl=ttl)

                b.call(open_channel(b, lambda *value: seen.append(value)))
                channel = a.call(open_channel(a, lambda *value: None, ttl=2))
                a.loop.call_soon_threadsafe(channel.publish, "content/AS-JP", {"p50": 41.5})
                wait_until(lambda: ("a", "content/AS-JP", {"p50": 41.5}) in seen, timeout=10)
                a.loop.call_soon_threadsafe(channel.withdraw, "content/AS-JP")
                wait_until(lambda: seen[-1] == ("a", "content/AS-JP", None), timeout=10)
                asyncio.run(_put(nats.urls, "gslb_example", "a.0000", b"[1, 2"))
                wait_until(lambda: counters(b).get("rejected:example:malformed"), timeout=10)
                a.loop.call_soon_threadsafe(channel.publish, "k2", [1, 2, 3])
                wait_until(lambda: ("a", "k2", [1, 2, 3]) in seen, timeout=10)
            finally:
                a.stop()
            # a stopped: nobody re-writes its key, which expires in the engine (TTL 2 s).
            wait_until(lambda: seen[-1] == ("a", "k2", None), timeout=15, what="expiry")
    finally:
        nats.stop()


async def _put(urls, bucket, key, value) -> None:
    import nats as nats_client

    nc = await nats_client.connect(servers=urls, connect_timeout=2)
    try:
        kv = await nc.jetstream(timeout=5).key_value(bucket)
        await kv.put(key, value)
    finally:
        await nc.close()


def test_an_expiring_fleet_override_ends_on_every_node(zones, geo_db, tmp_path):
    nats = NatsCluster(tmp_path / "nats", size=1).start()
    try:
        with (fleet_server(zones, geo_db, nats.urls, "a", tmp_path) as a,
              fleet_server(zones, geo_db, nats.urls, "b", tmp_path) as b):  # fmt: skip
            wait_until(lambda: engine(a)["connected"] and engine(b)["connected"], timeout=20)
            reply = http(a, "/admin/targets/127.0.0.2/down?for=1s", "POST", token=TOKEN, body=b"")
            assert reply.status == 200, reply.text
            wait_until(lambda: http(b, "/fleet").json()["overrides"], timeout=5)
            for server in (a, b):
                wait_until(lambda server=server: http(server, "/fleet").json()["overrides"] == [],
                           timeout=10, what="expiry on every node")  # fmt: skip
            # Another change makes the engine's set arrive again: the expired one stays out.
            other = http(b, "/admin/targets/127.0.0.1/drain", "POST", token=TOKEN, body=b"")
            assert other.status == 200
            wait_until(lambda: len(http(a, "/fleet").json()["overrides"]) == 1, timeout=5)
            (left,) = http(a, "/fleet").json()["overrides"]
            assert left["name"] == "127.0.0.1"
    finally:
        nats.stop()


def test_a_version_not_known_yet_is_retried_never_refused(tmp_path):
    """While nats-py reconnects it reports version 0.0.0 (no INFO from the server yet): that
    must not disable the fleet for good, as a server older than 2.11 does."""
    from types import SimpleNamespace

    from nats.aio.client import ServerVersion

    from gslb.fleet.jetstream import JetStreamEngine, VersionUnknown

    settings = FleetSettings(["nats://127.0.0.1:1"], "a", "EU")
    engine = JetStreamEngine(settings, None)  # type: ignore[arg-type]
    engine.nc = SimpleNamespace(connected_server_version=ServerVersion("0.0.0-unknown"))
    with pytest.raises(VersionUnknown):
        engine._check_version()
    assert not engine.refused
    engine.nc = SimpleNamespace(connected_server_version=ServerVersion("2.11.4"))
    engine._check_version()
    assert not engine.refused
