"""RUM through the real server: snippet, recipe, beacons over HTTP, DNS answers over UDP.

Beacons come from 127.0.0.1, so they describe the client network 127.0.0.0/24; a query from
the same address without ECS is that network's resolver, a query with another ECS /24 is
someone else, whose answers must not move.
"""

from __future__ import annotations

import dns.edns
import dns.message
import pytest

from gslb.rum.ingest import Limits
from gslb.rum.settings import RumSettings
from tests.conftest import ZONE_HEAD, write_zone
from tests.geodb import CLIENTS
from tests.server import ServerThread, wait_until
from tests.test_web import http, metric, scrape

TOKEN = "rum-admin-token"
CDNS = ("a.cdn.test.", "b.cdn.test.", "c.cdn.test.")


def rum_zone(probes: dict[str, str], options: str = "") -> str:
    """``content.example.com`` over the three CDNs, steered by RUM with ``probes`` (CDN ->
    probe object URL); ``options`` are more ``gslb.rum`` lines, indented six spaces."""
    probe_lines = "".join(f"        {cdn}: {url}\n" for cdn, url in probes.items())
    return (
        ZONE_HEAD
        + """\
content:
  type: CNAME
  ttl: 20
  value: origin.example.net.
  dynamic:
    pools:
      cdns:
        values: [{value: a.cdn.test.}, {value: b.cdn.test.}, {value: c.cdn.test.}]
    rules:
      - pool: cdns
  gslb:
    rum:
      probes:
"""
        + probe_lines
        + """\
      min_samples: 4
      hold: 0
      window: 60
"""
        + options
    )


ZONE = rum_zone({cdn: f"http://127.0.0.1:1/{cdn[0]}.gif" for cdn in CDNS})


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", ZONE)
    token_file = tmp_path_factory.mktemp("secret") / "admin-token"
    token_file.write_text(TOKEN)
    limits = Limits(per_network=600, network_burst=40)
    rum = RumSettings(limits=limits, refresh=0.05)
    with ServerThread(zones, geo_db, admin_token_file=token_file, rum=rum) as srv:
        yield srv


def send_beacon(server, latencies: dict[str, float], failed: tuple[str, ...] = ()) -> int:
    recipe = http(server, "/rum/v1/recipe?name=content.example.com&type=CNAME")
    assert recipe.status == 200, recipe.text
    job = recipe.json()
    assert {t["t"] for t in job["targets"]} == set(CDNS)
    measurements = [
        {"t": t, "k": kind, "ok": 0 if t in failed else 1, "ms": ms}
        for t, ms in latencies.items()
        for kind in ("cold", "warm")
    ]
    body = {"v": 1, "r": job["r"], "y": job["y"], "tok": job["tok"], "m": measurements}
    reply = http(server, "/rum/v1/beacons", "POST", body=body,
                 headers={"Content-Type": "text/plain;charset=UTF-8"})  # fmt: skip
    return reply.status


def answers(server, ecs: str | None = None, count: int = 30) -> set[str]:
    seen = set()
    for _ in range(count):
        query = dns.message.make_query("content.example.com", "CNAME")
        if ecs is not None:
            address, prefix = ecs.split("/")
            query.use_edns(0, options=[dns.edns.ECSOption(address, int(prefix))])
        reply = server.udp(query)
        seen.add(reply.answer[0][0].target.to_text())
    return seen


def explained(server, samples: int) -> dict | None:
    """The explain trace's rum step once it counts ``samples`` fetches of b, else None."""
    explain = http(server, "/explain?name=content.example.com&client=127.0.0.1&qtype=CNAME")
    step = next(s for s in explain.json()["steps"] if s["step"] == "rum")
    figures = step["notes"].get("targets", {})
    return step if figures.get(CDNS[1], {}).get("samples", 0) >= samples else None


def test_the_snippet_is_served_small_and_cacheable(server):
    reply = http(server, "/rum/v1/rum.js")
    assert reply.status == 200
    assert "javascript" in reply.headers["Content-Type"]
    assert "sendBeacon" in reply.text and "getEntriesByName" in reply.text
    assert len(reply.text) < 6000
    assert "max-age" in reply.headers["Cache-Control"]


def test_beacons_move_this_networks_answers_and_no_one_elses(server):
    assert answers(server) == set(CDNS)
    for _ in range(5):
        assert send_beacon(server, {CDNS[0]: 90, CDNS[1]: 12, CDNS[2]: 95}) == 204
    wait_until(lambda: answers(server, count=10) == {CDNS[1]}, 5, "answers to move to b")
    # Another client network (ECS from Germany): no data there, every CDN as before.
    assert answers(server, ecs=f"{CLIENTS['DE']}/24") == set(CDNS)
    step = wait_until(lambda: explained(server, 10), 5, "explain to show all 10 samples of b")
    assert step["notes"]["level"] == "prefix" and step["notes"]["key"] == "127.0.0.0/24"
    figures = step["notes"]["targets"]
    assert figures[CDNS[1]]["verdict"] == "kept" and figures[CDNS[0]]["verdict"] == "dropped"
    assert 10 <= figures[CDNS[1]]["p50_ms"] <= 14
    # b fails for this network's users: it leaves at once, and a and c come back.
    for _ in range(8):
        assert send_beacon(server, {CDNS[0]: 90, CDNS[1]: 12, CDNS[2]: 95}, (CDNS[1],)) == 204
    wait_until(lambda: CDNS[1] not in answers(server, count=20), 5, "b to leave")
    samples = scrape(server)
    assert metric(samples, "gslb_rum_beacons_total", result="accepted") >= 13
    assert metric(samples, "gslb_rum_decisions", record="content.example.com.", level="prefix")
    assert metric(samples, "gslb_rum_set_changes_total", record="content.example.com.") >= 1


def test_bad_beacons_are_refused_counted_and_change_nothing(server):
    before = scrape(server)
    recipe = http(server, "/rum/v1/recipe?name=content.example.com&type=CNAME").json()
    forged = dict(recipe, tok=recipe["tok"][:-4] + "AAAA", m=[])
    cases = [
        (b"\x00garbage", 400, "malformed"),
        (b"{" * 20000, 413, "too_large"),
        (forged, 403, "bad_token"),
        ({"v": 1, "r": "nope.example.com.", "y": 5, "tok": "1.2.3", "m": []}, 404,
         "unknown_record"),
    ]  # fmt: skip
    for body, status, reason in cases:
        reply = http(server, "/rum/v1/beacons", "POST", body=body)
        assert (reply.status, reply.json()["error"]) == (status, reason)
    after = scrape(server)
    for _, _, reason in cases:
        grew = metric(after, "gslb_rum_beacons_total", result=reason) - metric(
            before, "gslb_rum_beacons_total", result=reason
        )
        assert grew == 1, reason
    assert http(server, "/rum/v1/recipe?name=nope.example.com").status == 404


def test_the_bulk_feed_needs_the_token_and_reports_every_bad_item(server):
    sample = {"record": "content.example.com", "target": CDNS[2], "network": "51.15.1.0/24",
              "ms": 20, "count": 10}  # fmt: skip
    assert http(server, "/admin/rum/bulk", "POST", body={"samples": [sample]}).status == 401
    body = {"samples": [sample, dict(sample, target="x.cdn.test."), dict(sample, ms=-1)]}
    reply = http(server, "/admin/rum/bulk", "POST", body=body, token=TOKEN)
    assert reply.status == 207
    data = reply.json()
    assert data["accepted"] == 1 and [p["index"] for p in data["rejected"]] == [1, 2]
    status = http(server, "/rum/v1/status").json()
    assert status["keys"]["prefix"] >= 2 and status["records"] == ["content.example.com. 5"]


def test_worker_processes_get_the_decisions_too(tmp_path, geo_db):
    write_zone(tmp_path, "example.com", ZONE)
    rum = RumSettings(limits=Limits(per_network=600, network_burst=40), refresh=0.05)
    with ServerThread(tmp_path, geo_db, workers=2, rum=rum) as srv:
        for _ in range(5):
            assert send_beacon(srv, {CDNS[0]: 15, CDNS[1]: 90, CDNS[2]: 95}) == 204
        wait_until(lambda: answers(srv, count=20) == {CDNS[0]}, 10, "workers to answer a")


def test_the_public_listener_serves_beacon_paths_only(tmp_path, geo_db):
    import urllib.error
    import urllib.request

    write_zone(tmp_path, "example.com", ZONE)
    rum = RumSettings(listen=("127.0.0.1", 0), refresh=0.05)
    with ServerThread(tmp_path, geo_db, rum=rum) as srv:
        base = f"http://127.0.0.1:{srv.app.rum_bound[1]}"

        def status(path: str) -> int:
            try:
                with urllib.request.urlopen(base + path, timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status("/rum/v1/rum.js") == 200
        assert status("/rum/v1/recipe?name=content.example.com") == 200
        for private in ("/metrics", "/status", "/explain?name=content.example.com&client=1.2.3.4",
                        "/rum/v1/status", "/"):  # fmt: skip
            assert status(private) == 404, private


def test_only_the_configured_page_origins_get_a_recipe_or_send_beacons(tmp_path, geo_db):
    """`origins` (README: pages allowed to send beacons): a page of another site gets no
    recipe (403, counted as `origin`) and its beacon is refused; the allowed page gets both,
    with CORS naming it; the preflight of either path answers 204 for POST."""
    page, other = "https://www.example.com", "https://evil.example"
    write_zone(tmp_path, "example.com", ZONE + f"      origins: [{page}]\n")
    with ServerThread(tmp_path, geo_db, rum=RumSettings(refresh=0.05)) as srv:
        path = "/rum/v1/recipe?name=content.example.com&type=CNAME"
        refused = http(srv, path, headers={"Origin": other})
        assert refused.status == 403 and refused.json()["error"] == "origin not allowed"
        allowed = http(srv, path, headers={"Origin": page})
        assert allowed.status == 200, allowed.text
        assert allowed.headers["Access-Control-Allow-Origin"] == page
        job = allowed.json()
        body = {"v": 1, "r": job["r"], "y": job["y"], "tok": job["tok"],
                "m": [{"t": CDNS[0], "k": "warm", "ok": 1, "ms": 20}]}  # fmt: skip
        plain = {"Content-Type": "text/plain;charset=UTF-8"}
        forged = http(srv, "/rum/v1/beacons", "POST", body=body, headers=plain | {"Origin": other})
        assert forged.status == 403 and forged.json()["error"] == "origin"
        sent = http(srv, "/rum/v1/beacons", "POST", body=body, headers=plain | {"Origin": page})
        assert sent.status == 204, sent.text
        for endpoint in ("/rum/v1/beacons", "/rum/v1/recipe"):
            preflight = http(srv, endpoint, "OPTIONS", headers={"Origin": page})
            assert preflight.status == 204
            assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        samples = scrape(srv)
    assert metric(samples, "gslb_rum_beacons_total", result="origin") == 2
    assert metric(samples, "gslb_rum_beacons_total", result="accepted") == 1


def test_a_browsers_address_is_never_logged_or_shown(tmp_path, geo_db, caplog):
    """Privacy as the README states it: the beacon's address becomes its /24 and is dropped.
    Accepted and refused beacons from one browser (through a trusted proxy) leave its address
    in no log line at any level, and in no page, trace or metric the server shows."""
    import ipaddress
    import logging

    caplog.set_level(logging.DEBUG)
    write_zone(tmp_path, "example.com", ZONE)
    rum = RumSettings(limits=Limits(per_network=600, network_burst=40), refresh=0.05,
                      trusted_proxies=[ipaddress.ip_network("127.0.0.1/32")])  # fmt: skip
    address = "46.4.9.77"
    browser = {"X-Forwarded-For": address, "Content-Type": "text/plain;charset=UTF-8"}
    with ServerThread(tmp_path, geo_db, rum=rum) as srv:
        for kind in ("good", "good", "good", "good", "forged", "garbage"):
            job = http(srv, "/rum/v1/recipe?name=content.example.com", headers=browser).json()
            m = [{"t": t, "k": "warm", "ok": 1, "ms": ms}
                 for t, ms in zip(CDNS, (90, 11, 95), strict=True)]  # fmt: skip
            body = {"v": 1, "r": job["r"], "y": job["y"], "tok": job["tok"], "m": m}
            if kind == "forged":
                body["tok"] = job["tok"][:-4] + "0000"
            sent = b"{not json" if kind == "garbage" else body
            reply = http(srv, "/rum/v1/beacons", "POST", body=sent, headers=browser)
            assert reply.status == (204 if kind == "good" else 400 if kind == "garbage" else 403)
        wait_until(lambda: answers(srv, ecs="46.4.9.0/24", count=10) == {CDNS[1]}, 5,
                   "the browser's /24 to be steered: its beacons counted")  # fmt: skip
        paths = ("/metrics", "/status", "/rum/v1/status", "/", "/fleet",
                 "/explain?name=content.example.com&client=127.0.0.1&ecs=46.4.9.0/24")  # fmt: skip
        shown = [http(srv, path).text for path in paths]
        assert "46.4.9.0/24" in shown[-1], "the trace shows the network that decided"
    for text in [*shown, caplog.text]:
        assert address not in text
    assert caplog.records, "the server did log (start, reload): the check above can fail"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_resolver_without_ecs_gets_its_users_choice(tmp_path, geo_db, workers):
    """Browsers in three German networks use the resolver 127.0.0.1 (it asks gslb for their
    sessions' one-off names); their beacons arrive through a trusted proxy. Queries from that
    resolver without ECS then get the CDN those users measured fastest."""
    import ipaddress

    only_networks = ZONE.replace("window: 60", "window: 60\n      levels: [resolver, prefix]")
    write_zone(tmp_path, "example.com", only_networks)
    rum = RumSettings(limits=Limits(per_network=600, network_burst=40), refresh=0.05,
                      resolver_name="rum.example.com",
                      trusted_proxies=[ipaddress.ip_network("127.0.0.1/32")])  # fmt: skip
    with ServerThread(tmp_path, geo_db, workers=workers, rum=rum) as srv:
        for third in (1, 2, 3):
            browser = {"X-Forwarded-For": f"46.4.{third}.10"}
            for _ in range(2):
                job = http(srv, "/rum/v1/recipe?name=content.example.com", headers=browser).json()
                host = job["resolve"].strip("/")
                assert host.endswith(".rum.example.com")
                srv.udp(dns.message.make_query(host, "A"))  # the browser's resolver asks
                sid = host.split(".")[0]
                wait_until(lambda sid=sid: sid in srv.app.rum.ingest.resolvers.links, 5,
                           "the sighting to reach the supervisor")  # fmt: skip
                m = [{"t": t, "k": "warm", "ok": 1, "ms": ms}
                     for t, ms in zip(CDNS, (90, 11, 95), strict=True)]  # fmt: skip
                body = {"v": 1, "r": job["r"], "y": job["y"], "tok": job["tok"], "m": m}
                reply = http(srv, "/rum/v1/beacons", "POST", body=body, headers=browser)
                assert reply.status == 204, reply.text
        wait_until(lambda: answers(srv, count=20) == {CDNS[1]}, 5, "the resolver to get b")
        assert answers(srv, ecs=f"{CLIENTS['JP']}/24") == set(CDNS)  # someone else: untouched
        status = http(srv, "/rum/v1/status").json()
        assert status["resolver_links"]["linked"] == 6
        explain = http(srv, "/explain?name=content.example.com&client=127.0.0.1&qtype=CNAME")
        step = next(s for s in explain.json()["steps"] if s["step"] == "rum")
        assert step["notes"]["level"] == "resolver" and step["notes"]["key"] == "127.0.0.0/24"
