"""Owned background tasks: one way to stop them.

Every long-lived task in gslb (zone watcher, history sampler, RUM rounds, signature window,
systemd watchdog) has an owner that starts it and stops it with :func:`stop_task`, so a stop
is always a cancel plus a bounded wait, never a task left running or an await that hangs.
"""

from __future__ import annotations

import asyncio
import contextlib

STOP_TIMEOUT = 5.0  # seconds a cancelled task may take to unwind


async def stop_task(task: asyncio.Task | None, timeout: float = STOP_TIMEOUT) -> None:
    """Cancel ``task`` (if any) and wait for it to finish, at most ``timeout`` seconds."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        await asyncio.wait_for(task, timeout)
