"""Signature validity windows aligned to whole UTC days.

Every instance computes the same window from the clock, and ECDSA signatures are deterministic
(RFC 6979), so all instances serve byte-identical RRSIGs and a restart re-creates exactly the
signatures resolvers already hold. A window starts a day before the current day (clocks that
run slow) and ends four days after it, so every RRSIG served has at least three days left;
signed TTLs are capped at one day, well below that (validators cap TTLs at expiry anyway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from gslb.tasks import stop_task

DAY = 86400
BEFORE_DAYS = 1
AFTER_DAYS = 4
MAX_SIGNED_TTL = DAY
EARLIEST_SANE_CLOCK = 1_767_225_600  # 2026-01-01: a clock before this is certainly wrong

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Window:
    day: int  # days since the epoch, UTC
    inception: int
    expiration: int

    def days_left(self, now: float) -> float:
        return (self.expiration - now) / DAY


def window_at(now: float) -> Window:
    day = int(now // DAY)
    return Window(day, (day - BEFORE_DAYS) * DAY, (day + AFTER_DAYS) * DAY)


def clock_problem(now: float, written: float = 0.0) -> str | None:
    """A start-up warning when the clock cannot be right (signatures would be rejected).
    ``written`` is when the signing files (sidecars, keys) last changed: the real time is at
    least that, so a clock more than a day before it is behind, and the signatures it makes
    expire early for resolvers whose clock is right (already, when it is four days behind)."""
    if now < EARLIEST_SANE_CLOCK:
        return f"the system clock says {day_of(now)}: DNSSEC signatures will not validate elsewhere"
    if written > now + DAY:
        return (f"the system clock says {day_of(now)}, but DNSSEC files were written on "
                f"{day_of(written)}: the clock is behind, and signatures made now expire "
                "early elsewhere")  # fmt: skip
    return None


def day_of(when: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(when))


class Rollable(Protocol):
    def roll_window(self, now: float | None = None) -> None: ...


class WindowClock:
    """Tells a responder when a new day (window) begins, so cached signed replies are rebuilt.
    Owned by whoever runs the responder; ``stop`` cancels it."""

    def __init__(self, responder: Rollable) -> None:
        self.responder = responder
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.create_task(self.run(), name="gslb-dnssec-window")

    async def run(self) -> None:
        while True:
            now = time.time()
            await asyncio.sleep(DAY - now % DAY + 0.001)
            self.responder.roll_window()

    async def stop(self) -> None:
        task, self.task = self.task, None
        await stop_task(task)
