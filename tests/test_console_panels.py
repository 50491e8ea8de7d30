"""Feature panels on the status page, against the real features: RUM (gslb.rum)."""

from __future__ import annotations

import re

import pytest

from gslb.rum.ingest import Limits
from gslb.rum.settings import RumSettings
from tests.conftest import write_zone
from tests.server import ServerThread, wait_until
from tests.test_rum_server import ZONE, send_beacon
from tests.test_web import http

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def rum_server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", ZONE)
    rum = RumSettings(limits=Limits(per_network=600, network_burst=40), refresh=0.05)
    with ServerThread(zones, geo_db, rum=rum) as server:
        yield server


def rum_text(server: ServerThread) -> str:
    reply = http(server, "/?refresh=0")
    assert reply.status == 200
    assert 'href="#rum"' in reply.text
    section = reply.text[reply.text.index('<section id="rum"') :]
    text = " ".join(re.sub(r"<[^>]+>", " ", section[: section.index("</section>")]).split())
    return re.sub(r" ([.,;])", r"\1", text)


def test_rum_panel_shows_records_beacons_and_decisions(rum_server):
    text = rum_text(rum_server)
    assert "Steered by real-user measurements: content.example.com. CNAME" in text
    assert "Beacons: 0 accepted; not taken: none." in text
    for _ in range(6):  # min_samples 4 per CDN: enough for this network's /24 to decide
        fast_b = {"a.cdn.test.": 80, "b.cdn.test.": 20, "c.cdn.test.": 90}
        assert send_beacon(rum_server, fast_b) == 204
    assert http(rum_server, "/rum/v1/beacons", "POST", body=b"{not json").status >= 400

    def decided() -> str | None:
        text = rum_text(rum_server)
        row = re.search(r"content\.example\.com\.(?: 0)* [1-9]", text)  # a level deciding
        done = "decisions rebuilt" in text and row
        return text if done else None

    text = wait_until(decided, what="a decision in the panel")
    assert "Beacons: 6 accepted; not taken: " in text and "none" not in text.split("Samples")[0]
    assert re.search(r"Samples: 36 accepted", text), text


def test_rum_panel_is_left_out_without_rum_records(tmp_path, geo_db):
    from tests.conftest import ZONE_HEAD

    write_zone(tmp_path, "example.com", ZONE_HEAD)
    with ServerThread(tmp_path, geo_db) as server:
        text = http(server, "/").text
    assert 'id="rum"' not in text and "Real-user measurements" not in text


def fleet_page(server: ServerThread) -> str:
    reply = http(server, "/?refresh=0")
    assert reply.status == 200
    return " ".join(re.sub(r"<[^>]+>", " ", reply.text).split())


def test_fleet_nodes_regions_and_digests_on_a_real_engine(tmp_path, geo_db, edge_thread):
    """Two gslb nodes in two regions on one real nats-server: the page of each shows both
    regions' columns, the whole fleet's verdict, both nodes and whether their digests match."""
    from gslb.fleet.config import FleetSettings
    from tests.natscluster import NatsCluster
    from tests.test_web import checked_zone

    zones = {name: tmp_path / f"zones-{name}" for name in "ab"}
    for directory in zones.values():
        checked_zone(directory, edge_thread.edge.port)
    with NatsCluster(tmp_path / "nats", size=1) as nats:

        def node(name: str, region: str) -> ServerThread:
            settings = FleetSettings(nats.urls, name, region, refresh=0.5, replicas=1)
            return ServerThread(zones[name], geo_db, fleet=settings,
                                state_dir=tmp_path / f"state-{name}")  # fmt: skip

        with node("a", "EU") as a, node("b", "NA") as b:

            def both_seen() -> str | None:
                text = fleet_page(a)
                return text if re.search(r"Node Region Config .* a EU .* b NA", text) else None

            text = wait_until(both_seen, timeout=20, what="both nodes on a's page")
            assert "fleet engine connected" in text
            assert text.count("same as this node") == 2
            cells = re.findall(r'data-region="([^"]+)"', http(a, "/").text)
            assert {"EU", "NA", "whole fleet"} <= set(cells)
            # b loads other zone files: a's page flags it
            (zones["b"] / "example.com.yaml").write_text(
                (zones["b"] / "example.com.yaml").read_text()
                + "extra:\n  type: A\n  value: 192.0.2.7\n"
            )
            assert b.call(b.app.reload()).ok

            def flagged() -> str | None:
                text = fleet_page(a)
                return text if "DIFFERENT from this node" in text else None

            text = wait_until(flagged, timeout=20, what="b's new digest on a's page")
            assert re.search(r"b NA \w{12} DIFFERENT from this node", text), text
