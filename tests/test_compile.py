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
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME, DynamicRecord
from gslb.fleet.regions import RegionMap
from gslb.geo import GeoDB
from gslb.georanges import ASK, UNKNOWN, build_now
from gslb.health.view import CheckState, HealthView
from gslb.policy.chain import Engine
from gslb.policy.compile import Classifier, PlaceTable
from gslb.policy.rules import RuleIndex
from gslb.rum.config import LEVELS
from gslb.rum.network import GLOBAL, PREFIX, prefix_key_of
from gslb.rum.snapshot import Decision, RecordDecisions, Snapshot
from tests.geodb import CLIENTS, WORLD, write_test_db
from tests.test_rum import write_asn_db

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
    "46.8.1.0/24": {"continent": "AF", "lat": 10.0, "lon": 10.0},  # another record, one point
    "51.14.0.0/16": WORLD["51.15.0.0/16"],  # the same place as its FR neighbour
    "2a01:4f9::/32": DE,
    "2a01:4fa::/31": AT,
}


def record(rules: list[dict], chain: list[str], sticky: bool = False,
           pools_used: set[str] | None = None) -> DynamicRecord:  # fmt: skip
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
    if pools_used is not None:
        pools = {name: pool for name, pool in pools.items() if name in pools_used}
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


# -- fleet verdicts per region and RUM decisions -------------------------------------------
#
# The same guarantee with the two inputs that vary per client beyond its class: the client's
# fleet region (from its location) and its RUM decision (from its /24 or /48, its resolver,
# ASN, country, continent or the global key). The decision must be exactly ``explain``'s; the
# scope at least as wide as ``explain``'s for a located client, at least the deciding RUM
# prefix's, and correct: every address of the block gets the same decision, except where a
# finer RUM level has its own decision inside a coarser level's block (the rum design: the
# scope is that of the level that decided, as ``Engine.answer`` has it).

TARGETS = ("a.cdn.net.", "b.cdn.net.", "c.cdn.net.")
WITH_RUM = ["rules", "health", "rum", "performance", "proximity", "cost", "weighted"]
KEYED_RECORDS = {
    "full chain + rum": record(RULES, WITH_RUM),
    "rules + rum": record(RULES, ["rules", "health", "rum", "weighted"]),
    "sticky + rum": record(RULES, WITH_RUM, sticky=True),
    "no rules step + rum": record(RULES, ["health", "rum", "proximity", "weighted"]),
    "one pool + rum": record(
        [{"pool": "all"}], ["rules", "health", "rum", "weighted"], pools_used={"all"}
    ),  # fmt: skip
    "one pool": record([{"pool": "all"}], ["rules", "health", "weighted"], pools_used={"all"}),
    **RECORDS,
}
RUM_KEY = ("content.example.com.", CNAME)  # every test record has this name
REGION_MAPS = {
    "continents": RegionMap(),
    "geo map": RegionMap(
        {
            "EU-FR": "west",
            "EU-GB": "west",
            "EU": "europe",
            "NA-US-CA": "usw",
            "NA": "america",
            "AS": "apac",
            "OC": "apac",
        }
    ),  # fmt: skip
}
REGIONS = ["EU", "NA", "AS", "OC", "AF", "SA", "west", "europe", "usw", "america", "apac"]
PREFIXES = sorted(
    {prefix_key_of(4, edge + delta) for edge in EDGES4 for delta in (-256, 0, 300)}
    | {prefix_key_of(4, int(ipaddress.IPv4Address(a))) for a in CLIENTS.values()}
    | {prefix_key_of(6, edge) for edge in EDGES6}
)
COUNTRIES = ["DE", "AT", "FR", "GB", "US", "IN", "JP", "SG", "BR", "AU", "ZA"]
CONTINENTS = ["EU", "NA", "AS", "OC", "AF", "SA"]
ASNS = ["AS64500-DE", "AS64501-DE"]


@pytest.fixture(scope="module")
def keyed_engine(tmp_path_factory) -> Engine:
    directory = tmp_path_factory.mktemp("keyed")
    geo = GeoDB.open(write_test_db(directory / "world.mmdb", NETWORKS))
    eng = Engine(geo, random.Random(2))
    eng.asn = write_asn_db(directory / "asn.mmdb")
    eng.plan(list(KEYED_RECORDS.values()))
    eng.compiler.finish()
    yield eng
    eng.asn.close()
    geo.close()


def rum_decision(level: str, key: Any, dropped: frozenset[str]) -> Decision:
    why = {value: "slow for its users" for value in sorted(dropped)}
    return Decision(level, str(key), why, (), 100.0, 0.0, frozenset(why))


def snapshot(levels: dict[str, dict[Any, frozenset[str]]]) -> Snapshot:
    by_level = {level: {key: rum_decision(level, key, dropped) for key, dropped in keys.items()}
                for level, keys in levels.items()}  # fmt: skip
    return Snapshot({RUM_KEY: RecordDecisions(LEVELS, by_level)}, 0.0, 1)


def keyed_view(
    rec: DynamicRecord, down: set[str], by_region: dict[str, set[str]] | None,
    regions: RegionMap, rum: Snapshot | None, version: int,
) -> HealthView:  # fmt: skip
    """Global verdicts (``down``), per-region verdicts as ``gslb.fleet.decide`` builds them
    (a region's view overlays its states; ``varies`` names the checks that differ), RUM."""
    checks = {t.value: t.check for p in rec.pools.values() for t in p.targets}

    def states(gone: set[str]) -> dict[str, CheckState]:
        return {checks[v]: CheckState(up=v not in gone, reason="test") for v in checks}

    view = HealthView(version, MappingProxyType(states(down)))
    if by_region is not None:
        varies = frozenset(checks[v] for gone in by_region.values() for v in gone ^ down)
        regional = {
            name: HealthView(version, MappingProxyType(states(gone)), varies=varies)
            for name, gone in by_region.items()
        }
        view = HealthView(version, view.states, regional=MappingProxyType(regional),
                          varies=varies, region_of=regions)  # fmt: skip
    return view.with_rum(rum) if rum is not None else view


def explain_as(engine: Engine, rec: DynamicRecord, version: int, ip: int, source, view):
    """``explain`` for a client sending ECS with ``source`` bits, or none (source None)."""
    if source is None:
        address = ipaddress.ip_address(ip) if version == 6 else ipaddress.IPv4Address(ip)
        return engine.explain(rec, address, None, view)
    return explain(engine, rec, version, ip, source, view)


def rum_rank(engine: Engine, rec: DynamicRecord, view: HealthView, version: int, ip: int,
             source) -> int:  # fmt: skip
    """How fine the client's RUM decision is: its level's index, past the last when none."""
    if view.rum is None or "rum" not in rec.options.chain:
        return len(LEVELS)
    address = ipaddress.IPv4Address(ip) if version == 4 else ipaddress.IPv6Address(ip)
    decision, _ = view.rum.lookup(RUM_KEY, address, source, engine.geo.locate(address),
                                  engine.asn)  # fmt: skip
    return LEVELS.index(decision.level) if decision is not None else len(LEVELS)


dropped_sets = st.frozensets(st.sampled_from(TARGETS), max_size=2)
rum_levels = st.fixed_dictionaries(
    {
        "resolver": st.dictionaries(st.sampled_from(PREFIXES), dropped_sets, max_size=6),
        "prefix": st.dictionaries(st.sampled_from(PREFIXES), dropped_sets, max_size=12),
        "asn": st.dictionaries(st.sampled_from(ASNS), dropped_sets, max_size=2),
        "country": st.dictionaries(st.sampled_from(COUNTRIES), dropped_sets, max_size=8),
        "continent": st.dictionaries(st.sampled_from(CONTINENTS), dropped_sets, max_size=4),
        "global": st.dictionaries(st.just(GLOBAL), dropped_sets, max_size=1),
    }
)


PLACED4 = [int(ipaddress.IPv4Address(a)) for a in CLIENTS.values()]
placed = st.one_of(  # mostly clients the database places, so regions and levels vary
    addresses,
    st.tuples(st.just(4), st.sampled_from(PLACED4), st.integers(-70000, 70000)),
    st.tuples(st.just(4), st.sampled_from(PLACED4), st.integers(-600, 600)),
    st.tuples(st.just(6), st.sampled_from(EDGES6), st.integers(0, 2**96)),
)


def clip(client: tuple[int, int, int]) -> tuple[int, int]:
    version, base, offset = client
    return version, min(max(base + offset, 0), 2 ** (32 if version == 4 else 128) - 1)


@settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.one_of(
        st.sampled_from(sorted(KEYED_RECORDS)),
        st.sampled_from(sorted(n for n in KEYED_RECORDS if n.endswith("rum"))),
    ),
    client=placed,
    earlier=st.lists(placed, max_size=3),
    near=st.lists(st.integers(-4096, 4096), max_size=3),
    ecs=st.sampled_from(["full", "subnet", "none"]),
    down=st.sets(st.sampled_from(TARGETS)),
    regional=st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(REGIONS), st.sets(st.sampled_from(TARGETS)), min_size=1, max_size=6
        ),
    ),
    regions=st.sampled_from(sorted(REGION_MAPS)),
    rum=st.one_of(st.none(), rum_levels, rum_levels),
    own=st.one_of(st.none(), st.none(), dropped_sets),
    version_bump=st.integers(0, 3),
)
def test_regional_and_rum_decisions_like_explain(
    keyed_engine,
    name,
    client,
    earlier,
    near,
    ecs,
    down,
    regional,
    regions,
    rum,
    own,
    version_bump,
) -> None:
    engine = keyed_engine
    rec = KEYED_RECORDS[name]
    version, ip = clip(client)
    bits = 32 if version == 4 else 128
    source = {"full": bits, "subnet": 24 if version == 4 else 56, "none": None}[ecs]
    if rum is not None and own is not None:  # the client's own network (or resolver) measured
        rum["prefix" if source is not None else "resolver"][prefix_key_of(version, ip)] = own
    snap = snapshot(rum) if rum is not None else None
    view = keyed_view(rec, down, regional, REGION_MAPS[regions], snap, 40 + version_bump)
    # Earlier clients under the same view fill the per-class decisions first: a decision
    # kept under too coarse a key would then be handed to the client below.
    neighbours = [(version, base + delta, 0) for version, base in [clip(client)] for delta in near]
    for other_version, other_ip in map(clip, [*earlier, *neighbours]):
        if other_version == version:
            masked = ecs_of(version, other_ip, source)[1] if source is not None else other_ip
            decided = engine.decide(rec, version, masked, source, view)
            if decided is not None:
                trace = explain_as(engine, rec, version, other_ip, source, view)
                assert outcome(decided[1]) == outcome(trace)
    masked = ecs_of(version, ip, source)[1] if source is not None else ip
    decided = engine.decide(rec, version, masked, source, view)
    if decided is None:  # left to the database: only ::/64 and alias ranges do that
        assert version == 6 and masked >> 64 == 0
        return
    answer, prepared, _ = decided
    trace = explain_as(engine, rec, version, ip, source, view)
    assert outcome(prepared) == outcome(trace)
    rank = rum_rank(engine, rec, view, version, masked, source)
    event(f"rum level {LEVELS[rank] if rank < len(LEVELS) else None}")
    event(f"region {trace['region']['client'] if regional is not None else 'not regional'}")
    if source is None:
        return  # no ECS option: no scope to check
    scope = answer.scope
    if trace["client"]["location"] is not None:
        assert scope <= trace["answer"]["scope"], "at least as wide as the step-by-step scope"
    if rank == LEVELS.index("prefix"):
        assert scope >= min(PREFIX[version], source), "the client's own /24 or /48 decided"
    rng = random.Random(ip)
    block = masked >> (bits - scope) << (bits - scope) if scope else 0
    inside = [block | rng.getrandbits(bits - scope) if scope < bits else block for _ in range(6)]
    known = PLACED4 + EDGES4 if version == 4 else EDGES6  # other places in the block
    inside += [a for a in known if a >> (bits - scope) == block >> (bits - scope)]
    for other in inside:
        if rum_rank(engine, rec, view, version, other, bits) < rank:
            continue  # a finer RUM level decides there: by design, see above
        assert outcome(explain_as(engine, rec, version, other, bits, view)) == outcome(trace)


def region_view(rec: DynamicRecord, eu_down: set[str], version: int) -> HealthView:
    return keyed_view(rec, set(), {"EU": eu_down, "NA": set()}, RegionMap(), None, version)


def test_a_regional_outage_moves_only_that_regions_clients_on_the_compiled_path(
    keyed_engine,
) -> None:
    rec = KEYED_RECORDS["rules only"]
    view = region_view(rec, {"a.cdn.net.", "b.cdn.net."}, 50)
    engine = keyed_engine
    de = int(ipaddress.IPv4Address("46.4.7.10"))  # rule 2 (46.0.0.0/8): pool eu
    us = int(ipaddress.IPv4Address(CLIENTS["US-NY"]))
    eu_answer, eu_prepared, _ = engine.decide(rec, 4, de, 24, view)
    assert eu_prepared.pool == "all" and eu_answer.values == ("c.cdn.net.",)
    assert eu_answer.reason == "fallback"
    trace = explain(engine, rec, 4, de, 24, view)
    assert trace["region"]["client"] == "EU" and outcome(trace) == outcome(eu_prepared)
    assert 0 < eu_answer.scope <= trace["answer"]["scope"]
    _, us_prepared, _ = engine.decide(rec, 4, us, 24, view)
    assert us_prepared.pool == "all" and len(us_prepared.choices) == 3
    assert engine.decide(rec, 4, us, 24, view)[1] is us_prepared, "decided once per region"
    # Brazil shares the catch-all's class with New York, not its region's verdicts.
    br = int(ipaddress.IPv4Address(CLIENTS["BR"]))
    split = keyed_view(rec, set(), {"NA": set(), "SA": {"c.cdn.net."}}, RegionMap(), None, 52)
    _, us_prepared, _ = engine.decide(rec, 4, us, 24, split)
    _, br_prepared, _ = engine.decide(rec, 4, br, 24, split)
    assert {c.label for c in us_prepared.choices} == set(TARGETS)
    assert {c.label for c in br_prepared.choices} == {"a.cdn.net.", "b.cdn.net."}
    unchanged = region_view(rec, set(), 51)
    answer, prepared, _ = engine.decide(rec, 4, de, 24, unchanged)
    assert prepared.pool == "eu"
    assert answer.scope == explain(engine, rec, 4, de, 24, unchanged)["answer"]["scope"]


def test_a_networks_rum_decision_on_the_compiled_path(keyed_engine) -> None:
    rec = KEYED_RECORDS["one pool + rum"]
    de = int(ipaddress.IPv4Address(CLIENTS["DE"]))
    neighbour = de + 256  # the next /24, same country
    snap = snapshot({"prefix": {prefix_key_of(4, de): frozenset({"a.cdn.net.", "b.cdn.net."})},
                     "country": {"DE": frozenset({"c.cdn.net."})}})  # fmt: skip
    view = HealthView(60).with_rum(snap)
    answer, _, _ = keyed_engine.decide(rec, 4, de, 24, view)
    assert answer.values == ("c.cdn.net.",) and answer.scope == 24
    _, prepared, _ = keyed_engine.decide(rec, 4, neighbour, 24, view)
    assert {c.label for c in prepared.choices} == {"a.cdn.net.", "b.cdn.net."}
    assert keyed_engine.decide(rec, 4, neighbour, 20, view)[1] is prepared, "/20: no /24 known"
    scope = keyed_engine.decide(rec, 4, neighbour, 24, view)[0].scope
    assert scope < 24, "the country decided: its block, not the /24"
    assert scope <= explain(keyed_engine, rec, 4, neighbour, 24, view)["answer"]["scope"]


def test_decisions_per_region_and_outcome_stay_bounded(keyed_engine) -> None:
    """Classes x regions x RUM outcomes can be many on a City database: past one decision
    per class plus ``cache_size``, the oldest makes room for a new one (no wholesale clear),
    and every answer stays right."""
    engine = Engine(keyed_engine.geo, random.Random(4), cache_size=1)
    rec = KEYED_RECORDS["one pool + rum"]
    engine.plan([rec])
    engine.compiler.finish()
    clients = [int(ipaddress.IPv4Address(CLIENTS[c])) for c in ("DE", "US-NY", "JP", "BR", "AU")]
    drops = [frozenset({t}) for t in TARGETS] + [frozenset(), frozenset(TARGETS[:2])]
    snap = snapshot({"prefix": {prefix_key_of(4, ip): drops[n] for n, ip in enumerate(clients)}})
    by_region = {"EU": {"a.cdn.net."}, "NA": {"b.cdn.net."}, "AS": set(), "SA": {"c.cdn.net."}}
    view = keyed_view(rec, set(), by_region, RegionMap(), snap, 70)
    for _ in range(2):
        for ip in clients:
            _, prepared, _ = engine.decide(rec, 4, ip, 24, view)
            assert outcome(prepared) == outcome(explain(engine, rec, 4, ip, 24, view))
    plan = engine._plans[id(rec)]
    assert len(plan.keyed) == len(plan.decisions) + 1 < len(clients), "one per class, plus one"


def ranges_of(family) -> tuple[list, list]:
    """A family table as (starts, class per range), whether it has ranges of its own."""
    if isinstance(family, PlaceTable):
        return list(family.starts), [family.by_place[p] for p in family.places]
    return list(family.starts), list(family.classes)


def tables_of(compiler) -> dict:
    """Every finished table's content, comparable between two compilers."""
    return {
        key: {v: ranges_of(f) for v, f in table.families.items()}
        for key, table in compiler.tables.items()
    }


def fresh_engine(engine: Engine) -> Engine:
    fresh = Engine(engine.geo, random.Random(1))
    fresh.plan(list(RECORDS.values()))
    return fresh


def test_one_slice_at_a_time_builds_the_same_tables(engine) -> None:
    """The server builds between answers, one short slice per turn: the result is the one
    finish() builds, and every pass yields (a City database has millions of ranges)."""
    sliced = fresh_engine(engine)
    slices = 0
    while sliced.compiler.work(0):
        slices += 1
        assert slices < 100_000
    assert tables_of(sliced.compiler) == tables_of(engine.compiler)
    assert slices > len(RECORDS) * 2, "the flattening and each table yield along the way"


def test_a_reload_during_the_geoip_flattening_does_not_restart_it(engine) -> None:
    """Reloads come every few seconds when someone edits weights; the flattening (seconds on
    a City database) must carry on through them, not start over each time."""
    alone = fresh_engine(engine)
    alone_slices = 0
    while alone.compiler.geo_ranges is None:
        alone.compiler.work(0)
        alone_slices += 1
    reloaded = fresh_engine(engine)
    slices = 0
    while reloaded.compiler.geo_ranges is None and slices <= alone_slices:
        reloaded.compiler.work(0)
        reloaded.plan(list(RECORDS.values()))  # a reload between every two slices
        slices += 1
    assert reloaded.compiler.geo_ranges is not None
    reloaded.compiler.finish()
    assert tables_of(reloaded.compiler) == tables_of(engine.compiler)


def test_records_past_max_ranges_answer_step_by_step_and_say_so(engine, monkeypatch,
                                                                caplog) -> None:  # fmt: skip
    """The cap keeps memory bounded: the first table fits, the next one does not, so its
    record answers step by step, and the log names it once."""
    from gslb.policy import compile as compile_module

    first, second = RECORDS["full chain"], RECORDS["other rules"]
    fresh = Engine(engine.geo, random.Random(1))
    fresh.plan([first])
    fresh.compiler.finish()
    size = next(iter(fresh.compiler.tables.values())).ranges()
    monkeypatch.setattr(compile_module, "MAX_RANGES", size + 10)
    fresh.plan([first, second])
    with caplog.at_level("WARNING", logger="gslb.policy.compile"):
        fresh.compiler.finish()
    assert fresh.compiler.table(first, True) is not None
    assert fresh.compiler.table(second, True) is None
    ip = int(ipaddress.IPv4Address("46.5.7.0"))
    view = health(second, set(), 40)
    assert fresh.decide(second, 4, ip, 24, view) is None, "no table: step by step"
    address = ipaddress.IPv4Address(ip)
    assert fresh.answer(second, address, (address, 24), view).pool == "eu"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "content.example.com." in warnings[0]
    fresh.plan([first, second])  # a reload: still too large, not said again
    with caplog.at_level("WARNING", logger="gslb.policy.compile"):
        fresh.compiler.finish()
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1


def test_a_finished_build_is_settled(engine) -> None:
    """Once the last table is in, the build's objects (a Location per database record, a
    Klass per class) go to the permanent generation, so a reload's full collection and the
    answer path's do not walk hundreds of thousands of them on a City database."""
    import gc

    fresh = fresh_engine(engine)
    before = gc.get_freeze_count()
    while fresh.compiler.work(0):
        pass
    assert not fresh.compiler.pending
    frozen = gc.get_freeze_count() - before
    classes = sum(len(t.classes) for t in fresh.compiler.tables.values())
    locations = sum(len(g.locations) for g in fresh.compiler.geo_ranges.values())
    assert frozen >= classes + locations


def describe(klass) -> tuple | None:
    """A class by what decides it (class numbers differ between two classifiers)."""
    if klass is None:
        return None
    where = (klass.location.lat, klass.location.lon) if klass.location is not None else None
    return klass.index, klass.by, where


def last_of(job):
    """The table a Classifier.family job yields after its slices."""
    return [table for table in job if table is not None][-1]


@pytest.mark.parametrize("name", ["no rules step", "other rules", "full chain"])
def test_shared_ranges_answer_like_ranges_of_their_own(engine, name) -> None:
    """A proximity table sharing the GeoIP ranges (PlaceTable) gives every address the class
    and scope a table with merged ranges of its own gives, also where subnet rules cut the
    family (their neighbourhood is kept as exceptions): around every subnet edge, at random."""
    rec = RECORDS[name]
    compiler = engine.compiler
    seed = "rules" not in rec.options.chain
    rng = random.Random(11)
    for version, geo in compiler.geo_ranges.items():
        own = Classifier(RuleIndex(rec.rules), True, seed)
        shared = Classifier(RuleIndex(rec.rules), True, seed)
        table_own = last_of(own.family(geo))
        table_shared = last_of(shared.family(geo, compiler.geo_index[version]))
        cut = not seed and any(n.version == version for r in rec.rules for n in r.subnets)
        assert isinstance(table_shared, PlaceTable)
        assert (table_shared.exceptions is not None) == cut
        edges = [e >> geo.shift for e in (EDGES4 if version == 4 else EDGES6)]
        keys = [e + d for e in edges for d in (-1, 0, 1)] + [
            rng.randrange(1 << geo.bits) for _ in range(3000)
        ]
        for key in (k for k in keys if 0 <= k < 1 << geo.bits):
            klass_own, scope_own = table_own.find(key)
            klass_shared, scope_shared = table_shared.find(key)
            assert scope_shared == scope_own, (version, key)
            assert describe(shared.classes[klass_shared]) == describe(own.classes[klass_own])
            assert table_shared.rules.find(key) == table_own.rules.find(key)


def test_two_records_at_one_point_share_a_scope(engine) -> None:
    """46.8.0.0/24 and 46.8.1.0/24 are two database records at one point: without a rules
    step their class is the point's, so a client of either gets the /23 as its scope."""
    rec = RECORDS["no rules step"]
    table = engine.compiler.table(rec, True)
    assert isinstance(table.families[4], PlaceTable)
    view = health(rec, set(), 50)
    for address in ("46.8.0.7", "46.8.1.200"):
        answer, _, _ = engine.decide(rec, 4, int(ipaddress.IPv4Address(address)), 24, view)
        assert answer.scope == 23
