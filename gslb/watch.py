"""Reload when the zone files change, by polling: no inotify, no extra dependency.

A poll is a ``stat`` of each zone file (``*.yaml``/``*.yml``, and the record files of split
``<zone>.`` directories) every second; that costs
nothing next to the DNS traffic, works on every filesystem (NFS, bind mounts, ConfigMaps whose
symlinks are swapped) and cannot miss events the way a watch queue overflow can.

Editors and deploy tools write in steps (truncate, write, rename); reloading in the middle
would only produce a spurious failed reload. So a change is acted on once the directory has
looked the same for ``settle`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from gslb.config.sources import SPLIT_EXTENSION, watched_files
from gslb.tasks import stop_task

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(directory: Path, split_extension: str = SPLIT_EXTENSION) -> Fingerprint:
    """Name, inode, mtime and size of every zone file (split directories' record files too):
    a change to any of them shows here."""
    entries = []
    for path in watched_files(directory, split_extension):
        try:
            st = path.stat()  # follows symlinks, as the loader does
        except OSError:
            continue  # vanished between listing and stat: the next poll sees it
        entries.append((str(path.relative_to(directory)), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(sorted(entries))


class ZoneWatcher:
    """Calls ``reload`` when the fingerprint of ``directory`` changes and then settles."""

    def __init__(
        self,
        directory: Path,
        reload: Callable[[], Awaitable[object]],
        interval: float = 1.0,
        settle: float | None = None,
        split_extension: str = SPLIT_EXTENSION,
    ) -> None:
        self.directory = Path(directory)
        self.split_extension = split_extension
        self.reload = reload
        self.interval = interval
        self.settle = min(interval, 0.5) if settle is None else settle
        self.baseline = fingerprint(
            self.directory, self.split_extension
        )  # taken before the first load: no gap
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="gslb-zone-watcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.poll()
            except Exception:  # a watcher that dies silently is worse than a logged error
                log.exception("zone watcher poll failed")

    async def poll(self) -> bool:
        """One check; reloads and returns True when the files changed since the last one."""
        current = await asyncio.to_thread(fingerprint, self.directory, self.split_extension)
        if current == self.baseline:
            return False
        current = await self._settled(current)
        log.info("zone files in %s changed, reloading", self.directory)
        self.baseline = current  # what this reload reads (or newer: then we reload again)
        await self.reload()
        return True

    async def _settled(self, current: Fingerprint) -> Fingerprint:
        """Wait until two looks ``settle`` seconds apart agree (a writer has finished)."""
        while True:
            await asyncio.sleep(self.settle)
            again = await asyncio.to_thread(fingerprint, self.directory, self.split_extension)
            if again == current:
                return current
            current = again
