"""systemd's sd_notify protocol without libsystemd: one datagram per state change.

With ``Type=notify`` systemd only considers the unit started when we say ``READY=1``, which we
do after the zones loaded and the first probe round finished, so a dependent unit (or an
orchestrator restarting nodes one by one) never sees a server that would answer from unknown
health. ``WATCHDOG=1`` proves the event loop still runs; when it stops, systemd restarts us.

Everything is a silent no-op when ``NOTIFY_SOCKET`` is unset (not run by systemd, tests,
containers), and a failed send is logged once and otherwise ignored: notification must never
take the DNS server down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

from gslb.tasks import stop_task

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to ``address`` (a path, or ``@name`` in the abstract namespace)."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address or None
        self.watchdog_usec = watchdog_usec
        self._warned = False
        self._watchdog: asyncio.Task[None] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Read ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``/``WATCHDOG_PID`` as systemd sets them."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"), watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Half of WatchdogSec, as sd_watchdog_enabled(3) recommends; None when disabled."""
        if not self.enabled or not self.watchdog_usec:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    def send(self, *lines: str) -> bool:
        """Send one datagram of ``KEY=value`` lines; True when it was handed to the socket."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        payload = "\n".join(lines).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)  # a full receive queue must not stall the event loop
                sock.sendto(payload, target)
        except OSError as exc:
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self.address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        """RELOADING=1 with the CLOCK_MONOTONIC timestamp systemd (253+) requires with it."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1", "STATUS=stopping")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def start_watchdog(self) -> None:
        """Ping every WatchdogSec/2 from the event loop: if the loop hangs, pings stop."""
        interval = self.watchdog_interval
        if interval is None or self._watchdog is not None:
            return
        self._watchdog = asyncio.create_task(self._ping(interval), name="gslb-watchdog")

    async def stop_watchdog(self) -> None:
        task, self._watchdog = self._watchdog, None
        await stop_task(task)

    async def _ping(self, interval: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval)


def watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC if it is meant for this process (WATCHDOG_PID unset or our pid)."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None
