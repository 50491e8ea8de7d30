"""sd_notify: messages received on a real unix datagram socket, from the notifier alone, from
the App in a thread, and from `gslb serve` in a subprocess driven by signals (SIGHUP, SIGTERM)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import dns.message
import dns.query
import pytest

from gslb.notify import Notifier, watchdog_usec
from tests.conftest import write_zone
from tests.server import ServerThread
from tests.test_web import HEAD, wait_until

pytestmark = pytest.mark.timeout(30)
REPO = Path(__file__).resolve().parents[1]
LISTENING = re.compile(r"listening for DNS on 127\.0\.0\.1 port (\d+)")


class Receiver:
    """The systemd side: a bound AF_UNIX datagram socket collecting notifications."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.seen: list[str] = []

    def expect(self, key: str, timeout: float = 10.0) -> dict[str, str]:
        """Read messages until one has ``key``; return it as a dict."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                text = self.sock.recv(4096).decode()
            except TimeoutError:
                pytest.fail(f"no {key} within {timeout} s; got {self.seen}")
            self.seen.append(text)
            fields = dict(line.split("=", 1) for line in text.splitlines())
            if key in fields:
                return fields

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receiver(tmp_path):
    receiver = Receiver(str(tmp_path / "notify.sock"))
    yield receiver
    receiver.close()


# -- the notifier alone ---------------------------------------------------------------------


def test_messages_reach_a_path_socket(receiver):
    notifier = Notifier(receiver.address)
    assert notifier.ready("serving 1 zone(s)")
    assert receiver.expect("READY") == {"READY": "1", "STATUS": "serving 1 zone(s)"}
    before = time.monotonic_ns() // 1000
    assert notifier.reloading()
    fields = receiver.expect("RELOADING")
    assert before <= int(fields["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
    assert notifier.stopping()
    assert receiver.expect("STOPPING")["STOPPING"] == "1"


def test_abstract_namespace_socket():
    receiver = Receiver(f"@gslb-test-{uuid.uuid4().hex}")
    try:
        assert Notifier(receiver.address).status("hello")
        assert receiver.expect("STATUS") == {"STATUS": "hello"}
    finally:
        receiver.close()


def test_without_notify_socket_everything_is_a_silent_no_op(tmp_path):
    notifier = Notifier.from_env({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready("x") is False and notifier.stopping() is False
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.send("READY=1") is False  # logged once, never raised


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30_000_000),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_only_for_our_pid(env, expected):
    assert watchdog_usec(env) == expected
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "@x", **env})
    assert notifier.watchdog_interval == (None if expected is None else expected / 2e6)


async def test_watchdog_pings_every_half_period(receiver):
    notifier = Notifier(receiver.address, watchdog_usec=100_000)
    receiver.sock.setblocking(False)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    notifier.start_watchdog()
    try:
        async with asyncio.timeout(5):
            pings = [await loop.sock_recv(receiver.sock, 64) for _ in range(3)]
    finally:
        await notifier.stop_watchdog()
    assert pings == [b"WATCHDOG=1"] * 3
    assert time.monotonic() - started >= 0.1, "two periods of 50 ms between three pings"


# -- the App in a thread --------------------------------------------------------------------


def test_app_notifies_ready_reloading_and_stopping(receiver, monkeypatch, tmp_path, geo_db):
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    zones = tmp_path / "zones"
    write_zone(zones, "example.com", HEAD)
    server = ServerThread(zones, geo_db).start()
    try:
        ready = receiver.expect("READY")
        assert ready["STATUS"].startswith("serving 1 zone(s), 0 check(s)")
        assert server.app.ready.is_set()
        receiver.expect("WATCHDOG")

        (zones / "example.com.yaml").write_text("'': [unclosed\n")
        assert not server.call(server.app.reload()).ok
        assert "MONOTONIC_USEC" in receiver.expect("RELOADING")
        assert receiver.expect("READY")["STATUS"].startswith("reload failed (1 error(s)), serving")
    finally:
        server.stop()
    assert receiver.expect("STOPPING")["STATUS"] == "stopping"


# -- `gslb serve` as systemd runs it: signals and notifications -----------------------------


def test_serve_process_sighup_reloads_and_sigterm_stops(receiver, tmp_path, geo_db):
    zones = tmp_path / "zones"
    write_zone(zones, "example.com", HEAD)
    secret = f"s3cret-{uuid.uuid4().hex}"
    env = {**os.environ, "NOTIFY_SOCKET": receiver.address, "GSLB_ADMIN_TOKEN": secret,
           "PYTHONPATH": str(REPO)}  # fmt: skip
    env.pop("WATCHDOG_USEC", None)
    command = [sys.executable, "-m", "gslb", "serve", "--zones", str(zones), "--geoip",
               str(geo_db), "--dns", "127.0.0.1:0", "--http", "127.0.0.1:0", "--workers", "1",
               "--watch-interval", "0", "--log-format", "json", "--allow-root"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    try:
        assert receiver.expect("READY", timeout=20)["READY"] == "1"
        port = wait_until(lambda: dns_port(lines), what="the DNS port in the log")
        query = dns.message.make_query("new.example.com", "A")
        assert not dns.query.udp(query, "127.0.0.1", port=port, timeout=2).answer

        write_zone(zones, "example.com", HEAD + "new:\n  type: A\n  value: 192.0.2.77\n")
        process.send_signal(signal.SIGHUP)
        receiver.expect("RELOADING")
        receiver.expect("READY")
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=2)
        assert [rr.address for rrset in reply.answer for rr in rrset] == ["192.0.2.77"]

        process.send_signal(signal.SIGTERM)
        receiver.expect("STOPPING")
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    reader.join(5)
    messages = [json.loads(line)["message"] for line in lines]
    assert any(m.startswith("reload ok") for m in messages)
    assert "admin API enabled (GSLB_ADMIN_TOKEN)" in messages
    assert not any(secret in line for line in lines), "the token must never be logged"


def dns_port(lines: list[str]) -> int | None:
    for line in list(lines):
        match = LISTENING.match(json.loads(line)["message"])
        if match:
            return int(match.group(1))
    return None
