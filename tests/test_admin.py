"""The admin API: bearer token rules, reload, target overrides and the measurement feed,
each checked through what the server then answers and reports."""

from __future__ import annotations

import collections
import logging
import urllib.parse
import uuid

import pytest

from tests.server import ServerThread
from tests.test_web import (
    answers,
    check_key,
    checked_zone,
    http,
    metric,
    scrape,
    wait_until,
)

pytestmark = pytest.mark.timeout(30)
TOKEN = f"tok-{uuid.uuid4().hex}"
BROKEN = "bad:\n  type: A\n  value: not-an-address\n  ttl: -5\n"


@pytest.fixture(scope="module")
def zones(tmp_path_factory, edge_thread):
    zones = tmp_path_factory.mktemp("zones")
    checked_zone(zones, edge_thread.edge.port)
    return zones


@pytest.fixture(scope="module")
def server(tmp_path_factory, zones, geo_db):
    token_file = tmp_path_factory.mktemp("secret") / "admin-token"
    token_file.write_text(TOKEN + "\n")
    with ServerThread(zones, geo_db, admin_token_file=token_file) as server:
        yield server


def post(server: ServerThread, path: str, body: object = None, token: str | None = TOKEN):
    return http(server, path, "POST", token=token, body=body if body is not None else b"")


# -- authentication ---------------------------------------------------------------------------


def test_no_credentials_is_401_with_bearer_challenge(server):
    reply = post(server, "/admin/reload", token=None)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    reply = http(server, "/admin/reload", "POST", body=b"", headers={"Authorization": "Basic x"})
    assert reply.status == 401


def test_wrong_token_is_403(server):
    reply = post(server, "/admin/reload", token="not-" + TOKEN)
    assert reply.status == 403 and reply.json()["error"] == "wrong admin token"


def test_right_token_reloads(server):
    reply = post(server, "/admin/reload")
    assert reply.status == 200
    assert reply.json()["ok"] is True and reply.json()["errors"] == []
    assert reply.json()["digest"] == server.app.config.digest


def test_admin_is_post_only(server):
    assert http(server, "/admin/reload", token=TOKEN).status == 405


def test_token_never_shows(server, caplog):
    with caplog.at_level(logging.DEBUG):
        post(server, "/admin/reload", token="not-" + TOKEN)
        post(server, "/admin/reload")
        texts = [http(server, p).text for p in ("/status", "/metrics")]
    assert http(server, "/status").json()["admin"] == {"enabled": True}
    assert all(TOKEN not in text for text in [*texts, caplog.text])
    assert "wrong token" in caplog.text


@pytest.mark.parametrize("env_token", [None, "from-env"])
def test_token_from_env_or_admin_disabled_with_howto(monkeypatch, zones, geo_db, env_token):
    if env_token:
        monkeypatch.setenv("GSLB_ADMIN_TOKEN", env_token)
    else:
        monkeypatch.delenv("GSLB_ADMIN_TOKEN", raising=False)
    with ServerThread(zones, geo_db) as server:
        reply = post(server, "/admin/reload", token=env_token or "anything")
        if env_token:
            assert reply.status == 200
        else:
            assert reply.status == 403
            message = reply.json()["error"]
            assert "--admin-token-file" in message and "GSLB_ADMIN_TOKEN" in message


# -- reload -----------------------------------------------------------------------------------


def test_failed_reload_is_422_with_every_reason(server, zones, edge_thread):
    path = zones / "example.com.yaml"
    good = path.read_text()
    path.write_text(good + BROKEN)
    try:
        reply = post(server, "/admin/reload")
        assert reply.status == 422
        body = reply.json()
        assert body["ok"] is False and len(body["errors"]) == 2, body["errors"]
        assert all("example.com.yaml" in line for line in body["errors"])
        assert set(answers(server, count=5)) <= {"127.0.0.1", "127.0.0.2"}, "still serving"
    finally:
        path.write_text(good)
    assert post(server, "/admin/reload").status == 200


# -- target overrides -------------------------------------------------------------------------


def quoted(key: str) -> str:
    return urllib.parse.quote(key, safe="")


@pytest.mark.parametrize(("action", "effective"), [("down", "down"), ("drain", "drained")])
def test_forcing_a_target_out_moves_answers_and_obey_restores(server, action, effective):
    key = check_key(server)
    reply = post(server, f"/admin/targets/{quoted(key)}/{action}")
    assert reply.status == 200
    body = reply.json()
    expected = {"check": key, "action": action, "override": effective, "effective": effective}
    assert {k: body[k] for k in expected} == expected
    assert set(answers(server, count=10)) == {"127.0.0.2"}
    state = http(server, "/status").json()["health"]["checks"][key]
    assert state["override"] == effective
    assert state["transitions"][-1]["reason"].endswith("by operator")
    assert metric(scrape(server), "gslb_target_up", check=key) == 0

    assert post(server, f"/admin/targets/{quoted(key)}/obey").json()["override"] is None
    assert metric(scrape(server), "gslb_target_up", check=key) == 1
    counts = collections.Counter(answers(server, count=40))
    assert counts["127.0.0.1"] > 30, counts


def test_check_can_be_named_without_its_digest_and_slashes_unescaped(server):
    key = check_key(server)
    short = key.partition("#")[0]  # http://127.0.0.1:PORT/health
    reply = post(server, f"/admin/targets/{short}/up")
    assert reply.status == 200 and reply.json()["check"] == key
    assert reply.json()["effective"] == "up"
    assert post(server, f"/admin/targets/{short}/obey").json()["override"] is None


def test_unknown_check_is_404_and_unknown_action_too(server):
    assert post(server, "/admin/targets/tcp%3A%2F%2F192.0.2.1%3A1/down").status == 404
    key = check_key(server)
    assert post(server, f"/admin/targets/{quoted(key)}/explode").status == 404


def test_every_admin_request_is_counted_by_endpoint_and_code(server):
    """Refusals too: a script with a wrong token or an unknown target shows in /metrics."""

    def count(endpoint: str, code: int) -> float:
        name = "gslb_admin_requests_total"
        return metric(scrape(server), name, endpoint=endpoint, code=str(code))

    before = {
        (e, c): count(e, c)
        for e, c in (("reload", 403), ("reload", 401), ("targets", 404), ("reload", 200))
    }
    post(server, "/admin/reload", token="not-" + TOKEN)
    post(server, "/admin/reload", token=None)
    post(server, "/admin/targets/tcp%3A%2F%2F192.0.2.1%3A1/down")
    post(server, "/admin/targets/tcp%3A%2F%2F192.0.2.1%3A1/down")
    post(server, "/admin/reload")
    assert count("reload", 403) == before["reload", 403] + 1
    assert count("reload", 401) == before["reload", 401] + 1
    assert count("targets", 404) == before["targets", 404] + 2
    assert count("reload", 200) == before["reload", 200] + 1
    unknown = count("unknown", 404)
    post(server, "/admin/no-such-thing")
    assert count("unknown", 404) == unknown + 1


# -- measurements -----------------------------------------------------------------------------


def test_measurement_feeds_the_view_until_its_ttl(server):
    key = check_key(server)
    body = {"check": key, "latency_ms": 42.5, "success_ratio": 0.75, "ttl": 30}
    reply = post(server, "/admin/measurements", body)
    assert reply.status == 200 and reply.json()["check"] == key
    state = server.app.prober.view.state(key)
    assert (state.latency, state.success_ratio) == (0.0425, 0.75)
    external = http(server, "/status").json()["health"]["checks"][key]["external"]
    assert external["latency"] == 0.0425 and 0 < external["expires_in"] <= 30

    short = {"check": key, "latency_ms": 1, "success_ratio": 1, "ttl": 0.05}
    assert post(server, "/admin/measurements", short).status == 200
    wait_until(lambda: server.app.prober.view.state(key).latency != 0.001, what="ttl expiry")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "must be JSON"),
        ([1, 2], 400, "JSON object"),
        ({"check": "x", "latency_ms": 1}, 400, "missing field(s) success_ratio"),
        ({"check": "x", "latency_ms": 1, "success_ratio": 1, "extra": 1}, 400, "unknown field"),
        ({"check": "x", "latency_ms": "fast", "success_ratio": 1}, 400, "latency_ms"),
        ({"check": "KEY", "latency_ms": -1, "success_ratio": 1}, 400, "latency_ms"),
        ({"check": "KEY", "latency_ms": 1, "success_ratio": 1.5}, 400, "success ratio"),
        ({"check": "KEY", "latency_ms": 1, "success_ratio": 1, "ttl": 0}, 400, "ttl"),
        ({"check": "nope", "latency_ms": 1, "success_ratio": 1}, 404, "unknown check"),
    ],
)
def test_bad_measurements_are_rejected_clearly(server, body, status, words):
    if isinstance(body, dict) and body.get("check") == "KEY":
        body = {**body, "check": check_key(server)}
    reply = post(server, "/admin/measurements", body)
    assert reply.status == status
    assert words in reply.json()["error"]


def test_token_file_wins_over_env_and_bad_files_stop_start_up(tmp_path, monkeypatch):
    from gslb.app import StartupError, load_admin_token

    monkeypatch.setenv("GSLB_ADMIN_TOKEN", "from-env")
    path = tmp_path / "token"
    path.write_text("  from-file \n")
    assert load_admin_token(path) == "from-file"
    assert load_admin_token(None) == "from-env"
    path.write_text("\n")
    with pytest.raises(StartupError, match="is empty"):
        load_admin_token(path)
    with pytest.raises(StartupError, match="admin token file"):
        load_admin_token(tmp_path / "missing")
