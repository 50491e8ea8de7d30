"""The GSLB decision, engine-level: records are parsed from octoDNS-style data, the client is
placed by a tiny stand-in geo database, health comes from hand-made HealthView snapshots.
"""

from __future__ import annotations

import copy
import ipaddress
import random
from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pytest

from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME, A, DynamicRecord
from gslb.health.view import CheckState, HealthView
from gslb.policy.chain import Answer, Engine, render_explain

ip = ipaddress.ip_address


@dataclass(frozen=True, slots=True)
class Loc:
    """Shaped like gslb.geo.Location."""

    country: str | None
    continent: str | None
    subdivision: str | None
    lat: float | None
    lon: float | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    def geos(self) -> tuple[str, ...]:
        if not self.continent:
            return ()
        if not self.country:
            return (self.continent,)
        country = f"{self.continent}-{self.country}"
        if self.subdivision:
            return (f"{country}-{self.subdivision}", country, self.continent)
        return (country, self.continent)


PLACES = {
    "46.4.0.0/16": ("DE", "EU", None, 50.11, 8.68),  # Frankfurt
    "2.96.0.0/16": ("GB", "EU", None, 51.51, -0.13),  # London
    "49.32.0.0/16": ("IN", "AS", None, 19.08, 72.88),  # Mumbai
    "126.0.0.0/16": ("JP", "AS", None, 35.68, 139.65),  # Tokyo
    "13.52.0.0/16": ("US", "NA", "CA", 37.77, -122.42),  # San Francisco
    "41.0.0.0/20": ("ZA", "AF", None, -26.2, 28.05),  # Johannesburg
    "2a01:4f8::/32": ("DE", "EU", None, 50.11, 8.68),
}
DE, GB, IN, JP, US, ZA = (
    "46.4.1.10",
    "2.96.1.10",
    "49.32.1.10",
    "126.0.1.10",
    "13.52.1.10",
    "41.0.1.10",
)
UNKNOWN = "9.9.9.9"


class FakeGeo:
    """One interned Location per network, like GeoDB; counts lookups."""

    def __init__(self) -> None:
        self.places = [
            (ipaddress.ip_network(net), Loc(*spec, network=ipaddress.ip_network(net)))
            for net, spec in PLACES.items()
        ]
        self.lookups = 0

    def locate(self, address: Any) -> Loc | None:
        self.lookups += 1
        for net, loc in self.places:
            if address.version == net.version and address in net:
                return loc
        return None


def make(data: dict[str, Any], rtype: int = CNAME) -> DynamicRecord:
    errors: list[str] = []
    record, _ = parse_dynamic("content.example.com.", b"x", rtype, 60, data, "t", errors)
    assert errors == [] and record is not None
    return record


def cname(
    pools: dict[str, Any], rules: list[dict[str, Any]], gslb: dict[str, Any] | None = None
) -> DynamicRecord:
    data: dict[str, Any] = {
        "type": "CNAME",
        "value": "origin.example.net.",
        "dynamic": {"pools": pools, "rules": rules},
        "gslb": {"check": {"type": "tcp", "port": 443}, **(gslb or {})},
    }
    return make(data)


def pool(*values: tuple[str, int] | str, fallback: str | None = None) -> dict[str, Any]:
    items = [
        {"value": v} if isinstance(v, str) else {"value": v[0], "weight": v[1]} for v in values
    ]
    return {"values": items, **({"fallback": fallback} if fallback else {})}


def view(record: DynamicRecord, version: int = 1, **states: CheckState) -> HealthView:
    """States by value (``a`` for ``a.cdn.net.``, or ``origin``) mapped to check keys."""
    keys: dict[str, str] = {}
    for p in record.pools.values():
        for t in p.targets:
            if t.check:
                keys[t.value.split(".")[0]] = t.check
            for pop in t.pops:
                if pop.check:
                    keys[f"{t.value.split('.')[0]}_{pop.name}"] = pop.check
    for t in record.origin_targets:
        if t.check:
            keys["origin"] = t.check
    return HealthView(version, MappingProxyType({keys[k]: s for k, s in states.items()}))


DOWN = CheckState(up=False, reason="timeout")
UP = CheckState(up=True)
DRAINED = CheckState(up=True, override="drained")
HEALTHY = HealthView()


def ask(
    engine: Engine, record: DynamicRecord, client: str, health: HealthView = HEALTHY, ecs=None
) -> Answer:
    return engine.answer(record, ip(client), ecs, health)


@pytest.fixture
def engine() -> Engine:
    return Engine(FakeGeo(), random.Random(7))


GEO_RECORD = {
    "pools": {
        "eu": pool(("a.cdn.net.", 70), ("b.cdn.net.", 30), fallback="global"),
        "asia": pool("c.cdn.net.", fallback="global"),
        "global": pool("a.cdn.net.", "b.cdn.net."),
    },
    "rules": [
        {"geos": ["EU", "AF-ZA"], "pool": "eu"},
        {"geos": ["AS"], "pool": "asia"},
        {"pool": "global"},
    ],
}


# -- weighted ------------------------------------------------------------------------------


def test_weighted_split_within_two_points_over_20000_decisions(engine: Engine) -> None:
    record = cname({"p": pool(("a.cdn.net.", 70), ("b.cdn.net.", 30))}, [{"pool": "p"}])
    counts = Counter(ask(engine, record, UNKNOWN).target for _ in range(20000))
    assert abs(counts["a.cdn.net."] / 20000 - 0.70) < 0.02
    assert abs(counts["b.cdn.net."] / 20000 - 0.30) < 0.02


def test_several_answers_are_distinct_and_follow_weights(engine: Engine) -> None:
    data = {
        "type": "A",
        "values": ["192.0.2.1"],
        "dynamic": {
            "pools": {"p": pool(("198.51.100.1", 80), ("198.51.100.2", 15), ("198.51.100.3", 5))},
            "rules": [{"pool": "p"}],
        },
        "gslb": {"answers": 2},
    }
    record = make(data, A)
    firsts: Counter[str] = Counter()
    for _ in range(5000):
        answer = ask(engine, record, UNKNOWN)
        assert len(answer.values) == 2 and len(set(answer.values)) == 2
        firsts[answer.values[0]] += 1
    assert firsts["198.51.100.1"] / 5000 == pytest.approx(0.80, abs=0.03)


def test_sticky_client_keeps_its_answer_and_subnets_spread(engine: Engine) -> None:
    record = cname(
        {"p": pool(("a.cdn.net.", 70), ("b.cdn.net.", 30))}, [{"pool": "p"}], {"sticky": True}
    )
    first = ask(engine, record, "203.0.113.7").values
    assert all(ask(engine, record, "203.0.113.7").values == first for _ in range(50))
    assert ask(engine, record, "203.0.113.200").values == first  # same /24, same CDN
    subnets = [f"{a}.{b}.7.1" for a in (11, 12, 14, 16, 23) for b in range(200)]
    counts = Counter(ask(engine, record, c).target for c in subnets)
    assert counts["a.cdn.net."] / len(subnets) == pytest.approx(0.70, abs=0.04)


def test_sticky_clients_of_a_healthy_cdn_stay_when_another_fails(engine: Engine) -> None:
    record = cname(
        {"p": pool("a.cdn.net.", "b.cdn.net.", "c.cdn.net.")}, [{"pool": "p"}], {"sticky": True}
    )
    clients = [f"{a}.{b}.0.1" for a in (11, 12) for b in range(150)]
    before = {c: ask(engine, record, c).target for c in clients}
    after = {c: ask(engine, record, c, view(record, 2, c=DOWN)).target for c in clients}
    moved = [c for c in clients if before[c] != after[c]]
    assert moved and all(before[c] == "c.cdn.net." for c in moved)
    assert all(after[c] != "c.cdn.net." for c in clients)


# -- rules ---------------------------------------------------------------------------------


def test_geo_rules_route_europe_and_asia_to_their_pools(engine: Engine) -> None:
    record = cname(**GEO_RECORD)
    assert ask(engine, record, DE).pool == "eu"
    assert ask(engine, record, GB).reason == "rule"
    assert ask(engine, record, ZA).pool == "eu"  # AF-ZA
    assert ask(engine, record, IN).values == ("c.cdn.net.",)
    assert ask(engine, record, JP).pool == "asia"
    assert (ask(engine, record, US).pool, ask(engine, record, US).reason) == ("global", "pool")
    assert ask(engine, record, UNKNOWN).pool == "global"


def test_country_and_subdivision_rules_match_the_most_specific_first(engine: Engine) -> None:
    record = cname(
        {
            "ca": pool("a.cdn.net."),
            "us": pool("b.cdn.net."),
            "rest": pool("c.cdn.net."),
        },
        [
            {"geos": ["NA-US-CA"], "pool": "ca"},
            {"geos": ["NA-US"], "pool": "us"},
            {"pool": "rest"},
        ],
    )
    assert ask(engine, record, US).pool == "ca"
    record = cname(
        {"us": pool("b.cdn.net."), "rest": pool("c.cdn.net.")},
        [{"geos": ["NA-US"], "pool": "us"}, {"pool": "rest"}],
    )
    assert ask(engine, record, US).pool == "us"


def test_subnet_rules_win_and_ecs_address_is_used(engine: Engine) -> None:
    record = cname(
        {"isp": pool("c.cdn.net."), **GEO_RECORD["pools"]},
        [{"subnets": ["198.51.100.0/24"], "pool": "isp"}, *GEO_RECORD["rules"]],
    )
    assert ask(engine, record, "198.51.100.9").pool == "isp"
    # Resolver in Germany, client (ECS) in the ISP's subnet.
    answer = ask(engine, record, DE, ecs=(ip("198.51.100.0"), 24))
    assert (answer.pool, answer.scope) == ("isp", 24)
    # A /0 source prefix means "use the resolver".
    assert ask(engine, record, DE, ecs=(ip("0.0.0.0"), 0)).pool == "eu"


def test_an_ipv4_mapped_resolver_is_treated_as_ipv4(engine: Engine) -> None:
    record = cname(
        {"isp": pool("c.cdn.net."), **GEO_RECORD["pools"]},
        [{"subnets": ["198.51.100.0/24"], "pool": "isp"}, *GEO_RECORD["rules"]],
    )
    assert ask(engine, record, "::ffff:198.51.100.9").pool == "isp"
    assert ask(engine, record, f"::ffff:{DE}").pool == "eu"


def test_ecs_can_be_ignored_per_record(engine: Engine) -> None:
    record = cname(**GEO_RECORD, gslb={"ecs": False})
    answer = ask(engine, record, DE, ecs=(ip("126.0.1.0"), 24))
    assert answer.pool == "eu"  # the resolver's location, not the ECS one (Japan)


# -- health, fallback, origin --------------------------------------------------------------


def test_status_down_and_an_exhausted_fallback_chain_reach_the_origin(engine: Engine) -> None:
    pools = {
        "eu": {
            "values": [{"value": "a.cdn.net.", "status": "down"}, {"value": "b.cdn.net."}],
            "fallback": "global",
        },
        "global": pool("c.cdn.net."),
    }
    record = cname(pools, [{"geos": ["EU"], "pool": "eu"}, {"pool": "global"}])
    assert {ask(engine, record, DE).target for _ in range(50)} == {"b.cdn.net."}
    answer = ask(engine, record, DE, view(record, b=DOWN))
    assert (answer.pool, answer.reason, answer.values) == ("global", "fallback", ("c.cdn.net.",))
    answer = ask(engine, record, DE, view(record, 2, b=DOWN, c=DOWN))
    assert answer == Answer(("origin.example.net.",), 60, 16, "origin", "origin", None)


def test_status_up_forces_a_value_whatever_the_prober_says(engine: Engine) -> None:
    pools = {"p": {"values": [{"value": "a.cdn.net.", "status": "up"}]}}
    record = cname(pools, [{"pool": "p"}])
    answer = ask(engine, record, DE, view(record, a=DOWN))
    assert (answer.values, answer.reason) == (("a.cdn.net.",), "forced")


def test_fail_open_answers_a_down_origin_and_fail_closed_gives_nothing(engine: Engine) -> None:
    gslb = {"origin_check": {"type": "tcp", "port": 80}, "degraded_ttl": 5}
    record = cname({"p": pool("a.cdn.net.")}, [{"pool": "p"}], gslb)
    answer = ask(engine, record, DE, view(record, a=DOWN, origin=DOWN))
    assert (answer.values, answer.reason, answer.ttl) == (("origin.example.net.",), "fail-open", 5)
    closed = cname({"p": pool("a.cdn.net.")}, [{"pool": "p"}], {**gslb, "fail_open": False})
    answer = ask(engine, closed, DE, view(closed, a=DOWN, origin=DOWN))
    assert (answer.values, answer.reason, answer.target) == ((), "exhausted", "origin")
    answer = ask(engine, closed, DE, view(closed, 2, a=DOWN, origin=UP))
    assert (answer.values, answer.reason) == (("origin.example.net.",), "origin")


def test_drained_is_used_only_when_nothing_else_in_the_pool_is_up(engine: Engine) -> None:
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.")}, [{"pool": "p"}])
    health = view(record, a=DRAINED)
    assert {ask(engine, record, DE, health).target for _ in range(50)} == {"b.cdn.net."}
    answer = ask(engine, record, DE, view(record, 2, a=DRAINED, b=DOWN))
    assert (answer.target, answer.reason) == ("a.cdn.net.", "pool")


def test_degraded_ttl_applies_to_fallback_only(engine: Engine) -> None:
    record = cname(**GEO_RECORD, gslb={"degraded_ttl": 10})
    assert ask(engine, record, DE).ttl == 60
    answer = ask(engine, record, JP, view(record, c=DOWN))
    assert (answer.reason, answer.ttl, answer.pool) == ("fallback", 10, "global")


def test_decision_cache_invalidates_on_a_new_health_version(engine: Engine) -> None:
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.")}, [{"pool": "p"}])
    first = view(record, 1, b=DOWN)
    assert {ask(engine, record, DE, first).target for _ in range(20)} == {"a.cdn.net."}
    assert engine.hits >= 19
    second = view(record, 2, a=DOWN)
    assert {ask(engine, record, DE, second).target for _ in range(20)} == {"b.cdn.net."}


# -- performance, proximity, cost ----------------------------------------------------------


def test_performance_drops_slow_and_failing_values_but_never_all(engine: Engine) -> None:
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.", "c.cdn.net.")}, [{"pool": "p"}])
    health = view(
        record,
        a=CheckState(up=True, latency=0.020),
        b=CheckState(up=True, latency=0.100),  # > 0.020 * 1.5
        c=CheckState(up=True, latency=0.025, success_ratio=0.5),  # < floor 0.9
    )
    assert {ask(engine, record, DE, health).target for _ in range(50)} == {"a.cdn.net."}
    bad = view(record, 2, a=CheckState(up=True, success_ratio=0.1))
    only_a = cname({"p": pool("a.cdn.net.")}, [{"pool": "p"}])
    assert ask(engine, only_a, DE, bad).values == ("a.cdn.net.",)


POPS_RECORD = {
    "type": "A",
    "values": ["192.0.2.1"],
    "dynamic": {
        "pools": {"p": pool("198.51.100.1")},
        "rules": [{"pool": "p"}],
    },
    "gslb": {
        "check": {"type": "tcp", "port": 443},
        "targets": {
            "198.51.100.1": {
                "pops": [
                    {"name": "fra", "lat": 50.11, "lon": 8.68, "addresses": ["192.0.2.10"]},
                    {"name": "bom", "lat": 19.08, "lon": 72.88, "addresses": ["192.0.2.20"]},
                    {"name": "sin", "lat": 1.35, "lon": 103.82, "addresses": ["192.0.2.30"]},
                ]
            }
        },
    },
}


def test_proximity_answers_with_the_nearest_pop(engine: Engine) -> None:
    record = make(POPS_RECORD, A)
    assert ask(engine, record, IN).values == ("192.0.2.20",)  # Mumbai
    assert ask(engine, record, DE).values == ("192.0.2.10",)  # Frankfurt
    assert ask(engine, record, JP).values == ("192.0.2.30",)  # Singapore beats Mumbai
    # A PoP whose own check is down is skipped: India goes to Singapore.
    health = view(record, **{"198_bom": DOWN})
    assert ask(engine, record, IN, health).values == ("192.0.2.30",)


def test_a_nearest_pop_without_addresses_answers_the_value_itself(engine: Engine) -> None:
    data = copy.deepcopy(POPS_RECORD)
    del data["gslb"]["targets"]["198.51.100.1"]["pops"][1]["addresses"]  # bom
    record = make(data, A)
    assert ask(engine, record, IN).values == ("198.51.100.1",)
    assert ask(engine, record, DE).values == ("192.0.2.10",)


def test_proximity_keeps_values_within_nearest_plus_km(engine: Engine) -> None:
    gslb = {
        "proximity": {"km": 1500},
        "targets": {
            "a.cdn.net.": {"lat": 50.11, "lon": 8.68},  # Frankfurt
            "b.cdn.net.": {"lat": 48.86, "lon": 2.35},  # Paris, ~480 km from Frankfurt
            "c.cdn.net.": {"lat": 1.35, "lon": 103.82},  # Singapore
        },
    }
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.", "c.cdn.net.")}, [{"pool": "p"}], gslb)
    assert {ask(engine, record, DE).target for _ in range(100)} == {"a.cdn.net.", "b.cdn.net."}
    assert {ask(engine, record, IN).target for _ in range(50)} == {"c.cdn.net."}
    # Unknown location: the step does nothing.
    assert len({ask(engine, record, UNKNOWN).target for _ in range(200)}) == 3


def test_cost_keeps_values_within_tolerance_of_the_cheapest(engine: Engine) -> None:
    gslb = {
        "cost": {"tolerance": 0.2},
        "targets": {
            "a.cdn.net.": {"cost": 1.0},
            "b.cdn.net.": {"cost": 1.2},
            "c.cdn.net.": {"cost": 1.5},
        },
    }
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.", "c.cdn.net.")}, [{"pool": "p"}], gslb)
    seen = {ask(engine, record, DE).target for _ in range(200)}
    assert seen == {"a.cdn.net.", "b.cdn.net."}


# -- ECS scope -----------------------------------------------------------------------------


def test_scope_is_zero_for_a_pure_weighted_record(engine: Engine) -> None:
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.")}, [{"pool": "p"}])
    assert ask(engine, record, DE, ecs=(ip("46.4.1.0"), 24)).scope == 0
    assert engine.geo.lookups == 0  # nothing needed the location


def test_scope_is_the_geo_network_prefix(engine: Engine) -> None:
    record = cname(**GEO_RECORD)
    assert ask(engine, record, DE, ecs=(ip("41.0.1.0"), 24)).scope == 20  # ZA network is a /20
    assert ask(engine, record, DE, ecs=(ip("46.4.1.0"), 24)).scope == 16
    # Unknown location, but geo was consulted: the source prefix.
    assert ask(engine, record, DE, ecs=(ip("9.9.9.0"), 24)).scope == 24


def test_scope_is_the_subnet_rule_prefix_narrowed_by_earlier_subnets(engine: Engine) -> None:
    record = cname(
        {"one": pool("a.cdn.net."), "wide": pool("b.cdn.net."), "rest": pool("c.cdn.net.")},
        [
            {"subnets": ["10.1.1.0/24"], "pool": "one"},
            {"subnets": ["10.1.0.0/16"], "pool": "wide"},
            {"pool": "rest"},
        ],
    )
    assert ask(engine, record, "10.1.1.5").scope == 24
    # 10.1.2.5 matches the /16, but the answer must not cover 10.1.1.0/24: /23 is the widest.
    answer = ask(engine, record, "10.1.2.5")
    assert (answer.pool, answer.scope) == ("wide", 23)
    # Outside both: the catch-all holds for a prefix that excludes them (10.0.0.0/8 differs
    # from 11.x in the last bit of the first octet).
    assert ask(engine, record, "11.1.1.1").scope == 8


def test_scope_covers_sticky_hash_and_proximity(engine: Engine) -> None:
    sticky = cname({"p": pool("a.cdn.net.", "b.cdn.net.")}, [{"pool": "p"}], {"sticky": True})
    assert ask(engine, sticky, DE, ecs=(ip("46.4.1.0"), 24)).scope == 24
    near = make(POPS_RECORD, A)
    assert ask(engine, near, DE, ecs=(ip("46.4.1.0"), 24)).scope == 16
    v6 = ask(engine, sticky, DE, ecs=(ip("2a01:4f8:1::"), 48))
    assert v6.scope == 56


# -- chain shape, explain ------------------------------------------------------------------


def test_chain_without_rules_uses_the_catch_all_and_without_weighted_the_first(
    engine: Engine,
) -> None:
    record = cname(**GEO_RECORD, gslb={"chain": ["health", "weighted"]})
    assert ask(engine, record, DE).pool == "global"
    record = cname(**GEO_RECORD, gslb={"chain": ["rules", "health"]})
    assert {ask(engine, record, DE).target for _ in range(30)} == {"a.cdn.net."}


def test_explain_shows_location_rule_candidates_and_drops(engine: Engine) -> None:
    pools = {
        "eu": {
            "values": [{"value": "a.cdn.net.", "status": "down"}, {"value": "b.cdn.net."}],
            "fallback": "global",
        },
        "global": pool("c.cdn.net."),
    }
    record = cname(pools, [{"geos": ["EU"], "pool": "eu"}, {"pool": "global"}])
    trace = engine.explain(record, ip(DE), (ip("46.4.1.0"), 24), view(record, 3))
    assert trace["client"]["location"]["country"] == "DE"
    assert trace["client"]["location"]["network"] == "46.4.0.0/16"
    assert trace["rule"] | {"geos": None} == {
        "number": 1,
        "pool": "eu",
        "geos": None,
        "subnets": [],
        "catch_all": False,
        "matched_by": "geo",
        "matched": "EU",
    }
    health = next(s for s in trace["steps"] if s["step"] == "health")
    assert health["dropped"] == [{"value": "a.cdn.net.", "pool": "eu", "why": "status: down"}]
    dropped = {c["value"]: c["dropped"] for c in trace["candidates"]}
    assert dropped["a.cdn.net."] == {"step": "health", "why": "status: down"}
    assert dropped["b.cdn.net."] is None
    assert trace["answer"] | {"values": None} == {
        "values": None,
        "ttl": 60,
        "scope": 16,
        "reason": "rule",
        "target": "b.cdn.net.",
        "pool": "eu",
    }
    assert trace["answer"]["values"] == ["b.cdn.net."]
    text = render_explain(trace)
    assert "dropped eu: a.cdn.net.: status: down" in text and "scope=/16" in text


def test_explain_gives_the_same_answer_as_the_hot_path(engine: Engine) -> None:
    record = make(POPS_RECORD, A)
    for client in (DE, IN, JP, UNKNOWN):
        trace = engine.explain(record, ip(client), None, HEALTHY)
        answer = ask(engine, record, client)
        assert tuple(trace["answer"]["values"]) == answer.values
        assert trace["answer"]["scope"] == answer.scope


def test_explain_lists_performance_drops_with_the_numbers(engine: Engine) -> None:
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.")}, [{"pool": "p"}])
    health = view(record, a=CheckState(up=True, latency=0.02), b=CheckState(up=True, latency=0.2))
    trace = engine.explain(record, ip(DE), None, health)
    perf = next(s for s in trace["steps"] if s["step"] == "performance")
    assert perf["dropped"][0]["value"] == "b.cdn.net."
    assert perf["dropped"][0]["why"] == (
        "latency 200 ms > limit 40 ms (best * 1.5, at least best + 20 ms)"
    )


def test_performance_margin_keeps_values_a_few_ms_apart():
    engine = Engine(None)
    record = cname({"p": pool("a.cdn.net.", "b.cdn.net.")}, [{"pool": "p"}])
    health = view(
        record, a=CheckState(up=True, latency=0.001), b=CheckState(up=True, latency=0.004)
    )
    trace = engine.explain(record, ip(DE), None, health)
    perf = next(s for s in trace["steps"] if s["step"] == "performance")
    assert perf["dropped"] == [], "4 ms is within best + 20 ms although it is 4 x best"


# -- the real geo database -----------------------------------------------------------------


def test_engine_with_a_real_geo_database(tmp_path) -> None:
    from gslb.geo import GeoDB
    from tests.geodb import CLIENTS, write_world_db

    with GeoDB.open(write_world_db(tmp_path)) as geo:
        engine = Engine(geo, random.Random(1))
        record = make(POPS_RECORD, A)
        assert ask(engine, record, CLIENTS["IN"]).values == ("192.0.2.20",)
        assert ask(engine, record, CLIENTS["DE"]).values == ("192.0.2.10",)
        assert ask(engine, record, CLIENTS["SG"]).values == ("192.0.2.30",)
        geo_record = cname(**GEO_RECORD)
        answer = ask(engine, geo_record, "192.0.2.53", ecs=(ip(CLIENTS["JP"]), 32))
        assert (answer.pool, answer.scope) == ("asia", 16)
