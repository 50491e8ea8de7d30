"""The status page at / against a real server with three local HTTP edges standing in for CDNs.

The page is read with the standard library's HTML parser (the browser test,
tests/test_console_browser.py, reads the same page in headless Chromium).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import dns.message
import pytest

from gslb.dnssec.tools import keygen
from tests.conftest import ZONE_HEAD, write_zone
from tests.edges import EdgeThread
from tests.server import ServerThread, wait_until
from tests.test_web import http

pytestmark = pytest.mark.timeout(60)

ZONE = (
    ZONE_HEAD
    + """\
content:
  type: A
  ttl: 5
  value: 192.0.2.99
  dynamic:
    pools:
      cdns:
        values:
          - {value: 127.0.0.1, weight: 50}
          - {value: 127.0.0.2, weight: 30}
          - {value: 127.0.0.3, weight: 20}
    rules:
      - pool: cdns
  gslb:
    # the shares follow the weights: no performance step, whose success-ratio floor drops a
    # CDN for one slow probe on a loaded box while its cell still (rightly) says up
    chain: [rules, health, weighted]
    # lenient enough for a loaded test box: one slow probe does not take a CDN down
    check: {type: http, address: 127.0.0.1, path: /health, interval: 0.5, timeout: 0.45,
            rise: 1, fall: 2}
    targets:
      127.0.0.1: {check: {port: PORT1}}
      127.0.0.2: {check: {port: PORT2}}
      127.0.0.3: {check: {port: PORT3}}
"""
)
RECORD = "content.example.com."


def console_zone(directory, edges) -> None:
    text = ZONE
    for index, edge in enumerate(edges, 1):
        text = text.replace(f"PORT{index}", str(edge.edge.port))
    write_zone(directory, "example.com", text)


@pytest.fixture(scope="module")
def edges():
    threads = [EdgeThread() for _ in range(3)]
    yield threads
    for edge in threads:
        edge.stop()


@pytest.fixture(scope="module")
def zones(tmp_path_factory, edges):
    directory = tmp_path_factory.mktemp("zones")
    console_zone(directory, edges)
    return directory


TOKEN = "console-test-token"


@pytest.fixture(scope="module")
def server(zones, geo_db, tmp_path_factory):
    token = tmp_path_factory.mktemp("admin") / "token"
    token.write_text(TOKEN)
    with ServerThread(zones, geo_db, admin_token_file=token) as server:
        yield server


def ask(server: ServerThread, count: int) -> list[str]:
    out = []
    for _ in range(count):
        reply = server.udp(dns.message.make_query("content.example.com", "A"))
        out.extend(rr.address for rrset in reply.answer for rr in rrset)
    return out


class Page(HTMLParser):
    """What a test needs from the page: cells, share segments, table rows, text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.cells: dict[str, dict] = {}  # check key -> attributes and text (last region)
        self.all_cells: list[dict] = []  # every cell of the matrix, every region
        self.segments: list[dict] = []  # <rect data-share> of the share bars
        self.rows: dict[str, dict[str, str]] = {}  # target -> {window: text}
        self.meta_refresh: str | None = None
        self.text: list[str] = []
        self._cell: dict | None = None
        self._row: str | None = None
        self._window: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "meta" and a.get("http-equiv") == "refresh":
            self.meta_refresh = a["content"]
        if tag == "td" and "data-check" in a:
            self._cell = self.cells[a["data-check"]] = {**a, "text": ""}
            self.all_cells.append(self._cell)
        if tag == "rect" and "data-share" in a:
            self.segments.append(a)
        if tag == "tr" and "data-target" in a:
            self._row = a["data-target"]
            self.rows.setdefault(self._row, {})
        if tag == "td" and self._row is not None and "data-window" in a:
            self._window = a["data-window"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
            self._window = None
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data + " "
        if self._row is not None and self._window is not None:
            self.rows[self._row][self._window] = data

    @property
    def all_text(self) -> str:
        return " ".join(" ".join(self.text).split())

    def share(self, target: str, index: int = 0) -> float:
        """Share of ``target`` in the ``index``-th bar (0: last 5 minutes, 1: last hour)."""
        bars: list[list[dict]] = []
        for seg in self.segments:
            if float(seg["x"]) == 0.0:
                bars.append([])
            bars[-1].append(seg)
        return sum(float(s["data-share"]) for s in bars[index] if s["data-target"] == target)


def page(server: ServerThread, query: str = "") -> Page:
    reply = http(server, "/" + query)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    return Page(reply.text)


def key_of(server: ServerThread, port: int) -> str:
    (key,) = [k for k in server.app.config.checks if f":{port}/" in k]
    return key


def test_page_is_open_html_that_refreshes_itself(server):
    reply = http(server, "/")
    assert reply.status == 200 and "no-store" in reply.headers["Cache-Control"]
    assert "<script" not in reply.text  # server-rendered, no JavaScript
    assert page(server).meta_refresh == "5"
    assert page(server, "?refresh=2").meta_refresh == "2"
    assert page(server, "?refresh=0").meta_refresh is None
    assert http(server, "/", "POST", body={}).status == 405


def test_existing_paths_still_answer_beside_the_page(server):
    for path in ("/healthz", "/readyz", "/status", "/metrics"):
        assert http(server, path).status == 200, path
    assert http(server, "/explain?name=content.example.com&client=192.0.2.1").status == 200
    assert http(server, "/admin/reload", "POST").status == 401  # still behind the token


def test_matrix_says_each_state_in_words_with_reason_and_age(server, edges):
    view = page(server)
    assert len(view.cells) == 3
    for edge in edges:
        cell = view.cells[key_of(server, edge.edge.port)]
        assert cell["data-state"] == "up" and "ok" in cell["class"].split()
        assert cell["data-region"] == "this server"
        assert re.fullmatch(r"up ok .* for \d+ s", " ".join(cell["text"].split())), cell["text"]


def test_answers_share_per_target_and_reason(server):
    ask(server, 200)
    view = page(server)
    shares = {t: view.share(t) for t in ("127.0.0.1", "127.0.0.2", "127.0.0.3")}
    assert abs(sum(shares.values()) - 1.0) < 0.01
    assert shares["127.0.0.1"] > shares["127.0.0.3"] > 0  # weights 50 / 20
    row = view.rows["127.0.0.1"]
    assert row["5m"].endswith("%") and row["1h"].endswith("%")
    assert f"{RECORD}: answers by target and reason" in view.all_text
    assert re.search(r"127\.0\.0\.1 \d+ % \d+ % pool \d+", view.all_text)


def test_failed_edge_turns_red_with_its_reason_and_loses_its_share(server, edges):
    failing = edges[0]
    key = key_of(server, failing.edge.port)
    ask(server, 150)
    before = page(server).share("127.0.0.1")
    assert before > 0.2
    failing.switch("status", 503)
    try:
        cell = wait_until(
            lambda: (c := page(server).cells[key])["data-state"] == "down" and c,
            timeout=10,
            what="the cell to say down",
        )
        assert "bad" in cell["class"].split()
        assert "status 503" in cell["text"]
        ask(server, 300)
        view = page(server)
        assert view.share("127.0.0.1") < before - 0.1  # the 5-minute share moved
        assert "up → down (status 503)" in view.all_text  # the timeline
    finally:
        failing.switch("healthy")
        wait_until(lambda: page(server).cells[key]["data-state"] == "up", 10, "recovery")


def test_operator_drain_is_amber_and_named(server, edges):
    key = key_of(server, edges[2].edge.port)
    server.call(_override(server, key, "drained"))
    try:
        cell = page(server).cells[key]
        assert cell["data-state"] == "drained" and "warn" in cell["class"].split()
        assert "drained by operator" in cell["text"]
    finally:
        server.call(_override(server, key, None))


async def _override(server: ServerThread, key: str, value: str | None) -> None:
    server.app.prober.set_override(key, value)


def test_zones_serials_digest_and_a_failed_reload_are_shown(server, zones, edges):
    view = page(server)
    config = server.app.config
    zone = next(iter(config.zones.values()))
    assert f"example.com. {zone.serial}" in view.all_text
    assert config.digest[:12] in view.all_text
    assert "Last load or reload: ok" in view.all_text
    good = (zones / "example.com.yaml").read_text()
    (zones / "example.com.yaml").write_text(good + "broken:\n  type: A\n  value: not-an-ip\n")
    try:
        assert not server.call(server.app.reload()).ok
        view = page(server)
        assert "Last reload failed" in view.all_text
        assert "broken" in view.all_text and "not-an-ip" in view.all_text
    finally:
        (zones / "example.com.yaml").write_text(good)
        assert server.call(server.app.reload()).ok
    assert "Last load or reload: ok" in page(server).all_text


def test_panels_appear_only_when_their_feature_renders(server):
    console = server.app.web.console
    console.add_panel("rum", "Real-user measurements", lambda app: None)
    console.add_panel("commit", "Commits", lambda app: "<p>commit 42 % of plan</p>")
    try:
        text = http(server, "/").text
        assert 'id="commit"' in text and "commit 42 % of plan" in text
        assert 'href="#commit"' in text
        assert 'id="rum"' not in text and "Real-user measurements" not in text
    finally:
        del console.panels[-2:]


def test_zones_say_whether_they_are_signed(tmp_path, geo_db, server):
    assert (
        "example.com. " + str(next(iter(server.app.config.zones.values())).serial) + (" not signed")
        in page(server).all_text
    )
    write_zone(tmp_path, "example.com", ZONE_HEAD)
    (line,) = [x for x in keygen(tmp_path, "example.com", 13) if x.startswith("; key ")]
    tag = line.split()[2].rstrip(",")
    with ServerThread(tmp_path, geo_db) as signed:
        text = page(signed).all_text
    assert re.search(
        rf"signed, key {tag} ECDSAP256SHA256, signatures valid [34]\.\d more days", text
    )


def test_operator_overrides_say_who_why_and_until_when(server):
    path = "/admin/targets/127.0.0.2/drain?by=alice&reason=cdn-b+maintenance&for=10m"
    assert http(server, path, "POST", token=TOKEN).status == 200
    try:
        text = page(server).all_text
        assert re.search(
            r"Operator overrides drained target 127\.0\.0\.2, by alice, since \S+ UTC "
            r"\(\d+ s ago\), expires in (9|10) min, “cdn-b maintenance”",
            text,
        ), text
    finally:
        assert http(server, "/admin/targets/127.0.0.2/obey", "POST", token=TOKEN).status == 200
    assert "Operator overrides" not in page(server).all_text


def test_a_server_with_a_region_shows_it_beside_the_fleet_verdict(server):
    """Regions come from the fleet node (gslb.fleet); standalone with a region: one vantage."""
    fleet = server.app.fleet

    async def set_region(region):
        fleet.region = region
        fleet.recompute()

    server.call(set_region("eu-west"))
    try:
        view = page(server)
        assert len(view.all_cells) == 6  # 3 checks x (eu-west, whole fleet)
        by_region = {}
        for cell in view.all_cells:
            by_region.setdefault(cell["data-region"], []).append(" ".join(cell["text"].split()))
        assert set(by_region) == {"eu-west", "whole fleet"}
        assert all(re.fullmatch(r"up self: ok .* seen \d+ s ago", t) for t in by_region["eu-west"])
        assert all(t == "up 1 of 1 vantages up, policy quorum" for t in by_region["whole fleet"])
    finally:
        server.call(set_region(None))
    assert "whole fleet" not in page(server).all_text


def many_records(count: int) -> str:
    out = [ZONE_HEAD]
    for i in range(count):
        status = "down" if i == count - 1 else "obey"  # the last one answers from the origin
        out.append(
            f"r{i}:\n  type: A\n  value: 192.0.2.99\n  dynamic:\n    pools:\n      p:\n"
            f"        values: [{{value: 198.51.100.{i % 250 + 1}, status: {status}}}]\n"
            "    rules: [{pool: p}]\n"
        )
    return "".join(out)


def test_many_records_show_those_that_need_a_look_first(tmp_path, geo_db):
    write_zone(tmp_path, "example.com", many_records(40))
    with ServerThread(tmp_path, geo_db) as many:
        for name in ("r0", "r1", "r1", "r39"):
            many.udp(dns.message.make_query(f"{name}.example.com", "A"))
        text = http(many, "/").text
        shown = re.findall(r'data-record="([^"]+)"', text)
        assert len(shown) == 30 and "The 30 of 40 records that most need a look" in text
        assert shown[:3] == ["r39.example.com.", "r1.example.com.", "r0.example.com."]
        assert len(re.findall(r'data-record="', http(many, "/?records=all").text)) == 40
