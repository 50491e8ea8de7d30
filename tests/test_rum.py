"""Real-user measurements without sockets: the histogram, the zone keys, the decision rule with
its floors and hysteresis, the levels and their ECS scopes, the step in the real engine, and
ingestion's refusals (forged, replayed, flooded, absurd) with their counters."""

from __future__ import annotations

import ipaddress
import json
import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.commit.view import Steering, record_key
from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME
from gslb.geo import GeoDB
from gslb.health.view import HealthView
from gslb.policy.chain import Engine
from gslb.rum import sketch
from gslb.rum.config import RumOptions
from gslb.rum.decide import Decider, choose
from gslb.rum.ingest import Ingest, Limits, Rejected
from gslb.rum.network import AsnDB, NetInfo, net_info, prefix_key
from gslb.rum.store import Store, Summary
from tests.geodb import CLIENTS, CLIENTS6

ip = ipaddress.ip_address
A_, B_, C_ = "a.cdn.net.", "b.cdn.net.", "c.cdn.net."
RECORD = ("content.example.com.", CNAME)


def record_data(rum: dict | None = None, chain: list | None = None) -> dict:
    gslb: dict = {}
    if rum is not None:
        gslb["rum"] = rum
    if chain is not None:
        gslb["chain"] = chain
    return {
        "type": "CNAME",
        "ttl": 30,
        "value": "origin.example.net.",
        "dynamic": {
            "pools": {"cdns": {"values": [{"value": A_}, {"value": B_}, {"value": C_}]}},
            "rules": [{"pool": "cdns"}],
        },
        "gslb": gslb,
    }


def parse(data: dict) -> tuple:
    errors: list[str] = []
    record, _ = parse_dynamic(
        "content.example.com.", b"\x07content\x07example\x03com\x00", CNAME, 30, data, "z", errors
    )
    return record, errors


# -- the histogram ---------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0.2, max_value=50_000), min_size=1, max_size=300))
def test_quantiles_are_within_the_relative_error_and_merging_is_exact(values) -> None:
    bins: dict[int, float] = {}
    half_a: dict[int, float] = {}
    half_b: dict[int, float] = {}
    for index, ms in enumerate(values):
        sketch.add(bins, ms)
        sketch.add(half_a if index % 2 else half_b, ms)
    sketch.merge(half_a, half_b)
    assert half_a == bins
    ordered = sorted(values)
    exact = ordered[math.ceil(0.5 * len(ordered)) - 1]
    assert abs(sketch.quantile(bins, 0.5) - exact) <= exact * (sketch.GAMMA - 1) + 1e-9


def test_absurd_durations_stay_in_bounded_bins() -> None:
    bins: dict[int, float] = {}
    for ms in (-5, 0, 1e-9, 1e12, float("inf")):
        sketch.add(bins, ms)
    assert all(0 <= index < sketch.MAX_BINS for index in bins)


# -- configuration ---------------------------------------------------------------------------


def test_a_rum_block_adds_the_step_after_health_and_keeps_the_probes() -> None:
    record, errors = parse(record_data({"probes": {A_: "https://a.example/rum.gif"}, "hold": 30}))
    assert errors == []
    chain = record.options.chain
    assert chain.index("rum") == chain.index("health") + 1
    assert record.rum.probe_url(A_) == "https://a.example/rum.gif"
    assert record.rum.hold == 30


def test_every_rum_problem_is_reported_at_once() -> None:
    bad = {
        "probes": {"nothere.cdn.net.": "https://x.example/r.gif", A_: "ftp://a.example/r.gif"},
        "metric": "ttfb",
        "window": 1,
        "min_samples": 2.5,
        "availability_floor": 1.5,
        "levels": ["prefix", "city"],
        "origins": ["https://www.example.com/page"],
        "colour": "blue",
    }
    _, errors = parse(record_data(bad))
    text = "\n".join(errors)
    for needle in (
        "nothere.cdn.net.",
        "ftp://a.example/r.gif",
        'metric: invalid value "ttfb"',
        "gslb.rum.window",
        "gslb.rum.min_samples",
        "gslb.rum.availability_floor",
        'unknown level "city"',
        "gslb.rum.origins",
        'unknown key "colour"',
    ):
        assert needle in text, (needle, errors)


def test_an_explicit_chain_without_rum_makes_the_block_an_error() -> None:
    _, errors = parse(record_data({"hold": 10}, chain=["rules", "health", "weighted"]))
    assert any('no "rum" step' in e for e in errors)
    record, errors = parse(record_data(None, chain=["rules", "health", "rum", "weighted"]))
    assert errors == [] and record.rum is None and "rum" in record.options.chain


# -- the decision rule -------------------------------------------------------------------------


def summary(p50: float, n: float = 100, availability: float = 1.0) -> Summary:
    return Summary(n, n * availability, n * availability, p50, p50 * 1.5)


OPTS = RumOptions(min_samples=10, tolerance=0.2, margin_ms=5, hysteresis=0.25, hold=60)


def test_targets_beyond_tolerance_and_margin_are_dropped() -> None:
    choice = choose(OPTS, {A_: summary(50), B_: summary(58), C_: summary(80)}, None, False)
    assert set(choice.dropped) == {C_}  # limit = max(60, 55)
    choice = choose(OPTS, {A_: summary(10), B_: summary(14), C_: summary(16)}, None, False)
    assert set(choice.dropped) == {C_}  # limit = max(12, 15): 14 in, 16 out


def test_a_kept_target_leaves_only_when_clearly_worse() -> None:
    near = {A_: summary(50), B_: summary(70), C_: summary(200)}  # limit 60, leave limit 75
    assert set(choose(OPTS, near, frozenset({C_}), False).dropped) == {C_}
    assert set(choose(OPTS, near, None, False).dropped) == {B_, C_}
    worse = {A_: summary(50), B_: summary(80), C_: summary(200)}
    assert set(choose(OPTS, worse, frozenset({C_}), False).dropped) == {B_, C_}


def test_the_hold_keeps_the_set_but_an_availability_drop_acts_at_once() -> None:
    better = {A_: summary(50), B_: summary(52), C_: summary(51)}
    assert set(choose(OPTS, better, frozenset({C_}), True).dropped) == {C_}
    assert set(choose(OPTS, better, frozenset({C_}), False).dropped) == set()
    failing = {A_: summary(50, availability=0.5), B_: summary(52), C_: summary(51)}
    assert set(choose(OPTS, failing, frozenset({C_}), True).dropped) == {A_, C_}


def test_never_every_measured_target_is_dropped() -> None:
    dead = {A_: summary(50, availability=0.1), B_: summary(50, availability=0.2)}
    assert choose(OPTS, dead, None, False).dropped == {}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([A_, B_, C_]),
        st.tuples(st.floats(1, 5000), st.floats(0, 1)),
        min_size=1,
    ),
    st.sets(st.sampled_from([A_, B_, C_])),
    st.booleans(),
)
def test_property_the_best_available_target_is_never_dropped_without_a_hold(
    figures, previous, held
) -> None:
    summaries = {t: summary(p50, availability=avail) for t, (p50, avail) in figures.items()}
    choice = choose(OPTS, summaries, frozenset(previous), held)
    assert len(choice.dropped) < len(summaries)
    available = {t: s for t, s in summaries.items() if s.availability >= OPTS.availability_floor}
    if available and not held:
        best = min(available, key=lambda t: available[t].p50)
        assert best not in choice.dropped


# -- store, levels, scopes ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def geo(geo_db):
    db = GeoDB.open(geo_db)
    yield db
    db.close()


def net_of(geo: GeoDB, address: str) -> NetInfo:
    loc = geo.locate(ip(address))
    key = prefix_key(ip(address))
    return NetInfo(key, None, loc.country, loc.continent, source=key)


def feed(store: Store, net: NetInfo, latencies: dict[str, float], count: int, now: float) -> None:
    for target, ms in latencies.items():
        for _ in range(count):
            store.add(RECORD, net, target, "warm", True, ms, now)


OPTIONS = RumOptions(min_samples=5, hold=0, window=60, min_networks=1)
RECORDS = {RECORD: (OPTIONS, 3)}


def test_the_finest_level_with_enough_samples_decides_and_sets_the_scope(geo) -> None:
    store = Store()
    store.configure({RECORD: OPTIONS})
    de1, de2 = CLIENTS["DE"], "46.4.200.10"
    feed(store, net_of(geo, de1), {A_: 80, B_: 20, C_: 85}, 6, 100.0)  # this /24 likes b
    feed(store, net_of(geo, de2), {A_: 20, B_: 80, C_: 85}, 20, 100.0)  # the country likes a
    feed(store, net_of(geo, CLIENTS["FR"]), {A_: 90, B_: 90, C_: 10}, 40, 100.0)  # the rest c
    snap = Decider().build(store, RECORDS, 100.0, 0.0)
    mine, scope = snap.lookup(RECORD, ip(de1), None, geo.locate(ip(de1)), None)
    assert mine.level == "prefix" and set(mine.dropped) == {A_, C_} and scope == 24
    # ECS /20 does not say which /24: the country decides, with the GeoIP network's scope.
    country, scope = snap.lookup(RECORD, ip("46.4.0.0"), 20, geo.locate(ip("46.4.0.0")), None)
    assert country.level == "country" and set(country.dropped) == {B_, C_} and scope == 16
    # ECS /24 from the other DE network: its own /24 decides the same as the country, so the
    # snapshot leaves it out and the answer gets the country's wider scope.
    other, scope = snap.lookup(RECORD, ip("46.4.200.0"), 24, geo.locate(ip(de2)), None)
    assert other is country and scope == 16
    # Nobody measured from Japan: the global level decides, which depends on nothing.
    jp = ip(CLIENTS["JP"])
    decision, scope = snap.lookup(RECORD, jp, 24, geo.locate(jp), None)
    assert decision.level == "global" and set(decision.dropped) == {A_, B_} and scope == 0
    # Europe decides as the world does: no continent entry, France gets the global one.
    fr = ip(CLIENTS["FR"])
    assert snap.lookup(RECORD, fr, 24, geo.locate(fr), None)[0] is decision


def test_one_network_alone_moves_only_its_own_answers(geo) -> None:
    store = Store()
    options = replace(OPTIONS, min_networks=3)
    store.configure({RECORD: options})
    feed(store, net_of(geo, CLIENTS["DE"]), {A_: 80, B_: 20, C_: 85}, 50, 100.0)
    snap = Decider().build(store, {RECORD: (options, 3)}, 100.0, 0)
    mine, _ = snap.lookup(RECORD, ip(CLIENTS["DE"]), None, geo.locate(ip(CLIENTS["DE"])), None)
    assert mine.level == "prefix" and set(mine.dropped) == {A_, C_}
    neighbour = ip("46.4.77.1")
    assert snap.lookup(RECORD, neighbour, 24, geo.locate(neighbour), None) == (None, 0)
    for third in ("46.4.2.1", "46.4.3.1"):  # two more networks agree: the country follows
        feed(store, net_of(geo, third), {A_: 80, B_: 20, C_: 85}, 5, 100.0)
    snap = Decider().build(store, {RECORD: (options, 3)}, 100.0, 0)
    decision, _ = snap.lookup(RECORD, neighbour, 24, geo.locate(neighbour), None)
    assert decision is not None and set(decision.dropped) == {A_, C_}


def test_scope_is_never_longer_than_the_source_prefix(geo) -> None:
    store = Store()
    store.configure({RECORD: OPTIONS})
    feed(store, net_of(geo, CLIENTS["DE"]), {A_: 80, B_: 20, C_: 85}, 6, 100.0)
    snap = Decider().build(store, {RECORD: (replace(OPTIONS, levels=("country",)), 3)}, 100.0, 0)
    decision, scope = snap.lookup(RECORD, ip("46.4.0.0"), 12, geo.locate(ip("46.4.0.0")), None)
    assert decision.level == "country" and scope == 12


def test_an_ipv6_clients_own_48_decides_with_its_scope(geo) -> None:
    """IPv6 client networks are /48s (README: "the client's /24 (/48 for IPv6)"): one /48
    steers itself with scope 48, another /48 of the same country does not follow it, and an
    ECS prefix shorter than /48 cannot use the /48 level."""
    store = Store()
    store.configure({RECORD: OPTIONS})
    mine = ip(CLIENTS6["DE"])  # 2a01:4f8::10
    feed(store, net_of(geo, CLIENTS6["DE"]), {A_: 80, B_: 20, C_: 85}, 6, 100.0)
    snap = Decider().build(store, {RECORD: (replace(OPTIONS, levels=("prefix",)), 3)}, 100.0, 0)
    decision, scope = snap.lookup(RECORD, ip("2a01:4f8:0:ffff::1"), 56, geo.locate(mine), None)
    assert decision.level == "prefix" and decision.key == "2a01:4f8::/48"
    assert set(decision.dropped) == {A_, C_} and scope == 48
    neighbour = ip("2a01:4f8:1::1")  # the next /48
    assert snap.lookup(RECORD, neighbour, 56, geo.locate(neighbour), None) == (None, 0)
    assert snap.lookup(RECORD, mine, 40, geo.locate(mine), None) == (None, 0)
    assert prefix_key(mine) != prefix_key(ip("0.0.0.0")), "the families are kept apart"


def test_memory_is_bounded_whatever_the_number_of_networks() -> None:
    store = Store(max_networks=500)
    store.configure({RECORD: OPTIONS})
    for index in range(5000):
        net = NetInfo(prefix_key(ip(f"10.{index // 256}.{index % 256}.1")), None, "DE", "EU")
        store.add(RECORD, net, A_, "warm", True, 10.0, 1.0)
    keys = store.keys()
    assert keys["prefix"] == 500 and keys["country"] == 1
    assert store.tables[RECORD].evicted == 4500


def test_old_samples_leave_the_window_and_the_keys_are_forgotten() -> None:
    store = Store()
    store.configure({RECORD: OPTIONS})
    net = NetInfo(prefix_key(ip("46.4.1.1")), None, "DE", "EU")
    feed(store, net, {A_: 80, B_: 20}, 10, 1000.0)
    decider = Decider()
    where = (RECORD, ip("46.4.1.1"), None, None, None)
    assert decider.build(store, RECORDS, 1000.0, 0).lookup(*where)[0] is not None
    assert decider.build(store, RECORDS, 1000.0 + OPTIONS.window / 2, 0).lookup(*where)[0]
    snap = decider.build(store, RECORDS, 1000.0 + 2 * OPTIONS.window, 0)
    assert snap.lookup(*where) == (None, 0)
    assert sum(store.keys().values()) == 0


def test_a_level_key_flaps_at_most_once_per_hold(geo) -> None:
    store = Store()
    options = replace(OPTIONS, hold=100, window=600)
    store.configure({RECORD: options})
    net = net_of(geo, CLIENTS["DE"])
    decider = Decider()
    records = {RECORD: (options, 3)}
    now = 0.0
    flips = 0
    last = None
    for step in range(60):  # a and b swap places every 10 s for 10 minutes
        now += 10
        fast, slow = (A_, B_) if step % 2 else (B_, A_)
        feed(store, net, {fast: 10, slow: 60, C_: 100}, 30, now)
        snap = decider.build(store, records, now, 0)
        decision, _ = snap.lookup(
            RECORD, ip(CLIENTS["DE"]), None, geo.locate(ip("46.4.1.10")), None
        )
        if last is not None and decision.dropped.keys() != last:
            flips += 1
        last = decision.dropped.keys()
    assert flips <= 600 / 100 + 1


# -- the step in the engine --------------------------------------------------------------------


def test_the_engine_answers_the_networks_fast_cdn_and_passes_others_through(geo) -> None:
    rum = {"min_samples": 5, "hold": 0, "levels": ["prefix", "country"], "min_networks": 1}
    record, errors = parse(record_data(rum))
    assert errors == []
    store = Store()
    store.configure({RECORD: record.rum})
    feed(store, net_of(geo, CLIENTS["DE"]), {A_: 90, B_: 15, C_: 95}, 6, 10.0)
    feed(store, net_of(geo, "46.4.200.1"), {A_: 10, B_: 90, C_: 95}, 20, 10.0)
    snap = Decider().build(store, {RECORD: (record.rum, 3)}, 10.0, 0)
    view = HealthView(1, rum=snap)
    engine = Engine(geo, random.Random(7))
    de = (ip(CLIENTS["DE"]), 24)
    answers = {engine.answer(record, ip("192.0.2.1"), de, view).values for _ in range(50)}
    assert answers == {(B_,)}
    assert engine.answer(record, ip("192.0.2.1"), de, view).scope == 24
    # Another network, another country, no level with data: every CDN, scope 0.
    jp = (ip(CLIENTS["JP"]), 24)
    seen = {engine.answer(record, ip("192.0.2.1"), jp, view).values for _ in range(200)}
    assert len(seen) == 3 and engine.answer(record, ip("192.0.2.1"), jp, view).scope == 0
    trace = engine.explain(record, ip("192.0.2.1"), de, view)
    rum_step = next(s for s in trace["steps"] if s["step"] == "rum")
    assert rum_step["notes"]["level"] == "prefix"
    assert rum_step["notes"]["targets"][B_]["verdict"] == "kept"
    assert {d["value"] for d in rum_step["dropped"]} == {A_, C_}
    trace = engine.explain(record, ip("192.0.2.1"), jp, view)
    rum_step = next(s for s in trace["steps"] if s["step"] == "rum")
    assert "no usable measurements" in rum_step["notes"]["rum"]


def test_the_commit_step_reweights_only_what_rum_kept(geo) -> None:
    """Commit pacing never overrides user experience (README, Commits): with the controller's
    weights all but zero on the CDN a network measured fastest, that network still gets only
    it; a network without measurements gets the controller's split."""
    data = record_data({"min_samples": 5, "hold": 0, "levels": ["prefix"], "min_networks": 1})
    data["gslb"]["commit"] = {"mode": "delivered"}
    record, errors = parse(data)
    chain = record.options.chain
    assert errors == [] and chain.index("rum") < chain.index("commit")
    store = Store()
    store.configure({RECORD: record.rum})
    feed(store, net_of(geo, CLIENTS["DE"]), {A_: 90, B_: 15, C_: 95}, 6, 10.0)
    snap = Decider().build(store, {RECORD: (record.rum, 3)}, 10.0, 0)
    steering = Steering(((A_, 5000), (B_, 1), (C_, 5000)), "delivered", "feed", 1)
    view = HealthView(1, rum=snap, steering={record_key(record.fqdn, record.rtype): steering})
    engine = Engine(geo, random.Random(7))
    de = (ip(CLIENTS["DE"]), 24)
    mine = {engine.answer(record, ip("192.0.2.1"), de, view).values for _ in range(50)}
    assert mine == {(B_,)}
    jp = (ip(CLIENTS["JP"]), 24)
    seen = [engine.answer(record, ip("192.0.2.1"), jp, view).values for _ in range(400)]
    assert seen.count((B_,)) <= 2 and {(A_,), (C_,)} <= set(seen)
    trace = engine.explain(record, ip("192.0.2.1"), de, view)
    commit = next(s for s in trace["steps"] if s["step"] == "commit")
    assert commit["notes"]["controller"]["weights"][A_] == 5000 and not commit["dropped"]


# -- ingestion ---------------------------------------------------------------------------------


def ingest_for(geo, **limits) -> tuple[Ingest, Store]:
    options = RumOptions(probes=((A_, "https://a/r.gif"), (B_, "https://b/r.gif")))
    store = Store()
    store.configure({RECORD: options})
    ingest = Ingest(store, b"k" * 32, Limits(**limits), geo)
    ingest.configure({RECORD: (options, frozenset({A_, B_, C_}))})
    return ingest, store


def beacon(token: str, measurements: list | None = None) -> bytes:
    m = measurements or [{"t": A_, "k": "warm", "ok": 1, "ms": 12.5}]
    return json.dumps({"v": 1, "r": RECORD[0], "y": CNAME, "tok": token, "m": m}).encode()


def test_a_token_counts_once_and_only_from_the_network_it_was_issued_to(geo) -> None:
    ingest, _ = ingest_for(geo)
    home, elsewhere = ip("46.4.1.10"), ip("46.4.2.10")
    token = ingest.recipe(RECORD, home, 1000.0)["tok"]
    with pytest.raises(Rejected) as info:
        ingest.beacon(beacon(token), elsewhere, None, 1.0, 1000.0)
    assert info.value.reason == "bad_token"
    assert ingest.beacon(beacon(token), ip("46.4.1.99"), None, 1.0, 1000.0) == 1
    with pytest.raises(Rejected) as info:
        ingest.beacon(beacon(token), home, None, 1.0, 1000.0)
    assert info.value.reason == "replayed"
    late = ingest.recipe(RECORD, home, 1000.0)["tok"]
    with pytest.raises(Rejected) as info:
        ingest.beacon(beacon(late), home, None, 1.0, 1000.0 + 3600)
    assert info.value.reason == "expired"
    forged = late.rsplit(".", 1)[0] + ".AAAAAAAAAAAAAAAAAAAAAA"
    with pytest.raises(Rejected) as info:
        ingest.beacon(beacon(forged), home, None, 1.0, 1000.0)
    assert info.value.reason == "bad_token"
    assert ingest.beacons == {"accepted": 1, "bad_token": 2, "replayed": 1, "expired": 1}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"x" * 20000, "too_large"),
        (b"\xff\xfe garbage", "malformed"),
        (b'{"v": 1, "r": "content.example.com.", "y": 5, "tok"', "malformed"),
        (b"[1, 2, 3]", "malformed"),
        (json.dumps({"v": 1, "r": "other.example.", "y": 5, "tok": "x", "m": []}).encode(),
         "unknown_record"),
    ],
)  # fmt: skip
def test_garbage_is_refused_with_its_reason(geo, body, reason) -> None:
    ingest, store = ingest_for(geo)
    with pytest.raises(Rejected) as info:
        ingest.beacon(body, ip("46.4.1.10"), None, 1.0, 1000.0)
    assert info.value.reason == reason
    assert ingest.beacons[reason] == 1 and store.keys()["global"] == 0


def test_bad_measurements_are_counted_and_only_good_ones_land(geo) -> None:
    ingest, store = ingest_for(geo)
    token = ingest.recipe(RECORD, ip("46.4.1.10"), 1000.0)["tok"]
    measurements = [
        {"t": A_, "k": "warm", "ok": 1, "ms": -3},
        {"t": "evil.example.", "k": "warm", "ok": 1, "ms": 1},
        {"t": B_, "k": "warm", "ok": 1, "ms": 1e9},
        {"t": A_, "k": "cold", "ok": 1, "ms": 40},
        {"t": A_, "k": "cold", "ok": 1, "ms": 41},
        {"t": C_, "k": "sideways", "ok": 1, "ms": 41},
    ]
    assert ingest.beacon(beacon(token, measurements), ip("46.4.1.10"), None, 1.0, 1000.0) == 2
    assert ingest.samples == {
        "bad_timing": 2, "unknown_target": 1, "clamped": 1, "accepted": 1, "duplicate": 1,
    }  # fmt: skip
    table = store.tables[RECORD]
    entry = table.levels["prefix"][prefix_key(ip("46.4.1.10"))]
    summaries = table.summaries(entry, 1.0)
    assert summaries[B_].availability == 0  # a minute-long fetch counts as failed
    assert "evil.example." not in summaries


def sent(ingest: Ingest, token: str, sender, now: float = 5.0) -> str:
    """One beacon: "ok", or the reason it was refused."""
    try:
        ingest.beacon(beacon(token), sender, None, now, 1000.0)
    except Rejected as exc:
        return exc.reason
    return "ok"


def test_a_flood_from_one_network_is_capped_and_leaves_others_alone(geo) -> None:
    ingest, store = ingest_for(geo, per_network=6, network_burst=10)
    flooder, quiet = ip("46.4.1.10"), ip("51.15.1.10")
    results = []
    for _ in range(100):
        token = ingest.recipe(RECORD, flooder, 1000.0)["tok"]
        results.append(sent(ingest, token, flooder))
    assert results.count("ok") == 10 and results.count("rate_network") == 90
    token = ingest.recipe(RECORD, quiet, 1000.0)["tok"]
    assert ingest.beacon(beacon(token), quiet, None, 5.0, 1000.0) == 1
    assert store.keys()["prefix"] == 2


def test_the_global_rate_caps_a_flood_spread_over_many_networks(geo) -> None:
    """--rum-rate-global: beacons from many /24s (each under its own cap) stop at the global
    burst, are counted as rate_global, and flow again as the bucket refills."""
    ingest, store = ingest_for(geo, global_rate=5, global_burst=10)
    senders = [ip(f"46.4.{third}.10") for third in range(30)]
    tokens = [ingest.recipe(RECORD, sender, 1000.0)["tok"] for sender in senders]
    results = [sent(ingest, token, sender) for sender, token in zip(senders, tokens, strict=True)]
    assert results.count("ok") == 10 and results.count("rate_global") == 20
    assert ingest.beacons["rate_global"] == 20 and store.keys()["prefix"] == 10
    late = ip("51.15.1.10")
    token = ingest.recipe(RECORD, late, 1000.0)["tok"]
    assert ingest.beacon(beacon(token), late, None, 6.0, 1000.0) == 1, "refilled after 1 s"


def test_origins_are_enforced_when_configured(geo) -> None:
    ingest, _ = ingest_for(geo)
    ingest.records[RECORD] = replace(ingest.records[RECORD], origins=("https://www.example.com",))
    token = ingest.recipe(RECORD, ip("46.4.1.10"), 1000.0)["tok"]
    with pytest.raises(Rejected) as info:
        ingest.beacon(beacon(token), ip("46.4.1.10"), "https://evil.example", 1.0, 1000.0)
    assert info.value.reason == "origin"
    assert ingest.beacon(beacon(token), ip("46.4.1.10"), "https://www.example.com", 1.0, 1000.0)


def test_bulk_samples_report_every_bad_item_and_keep_the_good(geo) -> None:
    ingest, store = ingest_for(geo)
    items = [
        {"record": "content.example.com", "target": A_, "network": "46.4.1.0/24", "ms": 20,
         "count": 50},
        {"record": "content.example.com", "target": A_, "network": "46.4.0.0/16", "ms": 20},
        {"record": "nope.example.com", "target": A_, "network": "46.4.1.0/24", "ms": 20},
        {"record": "content.example.com", "target": A_, "network": "bogus", "ms": 20},
        {"record": "content.example.com", "target": A_, "network": "46.4.1.0/24", "ms": -1},
        {"record": "content.example.com", "target": A_, "network": "46.4.1.0/24", "ms": 5,
         "country": "XX"},
        "text",
    ]  # fmt: skip
    accepted, problems = ingest.add_bulk(items, 1.0)
    assert accepted == 2
    assert [p["index"] for p in problems] == [2, 3, 4, 5, 6]
    table = store.tables[RECORD]
    country = table.summaries(table.levels["country"]["DE"], 1.0)
    prefix = table.summaries(table.levels["prefix"][prefix_key(ip("46.4.1.0"))], 1.0)
    assert country[A_].n == 51 and prefix[A_].n == 50  # the /16 counts for coarse levels only


def write_asn_db(path) -> AsnDB:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    for network, asn in (("46.4.0.0/17", 64500), ("46.4.128.0/17", 64501)):
        record = {"autonomous_system_number": asn, "autonomous_system_organization": f"AS{asn}"}
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return AsnDB.open(str(path))


def test_the_asn_level_separates_carriers_within_a_country(geo, tmp_path) -> None:
    asn = write_asn_db(tmp_path / "asn.mmdb")
    store = Store()
    options = replace(OPTIONS, min_networks=3)
    store.configure({RECORD: options})
    for third in (1, 2, 3):  # carrier 64500's users find b fast
        address = ip(f"46.4.{third}.7")
        net = net_info(address, geo.locate(address), asn)
        assert net.asn == "AS64500-DE"
        feed(store, net, {A_: 80, B_: 20, C_: 85}, 4, 100.0)
    for third in (200, 201, 202, 203):  # carrier 64501's find a fast
        address = ip(f"46.4.{third}.7")
        feed(store, net_info(address, geo.locate(address), asn), {A_: 20, B_: 80, C_: 85}, 4, 100)
    snap = Decider().build(store, {RECORD: (options, 3)}, 100.0, 0)
    nobody_yet = ip("46.4.50.0")  # a /24 of carrier 64500 that never sent a beacon
    decision, scope = snap.lookup(RECORD, nobody_yet, 24, geo.locate(nobody_yet), asn)
    assert decision.level == "asn" and decision.key == "AS64500-DE"
    assert set(decision.dropped) == {A_, C_} and scope == 17
    other = ip("46.4.250.0")
    decision, scope = snap.lookup(RECORD, other, 24, geo.locate(other), asn)
    # Carrier 64501 decides like the whole data set (the majority): its key is left out and
    # the answer carries the widest scope that decides the same.
    assert set(decision.dropped) == {B_, C_} and decision.level == "global" and scope == 0
    # Without the ASN database the level is skipped: carrier 64500 gets the majority's answer.
    decision, _ = snap.lookup(RECORD, nobody_yet, 24, geo.locate(nobody_yet), None)
    assert set(decision.dropped) == {B_, C_}
    asn.close()


def test_a_wall_clock_jump_expires_tokens_but_keeps_the_measurements(geo) -> None:
    from gslb.rum.service import RumService

    clock = {"mono": 100.0, "wall": 1_000_000.0}
    published = []
    service = RumService(published.append, geo=geo, secret=b"k" * 32,
                         clock=lambda: clock["mono"], wall=lambda: clock["wall"])  # fmt: skip
    options = RumOptions(min_samples=2, hold=0, min_networks=1,
                         probes=((A_, "https://a/r"), (B_, "https://b/r")))  # fmt: skip
    service.records = {RECORD: (options, frozenset({A_, B_}))}
    service.store.configure({RECORD: options})
    service.ingest.configure(service.records)
    home = ip(CLIENTS["DE"])
    for _ in range(3):
        token = service.ingest.recipe(RECORD, home, clock["wall"])["tok"]
        m = [{"t": A_, "k": "warm", "ok": 1, "ms": 90}, {"t": B_, "k": "warm", "ok": 1, "ms": 9}]
        service.ingest.beacon(beacon(token, m), home, None, clock["mono"], clock["wall"])
    before = service.rebuild().lookup(RECORD, home, None, geo.locate(home), None)[0]
    assert set(before.dropped) == {A_}
    pending = service.ingest.recipe(RECORD, home, clock["wall"])["tok"]
    clock["wall"] += 86_400  # the wall clock jumps a day; monotonic time moves 1 s
    clock["mono"] += 1
    with pytest.raises(Rejected) as info:
        service.ingest.beacon(beacon(pending), home, None, clock["mono"], clock["wall"])
    assert info.value.reason == "expired"
    after = service.rebuild().lookup(RECORD, home, None, geo.locate(home), None)[0]
    assert set(after.dropped) == {A_} and after.samples == before.samples


def test_only_one_label_session_names_under_the_watched_name_are_sightings() -> None:
    from gslb.config.names import to_wire
    from gslb.rum.resolvers import Batch, ResolverLinks, suffix, watcher

    seen = []
    watch = watcher("rum.example.com", lambda sid, client: seen.append((sid, client)))
    for name in ("0123456789abcdef.rum.example.com.", "x.0123456789abcdef.rum.example.com.",
                 "rum.example.com.", "0123456789abcdef.example.com.", "short.rum.example.com.",
                 "bad-label-here!.rum.example.com."):  # fmt: skip
        watch(to_wire(name), "192.0.2.53")
    assert seen == [("0123456789abcdef", "192.0.2.53")]
    assert suffix("rum.example.com") == to_wire("rum.example.com.")
    sent = []
    batch = Batch(sent.append, limit=3)
    for index in range(10):
        batch.add(f"{index:016x}", "192.0.2.53")
    batch.flush()
    batch.flush()
    assert len(sent) == 1 and len(sent[0]) == 3 and batch.dropped == 7
    links = ResolverLinks(max_items=2)
    for sid in ("a" * 16, "b" * 16, "c" * 16):
        links.seen(sid, "192.0.2.53", 0.0)
    assert links.take("a" * 16, 1.0) is None  # evicted: the table stays bounded
    assert links.take("c" * 16, 1.0) == prefix_key(ip("192.0.2.53"))
    assert links.take("c" * 16, 1.0) is None  # once
