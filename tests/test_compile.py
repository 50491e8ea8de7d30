"""The compiled address tables (gslb.policy.compile) against the step-by-step chain.

For random client addresses, random records and random health, the table must give exactly
the decision ``explain`` gives (pool, reason, TTL, every choice with its values and weight),
and an ECS scope that is correct (every address of the scope block gets that same decision
from ``explain``) and never narrower than the one the step-by-step chain reports for a client
the database knows. The database is a real MaxMind file (mmdb-writer) with neighbouring,
nested and identical networks, so merging and splitting are exercised.
"""

from __future__ import annotations

import ipaddress
import random
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME, DynamicRecord
from gslb.geo import GeoDB
from gslb.georanges import ASK, UNKNOWN, build_now
from gslb.health.view import CheckState, HealthView
from gslb.policy.chain import Engine
from tests.geodb import WORLD, write_test_db

DE = {"country": "DE", "continent": "EU", "lat": 50.1109, "lon": 8.6821}
AT = {"country": "AT", "continent": "EU", "lat": 48.2082, "lon": 16.3738}
# WORLD plus neighbours with the same data (merged), a nested network of another country
# (split), a network with coordinates but no country, and IPv6 neighbours.
NETWORKS: dict[str, dict[str, Any]] = {
    **WORLD,
    "46.5.0.0/16": DE,
    "46.6.0.0/15": AT,
    "46.4.128.0/20": AT,
    "46.8.0.0/24": {"lat": 10.0, "lon": 10.0},
    "51.14.0.0/16": WORLD["51.15.0.0/16"],  # the same place as its FR neighbour
    "2a01:4f9::/32": DE,
    "2a01:4fa::/31": AT,
}


def record(rules: list[dict], chain: list[str], sticky: bool = False) -> DynamicRecord:
    pools = {
        "eu": {"values": [{"value": "a.cdn.net.", "weight": 70},
                          {"value": "b.cdn.net.", "weight": 30}], "fallback": "all"},
        "asia": {"values": [{"value": "c.cdn.net."}, {"value": "a.cdn.net."}]},
        "partner": {"values": [{"value": "c.cdn.net."}], "fallback": "eu"},
        "west": {"values": [{"value": "b.cdn.net.", "weight": 10},
                            {"value": "c.cdn.net.", "weight": 90}]},
        "all": {"values": [{"value": "a.cdn.net.", "weight": 40},
                           {"value": "b.cdn.net.", "weight": 40},
                           {"value": "c.cdn.net.", "weight": 20}]},
    }  # fmt: skip
    data = {
        "type": "CNAME",
        "value": "origin.example.net.",
        "dynamic": {"pools": pools, "rules": rules},
        "gslb": {
            "chain": chain,
            "sticky": sticky,
            "check": {"type": "tcp", "port": 443},
            "targets": {
                "a.cdn.net.": {
                    "cost": 1.0,
                    "pops": [
                        {"name": "fra", "lat": 50.1, "lon": 8.7},
                        {"name": "sfo", "lat": 37.8, "lon": -122.4},
                    ],
                },
                "b.cdn.net.": {"cost": 1.1, "pops": [{"name": "lhr", "lat": 51.5, "lon": -0.1}]},
                "c.cdn.net.": {
                    "cost": 2.0,
                    "pops": [
                        {"name": "nrt", "lat": 35.7, "lon": 139.7},
                        {"name": "jnb", "lat": -26.2, "lon": 28.0},
                    ],
                },
            },  # fmt: skip
        },
    }
    errors: list[str] = []
    parsed, _ = parse_dynamic("content.example.com.", b"x", CNAME, 60, data, "t", errors)
    assert errors == [] and parsed is not None
    return parsed


FULL = ["rules", "health", "performance", "proximity", "cost", "weighted"]
RULES = [
    {"subnets": ["46.4.1.0/24", "2a01:4f8:1::/48"], "pool": "partner"},
    {"subnets": ["46.0.0.0/8", "13.52.0.0/17"], "geos": ["EU"], "pool": "eu"},
    {"geos": ["AS", "OC"], "pool": "asia"},
    {"geos": ["NA-US-CA", "AF"], "pool": "west"},
    {"pool": "all"},
]
RECORDS = {
    "full chain": record(RULES, FULL),
    "rules only": record(RULES, ["rules", "health", "weighted"]),
    "sticky": record(RULES, FULL, sticky=True),
    "no rules step": record(RULES, ["health", "proximity", "weighted"]),
    "other rules": record(
        [
            {"subnets": ["1.128.0.0/9"], "pool": "partner"},
            {"geos": ["EU", "AF"], "pool": "eu"},
            {"geos": ["AS"], "pool": "asia"},
            {"geos": ["NA"], "pool": "west"},
            {"pool": "all"},
        ],
        FULL,
    ),
}
# Addresses near every boundary: network and subnet edges, plus anywhere at all.
EDGES4 = [int(ipaddress.ip_network(n).network_address) for n in NETWORKS if ":" not in n]
EDGES4 += [int(ipaddress.ip_network(n).broadcast_address) + 1 for n in NETWORKS if ":" not in n]
EDGES4 += [int(ipaddress.IPv4Address(a)) for a in ("46.4.1.0", "46.4.2.0", "13.52.128.0")]
EDGES6 = [int(ipaddress.ip_network(n).network_address) for n in NETWORKS if ":" in n]
EDGES6 += [int(ipaddress.IPv6Address("2a01:4f8:1::")), int(ipaddress.IPv6Address("2a01:4f8:2::"))]


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    path = write_test_db(tmp_path_factory.mktemp("compile") / "world.mmdb", NETWORKS)
    geo = GeoDB.open(path)
    eng = Engine(geo, random.Random(1))
    eng.plan(list(RECORDS.values()))
    eng.compiler.finish()
    yield eng
    geo.close()


def health(record: DynamicRecord, down: set[str], version: int) -> HealthView:
    checks = {t.value: t.check for p in record.pools.values() for t in p.targets}
    states = {checks[v]: CheckState(up=False, reason="test") for v in down if checks.get(v)}
    return HealthView(version, MappingProxyType(states))


def outcome(prepared_or_trace: Any) -> tuple:
    """What a decision is, comparable between a Prepared and an explain trace."""
    if isinstance(prepared_or_trace, dict):
        t = prepared_or_trace
        choices = tuple((tuple(c["values"]), c["target"], c["weight"]) for c in t["choices"])
        answer = t["answer"]
        return choices, answer["pool"], answer["reason"], answer["ttl"]
    p = prepared_or_trace
    choices = tuple((c.values, c.label, c.weight) for c in p.choices)
    return choices, p.pool, p.reason, p.ttl


def ecs_of(version: int, ip: int, source: int):
    bits = 32 if version == 4 else 128
    masked = ip >> (bits - source) << (bits - source) if source else 0
    address = ipaddress.IPv4Address(masked) if version == 4 else ipaddress.IPv6Address(masked)
    return address, masked


def explain(engine: Engine, rec: DynamicRecord, version: int, ip: int, source: int, view):
    address, _ = ecs_of(version, ip, source)
    return engine.explain(rec, ipaddress.ip_address("192.0.2.1"), (address, source), view)


addresses = st.one_of(
    st.tuples(st.just(4), st.sampled_from(EDGES4), st.integers(-300, 300)),
    st.tuples(st.just(4), st.integers(0, 2**32 - 1), st.just(0)),
    st.tuples(st.just(6), st.sampled_from(EDGES6), st.integers(-(2**80), 2**80)),
    st.tuples(st.just(6), st.integers(2**125, 2**126), st.just(0)),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.sampled_from(sorted(RECORDS)),
    client=addresses,
    full=st.booleans(),
    down=st.sets(st.sampled_from(["a.cdn.net.", "b.cdn.net.", "c.cdn.net."])),
    version_bump=st.integers(0, 3),
)
def test_table_decides_like_explain(engine, name, client, full, down, version_bump) -> None:
    rec = RECORDS[name]
    version, base, offset = client
    bits = 32 if version == 4 else 128
    ip = min(max(base + offset, 0), 2**bits - 1)
    source = bits if full else (24 if version == 4 else 56)
    view = health(rec, down, 10 + version_bump)
    _, masked = ecs_of(version, ip, source)
    decided = engine.decide(rec, version, masked, source, view)
    if decided is None:  # left to the database: only ::/64 and alias ranges do that
        assert version == 6 and masked >> 64 == 0
        return
    answer, prepared, _ = decided
    trace = explain(engine, rec, version, ip, source, view)
    assert outcome(prepared) == outcome(trace)
    scope = answer.scope
    if trace["client"]["location"] is not None:
        assert scope <= trace["answer"]["scope"], "at least as wide as the step-by-step scope"
    # Correct: addresses anywhere in the scope block get the same decision.
    rng = random.Random(ip)
    block = masked >> (bits - scope) << (bits - scope) if scope else 0
    for _ in range(3):
        other = block | rng.getrandbits(bits - scope) if scope < bits else block
        assert outcome(explain(engine, rec, version, other, bits, view)) == outcome(trace)


def test_neighbours_with_one_answer_merge_into_the_widest_scope(engine) -> None:
    """51.14.0.0/16 and 51.15.0.0/16 are the same place (the database stores two networks):
    one rule, one location, one decision, so a client of either gets the /15 as its scope,
    where the step-by-step chain says /16."""
    rec = RECORDS["other rules"]
    view = health(rec, set(), 1)
    ip = int(ipaddress.IPv4Address("51.15.7.0"))
    answer, _, _ = engine.decide(rec, 4, ip, 24, view)
    assert answer.pool == "eu"
    assert answer.scope == 15
    assert explain(engine, rec, 4, ip, 24, view)["answer"]["scope"] == 16


def test_health_change_keeps_the_table_and_changes_the_decision(engine) -> None:
    rec = RECORDS["rules only"]
    ip = int(ipaddress.IPv4Address("46.5.7.0"))
    tables_before = dict(engine.compiler.tables)
    up = engine.decide(rec, 4, ip, 24, health(rec, set(), 20))[1]
    down = engine.decide(rec, 4, ip, 24, health(rec, {"a.cdn.net.", "b.cdn.net."}, 21))[1]
    assert {c.label for c in up.choices} == {"a.cdn.net.", "b.cdn.net."}
    assert down.pool == "all" and {c.label for c in down.choices} == {"c.cdn.net."}
    assert engine.compiler.tables == tables_before, "a health flip rebuilds nothing"
    assert not engine.compiler.pending


def test_new_config_builds_only_new_rule_sets(engine) -> None:
    same_rules = record(RULES, ["rules", "health", "weighted"])  # a reload: a new object
    other = record([{"subnets": ["2.0.0.0/8"], "pool": "partner"}, {"geos": ["AS"], "pool": "asia"},
                    {"geos": ["NA"], "pool": "west"}, {"pool": "all"}], FULL)  # fmt: skip
    engine.plan([same_rules, other])
    assert engine.compiler.pending
    view = health(other, set(), 30)
    ip = int(ipaddress.IPv4Address("126.0.1.0"))
    assert engine.decide(same_rules, 4, ip, 24, view) is not None, "same rules: table kept"
    assert engine.decide(other, 4, ip, 24, view) is None, "not built yet: step by step"
    engine.compiler.finish()
    answer = engine.decide(other, 4, ip, 24, view)[0]
    assert answer.pool == "asia"
    engine.plan(list(RECORDS.values()))
    engine.compiler.finish()


def test_flattened_database_matches_lookups(engine) -> None:
    tables = build_now(engine.geo)
    geo = engine.geo
    rng = random.Random(5)
    for _ in range(2000):
        version = rng.choice((4, 6))
        if version == 4:
            address = ipaddress.IPv4Address(rng.choice(EDGES4) + rng.randrange(-70000, 70000))
        else:
            address = ipaddress.IPv6Address(rng.choice(EDGES6) + rng.getrandbits(90))
        place = tables[version].place_of(int(address))
        if place == ASK:
            continue
        expected = geo._lookup(address)
        if place == UNKNOWN:
            assert expected is None, address
        else:
            found = tables[version].locations[place]
            assert expected is not None, address
            assert (found.geos(), found.lat, found.lon) == (expected.geos(), expected.lat,
                                                            expected.lon)  # fmt: skip
