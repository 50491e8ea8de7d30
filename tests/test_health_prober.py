"""Probes, the state machine and the prober, against real local servers (tests/edges.py).

Timing: tiny intervals and timeouts; synchronisation only through events (probe results,
transitions, published views, edge hits), each bounded by a deadline. No sleep decides anything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gslb.health.checks import BODY_LIMIT, ProbeResult, _host_header, _url, make_session, run_check
from gslb.health.prober import Prober, _next_delay
from gslb.health.spec import CheckSpec
from gslb.health.state import CheckTracker, Transition
from gslb.health.view import HealthView
from tests.edges import LOOPBACK, Edge, LocalPKI, StaticResolver

pytestmark = pytest.mark.timeout(30)

SERVED = "www.example.test"  # the name being served: Host header and SNI
CDN = "cdn-a.example.test"  # a CDN edge hostname, resolved to loopback by StaticResolver


def spec_for(edge: Edge, **options: Any) -> CheckSpec:
    values: dict[str, Any] = {
        "kind": "https" if edge.tls else "http",
        "address": LOOPBACK,
        "port": edge.port,
        "host": SERVED,
        "interval": 0.5,
        "timeout": 0.3,
        "jitter": 0.0,
    }
    values.update(options)
    assert values["timeout"] < values["interval"], "as the parser demands"
    return CheckSpec(**values)


@pytest.fixture
def resolver() -> StaticResolver:
    return StaticResolver({CDN: LOOPBACK, SERVED: LOOPBACK})


@pytest.fixture
def pki() -> LocalPKI:
    return LocalPKI.shared()


@pytest.fixture
async def session(resolver: StaticResolver) -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(resolver=resolver) as session:
        yield session


@pytest.fixture
async def edges() -> AsyncIterator[Callable[..., Awaitable[Edge]]]:
    started: list[Edge] = []

    async def make(**options: Any) -> Edge:
        edge = await Edge(**options).start()
        started.append(edge)
        return edge

    yield make
    for edge in started:
        await edge.stop()


@pytest.fixture
async def edge(edges: Callable[..., Awaitable[Edge]]) -> Edge:
    return await edges()


class Recorder:
    """Collects the prober's events and published views; waits on them with a deadline."""

    def __init__(self) -> None:
        self.probes: list[tuple[str, ProbeResult]] = []
        self.transitions: list[Transition] = []
        self.views: list[HealthView] = []
        self._changed = asyncio.Event()
        self.hooks: list[Callable[[str, ProbeResult], None]] = []

    def attach(self, prober: Prober) -> None:
        prober.events.probe.append(self._probe)
        prober.events.transition.append(self._transition)

    def view(self, view: HealthView) -> None:
        self.views.append(view)
        self._changed.set()

    def _probe(self, key: str, result: ProbeResult) -> None:
        self.probes.append((key, result))
        for hook in self.hooks:
            hook(key, result)
        self._changed.set()

    def _transition(self, transition: Transition) -> None:
        self.transitions.append(transition)
        self._changed.set()

    def results(self, key: str) -> list[ProbeResult]:
        return [result for k, result in self.probes if k == key]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
async def probing(
    resolver: StaticResolver, pki: LocalPKI
) -> AsyncIterator[Callable[..., Awaitable[tuple[Prober, Recorder]]]]:
    made: list[Prober] = []

    async def make(**options: Any) -> tuple[Prober, Recorder]:
        recorder = Recorder()
        options.setdefault("ssl_context", pki.client_context())
        prober = Prober(on_change=recorder.view, resolver=resolver, **options)
        recorder.attach(prober)
        made.append(prober)
        await prober.start()
        return prober, recorder

    yield make
    for prober in made:
        await prober.stop()


# -- one probe ---------------------------------------------------------------------------------


async def test_healthy_http(edge: Edge, session: aiohttp.ClientSession) -> None:
    result = await run_check(spec_for(edge, body="ok"), session)
    assert result.ok and result.status == 200
    assert re.fullmatch(r"ok 200 in \d+ ms", result.reason)
    assert edge.requests[-1].host == f"{SERVED}:{edge.port}"  # non-default port is in Host


FAILURES = {
    "status 503": (("status", 503), {}),
    "status outside expect": (("status", 404), {"expect": ((200, 399),)}),
    "fail_status wins": (("status", 503), {"expect": ((200, 599),), "fail_status": ((503, 504),)}),
    "connection reset": (("reset",), {}),
    "connection refused": (("refuse",), {}),
    "bad response: bad status line": (("garbage",), {}),
    "body substring": (("healthy", b"all good"), {"body": "fine"}),
    "body regex": (("healthy", b"state=green"), {"body": "/state=(red|amber)/"}),
    "body beyond the read limit": (("huge_body",), {"body": "/never-sent/"}),
}
REASONS = {
    "status outside expect": "status 404",
    "fail_status wins": "status 503",
    "body substring": "body does not match",
    "body regex": "body does not match",
    "body beyond the read limit": "body does not match",
}


@pytest.mark.parametrize("case", FAILURES)
async def test_failure_reasons(edge: Edge, session: aiohttp.ClientSession, case: str) -> None:
    (switch, *args), options = FAILURES[case]
    getattr(edge, switch)(*args)
    result = await run_check(spec_for(edge, **options), session)
    assert (result.ok, result.reason) == (False, REASONS.get(case, case))
    assert result.latency < 0.3  # none of these needs the timeout


async def test_accepted_statuses_and_regex_body(edge: Edge, session: aiohttp.ClientSession) -> None:
    edge.status(301)
    assert (await run_check(spec_for(edge), session)).ok  # default 200-399
    edge.healthy(b"state=green\n")
    assert (await run_check(spec_for(edge, body="/(?m)state=(green|amber)$/"), session)).ok


@pytest.mark.parametrize("switch", [lambda e: e.slow(30), lambda e: e.stall_body()])
async def test_hang_costs_only_the_timeout(
    edge: Edge, session: aiohttp.ClientSession, switch: Callable[[Edge], None]
) -> None:
    switch(edge)
    started = time.perf_counter()
    result = await run_check(spec_for(edge, timeout=0.25, body="ok"), session)
    elapsed = time.perf_counter() - started
    assert (result.ok, result.reason) == (False, "timeout after 0.25 s")
    assert 0.25 <= elapsed < 0.45


async def test_huge_body_is_read_only_up_to_the_limit(
    edge: Edge, session: aiohttp.ClientSession
) -> None:
    edge.huge_body()  # announces and streams 5 GiB
    result = await run_check(spec_for(edge, body="ok"), session)
    assert result.ok and result.latency < 0.3
    await edge.stop()  # the server side ends once the client is gone
    assert edge.bytes_sent < 64 * 2**20  # socket buffers, not gigabytes
    assert BODY_LIMIT == 64 * 1024


async def test_unresolvable_name(
    edge: Edge, session: aiohttp.ClientSession, resolver: StaticResolver
) -> None:
    for kind in ("http", "tcp"):
        spec = spec_for(edge, kind=kind, address="nowhere.example.test")
        result = await run_check(spec, session, resolver=resolver)
        assert (result.ok, result.reason) == (False, "name does not resolve")
    assert resolver.queries.count("nowhere.example.test") == 2


async def test_tcp_connect(
    edge: Edge, session: aiohttp.ClientSession, resolver: StaticResolver
) -> None:
    spec = spec_for(edge, kind="tcp", address=CDN)
    result = await run_check(spec, session, resolver=resolver)
    assert result.ok and re.fullmatch(r"ok connected in \d+ ms", result.reason)
    assert edge.connections == 1 and edge.hits == 0  # connected, sent nothing
    edge.refuse()
    result = await run_check(spec, session, resolver=resolver)
    assert (result.ok, result.reason) == (False, "connection refused")


async def test_https_through_the_cdn_with_served_host_and_sni(
    edges: Callable[..., Awaitable[Edge]],
    session: aiohttp.ClientSession,
    resolver: StaticResolver,
    pki: LocalPKI,
) -> None:
    edge = await edges(tls="valid")
    spec = spec_for(edge, address=CDN, body="ok")
    result = await run_check(spec, session, ssl_context=pki.client_context())
    assert result.ok, result.reason
    seen = edge.requests[-1]
    assert (seen.host, seen.sni) == (f"{SERVED}:{edge.port}", SERVED)
    assert resolver.queries == [CDN]  # connected to the CDN's name, not to the served name


@pytest.mark.parametrize(
    ("tls", "options", "reason"),
    [
        ("expired", {}, "TLS error: certificate has expired"),
        ("self-signed", {}, "TLS error: self-signed certificate"),
        ("valid", {"host": "www.other.test"},
         "TLS error: Hostname mismatch, certificate is not valid for 'www.other.test'"),
        ("valid", {"use_system_trust": True}, "TLS error: unable to get local issuer certificate"),
        (None, {"kind": "https"}, "TLS error: wrong version number"),
    ],
)  # fmt: skip
async def test_tls_errors(
    edges: Callable[..., Awaitable[Edge]],
    session: aiohttp.ClientSession,
    pki: LocalPKI,
    tls: str | None,
    options: dict[str, Any],
    reason: str,
) -> None:
    edge = await edges(tls=tls)
    context = None if options.pop("use_system_trust", False) else pki.client_context()
    result = await run_check(spec_for(edge, **options), session, ssl_context=context)
    assert (result.ok, result.reason) == (False, reason)
    assert edge.hits == 0  # no request was sent over a connection that failed verification


async def test_verify_tls_false_accepts_a_self_signed_edge(
    edges: Callable[..., Awaitable[Edge]], session: aiohttp.ClientSession
) -> None:
    edge = await edges(tls="self-signed")
    result = await run_check(spec_for(edge, verify_tls=False), session)
    assert result.ok, result.reason
    assert edge.sni == [SERVED]


async def test_run_check_never_raises_on_odd_specs(session: aiohttp.ClientSession) -> None:
    spec = CheckSpec(kind="http", address="127.0.0.1", port=1, path="/\x00bad", timeout=0.2)
    result = await run_check(spec, session)
    assert not result.ok and result.reason


# -- the state machine ------------------------------------------------------------------------

OK = ProbeResult(True, "ok 200 in 5 ms", 0.005, 200)
FAIL = ProbeResult(False, "status 503", 0.001, 503)


def tracker(rise: int = 2, fall: int = 3, history: int = 20) -> CheckTracker:
    spec = CheckSpec(kind="http", address="192.0.2.1", port=80, rise=rise, fall=fall)
    return CheckTracker("k", spec, history=history)


def states(track: CheckTracker, results: list[ProbeResult]) -> list[str]:
    return [(track.record(r, float(i)), track.state)[1] for i, r in enumerate(results)]


def test_first_result_decides_directly() -> None:
    up, down = tracker(), tracker()
    assert up.snapshot(0.0) is None and up.state == "unknown"
    assert up.record(OK, 1.0) == Transition("k", 1.0, "unknown", "up", "ok 200 in 5 ms")
    assert down.record(FAIL, 1.0) == Transition("k", 1.0, "unknown", "down", "status 503")


def test_fall_and_rise_need_results_in_a_row() -> None:
    track = tracker(rise=2, fall=3)
    sequence = [OK, FAIL, FAIL, OK, FAIL, FAIL, FAIL, OK, FAIL, OK, OK]
    assert states(track, sequence) == [
        "up", "up", "up", "up", "up", "up", "down", "down", "down", "down", "up",
    ]  # fmt: skip
    assert [(t.old, t.new) for t in track.transitions] == [
        ("unknown", "up"),
        ("up", "down"),
        ("down", "up"),
    ]


def test_recovery_restarts_the_moving_averages() -> None:
    """Back up after `rise` successes: old failures must not keep the performance step
    dropping the value (it would stay out for many more intervals)."""
    track = tracker(rise=2, fall=2)
    states(track, [OK, FAIL, FAIL, FAIL, FAIL, ProbeResult(True, "ok", 0.004, 200)])
    assert track.state == "down" and track.success_ratio < 0.5
    track.record(ProbeResult(True, "ok", 0.003, 200), 10.0)
    assert track.state == "up"
    assert track.success_ratio == 1.0 and track.latency == pytest.approx(0.003)


def test_moving_averages() -> None:
    track = tracker()
    track.record(ProbeResult(True, "ok", 0.010, 200), 0.0)
    track.record(ProbeResult(False, "status 503", 5.0, 503), 1.0)  # failures leave latency
    assert track.latency == pytest.approx(0.010)
    assert track.success_ratio == pytest.approx(0.7)
    track.record(ProbeResult(True, "ok", 0.020, 200), 2.0)
    assert track.latency == pytest.approx(0.013)
    assert track.success_ratio == pytest.approx(0.79)


def test_override_and_bounded_history() -> None:
    track = tracker(history=5)
    states(track, [OK] * 12)
    assert len(track.results) == 5
    assert track.set_override("drained", 20.0) == Transition(
        "k", 20.0, "up", "drained", "drained by operator"
    )
    assert track.set_override("drained", 21.0) is None
    snap = track.snapshot(0.0)
    assert snap is not None and snap.effective == "drained"
    with pytest.raises(ValueError, match="invalid override"):
        track.set_override("sideways", 22.0)


# -- the prober ---------------------------------------------------------------------------------


async def test_first_round_decides_before_returning(
    edges: Callable[..., Awaitable[Edge]],
    probing: Callable[..., Awaitable[tuple[Prober, Recorder]]],
) -> None:
    good, bad = await edges(), await edges()
    bad.status(503)
    good_spec, bad_spec = (
        spec_for(good, interval=5, timeout=1),
        spec_for(bad, interval=5, timeout=1),
    )
    prober, recorder = await probing()
    await prober.update({good_spec.key: good_spec, bad_spec.key: bad_spec})
    started = time.perf_counter()
    assert await prober.first_round(timeout=2.0)
    assert time.perf_counter() - started < 1.0
    assert prober.view.effective(good_spec.key) == "up"
    assert prober.view.effective(bad_spec.key) == "down"
    assert prober.view.state(bad_spec.key).reason == "status 503"  # type: ignore[union-attr]
    assert recorder.views[-1] is prober.view  # published through on_change


async def test_first_round_is_bounded(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    edge.slow(30)
    spec = spec_for(edge, interval=5, timeout=2)
    prober, _ = await probing()
    await prober.update({spec.key: spec})
    started = time.perf_counter()
    assert not await prober.first_round(timeout=0.2)
    assert time.perf_counter() - started < 0.5
    assert prober.view.state(spec.key) is None  # not probed yet: the answer path obeys


async def test_one_failure_does_not_pull_a_target_with_fall_3(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    spec = spec_for(edge, fall=3, rise=2, interval=0.1, timeout=0.09)
    prober, recorder = await probing()
    await prober.update({spec.key: spec})
    assert await prober.first_round()
    edge.status(503)

    def heal_after_one_failure(key: str, result: ProbeResult) -> None:
        if not result.ok:
            edge.healthy()  # exactly one failed probe, switched back before the next one

    recorder.hooks.append(heal_after_one_failure)
    failed_at = len(recorder.probes)
    await recorder.until(lambda: any(not r.ok for _, r in recorder.probes[failed_at:]))
    recorder.hooks.clear()
    await recorder.until(lambda: recorder.results(spec.key)[-1].ok)
    assert all(view.effective(spec.key) == "up" for view in recorder.views)
    assert sum(not r.ok for r in recorder.results(spec.key)) == 1

    edge.status(503)
    await prober.wait_for(lambda v: v.effective(spec.key) == "down", timeout=5)
    results = recorder.results(spec.key)
    assert [r.ok for r in results[-3:]] == [False, False, False]
    assert results[-4].ok  # down exactly at the third failure in a row
    assert recorder.transitions[-1].reason == "status 503"

    edge.healthy()
    await prober.wait_for(lambda v: v.effective(spec.key) == "up", timeout=5)
    results = recorder.results(spec.key)
    assert [r.ok for r in results[-3:]] == [False, True, True]  # up after rise=2


async def test_hanging_target_does_not_delay_other_checks(
    edges: Callable[..., Awaitable[Edge]],
    probing: Callable[..., Awaitable[tuple[Prober, Recorder]]],
) -> None:
    hung, fine = await edges(), await edges()
    hung.slow(30)
    hung_spec = spec_for(hung, timeout=0.4, interval=5)
    fine_spec = spec_for(fine, timeout=0.04, interval=0.05)
    prober, recorder = await probing(concurrency=2)
    await prober.update({hung_spec.key: hung_spec, fine_spec.key: fine_spec})
    await recorder.until(lambda: bool(recorder.results(hung_spec.key)))
    first = recorder.results(hung_spec.key)[0]
    assert (first.ok, first.reason) == (False, "timeout after 0.4 s")
    assert 0.4 <= first.latency < 0.6
    before = [key for key, _ in recorder.probes].index(hung_spec.key)
    assert before >= 3  # the healthy check kept its own rhythm meanwhile
    assert prober.view.effective(fine_spec.key) == "up"


async def test_update_keeps_unchanged_checks_and_drops_removed_ones(
    edges: Callable[..., Awaitable[Edge]],
    probing: Callable[..., Awaitable[tuple[Prober, Recorder]]],
) -> None:
    edges3 = kept_edge, removed_edge, added_edge = await edges(), await edges(), await edges()
    kept, removed, added = (spec_for(e, interval=0.1, timeout=0.09) for e in edges3)
    prober, recorder = await probing()
    await prober.update({kept.key: kept, removed.key: removed})
    assert await prober.first_round()
    prober.set_override(kept.key, "drained")
    kept_history = len(prober.status()["checks"][kept.key]["results"])
    transitions = prober.status()["checks"][kept.key]["transitions"]

    await prober.update({kept.key: kept, added.key: added})
    hits_at_removal = removed_edge.hits
    assert removed.key not in prober.view.states
    assert removed.key not in prober.status()["checks"]
    with pytest.raises(KeyError):
        prober.set_override(removed.key, "down")
    assert await prober.first_round()
    assert prober.view.effective(added.key) == "up"

    probes_after = len(recorder.probes)
    await recorder.until(lambda: len(recorder.results(kept.key)) >= kept_history + 4)
    assert all(key != removed.key for key, _ in recorder.probes[probes_after:])
    assert removed_edge.hits <= hits_at_removal + 1  # at most the one in flight at removal
    status = prober.status()["checks"][kept.key]
    assert prober.view.effective(kept.key) == "drained"
    assert status["override"] == "drained"
    assert status["transitions"][: len(transitions)] == transitions
    assert len(status["results"]) > kept_history


async def test_overrides(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    spec = spec_for(edge, interval=5, timeout=1)
    prober, recorder = await probing()
    await prober.update({spec.key: spec})
    assert await prober.first_round()
    version = prober.view.version

    prober.set_override(spec.key, "down")
    state = prober.view.state(spec.key)
    assert state is not None and state.effective == "down" and state.up
    assert state.reason == "forced down by operator"
    assert prober.view.version == version + 1 and recorder.views[-1] is prober.view
    assert (recorder.transitions[-1].old, recorder.transitions[-1].new) == ("up", "down")

    prober.set_override(spec.key, "down")  # no change, no new version
    assert prober.view.version == version + 1
    prober.set_override(spec.key, None)
    assert prober.view.effective(spec.key) == "up"
    assert recorder.transitions[-1].reason == "override cleared"
    with pytest.raises(ValueError):
        prober.set_override(spec.key, "maybe")
    with pytest.raises(KeyError):
        prober.set_override("http://nope#0", "down")


async def test_external_feed_overrides_averages_until_it_expires(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    spec = spec_for(edge, interval=5, timeout=1)
    prober, _ = await probing()
    await prober.update({spec.key: spec})
    assert await prober.first_round()
    probed = prober.view.state(spec.key)
    assert probed is not None and probed.success_ratio == 1.0

    pushed_at = time.monotonic()
    prober.push_measurement(spec.key, latency_s=0.25, success_ratio=0.5, ttl_s=0.2)
    state = prober.view.state(spec.key)
    assert state is not None and (state.latency, state.success_ratio) == (0.25, 0.5)
    assert prober.status()["checks"][spec.key]["external"]["latency"] == 0.25

    await prober.wait_for(lambda v: v.state(spec.key).success_ratio == 1.0, timeout=2)  # type: ignore[union-attr]
    assert time.monotonic() - pushed_at >= 0.2
    assert prober.view.state(spec.key) == probed
    with pytest.raises(ValueError):
        prober.push_measurement(spec.key, latency_s=-1, success_ratio=0.5, ttl_s=1)
    with pytest.raises(ValueError):
        prober.push_measurement(spec.key, latency_s=0.1, success_ratio=1.5, ttl_s=1)


async def test_averages_alone_are_published_at_most_once_per_perf_interval(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    spec = spec_for(edge, interval=0.05, timeout=0.04)
    quiet, quiet_events = await probing(perf_interval=60)
    eager, eager_events = await probing(perf_interval=0.1)
    for prober in (quiet, eager):
        await prober.update({spec.key: spec})
    await quiet_events.until(lambda: len(quiet_events.results(spec.key)) >= 6)
    await eager_events.until(lambda: len(eager_events.views) > len(eager_events.transitions))
    assert len(quiet_events.views) == len(quiet_events.transitions)  # probes alone: no view


async def test_bounded_concurrency_with_many_checks(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    edge.slow(0.01)  # requests overlap, so the bound is really exercised
    # timeout generous: on a loaded CI box a 0.15 s probe of a queued check can time out
    specs = [spec_for(edge, path=f"/c{i}", interval=1.0, timeout=0.9) for i in range(300)]
    prober, recorder = await probing(concurrency=8)
    await prober.update({spec.key: spec for spec in specs})
    assert await prober.first_round(timeout=15)
    await edge.wait_hits(400, timeout=15)  # well into the second round
    assert prober.max_in_flight == 8
    assert 2 <= edge.max_in_flight <= 8
    assert all(prober.view.effective(spec.key) == "up" for spec in specs)


async def test_a_shared_check_is_probed_once_over_https_through_the_cdn_name(
    edges: Callable[..., Awaitable[Edge]],
    probing: Callable[..., Awaitable[tuple[Prober, Recorder]]],
    resolver: StaticResolver,
) -> None:
    edge = await edges(tls="valid")
    records = [spec_for(edge, address=CDN, interval=5, timeout=1) for _ in ("www", "api", "img")]
    checks = {spec.key: spec for spec in records}
    assert len(checks) == 1
    prober, _ = await probing()  # with the test CA as trust store
    await prober.update(checks)
    assert await prober.first_round()
    key = records[0].key
    assert prober.view.effective(key) == "up", prober.view.state(key)
    assert edge.hits == 1 and edge.sni == [SERVED] and resolver.queries == [CDN]


async def test_status_and_events(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    spec = spec_for(edge, interval=5, timeout=1)
    prober, recorder = await probing()
    await prober.update({spec.key: spec})
    assert await prober.first_round()
    status = json.loads(json.dumps(prober.status()))
    check = status["checks"][spec.key]
    assert (check["state"], check["effective"], check["override"]) == ("up", "up", None)
    assert check["last"]["ok"] and check["last"]["status"] == 200
    assert check["transitions"][0]["old"] == "unknown"
    assert check["check"]["host"] == SERVED
    assert recorder.probes[0][0] == spec.key and recorder.probes[0][1].ok
    assert recorder.transitions[0].key == spec.key


async def test_stop_ends_probing_and_start_resumes_with_state(
    edge: Edge, probing: Callable[..., Awaitable[tuple[Prober, Recorder]]]
) -> None:
    spec = spec_for(edge, interval=0.05, timeout=0.04)
    prober, recorder = await probing()
    await prober.update({spec.key: spec})
    assert await prober.first_round()
    prober.set_override(spec.key, "down")
    await prober.stop()
    hits = edge.hits
    await prober.start()
    await recorder.until(lambda: edge.hits > hits)
    assert prober.view.effective(spec.key) == "down"


def test_schedule_spreads_after_the_first_round_and_jitters_after() -> None:
    spec = CheckSpec(kind="http", address="192.0.2.1", port=80, interval=1.0, jitter=0.1)
    firsts = [_next_delay(spec, 0.0, first=True) for _ in range(200)]
    later = [_next_delay(spec, 0.25, first=False) for _ in range(200)]
    assert min(firsts) >= 0.5 and max(firsts) <= 1.5 and max(firsts) - min(firsts) > 0.5
    assert min(later) >= 0.65 and max(later) <= 0.85
    strict = dataclasses.replace(spec, jitter=0.0)
    assert {_next_delay(strict, 0.25, first=True) for _ in range(20)} == {0.75}


def test_host_header_and_url() -> None:
    https = CheckSpec(kind="https", address="2001:db8::1", port=443, host="www.example.com")
    assert _host_header("www.example.com", https) == "www.example.com"
    assert _url(https) == "https://[2001:db8::1]:443/"
    other = dataclasses.replace(https, port=8443)
    assert _host_header("www.example.com", other) == "www.example.com:8443"
