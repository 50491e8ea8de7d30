"""Live reload under traffic: answers follow an edit, a broken file keeps the last good config
serving (and is reported), fixing it recovers; the zone watcher does the same unasked."""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest

from gslb.watch import ZoneWatcher, fingerprint
from tests.conftest import write_zone
from tests.server import ServerThread
from tests.test_web import HEAD, answers, http, metric, scrape, wait_until

pytestmark = pytest.mark.timeout(30)

WEIGHTED = """\
dyn:
  type: A
  ttl: 30
  value: 192.0.2.99
  dynamic:
    pools:
      main:
        values:
          - {value: 192.0.2.10, weight: TEN}
          - {value: 192.0.2.20, weight: TWENTY}
    rules:
      - pool: main
"""
BROKEN = HEAD + "dyn:\n  type: A\n  value: [unclosed\n"


def weighted(directory: Path, ten: int, twenty: int, extra: str = "") -> Path:
    text = WEIGHTED.replace("TEN", str(ten)).replace("TWENTY", str(twenty))
    return write_zone(directory, "example.com", HEAD + text + extra)


def majority(server: ServerThread, count: int = 60) -> str:
    """The address answered most often; with weights 100:1 it is the heavy one (P > 0.999999)."""
    value, hits = collections.Counter(answers(server, count=count)).most_common(1)[0]
    assert hits >= count * 0.85, f"{value} only {hits}/{count}: weights not followed"
    return value


class Hammer:
    """A client thread querying over UDP until stopped, recording timeouts and bad replies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = self.timeouts = 0
        self.bad: list[str] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        query = dns.message.make_query("dyn.example.com", "A")
        while not self.stop_event.is_set():
            self.sent += 1
            try:
                reply = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=1.0)
            except dns.exception.Timeout:
                self.timeouts += 1
                continue
            values = [rr.address for rrset in reply.answer for rr in rrset]
            if reply.rcode() != 0 or len(values) != 1:
                self.bad.append(reply.to_text())

    def __enter__(self) -> Hammer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join(5)


@pytest.fixture
def zones(tmp_path: Path) -> Path:
    weighted(tmp_path / "zones", 100, 1)
    return tmp_path / "zones"


def test_reload_follows_edits_and_survives_a_broken_file_under_traffic(zones, geo_db):
    with ServerThread(zones, geo_db) as server, Hammer(server.dns_port) as hammer:
        assert majority(server) == "192.0.2.10"
        digest = server.app.config.digest

        weighted(zones, 1, 100)
        assert server.call(server.app.reload()).ok
        assert majority(server) == "192.0.2.20"
        good = server.app.config.digest
        assert good != digest

        before = scrape(server)
        (zones / "example.com.yaml").write_text(BROKEN)
        result = server.call(server.app.reload())
        assert not result.ok and any("example.com.yaml" in e for e in result.errors)
        assert majority(server) == "192.0.2.20", "the last good config keeps serving"
        status = http(server, "/status").json()
        assert status["last_reload"]["ok"] is False
        assert status["last_reload"]["errors"] == result.errors
        assert status["config"]["digest"] == good
        after = scrape(server)
        failed = [metric(s, "gslb_config_reloads_total", result="failure") for s in (before, after)]
        assert failed[1] - failed[0] == 1
        assert metric(after, "gslb_config_last_reload_successful") == 0
        assert metric(after, "gslb_config_info", digest=good) == 1

        weighted(zones, 100, 1)
        assert server.call(server.app.reload()).ok
        assert majority(server) == "192.0.2.10"
        assert http(server, "/status").json()["last_reload"]["ok"] is True
        assert metric(scrape(server), "gslb_config_last_reload_successful") == 1
        wait_until(lambda: hammer.sent > 50, what="the client thread to keep querying")
    assert hammer.timeouts == 0, f"{hammer.timeouts} of {hammer.sent} queries timed out"
    assert hammer.bad == []


def test_watcher_reloads_on_change_and_reports_a_broken_edit(zones, geo_db):
    extra = "new:\n  type: A\n  value: 192.0.2.77\n"
    with ServerThread(zones, geo_db, watch_interval=0.05) as server:
        assert answers(server, "new.example.com") == []
        weighted(zones, 100, 1, extra)
        wait_until(lambda: answers(server, "new.example.com") == ["192.0.2.77"], what="reload")

        (zones / "example.com.yaml").write_text(BROKEN)
        status = wait_until(
            lambda: (s := http(server, "/status").json())["last_reload"]["ok"] is False and s,
            what="the failed reload to show in /status",
        )
        assert any("example.com.yaml" in e for e in status["last_reload"]["errors"])
        assert answers(server, "new.example.com") == ["192.0.2.77"], "old config still serves"

        weighted(zones, 100, 1)
        wait_until(lambda: answers(server, "new.example.com") == [], what="recovery")
        assert http(server, "/status").json()["last_reload"]["ok"] is True


# -- the watcher on its own -----------------------------------------------------------------


def test_fingerprint_sees_content_size_new_and_removed_files_only_for_zone_files(tmp_path):
    path = write_zone(tmp_path, "a.example", "x: 1\n")
    first = fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "a.example.yaml.swp").write_text("ignored")
    assert fingerprint(tmp_path) == first
    path.write_text("x: 22\n")
    second = fingerprint(tmp_path)
    assert second != first
    os.utime(path, ns=(1, 1))
    assert fingerprint(tmp_path) != second, "mtime alone counts"
    (tmp_path / "b.example.yml").write_text("")
    assert [name for name, *_ in fingerprint(tmp_path)] == ["a.example.yaml", "b.example.yml"]
    assert fingerprint(tmp_path / "missing") == ()


@pytest.fixture
def counting_watcher(tmp_path: Path) -> Iterator[tuple[ZoneWatcher, list[int]]]:
    write_zone(tmp_path, "a.example", "x: 1\n")
    calls: list[int] = []

    async def reload() -> None:
        calls.append(1)

    yield ZoneWatcher(tmp_path, reload, interval=0.01, settle=0.0), calls


async def test_watcher_reloads_once_per_change(counting_watcher, tmp_path):
    watcher, calls = counting_watcher
    assert not await watcher.poll() and calls == []
    (tmp_path / "a.example.yaml").write_text("x: 2, longer\n")
    assert await watcher.poll() and calls == [1]
    assert not await watcher.poll() and calls == [1], "no second reload for the same change"
    (tmp_path / "a.example.yaml").unlink()
    assert await watcher.poll() and calls == [1, 1]


async def test_watcher_task_runs_and_stops(counting_watcher, tmp_path):
    watcher, calls = counting_watcher
    watcher.start()
    (tmp_path / "b.example.yaml").write_text("y: 1\n")
    async with asyncio.timeout(5):
        while not calls:
            await asyncio.sleep(0.01)
    await watcher.stop()
    assert watcher._task is None and calls == [1]


def test_zero_interval_disables_the_watcher(zones, geo_db):
    with ServerThread(zones, geo_db, watch_interval=0) as server:
        assert server.app.watcher is None


def soa_serial(server: ServerThread) -> int:
    reply = server.udp(dns.message.make_query("example.com", "SOA"))
    return reply.answer[0][0].serial


def test_reload_always_moves_the_serial_forward(tmp_path, geo_db):
    """An operator-set serial is served when it increases; an edit that forgot to bump it
    still gets a new serial (previous + 1), because every reload must change it."""
    soa = (
        "'':\n  - type: SOA\n    value: {mname: ns1.example.com., rname: h.example.com., "
        "serial: SERIAL, refresh: 7200, retry: 3600, expire: 1209600, minimum: 300}\n"
        "  - type: NS\n    value: ns1.example.com.\n"
    )
    write_zone(tmp_path, "example.com", soa.replace("SERIAL", "2026010100"))
    with ServerThread(tmp_path, geo_db) as server:
        assert soa_serial(server) == 2026010100
        write_zone(tmp_path, "example.com", soa.replace("SERIAL", "2026010100") + "# edit\n")
        assert server.call(server.app.reload()).ok
        assert soa_serial(server) == 2026010101, "not bumped in the file: previous + 1"
        write_zone(tmp_path, "example.com", soa.replace("SERIAL", "2026020100"))
        assert server.call(server.app.reload()).ok
        assert soa_serial(server) == 2026020100, "bumped in the file: served as written"
