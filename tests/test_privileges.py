"""Root only to bind: the refusal logic (with an injected euid), user lookup, and, when the
tests run as root, a real drop in a subprocess and a real `gslb serve --user nobody` whose
supervisor and workers all end up as nobody. Nothing is left behind: subprocesses only."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dns.message
import dns.query
import pytest

from gslb.cli import main
from gslb.privileges import ROOT_REFUSAL, PrivilegeError, lookup, root_refusal
from tests.conftest import core_zone_text, write_zone
from tests.server import wait_until

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening for DNS on 127\.0\.0\.1 port (\d+)")
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")


def nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user on this system")


# -- the decision, without being root --------------------------------------------------------


def test_root_without_user_is_refused_with_a_clear_message():
    message = root_refusal(0, None, False)
    assert message == ROOT_REFUSAL
    assert "--user" in message and "--allow-root" in message


@pytest.mark.parametrize(
    ("euid", "user", "allow_root"),
    [(0, "nobody", False), (0, None, True), (0, "nobody", True), (1000, None, False)],
)
def test_allowed_combinations(euid, user, allow_root):
    assert root_refusal(euid, user, allow_root) is None


def test_user_without_root_is_refused_unless_it_is_us():
    entry = nobody()
    assert "needs root" in root_refusal(entry.pw_uid + 1, "nobody", False)
    assert root_refusal(entry.pw_uid, "nobody", False) is None


def test_lookup_by_name_and_uid():
    entry = nobody()
    identity = lookup("nobody")
    assert (identity.uid, identity.gid) == (entry.pw_uid, entry.pw_gid)
    assert entry.pw_gid in identity.groups
    assert lookup(str(entry.pw_uid)).name == "nobody"


@pytest.mark.parametrize(("user", "words"), [("no-such-user-x", "no such user"), ("root", "root")])
def test_lookup_refuses_unknown_users_and_root(user, words):
    with pytest.raises(PrivilegeError, match=words):
        lookup(user)


def test_cli_refuses_root_before_doing_anything(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("gslb.cli.os.geteuid", lambda: 0)
    started = []
    monkeypatch.setattr("gslb.app.App.run", lambda self: started.append(self))
    code = main(["serve", "--zones", str(tmp_path), "--dns", "127.0.0.1:0"])
    assert code == 2 and not started
    assert ROOT_REFUSAL in capsys.readouterr().err


def test_cli_refuses_an_unknown_user(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("gslb.cli.os.geteuid", lambda: 0)
    monkeypatch.setattr("gslb.app.App.run", lambda self: pytest.fail("must not start"))
    assert main(["serve", "--zones", str(tmp_path), "--user", "no-such-user-x"]) == 2
    assert "no such user" in capsys.readouterr().err


# -- real drops, in subprocesses -------------------------------------------------------------


DROP = """
import os
from gslb.privileges import drop_privileges
drop_privileges("nobody")
print(os.getresuid(), os.getresgid(), sorted(os.getgroups()))
try:
    os.setuid(0)
except PermissionError:
    print("root unreachable")
"""


@as_root
def test_drop_in_a_subprocess():
    entry = nobody()
    result = subprocess.run(
        [sys.executable, "-c", DROP], capture_output=True, text=True, timeout=30, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    uid, gid = entry.pw_uid, entry.pw_gid
    groups = sorted(set(os.getgrouplist("nobody", gid)))
    expected = f"{(uid, uid, uid)} {(gid, gid, gid)} {groups}\nroot unreachable\n"
    assert result.stdout == expected


def ids(pid: int) -> tuple[int, int]:
    """(effective uid, effective gid) of a live process, from /proc."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Uid"].split()[1]), int(fields["Gid"].split()[1])


def workers_of(pid: int) -> list[int]:
    """Worker processes (multiprocessing spawn children, not the resource tracker)."""
    out = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            out.append(int(child))
    return out


@as_root
def test_serve_binds_as_root_then_every_process_runs_as_the_user(tmp_path, geo_db):
    entry = nobody()
    zones = tmp_path / "zones"
    write_zone(zones, "example.com", core_zone_text())
    command = [sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--geoip",
               str(geo_db), "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--workers", "2",
               "--watch-interval", "0", "--user", "nobody"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               start_new_session=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        port = wait_until(lambda: listening_port(lines), timeout=30, what="the DNS port")
        wait_until(lambda: any("running as nobody" in line for line in lines), what="the drop")
        reply = dns.query.udp(dns.message.make_query("www.example.com", "A"), "127.0.0.1",
                              port=port, timeout=3)  # fmt: skip
        assert len(reply.answer[0]) == 2
        workers = workers_of(process.pid)
        assert len(workers) == 2
        for pid in (process.pid, *workers):
            assert ids(pid) == (entry.pw_uid, entry.pw_gid), f"pid {pid} still privileged"
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    reader.join(5)


def listening_port(lines: list[str]) -> int | None:
    for line in list(lines):
        match = LISTENING.search(line)
        if match:
            return int(match.group(1))
    return None
