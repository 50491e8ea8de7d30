"""The prober: schedules every check on the event loop and publishes ``HealthView`` snapshots.

It runs beside the DNS server and never blocks it: probes are coroutines bounded by a
semaphore (``concurrency``) and by their own timeouts, the view is an immutable snapshot
swapped in one assignment, and the answer path only reads ``prober.view`` (or what
``on_change`` handed it). A check shared by several records has one key and one probe.

A new view is published at once on every state transition, override and external
measurement; moving averages that drift with every probe are published at most once per
``perf_interval``, so the answer path's per-version caches are not thrown away every probe.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from .checks import ProbeResult, make_session, run_check
from .spec import CheckSpec
from .state import CheckTracker, Transition
from .view import EMPTY_VIEW, CheckState, HealthView

log = logging.getLogger(__name__)

ProbeListener = Callable[[str, ProbeResult], None]
TransitionListener = Callable[[Transition], None]


class Events:
    """Hooks for metrics and logging. Listeners run synchronously in the loop: keep them
    cheap (increment a counter, log a line). A listener that raises is logged and skipped."""

    def __init__(self) -> None:
        self.probe: list[ProbeListener] = []  # (key, result): result.ok, .reason, .latency
        self.transition: list[TransitionListener] = []  # Transition(key, at, old, new, reason)

    def emit_probe(self, key: str, result: ProbeResult) -> None:
        for listener in self.probe:
            _safely(listener, key, result)

    def emit_transition(self, transition: Transition) -> None:
        for listener in self.transition:
            _safely(listener, transition)


def _safely(listener: Callable[..., None], *args: Any) -> None:
    try:
        listener(*args)
    except Exception:
        log.exception("health listener %r failed", listener)


class Prober:
    """Runs the checks, keeps their state and publishes the health view."""

    def __init__(
        self,
        on_change: Callable[[HealthView], None] | None = None,
        concurrency: int = 64,
        *,
        ssl_context: ssl.SSLContext | None = None,
        resolver: AbstractResolver | None = None,
        perf_interval: float = 2.0,
        history: int = 20,
        source: str | None = None,
    ) -> None:
        """``ssl_context`` replaces the system trust store for https checks (a private CA);
        ``resolver`` resolves hostname targets (tests map names to loopback); ``source`` is
        the local address probes leave from (a vantage point's own address)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.on_change = on_change
        self.concurrency = concurrency
        self.events = Events()
        self._ssl_context = ssl_context
        self._resolver = resolver
        self._source = source
        self._perf_interval = perf_interval
        self._history = history
        self._view = EMPTY_VIEW
        self._trackers: dict[str, CheckTracker] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._perf_dirty: set[str] = set()
        self._waiters: list[asyncio.Future[None]] = []
        self._semaphore = asyncio.Semaphore(concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._perf_task: asyncio.Task[None] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.probes = 0

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._session is not None

    async def start(self) -> None:
        """Open the session and start probing every known check (the first probe at once)."""
        if self.running:
            return
        self._session = make_session(
            limit=self.concurrency, resolver=self._resolver, source=self._source
        )
        self._perf_task = asyncio.create_task(self._publish_perf(), name="gslb-health-perf")
        for key in self._trackers:
            self._spawn(key)

    async def stop(self) -> None:
        """Cancel every probe and close the session; state is kept (start() resumes)."""
        tasks = [*self._tasks.values(), *([self._perf_task] if self._perf_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._perf_task = None
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Prober:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def update(self, specs: Mapping[str, CheckSpec]) -> None:
        """Adopt the checks of a (re)loaded configuration.

        New keys start probing at once, removed keys stop and leave the view, and keys that
        stay keep their state, override and history (a reload does not reset health).
        """
        removed = [key for key in self._trackers if key not in specs]
        for key in removed:
            self._drop(key)
        for key, spec in specs.items():
            tracker = self._trackers.get(key)
            if tracker is None:
                self._trackers[key] = CheckTracker(key, spec, history=self._history)
                if self.running:
                    self._spawn(key)
            else:
                tracker.spec = spec  # same key normally means same spec; the task rereads it
        if removed:
            self._publish(removed)
        await asyncio.sleep(0)  # let new probes start before the caller moves on

    def _drop(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._trackers.pop(key, None)
        self._perf_dirty.discard(key)

    async def first_round(self, timeout: float | None = None) -> bool:
        """Wait until every check has a first result, at most ``timeout`` seconds (default:
        the longest check timeout plus a little). True when every check has one."""
        if not self.running:
            await self.start()
        if timeout is None:
            longest = max((t.spec.timeout for t in self._trackers.values()), default=0.0)
            timeout = longest + 0.5
        try:
            await self.wait_for(lambda _: self._all_probed(), timeout)
        except TimeoutError:
            return False
        return True

    def _all_probed(self) -> bool:
        return all(tracker.up is not None for tracker in self._trackers.values())

    # -- probing -----------------------------------------------------------------------------

    def _spawn(self, key: str) -> None:
        self._tasks[key] = asyncio.create_task(self._run(key), name=f"gslb-health {key}")

    async def _run(self, key: str) -> None:
        """Probe one check forever: first at once, then every interval +- jitter."""
        loop = asyncio.get_running_loop()
        delay, first = 0.0, True
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            tracker = self._trackers.get(key)
            if tracker is None:
                return
            async with self._semaphore:
                started = loop.time()
                result = await self._probe(tracker.spec)
            self._record(key, result)
            delay = _next_delay(tracker.spec, loop.time() - started, first)
            first = False

    async def _probe(self, spec: CheckSpec) -> ProbeResult:
        assert self._session is not None
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await run_check(spec, self._session, ssl_context=self._ssl_context,
                                   resolver=self._resolver, source=self._source)  # fmt: skip
        except Exception as exc:  # run_check never raises; belt and braces for the task
            log.exception("health probe crashed")
            return ProbeResult(False, f"error: {type(exc).__name__}: {exc}", 0.0)
        finally:
            self.in_flight -= 1
            self.probes += 1

    def _record(self, key: str, result: ProbeResult) -> None:
        tracker = self._trackers.get(key)
        if tracker is None:  # removed while the probe ran
            return
        previous_reason = tracker.reason
        transition = tracker.record(result, time.time())
        self.events.emit_probe(key, result)
        if transition is not None:
            self._perf_dirty.discard(key)
            self._publish([key])
            self.events.emit_transition(transition)
        elif tracker.reason != previous_reason:
            self._publish([key])  # still down, for a different reason
        else:
            self._perf_dirty.add(key)

    async def _publish_perf(self) -> None:
        """Publish drifting averages at most once per ``perf_interval``."""
        while True:
            await asyncio.sleep(self._perf_interval)
            if self._perf_dirty:
                dirty, self._perf_dirty = self._perf_dirty, set()
                self._publish(dirty)

    # -- the view ----------------------------------------------------------------------------

    @property
    def view(self) -> HealthView:
        """The current immutable snapshot."""
        return self._view

    def _publish(self, keys: Iterable[str]) -> None:
        """Rebuild the entries of ``keys``; publish a new version only if one changed."""
        monotonic = _monotonic()
        states: dict[str, CheckState] = dict(self._view.states)
        changed = False
        for key in keys:
            tracker = self._trackers.get(key)
            state = tracker.snapshot(monotonic) if tracker is not None else None
            if states.get(key) == state:
                continue
            changed = True
            if state is None:
                states.pop(key, None)
            else:
                states[key] = state
        if not changed:
            self._wake()  # waiters may watch more than the view (first_round: the trackers)
            return
        self._view = HealthView(self._view.version + 1, MappingProxyType(states))
        if self.on_change is not None:
            _safely(self.on_change, self._view)
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)

    async def wait_for(self, predicate: Callable[[HealthView], bool], timeout: float) -> HealthView:
        """Wait until ``predicate(view)`` holds, re-checked on every publish; raises
        ``TimeoutError``. For start-up gates and tests: no polling, no sleeps."""
        async with asyncio.timeout(timeout):
            while not predicate(self._view):
                future = asyncio.get_running_loop().create_future()
                self._waiters.append(future)
                await future
        return self._view

    # -- operations --------------------------------------------------------------------------

    def set_override(self, key: str, value: str | None) -> None:
        """Force a check ``up``, ``down`` or ``drained``; ``None`` (or ``obey``) obeys the
        probes again. Raises KeyError for an unknown key, ValueError for a bad value."""
        tracker = self._tracker(key)
        transition = tracker.set_override(value, time.time())
        if transition is not None:
            self._publish([key])
            self.events.emit_transition(transition)

    def override_of(self, key: str) -> str | None:
        tracker = self._trackers.get(key)
        return None if tracker is None else tracker.override

    def probe_states(self) -> dict[str, tuple[bool, str, float]]:
        """What this prober's own probes say per check (overrides aside), for the fleet:
        key -> (up, reason, wall clock of the last result); checks not probed yet left out."""
        return {
            key: (tracker.up, tracker.reason, tracker.results[-1].at)
            for key, tracker in self._trackers.items()
            if tracker.up is not None and tracker.results
        }

    def push_measurement(
        self, key: str, latency_s: float, success_ratio: float, ttl_s: float
    ) -> None:
        """An external performance figure (RUM, a monitoring feed) for ``key``: it replaces
        the probe averages in the view for ``ttl_s`` seconds, then the probes count again."""
        tracker = self._tracker(key)
        if not (math.isfinite(latency_s) and latency_s >= 0):
            raise ValueError(f"invalid latency {latency_s!r}: expected seconds >= 0")
        if not (math.isfinite(success_ratio) and 0.0 <= success_ratio <= 1.0):
            raise ValueError(f"invalid success ratio {success_ratio!r}: expected 0..1")
        if not (math.isfinite(ttl_s) and ttl_s > 0):
            raise ValueError(f"invalid ttl {ttl_s!r}: expected seconds > 0")
        tracker.push_measurement(latency_s, success_ratio, _monotonic() + ttl_s)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(ttl_s, self._expire, key)
        self._publish([key])

    def _expire(self, key: str) -> None:
        self._timers.pop(key, None)
        tracker = self._trackers.get(key)
        if tracker is not None and tracker.expire(_monotonic()):
            self._publish([key])

    def _tracker(self, key: str) -> CheckTracker:
        tracker = self._trackers.get(key)
        if tracker is None:
            raise KeyError(f"unknown health check {key!r}")
        return tracker

    def status(self) -> dict[str, Any]:
        """JSON-able state of every check, for /status and explain."""
        monotonic = _monotonic()
        return {
            "version": self._view.version,
            "running": self.running,
            "concurrency": self.concurrency,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "probes": self.probes,
            "checks": {key: t.status(monotonic) for key, t in sorted(self._trackers.items())},
        }


def _monotonic() -> float:
    return time.monotonic()


def _next_delay(spec: CheckSpec, spent: float, first: bool = False) -> float:
    """Fixed rate from the start of the last probe, spread by +- jitter.

    Checks loaded together are probed together once (the start-up round); after it, each
    takes a random phase within half an interval either side, so a thousand checks do not
    stay in lock-step and their completions do not pile into the same loop iterations.
    ``jitter: 0`` keeps a strict schedule.
    """
    spread = (0.5 if first else spec.jitter) * spec.interval if spec.jitter > 0 else 0.0
    return max(0.0, spec.interval + random.uniform(-spread, spread) - spent)
