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
        done = "decisions rebuilt" in text and re.search(r"content\.example\.com\. [1-9]", text)
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
