"""The responder under traffic that never repeats: 0x20 names, an ECS subnet per query, random
names. Replies share packed bytes across letter case and ECS address, random NXDOMAIN names
share one packed negative answer per name length, and every cache stays within its bound by
evicting its oldest entries (never a wholesale clear).
"""

from __future__ import annotations

import random
from ipaddress import ip_address
from types import MappingProxyType

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from gslb.config.load import find_record, load_config
from gslb.config.names import to_wire
from gslb.dns import responder as responder_module
from gslb.dns.responder import Responder
from gslb.fleet.regions import RegionMap
from gslb.geo import GeoDB
from gslb.health.view import CheckState, HealthView
from gslb.policy.chain import Engine
from gslb.rum.config import LEVELS
from gslb.rum.network import prefix_key
from gslb.rum.snapshot import RecordDecisions, Snapshot
from tests.conftest import core_zone_text, write_zone
from tests.geodb import CLIENTS
from tests.test_compile import rum_decision

GEO_ZONE = """\
'':
  - type: NS
    values: [ns1.example.net.]
geo:
  type: CNAME
  ttl: 30
  value: origin.example.net.
  dynamic:
    pools:
      eu: {values: [{value: eu.cdn.test.}], fallback: world}
      world: {values: [{value: a.cdn.test., weight: 3}, {value: b.cdn.test.}]}
    rules:
      - {geos: [EU], pool: eu}
      - {pool: world}
"""
LIMIT = 300


@pytest.fixture()
def responder(tmp_path, geo_db, monkeypatch) -> Responder:
    monkeypatch.setattr(responder_module, "REPLAY_LIMIT", LIMIT)
    monkeypatch.setattr(responder_module, "SIBLING_LIMIT", LIMIT)
    monkeypatch.setattr(responder_module, "CACHE_LIMIT", LIMIT)
    write_zone(tmp_path, "example.com", core_zone_text())
    write_zone(tmp_path, "example.net", GEO_ZONE)
    config, errors = load_config(tmp_path)
    assert config is not None, errors
    geo = GeoDB.open(geo_db)
    responder = Responder(config, Engine(geo, random.Random(3)))
    assert responder.engine.compiler.finish()
    yield responder
    geo.close()


def random_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def query(name: str, qtype: str = "A", ecs: str | None = None, prefix: int = 24) -> bytes:
    options = [dns.edns.ECSOption(ecs, prefix)] if ecs else []
    message = dns.message.make_query(name, qtype, use_edns=0, payload=1232, options=options)
    message.flags &= ~dns.flags.RD
    return message.to_wire()


def ask(responder: Responder, wire: bytes) -> dns.message.Message:
    reply = responder.handle(wire, "192.0.2.1")
    assert reply is not None
    return dns.message.from_wire(reply)


def test_case_and_ecs_variants_share_one_packed_outcome(responder) -> None:
    rng = random.Random(1)
    de = CLIENTS["DE"].rsplit(".", 1)[0]
    for n in range(200):
        name = random_case("geo.example.net.", rng)
        reply = ask(responder, query(name, ecs=f"{de}.{n % 250}", prefix=32))
        assert reply.question[0].name.to_text() == name, "the question keeps its letter case"
        assert [str(rr.target) for rr in reply.answer[0]] == ["eu.cdn.test."]
        option = next(o for o in reply.options if isinstance(o, dns.edns.ECSOption))
        assert (option.address, option.srclen) == (f"{de}.{n % 250}", 32)
        assert option.scopelen == 16, "the German /16 of the test database"
    assert len(responder.outcomes) == 1, "one packed reply for 200 different queries"


def test_random_nxdomain_names_share_a_packed_negative_per_length(responder) -> None:
    rng = random.Random(2)
    names = [f"nx{rng.randrange(10**5, 10**6)}.example.com." for _ in range(100)]
    for name in names:
        reply = ask(responder, query(random_case(name, rng)))
        assert reply.rcode() == dns.rcode.NXDOMAIN
        assert reply.flags & dns.flags.AA
        assert reply.question[0].name.to_text().lower() == name
        soa = reply.authority[0]
        assert soa.name.to_text() == "example.com." and soa.rdtype == 6
        assert soa[0].mname.to_text() == "ns1.example.com."
    assert len(responder.negatives) == 1, "every name has the same length"
    short = ask(responder, query("q.example.com.", "TXT"))
    assert short.rcode() == dns.rcode.NXDOMAIN and short.authority[0].name.to_text() == (
        "example.com."
    )
    assert len(responder.negatives) == 2


def test_a_flood_of_new_names_and_subnets_stays_bounded_without_clearing(responder) -> None:
    rng = random.Random(3)
    name = ""
    for n in range(4 * LIMIT):
        ecs = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        wire = query(random_case("geo.example.net.", rng), ecs=ecs)
        assert ask(responder, wire).answer, "every query of the flood is answered"
        name = f"nx{n:06d}.example.com."
        ask(responder, query(name))
    assert not responder.replays["udp"], "bytes seen once leave no cached reply behind"
    assert len(responder.sightings["udp"]) == responder_module.SIGHTINGS["udp"], "fixed size"
    assert len(responder.shapes["udp"]) == 1, "one shape for the GSLB name"
    assert len(responder.sibling_shapes["udp"]) == 1, "one for every nxNNNNNN.example.com."
    assert len(responder.cache) < 5, "the random names took the sibling shape, not the cache"
    # Random names under random parents: a sibling shape and a cached name each, both bounded.
    for n in range(4 * LIMIT):
        name = f"nx.p{n}.example.com."
        reply = ask(responder, query(name))
        assert reply.rcode() == dns.rcode.NXDOMAIN
    assert len(responder.sibling_shapes["udp"]) == LIMIT
    assert len(responder.cache) == LIMIT
    assert next(reversed(responder.cache))[0] == to_wire(name), "the newest entry is kept"
    assert len(responder.shapes["udp"]) == 1, "the real names' shapes were not pushed out"
    # What was answered once and comes again is still answered the same way.
    again = ask(responder, query("geo.example.net.", ecs=CLIENTS["DE"]))
    assert [str(rr.target) for rr in again.answer[0]] == ["eu.cdn.test."]


def test_queries_seen_twice_fill_the_replay_cache_to_its_bound_and_no_further(responder) -> None:
    rng = random.Random(4)
    for n in range(2 * LIMIT):
        ecs = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        wire = query(random_case("geo.example.net.", rng), ecs=ecs)
        first, second = ask(responder, wire), ask(responder, wire)
        assert first.answer and second.answer
        static = query(f"www{n % 3}.example.com.")
        ask(responder, static)
        ask(responder, static)
    assert len(responder.replays["udp"]) == LIMIT, "evicted one by one, never cleared"


def test_bytes_that_come_back_beyond_the_replay_caches_reach_are_not_remembered(
    responder,
) -> None:
    """A cycle of more distinct queries than the replay cache holds would only evict its own
    replies before any was used: its repeats are answered, never remembered."""
    rng = random.Random(5)
    cycle = [query(random_case("geo.example.net.", rng),
                   ecs=f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{n % 256}.0")
             for n in range(2 * LIMIT)]  # fmt: skip
    for _ in range(2):
        for wire in cycle:
            assert ask(responder, wire).answer
    assert not responder.replays["udp"]
    for wire in cycle[:10]:  # a short cycle, well within reach, is remembered
        ask(responder, wire)
        ask(responder, wire)
    assert len(responder.replays["udp"]) == 10


def test_random_names_under_a_wildcard_or_a_cut_leave_no_shapes(responder) -> None:
    rng = random.Random(6)
    for n in range(50):
        wild = ask(responder, query(f"r{rng.randrange(10**6)}.wild.example.com.", "TXT"))
        assert [rr.to_text() for rr in wild.answer[0]] == ['"wildcard"']
        nodata = ask(responder, query(f"r{rng.randrange(10**6)}.wild.example.com.", "MX"))
        assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
        referral = ask(responder, query(f"r{n}.sub.example.com."))
        assert referral.authority and not referral.answer
    assert not responder.shapes["udp"], "countless names: the parser answers them"
    for _ in range(2):
        ask(responder, query("WWW.example.com."))
    assert len(responder.shapes["udp"]) == 1, "a name of the zone is worth a shape"


STEERED_ZONE = """\
'':
  - type: NS
    values: [ns1.example.net.]
fleet:
  type: CNAME
  ttl: 30
  value: origin.example.net.
  dynamic:
    pools:
      world: {values: [{value: a.cdn.test.}, {value: b.cdn.test.}]}
    rules:
      - {pool: world}
  gslb:
    check: {type: tcp, port: 443}
measured:
  type: CNAME
  ttl: 30
  value: origin.example.net.
  dynamic:
    pools:
      eu: {values: [{value: a.cdn.test.}, {value: b.cdn.test.}], fallback: world}
      world: {values: [{value: a.cdn.test.}, {value: b.cdn.test.}, {value: c.cdn.test.}]}
    rules:
      - {geos: [EU], pool: eu}
      - {pool: world}
  gslb:
    chain: [rules, health, rum, weighted]
"""


@pytest.fixture()
def steered(tmp_path, geo_db) -> Responder:
    write_zone(tmp_path, "example.net", STEERED_ZONE)
    config, errors = load_config(tmp_path)
    assert config is not None, errors
    geo = GeoDB.open(geo_db)
    responder = Responder(config, Engine(geo, random.Random(5)))
    assert responder.engine.compiler.finish()
    yield responder
    geo.close()


def targets_and_scope(responder: Responder, name: str, client: str, count: int = 40):
    rng = random.Random(client)
    seen, scopes = set(), set()
    for n in range(count):
        wire = query(random_case(name, rng), ecs=client[: client.rindex(".")] + f".{n}", prefix=32)
        reply = ask(responder, wire)
        seen |= {str(rr.target) for rr in reply.answer[0]}
        scopes |= {o.scopelen for o in reply.options if isinstance(o, dns.edns.ECSOption)}
    return seen, scopes


def test_regional_verdicts_and_rum_decisions_are_answered_from_the_compiled_tables(
    steered,
) -> None:
    """Through the responder (query shapes, the parser, ECS echo): a fleet view where CDN A
    is down for European vantages only, then a RUM snapshot where one German /24 measures
    CDN B as slow. No query takes the step-by-step chain (``Engine.answer`` counts every
    call), and each answer and scope is what ``explain`` says for that client."""
    engine = steered.engine
    fleet = find_record(steered.config, "fleet.example.net.", "CNAME")
    checks = {t.value: t.check for t in fleet.pools["world"].targets}
    up = MappingProxyType({c: CheckState(up=True) for c in checks.values()})
    eu = MappingProxyType({**up, checks["a.cdn.test."]: CheckState(up=False, reason="503")})
    varies = frozenset({checks["a.cdn.test."]})
    regional = {"EU": HealthView(1, eu, varies=varies), "NA": HealthView(1, up, varies=varies)}
    steered.set_health(HealthView(1, up, regional=MappingProxyType(regional), varies=varies,
                                  region_of=RegionMap()))  # fmt: skip
    de, us = CLIENTS["DE"], CLIENTS["US-NY"]
    seen, scopes = targets_and_scope(steered, "fleet.example.net.", de)
    assert seen == {"b.cdn.test."}
    explained = engine.explain(fleet, ip_address("192.0.2.1"), (ip_address(de), 32),
                               steered.health)  # fmt: skip
    assert explained["region"]["client"] == "EU"
    assert len(scopes) == 1 and 0 < scopes.pop() <= explained["answer"]["scope"]
    seen, _ = targets_and_scope(steered, "fleet.example.net.", us)
    assert seen == {"a.cdn.test.", "b.cdn.test."}, "North American vantages see A up"

    measured = find_record(steered.config, "measured.example.net.", "CNAME")
    slow_b = rum_decision("prefix", de, frozenset({"b.cdn.test."}))
    snap = Snapshot({(measured.fqdn, measured.rtype): RecordDecisions(
        LEVELS, {"prefix": {prefix_key(ip_address(de)): slow_b}})}, 0.0, 1)  # fmt: skip
    steered.set_health(HealthView(2).with_rum(snap))
    seen, scopes = targets_and_scope(steered, "measured.example.net.", de)
    assert seen == {"a.cdn.test."} and scopes == {24}, "its /24 decided"
    seen, _ = targets_and_scope(steered, "measured.example.net.", f"{de[:-4]}9.10")
    assert seen == {"a.cdn.test.", "b.cdn.test."}, "the next /24 has no measurements"
    assert engine.hits == engine.misses == 0, "no query took the step-by-step chain"
