"""The fleet engine on NATS JetStream Key-Value (nats-server 2.11 or newer, client nats-py).

Three buckets (``gslb_obs``, ``gslb_node``, ``gslb_ovr``, see ``gslb.fleet.wire``):

- every node writes only its own observation keys, on change and again every ``refresh``
  seconds, each with a per-key TTL of three refreshes: a stopped node's votes expire in the
  engine, and the server tells watchers (expiry markers);
- heartbeats the same way (version, config digest, region, started, last seen);
- overrides by compare-and-set (``create``, else ``update`` on the revision just read), with a
  history of 16 per key as the audit trail; a write without quorum fails and the admin API
  answers 503.

Never on the answer path, never blocking start-up: ``start`` spawns one owner task that
connects in the background with bounded timeouts and keeps retrying; every engine operation
is bounded by ``op_timeout``. When the connection comes back the watchers are re-created
(each replays the current values, then follows) and the node's own keys re-published.
A server older than 2.11 is refused with a clear message: it would silently ignore per-key TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gslb import __version__
from gslb.fleet.config import FleetSettings
from gslb.fleet.decide import Vantage
from gslb.fleet.node import OverrideRefused
from gslb.fleet.overrides import Override
from gslb.fleet.shared import Channel
from gslb.fleet.wire import (
    Heartbeat,
    Observation,
    Rejected,
    SharedValue,
    encode_override,
    observation_key,
    override_key,
    parse_heartbeat,
    parse_observation,
    parse_override_value,
    parse_shared,
    shared_key,
)

if TYPE_CHECKING:
    from gslb.fleet.node import FleetNode

log = logging.getLogger(__name__)

MIN_SERVER = (2, 11)
OBS, NODES, OVERRIDES = "gslb_obs", "gslb_node", "gslb_ovr"
HISTORY = {OBS: 1, NODES: 1, OVERRIDES: 16}
MARKER_TTL = 30  # seconds an expiry marker stays (watchers learn a key expired)
MAX_PENDING = 10000  # observations held for nodes whose heartbeat has not arrived yet
STOP_TIMEOUT = 3.0  # seconds for the tasks, then as long for the connection, to stop


class VersionUnknown(Exception):
    """The connected server's version is not known yet: retry, never refuse on it."""


class JetStreamEngine:
    """The node's link to the engine. One owner task; ``stop`` cancels everything."""

    def __init__(self, settings: FleetSettings, node: FleetNode) -> None:
        self.settings = settings
        self.node = node
        self.digest = ""
        self.started = time.time()
        self.nc: Any = None
        self.js: Any = None
        self.kv: dict[str, Any] = {}
        self.ready = False  # connected, buckets open, watchers running
        self.refused: str | None = None  # a permanent reason not to use this engine
        self.last_error: str | None = None
        self.server: str | None = None
        self.nodes: dict[str, tuple[Heartbeat, float]] = {}  # node -> (heartbeat, received)
        self.overrides: dict[str, Override] = {}  # engine key -> override
        self._obs_index: dict[str, tuple[str, str]] = {}  # engine key -> (check, node)
        self._pending: dict[str, Observation] = {}  # from nodes not seen yet
        self._own: dict[str, tuple[bool, str, float]] = {}  # check -> own verdict
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchers: list[Any] = []
        self._sync_lock = asyncio.Lock()
        self._flush_wakeup = asyncio.Event()
        self._overrides_synced = False
        self._seen: dict[str, int] = {}  # bucket -> highest sequence its watcher delivered
        self.channels: dict[str, Channel] = {}  # bucket -> channel (gslb.fleet.shared)
        self._shared_index: dict[str, tuple[str, str]] = {}  # engine key -> (node, key)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.ready and self.nc is not None and self.nc.is_connected

    async def start(self) -> None:
        """Return at once; connecting happens in the background."""
        self._task = asyncio.create_task(self._run(), name="gslb-fleet-engine")

    async def stop(self) -> None:
        """Cancel every task and close the connection, bounded in time whatever the client
        library does with a cancellation (a stop must never hang the server's shutdown)."""
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        self._tasks.clear()
        self.ready = False
        nc, self.nc = self.nc, None
        if nc is not None:
            closing = asyncio.create_task(nc.close(), name="gslb-fleet-close")
            done, _ = await asyncio.wait({closing}, timeout=STOP_TIMEOUT)
            if not done:
                closing.cancel()
                log.warning("fleet: the engine connection did not close in %.0f s", STOP_TIMEOUT)
            elif not closing.cancelled() and closing.exception() is not None:
                log.debug("fleet: closing the engine connection: %r", closing.exception())

    def set_config_digest(self, digest: str) -> None:
        self.digest = digest

    async def _run(self) -> None:
        import nats

        settings = self.settings
        try:
            self.nc = await nats.connect(
                servers=settings.servers,
                connect_timeout=settings.connect_timeout,
                allow_reconnect=True,
                max_reconnect_attempts=-1,  # retry forever: this task owns the wait
                reconnect_time_wait=0.5,
                ping_interval=2,
                max_outstanding_pings=2,
                dont_randomize=True,  # the list is local-first
                name=f"gslb {settings.node}",
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                error_cb=self._on_error,
            )
        except Exception as exc:  # nats-py raises its own and OS errors alike
            self.last_error = f"connect: {exc!r}"
            log.error("fleet: cannot connect to %s: %r", ", ".join(settings.servers), exc)
            return
        self.js = self.nc.jetstream(timeout=settings.op_timeout)
        self._spawn(self._flusher(), "gslb-fleet-flush")
        self._spawn(self._heartbeats(), "gslb-fleet-heartbeat")
        self._spawn(self._watchdog(), "gslb-fleet-watchdog")
        await self._sync()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _on_disconnected(self) -> None:
        if self.ready:
            log.warning("fleet: lost the engine; keeping the last overrides, peers will age out")
        self.ready = False

    async def _on_reconnected(self) -> None:
        log.info("fleet: engine reachable again (%s); re-creating watchers", self._server_url())
        self._spawn(self._sync(), "gslb-fleet-resync")

    async def _on_error(self, exc: Exception) -> None:
        self.last_error = repr(exc)
        log.debug("fleet: engine error: %r", exc)

    def _server_url(self) -> str:
        url = getattr(self.nc, "connected_url", None)
        return f"{url.hostname}:{url.port}" if url is not None else "?"

    # -- (re)synchronisation -----------------------------------------------------------------

    async def _sync(self) -> None:
        """Check the server, open the buckets, re-create the watchers, re-publish own keys;
        retried with backoff while the connection is up and something fails."""
        delay = 0.25
        async with self._sync_lock:
            while self.nc is not None and not self.refused:
                try:
                    await self._sync_once()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.ready = False
                    self.last_error = f"sync: {exc!r}"
                    log.warning("fleet: engine not usable yet (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _sync_once(self) -> None:
        self._check_version()
        if self.refused:
            return
        for bucket in (NODES, OVERRIDES, OBS):
            self.kv[bucket] = await self._bucket(bucket)
        for bucket, channel in self.channels.items():
            self.kv[bucket] = await self._bucket(bucket, channel)
        await self._stop_watchers()
        self._overrides_synced = False
        self._seen.clear()
        self.nodes.clear()  # the snapshot brings back the live ones at once
        self._obs_index.clear()
        for bucket, handler in ((NODES, self._on_node), (OVERRIDES, self._on_override),
                                (OBS, self._on_observation)):  # fmt: skip
            watcher = await self.kv[bucket].watchall()
            self._watchers.append(watcher)
            self._spawn(self._consume(bucket, watcher, handler), f"gslb-fleet-watch {bucket}")
        self._shared_index.clear()
        for bucket, channel in self.channels.items():
            watcher = await self.kv[bucket].watchall()
            self._watchers.append(watcher)
            handler = functools.partial(self._on_shared, channel)
            self._spawn(self._consume(bucket, watcher, handler), f"gslb-fleet-watch {bucket}")
            channel.dirty.update(channel.own)
        self._dirty.update(self._own)
        await self._beat()
        self.ready = True
        self.server = self._server_url()
        self._flush_wakeup.set()
        log.info("fleet: connected to %s as %s (%s)", self.server, self.settings.node,
                 self.settings.region)  # fmt: skip

    def _check_version(self) -> None:
        """Refuse a server older than MIN_SERVER for good; a version not known yet (the
        client reads it from the server's INFO, which a reconnect has not brought yet: nats-py
        says 0.0.0) is no verdict, so the sync is retried instead."""
        version = self.nc.connected_server_version
        if (version.major, version.minor, version.patch) == (0, 0, 0):
            raise VersionUnknown("nats-server version not known yet (reconnecting)")
        have = (version.major, version.minor)
        if have < MIN_SERVER:
            self.refused = (
                f"nats-server {version} is older than {MIN_SERVER[0]}.{MIN_SERVER[1]}: it "
                "silently ignores per-key TTL, so a stopped node's votes would never expire; "
                "fleet disabled, answering from local probes"
            )
            log.error("fleet: %s", self.refused)
            self._spawn(self.nc.close(), "gslb-fleet-close")

    async def _bucket(self, name: str, channel: Channel | None = None) -> Any:
        from nats.js.api import KeyValueConfig, StorageType
        from nats.js.errors import BucketNotFoundError

        try:
            return await self.js.key_value(name)
        except BucketNotFoundError:
            pass
        config = KeyValueConfig(
            bucket=name,
            history=HISTORY.get(name, 1),
            replicas=self.settings.replicas,
            storage=StorageType.FILE,
            max_value_size=channel.max_bytes + 1024 if channel is not None else 8192,
            limit_marker_ttl=MARKER_TTL if name != OVERRIDES else None,
        )
        return await self.js.create_key_value(config)

    async def _stop_watchers(self) -> None:
        watchers, self._watchers = self._watchers, []
        for task in [t for t in self._tasks if t.get_name().startswith("gslb-fleet-watch")]:
            task.cancel()
        for watcher in watchers:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.settings.op_timeout):
                    await watcher.stop()

    async def _consume(self, bucket: str, watcher: Any, handler: Callable[..., None]) -> None:
        async for entry in watcher:
            if entry is not None:
                self._seen[bucket] = max(self._seen.get(bucket, 0), entry.revision)
            try:
                handler(entry)
            except Exception:  # a handler bug must not end the watch
                log.exception("fleet: handling an update of %s failed", bucket)

    # -- incoming ----------------------------------------------------------------------------

    def _reject(self, bucket: str, key: str, problem: Rejected) -> None:
        self.node.counters[f"rejected:{bucket}:{problem.reason}"] += 1
        log.warning("fleet: ignored %s %s: %s", bucket, key, problem)

    def _on_node(self, entry: Any) -> None:
        if entry is None:
            return
        if entry.operation in ("DEL", "PURGE"):
            gone = self.nodes.pop(entry.key, None)
            if gone is not None:
                log.info("fleet: node %s left (heartbeat expired)", entry.key)
            return
        try:
            beat = parse_heartbeat(entry.key, entry.value)
        except Rejected as problem:
            self._reject("node", entry.key, problem)
            return
        known = self.nodes.get(beat.node)
        if beat.digest != self.digest and (known is None or known[0].digest != beat.digest):
            self.node.counters["other_config_digest"] += 1
            log.warning("fleet: node %s serves config %s, this node %s", beat.node,
                        beat.digest[:12], self.digest[:12])  # fmt: skip
        self.nodes[beat.node] = (beat, self.node.clock())
        for key in [k for k, o in self._pending.items() if o.node == beat.node]:
            self._apply_observation(key, self._pending.pop(key))

    def _on_observation(self, entry: Any) -> None:
        if entry is None:
            return
        key = entry.key
        if entry.operation in ("DEL", "PURGE"):
            self._pending.pop(key, None)
            known = self._obs_index.pop(key, None)
            if known is not None:
                self.node.observe(known[0], None, known[1])
            return
        try:
            observation = parse_observation(key, entry.value)
        except Rejected as problem:
            self._reject("observation", key, problem)
            return
        if observation.node == self.settings.node:
            return  # our own key coming back
        if observation.check not in self.node.policies:
            self._reject("observation", key, Rejected("unknown_check", observation.check))
            return
        if observation.node not in self.nodes:
            if len(self._pending) < MAX_PENDING:
                self._pending[key] = observation  # applied when its heartbeat arrives
            self.node.counters["observations_from_unknown_node"] += 1
            return
        self._apply_observation(key, observation)

    def _apply_observation(self, key: str, observation: Observation) -> None:
        self._obs_index[key] = (observation.check, observation.node)
        vantage = Vantage(observation.node, observation.region, observation.up,
                          observation.reason, self.node.clock(), observation.at)  # fmt: skip
        self.node.observe(observation.check, vantage, observation.node)

    def _on_shared(self, channel: Channel, entry: Any) -> None:
        if entry is None:
            return
        if entry.operation in ("DEL", "PURGE"):
            known = self._shared_index.pop(entry.key, None)
            if known is not None:
                channel.on_value(known[0], known[1], None)
            return
        try:
            shared = parse_shared(entry.key, entry.value, channel.max_bytes)
        except Rejected as problem:
            self._reject(channel.name, entry.key, problem)
            return
        if shared.node == self.settings.node:
            return
        self._shared_index[entry.key] = (shared.node, shared.key)
        channel.on_value(shared.node, shared.key, shared.data)

    def add_channel(self, channel: Channel) -> None:
        """Open the channel's bucket and watch it (a resync, if already connected)."""
        self.channels[channel.bucket] = channel
        channel.wake = self._flush_wakeup.set
        if self.connected:
            self._spawn(self._sync(), "gslb-fleet-resync")

    def _on_override(self, entry: Any) -> None:
        if entry is None:  # end of the initial snapshot: the engine's set is complete
            self._overrides_synced = True
            self.node.adopt_overrides(list(self.overrides.values()))
            return
        if entry.operation in ("DEL", "PURGE"):
            self.overrides.pop(entry.key, None)
        else:
            try:
                self.overrides[entry.key] = parse_override_value(entry.key, entry.value)
            except Rejected as problem:
                self._reject("override", entry.key, problem)
                return
        if self._overrides_synced:
            self.node.adopt_overrides(list(self.overrides.values()))

    # -- outgoing ----------------------------------------------------------------------------

    def publish_observations(self, states: dict[str, tuple[bool, str, float]]) -> None:
        """The prober's current verdicts; changed ones are written soon (not awaited here)."""
        for check, state in states.items():
            previous = self._own.get(check)
            if previous is None or previous[:2] != state[:2]:
                self._dirty.add(check)
        self._own = dict(states)
        if self._dirty:
            self._flush_wakeup.set()

    async def _flusher(self) -> None:
        """Write changed own observations as soon as the engine is usable."""
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            if not self.connected:
                continue
            if self._dirty:
                dirty, self._dirty = self._dirty, set()
                self._dirty |= await self._write_observations(dirty)
            for channel in self.channels.values():
                await self._write_channel(channel)

    async def _write_observations(self, checks: set[str]) -> set[str]:
        failed: set[str] = set()
        settings = self.settings
        for check in checks:
            state = self._own.get(check)
            if state is None:
                continue
            up, reason, at = state
            observation = Observation(settings.node, settings.region, check, up, reason, at)
            subject = f"$KV.{OBS}.{observation_key(settings.node, check)}"
            try:
                await self.js.publish(subject, observation.encode(), msg_ttl=settings.key_ttl)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"publish: {exc!r}"
                failed.add(check)
        if failed:
            self.node.counters["observation_write_failures"] += len(failed)
        return failed

    async def _write_channel(self, channel: Channel) -> None:
        """Write the channel's changed own values and delete the withdrawn ones."""
        node = self.settings.node
        dirty, channel.dirty = channel.dirty, set()
        withdrawn, channel.withdrawn = channel.withdrawn, set()
        for key in dirty:
            if key not in channel.own:
                continue
            value = SharedValue(node, key, channel.own[key], time.time()).encode()
            subject = f"$KV.{channel.bucket}.{shared_key(node, key)}"
            try:
                await self.js.publish(subject, value, msg_ttl=channel.ttl)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"publish {channel.name}: {exc!r}"
                channel.dirty.add(key)
        for key in withdrawn:
            try:
                await self.kv[channel.bucket].delete(shared_key(node, key))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"withdraw {channel.name}: {exc!r}"
                channel.withdrawn.add(key)

    async def _heartbeats(self) -> None:
        """Heartbeat and refresh of every own observation (their TTL) once per ``refresh``."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + self.settings.refresh, loop.time())  # a fixed rate, not drifting
            await asyncio.sleep(due - loop.time())
            if not self.connected:
                continue
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"heartbeat: {exc!r}"
                self.node.counters["heartbeat_failures"] += 1
                continue
            self._dirty.update(self._own)
            for channel in self.channels.values():
                # keep them alive in the engine: re-written a third of their TTL apart
                if channel.ttl is not None and loop.time() - channel.refreshed >= channel.ttl / 3:
                    channel.refreshed = loop.time()
                    channel.dirty.update(channel.own)
            self._flush_wakeup.set()

    async def _watchdog(self) -> None:
        """Re-create the watchers when one stopped following its bucket.

        An ordered consumer lives on one server; when that server dies, nats-py notices only
        after missed idle heartbeats (10 s and more). So once per refresh each bucket's last
        sequence is read from the stream, and a watcher that has not delivered up to the
        sequence read one round earlier is stalled: all watchers are re-created at once."""
        behind: dict[str, int] = {}
        while True:
            await asyncio.sleep(self.settings.refresh)
            if not self.connected or self._sync_lock.locked():
                behind.clear()
                continue
            stalled = [b for b, target in behind.items() if self._seen.get(b, 0) < target]
            if stalled:
                self.node.counters["watcher_resyncs"] += 1
                log.warning("fleet: watcher of %s stalled; re-creating the watchers",
                            ", ".join(stalled))  # fmt: skip
                behind.clear()
                await self._sync()
                continue
            behind = await self._last_sequences()

    async def _last_sequences(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for bucket in (NODES, OVERRIDES, OBS, *self.channels):
            try:
                async with asyncio.timeout(self.settings.op_timeout):
                    info = await self.js.stream_info(f"KV_{bucket}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no answer now: not proof of a stalled watcher
                self.last_error = f"stream info: {exc!r}"
                continue
            out[bucket] = info.state.last_seq
        return out

    async def _beat(self) -> None:
        settings = self.settings
        beat = Heartbeat(settings.node, settings.region, __version__, self.digest,
                         self.started, time.time(), settings.refresh)  # fmt: skip
        await self.js.publish(f"$KV.{NODES}.{settings.node}", beat.encode(),
                              msg_ttl=settings.key_ttl)  # fmt: skip

    async def write_override(self, override: Override) -> None:
        """Compare-and-set: create, or update the revision just read; 503 without quorum,
        409 when another operator changed it in between."""
        from nats.js.errors import KeyWrongLastSequenceError

        kv = self._overrides_kv()
        key, value = override_key(override.id), encode_override(override)
        try:
            async with asyncio.timeout(self.settings.op_timeout * 2):
                try:
                    await kv.create(key, value)
                except KeyWrongLastSequenceError:
                    current = await kv.get(key)
                    await kv.update(key, value, last=current.revision)
        except KeyWrongLastSequenceError:
            raise OverrideRefused(409, f"override {override.id} was changed concurrently; "
                                       "read it again and retry") from None  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _no_quorum(exc) from None
        self.overrides[key] = override

    async def clear_override(self, override_id: str) -> None:
        kv = self._overrides_kv()
        key = override_key(override_id)
        try:
            async with asyncio.timeout(self.settings.op_timeout * 2):
                await kv.delete(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise _no_quorum(exc) from None
        self.overrides.pop(key, None)

    async def audit(self, limit: int = 500) -> list[dict[str, Any]]:
        """The override history kept in the engine (16 revisions per override), oldest first:
        every set and clear with who, why and when, as the audit trail."""
        kv = self._overrides_kv()
        watcher = await kv.watchall(include_history=True)
        trail: list[dict[str, Any]] = []
        names: dict[str, str] = {}  # engine key -> override id (a clear carries no value)
        try:
            async with asyncio.timeout(self.settings.op_timeout * 2):
                async for entry in watcher:
                    if entry is None:
                        break
                    trail.append(self._audit_entry(entry, names))
        except TimeoutError:
            raise OverrideRefused(503, "fleet engine did not send the history in time") from None
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()
        return trail[-limit:]

    @staticmethod
    def _audit_entry(entry: Any, names: dict[str, str]) -> dict[str, Any]:
        at = entry.created.timestamp() if entry.created is not None else None
        if entry.operation in ("DEL", "PURGE"):
            return {"revision": entry.revision, "at": at, "operation": "clear",
                    "id": names.get(entry.key, entry.key)}  # fmt: skip
        try:
            override = parse_override_value(entry.key, entry.value)
        except Rejected as problem:
            return {"revision": entry.revision, "at": at, "operation": "rejected",
                    "id": entry.key, "reason": str(problem)}  # fmt: skip
        names[entry.key] = override.id
        return {"revision": entry.revision, "at": at, "operation": "set", "id": override.id,
                "override": override.to_dict()}  # fmt: skip

    def _overrides_kv(self) -> Any:
        if self.refused:
            raise OverrideRefused(503, f"fleet engine refused: {self.refused}")
        if not self.connected or OVERRIDES not in self.kv:
            raise OverrideRefused(503, "fleet engine not connected: the override would not "
                                       "reach the other nodes")  # fmt: skip
        return self.kv[OVERRIDES]

    # -- visibility --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.node.clock()
        return {
            "kind": "nats-jetstream",
            "servers": self.settings.servers,
            "connected": self.connected,
            "server": self.server if self.connected else None,
            "refused": self.refused,
            "last_error": self.last_error,
            "refresh_seconds": self.settings.refresh,
            "key_ttl_seconds": self.settings.key_ttl,
            "nodes": {
                name: {
                    "region": beat.region,
                    "version": beat.version,
                    "digest": beat.digest,
                    "same_config": beat.digest == self.digest,
                    "started": beat.started,
                    "last_seen_age": round(now - received, 3),
                }
                for name, (beat, received) in sorted(self.nodes.items())
            },
        }


def _no_quorum(exc: Exception) -> OverrideRefused:
    detail = f"{type(exc).__name__}: {exc or 'no quorum or no answer'}"
    return OverrideRefused(503, f"fleet engine did not take the write ({detail}); not applied")
