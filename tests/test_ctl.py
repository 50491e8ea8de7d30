"""``gslb ctl`` and ``gslb fleet status`` against a real running server: the operator's CLI
sets, lists and clears overrides with the token from a file or the environment."""

from __future__ import annotations

import pytest

from gslb.cli import main
from tests.server import ServerThread
from tests.test_web import answers, check_key, checked_zone

pytestmark = pytest.mark.timeout(30)
TOKEN = "ctl-test-token"


@pytest.fixture
def server(tmp_path, geo_db, edge_thread):
    zones = tmp_path / "zones"
    checked_zone(zones, edge_thread.edge.port)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with ServerThread(zones, geo_db, admin_token_file=token, state_dir=tmp_path / "s") as server:
        server.token_file = token
        yield server


def ctl(server, *args: str) -> int:
    return main(["ctl", "--url", server.url(""), *args])


def test_drain_list_and_obey_through_ctl(server, capsys):
    short = check_key(server).partition("#")[0]
    code = ctl(server, "drain", short, "--reason", "CHG-9", "--for", "2h", "--by", "carol",
               "--token-file", str(server.token_file))  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "drain" in out and "by carol: CHG-9, until" in out
    assert set(answers(server, count=10)) == {"127.0.0.2"}
    assert ctl(server, "overrides") == 0
    listed = capsys.readouterr().out
    assert f"check:{short}" in listed and "expires in 120m" in listed
    assert main(["fleet", "status", "--url", server.url("")]) == 0
    status = capsys.readouterr().out
    assert "mode standalone" in status and "drained" in status
    assert ctl(server, "obey", short, "--token-file", str(server.token_file)) == 0
    assert "obeying the probes again" in capsys.readouterr().out
    assert ctl(server, "--json", "overrides") == 0
    assert capsys.readouterr().out.strip() == "[]"


def test_token_from_the_environment_and_clear_failures(server, capsys, monkeypatch):
    monkeypatch.delenv("GSLB_ADMIN_TOKEN", raising=False)
    assert ctl(server, "down", "127.0.0.2") == 2
    assert "no admin token" in capsys.readouterr().err
    monkeypatch.setenv("GSLB_ADMIN_TOKEN", "wrong")
    assert ctl(server, "down", "127.0.0.2") == 1
    assert "403" in capsys.readouterr().err
    monkeypatch.setenv("GSLB_ADMIN_TOKEN", TOKEN)
    assert ctl(server, "down", "198.51.100.1") == 1
    assert "404" in capsys.readouterr().err
    assert ctl(server, "down", "127.0.0.2", "--reason", "bad edge") == 0
    assert set(answers(server, count=10)) == {"127.0.0.1"}
    assert ctl(server, "status") == 0
    assert "target:*:*:127.0.0.2" in capsys.readouterr().out
    assert ctl(server, "audit") == 1  # the history lives in the fleet engine
    assert "standalone: no audit trail" in capsys.readouterr().err
    assert main(["ctl", "--url", "http://127.0.0.1:1", "status"]) == 2
    assert "cannot reach" in capsys.readouterr().err
