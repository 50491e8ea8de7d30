"""Standalone operator overrides: keyed by what the operator means, persisted under
``--state-dir``, with who/why/when and expiry; checked through the answers a real server gives
before and after a restart, a check edit and an expiry."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse

import pytest

from gslb.fleet.overrides import (
    Override,
    OverrideBook,
    parse_duration,
    parse_override,
    resolve,
)
from tests.server import ServerThread
from tests.test_web import answers, check_key, checked_zone, http, metric, scrape, wait_until

pytestmark = pytest.mark.timeout(40)
TOKEN = "override-test-token"


@pytest.fixture
def zones(tmp_path, edge_thread):
    zones = tmp_path / "zones"
    checked_zone(zones, edge_thread.edge.port)
    return zones


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    return path


def serve(zones, geo_db, state_dir, token_file) -> ServerThread:
    return ServerThread(zones, geo_db, state_dir=state_dir, admin_token_file=token_file)


def post(server, path, body=None):
    data = b"" if body is None else body
    return http(server, path, "POST", token=TOKEN, body=data)


def quoted(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def only_second(server) -> bool:
    return set(answers(server, count=10)) == {"127.0.0.2"}


def first_back(server) -> bool:
    return "127.0.0.1" in answers(server, count=20)


def test_drain_survives_restart_and_edit_of_the_check(zones, geo_db, tmp_path, token_file):
    state = tmp_path / "state"
    with serve(zones, geo_db, state, token_file) as server:
        short = check_key(server).partition("#")[0]
        reply = post(server, f"/admin/targets/{short}/drain",
                     {"reason": "maintenance CHG-42", "by": "alice"})  # fmt: skip
        assert reply.status == 200, reply.text
        assert reply.json()["id"] == f"check:{short}"
        assert only_second(server)
    saved = json.loads((state / "overrides.json").read_text())
    assert [(o["name"], o["state"], o["by"]) for o in saved["overrides"]] == [
        (short, "drained", "alice")
    ]
    assert [p.name for p in state.iterdir()] == ["overrides.json"], "no temporary file left"

    # Restart with the check's options edited: its key (option digest) changes, its name not.
    path = zones / "example.com.yaml"
    path.write_text(path.read_text().replace("interval: 0.2", "interval: 0.25"))
    with serve(zones, geo_db, state, token_file) as server:
        new_key = check_key(server)
        assert new_key.partition("#")[0] == short
        assert only_second(server), "the drain came back after the restart and the edit"
        status = http(server, "/status").json()
        assert status["health"]["checks"][new_key]["override"] == "drained"
        (listed,) = http(server, "/fleet").json()["overrides"]
        assert (listed["by"], listed["reason"], listed["state"]) == (
            "alice", "maintenance CHG-42", "drained",
        )  # fmt: skip
        assert metric(scrape(server), "gslb_target_up", check=new_key) == 0

        assert post(server, f"/admin/targets/{quoted(new_key)}/obey").status == 200
        wait_until(lambda: first_back(server), what="obey restores the probes")
    assert json.loads((state / "overrides.json").read_text())["overrides"] == []


def test_expiry_ends_an_override(zones, geo_db, tmp_path, token_file):
    with serve(zones, geo_db, tmp_path / "state", token_file) as server:
        short = check_key(server).partition("#")[0]
        reply = post(server, f"/admin/targets/{short}/down?for=1s&reason=short+test")
        assert reply.status == 200 and reply.json()["expires_at"] > time.time()
        assert only_second(server)
        wait_until(lambda: first_back(server), timeout=10, what="the override to expire")
        assert http(server, "/fleet").json()["overrides"] == []


def test_a_pool_value_without_a_check_can_be_forced_down(zones, geo_db, tmp_path, token_file):
    with serve(zones, geo_db, tmp_path / "state", token_file) as server:
        reply = post(server, "/admin/targets/127.0.0.2/down", {"record": "dyn.example.com"})
        assert reply.status == 200, reply.text
        assert reply.json()["id"] == "target:dyn.example.com.:*:127.0.0.2"
        wait_until(lambda: set(answers(server, count=30)) == {"127.0.0.1"}, what="only .1")
        trace = http(server, "/explain?name=dyn.example.com&client=192.0.2.1").json()
        dropped = [c for c in trace["candidates"] if c["value"] == "127.0.0.2"]
        assert dropped[0]["dropped"]["why"] == "forced down by operator"
        # Draining the only other value sends everyone to what is left: the drained value.
        short = check_key(server).partition("#")[0]
        assert post(server, f"/admin/targets/{short}/drain").status == 200
        assert set(answers(server, count=10)) == {"127.0.0.1"}, "drained is used before down"
        assert post(server, "/admin/targets/127.0.0.2/obey?record=dyn.example.com").status == 200
        assert only_second(server)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/admin/targets/198.51.100.77/down", None, 404),  # no such check or value
        ("/admin/targets/127.0.0.2/down", {"pool": "nope"}, 404),
        ("/admin/targets/127.0.0.2/down", {"colour": "red"}, 400),
        ("/admin/targets/127.0.0.2/down", {"for": "soon"}, 400),
        ("/admin/targets/127.0.0.2/down", b"not json", 400),
        ("/admin/targets/127.0.0.2/down", {"scope": "galaxy"}, 400),
    ],
)
def test_bad_override_requests_say_why(
    zones, geo_db, tmp_path, token_file, path, body, status
):  # fmt: skip
    with serve(zones, geo_db, tmp_path / "state", token_file) as server:
        reply = post(server, path, body)
        assert reply.status == status
        assert reply.json()["error"]
        assert http(server, "/fleet").json()["overrides"] == []


def test_a_corrupt_state_file_is_reported_and_the_server_starts(
    zones, geo_db, tmp_path, token_file, caplog
):  # fmt: skip
    state = tmp_path / "state"
    state.mkdir()
    (state / "overrides.json").write_text("{not json")
    with caplog.at_level(logging.WARNING), serve(zones, geo_db, state, token_file) as server:
        wait_until(lambda: first_back(server), what="answers from the probes")
        assert http(server, "/fleet").json()["overrides"] == []
    assert "overrides.json: not valid JSON" in caplog.text


# -- the book and the resolution, without a server -------------------------------------------


def test_book_skips_bad_entries_with_reasons_and_drops_expired(tmp_path):
    path = tmp_path / "overrides.json"
    good = Override("check", "http://192.0.2.1:80/health", "down", at=1.0)
    expired = Override("target", "192.0.2.9", "drained", at=1.0, expires_at=5.0)
    bad = {"kind": "planet", "name": "", "state": "sideways", "extra": 1}
    path.write_text(json.dumps({"overrides": [good.to_dict(), expired.to_dict(), bad]}))
    book = OverrideBook(path)
    problems = book.load(now=10.0)
    assert list(book.items) == [good.id]
    (problem,) = problems
    for part in ("override 3", "unknown field(s) extra", "kind must be", "state must be",
                 "name must be"):  # fmt: skip
        assert part in problem


def test_parse_override_rejects_scoped_checks_and_bad_numbers():
    with pytest.raises(ValueError, match="record and pool apply to target overrides only"):
        parse_override({"kind": "check", "name": "x", "state": "down", "record": "a."})
    with pytest.raises(ValueError, match="expires_at must be a number"):
        parse_override({"kind": "check", "name": "x", "state": "down", "expires_at": "later"})


def test_resolution_by_name_pinned_key_and_scoped_value():
    keys = ["http://a:80/h#11111111", "http://a:80/h#22222222", "http://b:80/h#33333333"]
    values = {"v1.": [("r.example.", "eu"), ("r.example.", "us")]}
    by_name = Override("check", "http://a:80/h", "down")
    pinned = Override("check", "http://b:80/h#33333333", "drained")
    scoped = Override("target", "v1.", "down", record="r.example.", pool="us")
    nowhere = Override("target", "v1.", "down", record="other.example.")
    resolved = resolve([by_name, pinned, scoped, nowhere], keys, values)
    assert {k: o.state for k, o in resolved.checks.items()} == {
        keys[0]: "down", keys[1]: "down", keys[2]: "drained",
    }  # fmt: skip
    assert list(resolved.targets) == [("r.example.", "us", "v1.")]
    assert resolved.unmatched == (nowhere,)


@pytest.mark.parametrize(
    ("text", "seconds"), [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0),
                          ("1d", 86400.0), ("0.5", 0.5)]
)  # fmt: skip
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-1", "soon", "2w", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
