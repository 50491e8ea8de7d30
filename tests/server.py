"""Run the real server (gslb.app.App) on loopback in a background thread, for tests.

Ports are picked by the kernel (port 0), so tests never collide. The thread owns its event
loop; ``call`` runs a coroutine on it (a reload, a prober override) and waits for the result.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import pytest

from gslb.app import App, Settings
from gslb.dns.server import TcpLimits


class ServerThread:
    def __init__(self, zones: Path, geoip: Path, **overrides) -> None:
        use_uvloop = overrides.pop("uvloop", False)
        settings = Settings(
            zones=Path(zones),
            dns=[("127.0.0.1", 0)],
            http=("127.0.0.1", 0),
            geoip=Path(geoip),
            tcp=overrides.pop("tcp", TcpLimits()),
        )
        for key, value in overrides.items():
            setattr(settings, key, value)
        self.settings = settings
        self.app: App | None = None
        if use_uvloop:  # the loop `gslb serve` really runs on
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.dns_port = 0
        self.http_port = 0

    def start(self) -> ServerThread:
        self.thread.start()

        async def boot() -> App:
            app = App(self.settings)
            await app.start()
            return app

        self.app = self.call(boot())
        self.dns_port = self.app.dns_bound[0][1]
        self.http_port = self.app.http_bound[1] if self.app.http_bound else 0
        return self

    def call(self, coro, timeout: float = 30.0):
        future: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        if self.app is not None:
            self.call(self.app.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- client helpers (dnspython: a real, independent client) --

    def udp(self, message: dns.message.Message, timeout: float = 3.0) -> dns.message.Message:
        return dns.query.udp(message, "127.0.0.1", port=self.dns_port, timeout=timeout)

    def tcp(self, message: dns.message.Message, timeout: float = 3.0) -> dns.message.Message:
        return dns.query.tcp(message, "127.0.0.1", port=self.dns_port, timeout=timeout)

    def raw_udp(self, payload: bytes, timeout: float = 1.0) -> bytes | None:
        """Send bytes, return the reply bytes or None when the server stays silent."""
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(payload, ("127.0.0.1", self.dns_port))
            try:
                return sock.recv(65535)
            except TimeoutError:
                return None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(0.02)


def read_message(sock) -> bytes | None:
    """One length-prefixed DNS message from a TCP socket, or None when the server closed it."""
    head = read_exactly(sock, 2)
    if head is None:
        return None
    return read_exactly(sock, int.from_bytes(head, "big"))


def read_exactly(sock, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data
