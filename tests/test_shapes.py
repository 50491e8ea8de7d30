"""Query shapes (gslb.dns.shapes) against the parser's path: for random queries in every layout
(letter case, flags, no OPT, OPT, DO, ECS of either family and any prefix, NSID, payload
sizes that force truncation), a responder that has learnt shapes answers byte for byte what a
responder answering each query through the parser answers, and counts the same."""

from __future__ import annotations

import random

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest

from gslb.config.load import load_config
from gslb.dns.responder import Responder
from gslb.dns.shapes import shape_key, sibling_key
from gslb.dnssec.tools import keygen
from gslb.geo import GeoDB
from gslb.policy.chain import Engine
from tests.conftest import core_zone_text, write_zone
from tests.geodb import CLIENTS, CLIENTS6

# Dynamic records whose answers depend only on the client (no random draw): geo rules, a
# sticky weighted pool (the pick is a hash of the client's /24), proximity between PoPs.
STEERED_ZONE = """\
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
      asia: {values: [{value: asia.cdn.test.}]}
      office: {values: [{value: office.cdn.test.}]}
      world: {values: [{value: a.cdn.test., weight: 3}, {value: b.cdn.test.}]}
    rules:
      - {subnets: [46.4.7.0/24], pool: office}
      - {geos: [EU], pool: eu}
      - {geos: [AS], pool: asia}
      - {pool: world}
  gslb:
    sticky: true
near:
  type: A
  ttl: 60
  value: 192.0.2.200
  dynamic:
    pools:
      all:
        values: [{value: 192.0.2.10}, {value: 192.0.2.20}]
    rules:
      - {pool: all}
  gslb:
    chain: [rules, health, proximity, weighted]
    targets:
      192.0.2.10: {pops: [{name: fra, lat: 50.11, lon: 8.68}]}
      192.0.2.20: {pops: [{name: tyo, lat: 35.68, lon: 139.69}]}
six:
  type: AAAA
  ttl: 60
  value: 2001:db8::1
  dynamic:
    pools:
      eu: {values: [{value: "2001:db8::e"}]}
      world: {values: [{value: "2001:db8::a"}]}
    rules:
      - {geos: [EU], pool: eu}
      - {pool: world}
"""
NAMES = [
    ("geo.example.net.", "A"), ("geo.example.net.", "AAAA"), ("geo.example.net.", "CNAME"),
    ("near.example.net.", "A"), ("near.example.net.", "AAAA"), ("six.example.net.", "AAAA"),
    ("www.example.com.", "A"), ("www.example.com.", "AAAA"), ("example.com.", "MX"),
    ("example.com.", "TXT"), ("long.example.com.", "TXT"), ("many.example.com.", "A"),
    ("alias.example.com.", "A"), ("x.sub.example.com.", "A"), ("a.wild.example.com.", "TXT"),
    ("nothing.example.com.", "A"), ("elsewhere.test.", "A"), ("example.com.", "SOA"),
    ("random", "A"), ("random", "AAAA"), ("random", "TXT"), ("random", "A"),
]  # fmt: skip
V4 = [*CLIENTS.values(), "46.4.7.9", "8.8.8.8", "203.0.113.7"]
COMPACT_OK = 0x4000  # RFC 9824 CO, the EDNS flag after DO
V6 = [*CLIENTS6.values(), "2001:db8:1::1"]


@pytest.fixture(params=["unsigned", "signed"])
def make_responder(request, tmp_path, geo_db):
    write_zone(tmp_path, "example.com", core_zone_text())
    write_zone(tmp_path, "example.net", STEERED_ZONE)
    write_zone(tmp_path, "child.example.com", "'':\n  type: NS\n  value: ns1.example.com.\n")
    if request.param == "signed":  # DO answers carry RRSIGs and compact denials
        keygen(tmp_path, "example.com.", 13)
        keygen(tmp_path, "example.net.", 13)
    config, errors = load_config(tmp_path)
    assert config is not None, errors
    geo = GeoDB.open(geo_db)

    def make() -> Responder:
        responder = Responder(config, Engine(geo, random.Random(5)))
        assert responder.engine.compiler.finish()
        return responder

    yield make
    geo.close()


def random_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def random_query(rng: random.Random) -> bytes:
    name, qtype = rng.choice(NAMES)
    if name == "random":  # names that do not exist, beside names that do (siblings)
        label = rng.choice(["www", "alias", "many", "sub", "b.c", "wild", "ptr", "child",
                            f"r{rng.randrange(10**rng.randrange(1, 7))}"])  # fmt: skip
        name = f"{label}.{rng.choice(['example.com.', 'example.net.', 'c.example.com.'])}"
    layout = rng.choice(["none", "opt", "do", "co", "ecs4", "do-ecs4", "ecs6", "ecs0", "nsid"])
    options: list = []
    if layout in ("ecs4", "do-ecs4"):
        options = [dns.edns.ECSOption(rng.choice(V4), rng.choice([8, 16, 21, 24, 25, 32]))]
    elif layout == "ecs6":
        options = [dns.edns.ECSOption(rng.choice(V6), rng.choice([32, 48, 56, 61, 64, 128]))]
    elif layout == "ecs0":
        options = [dns.edns.ECSOption("0.0.0.0", 0)]
    elif layout == "nsid":
        options = [dns.edns.GenericOption(dns.edns.NSID, b"")]
    message = dns.message.make_query(
        random_case(name, rng), qtype, use_edns=None if layout == "none" else 0,
        payload=rng.choice([512, 1232, 4096]), want_dnssec=layout in ("do", "co", "do-ecs4"),
        options=options,
    )  # fmt: skip
    if layout == "co":
        message.ednsflags |= COMPACT_OK
    message.id = rng.randrange(65536)
    message.flags = rng.choice([0, dns.flags.RD, dns.flags.CD, dns.flags.RD | dns.flags.CD])
    return message.to_wire()


def through_parser(responder: Responder, data: bytes, client: str, transport: str) -> bytes:
    """The reply as the parser's path builds it: nothing learnt, nothing replayed."""
    responder.shapes = responder.new_shapes()
    responder.replays = responder.new_replays()
    reply = responder.handle(data, client, transport)
    assert reply is not None
    return reply


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_shaped_replies_are_the_parsers_byte_for_byte(make_responder, transport) -> None:
    rng = random.Random(11)
    learnt, reference = make_responder(), make_responder()
    shaped: dict[str, int] = {"StaticShape": 0, "DynamicShape": 0, "siblings": 0}
    for _ in range(3000):
        data = random_query(rng)
        client = rng.choice(["192.0.2.1", *V4[:3], "2001:db8:9::1"])
        before = sum(learnt.stats.queries.values())
        known = learnt.shapes[transport].get(shape_key_of(data))
        end = data.find(0, 12)
        sibling = learnt.sibling_shapes[transport].get(sibling_key(data, end)) if end > 12 else None
        got = learnt.handle(data, client, transport)
        assert sum(learnt.stats.queries.values()) == before + 1, "counted once"
        expected = through_parser(reference, data, client, transport)
        assert got == expected, dns.message.from_wire(data).question
        if known is not None:
            shaped[type(known).__name__] += 1
        elif sibling is not None:
            shaped["siblings"] += 1
    assert min(shaped.values()) > 50, f"every kind of shape was exercised: {shaped}"
    assert learnt.stats.queries == reference.stats.queries
    assert learnt.stats.ecs == reference.stats.ecs
    assert learnt.stats.answers == reference.stats.answers


def shape_key_of(data: bytes) -> bytes:
    return shape_key(data)[0]


def test_a_query_of_a_known_shape_with_bits_past_its_prefix_gets_formerr(make_responder) -> None:
    responder = make_responder()
    good = dns.message.make_query("geo.example.net.", "A", use_edns=0,
                                  options=[dns.edns.ECSOption("46.4.0.0", 21)])  # fmt: skip
    assert responder.handle(good.to_wire(), "192.0.2.1") is not None
    wire = bytearray(good.to_wire())
    wire[-1] |= 0x01  # inside the third address byte, past the /21 prefix
    reply = dns.message.from_wire(responder.handle(bytes(wire), "192.0.2.1"))
    assert reply.rcode() == dns.rcode.FORMERR
    assert responder.stats.malformed["udp"] == 1


def test_trailing_bytes_after_a_known_shape_are_formerr(make_responder) -> None:
    responder = make_responder()
    good = dns.message.make_query("www.example.com.", "A", use_edns=0).to_wire()
    assert dns.message.from_wire(responder.handle(good, "192.0.2.1")).answer
    reply = responder.handle(good + b"\x00", "192.0.2.1")
    assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


def test_case_and_subnet_variants_of_one_query_share_one_shape(make_responder) -> None:
    responder = make_responder()
    rng = random.Random(2)
    for n in range(200):
        message = dns.message.make_query(
            random_case("geo.example.net.", rng), "A", use_edns=0,
            options=[dns.edns.ECSOption(f"{rng.randrange(1, 224)}.{n}.{rng.randrange(256)}.0",
                                        24)],
        )  # fmt: skip
        reply = dns.message.from_wire(responder.handle(message.to_wire(), "192.0.2.1"))
        assert reply.question[0].name == message.question[0].name
        assert reply.question[0].name.to_text() == message.question[0].name.to_text()
        assert reply.answer
    assert len(responder.shapes["udp"]) == 1


def test_the_sibling_of_a_missing_name_that_exists_is_answered_as_itself(make_responder):
    """After ``r0000.example.com.`` (NXDOMAIN) taught the shape of its siblings of that length,
    a name of the zone, or the apex of another zone we serve, of the same length and layout is
    still answered as what it is."""
    responder = make_responder()

    def ask(name: str) -> dns.message.Message:
        wire = dns.message.make_query(name, "A", use_edns=0).to_wire()
        return dns.message.from_wire(responder.handle(wire, "192.0.2.1"))

    assert ask("r0000.example.com.").rcode() == dns.rcode.NXDOMAIN
    assert ask("r1111.example.com.").rcode() == dns.rcode.NXDOMAIN
    assert len(responder.sibling_shapes["udp"]) == 1
    child = ask("child.example.com.")  # a zone of its own: its apex has no A, so NODATA
    assert child.rcode() == dns.rcode.NOERROR and not child.answer
    assert child.authority[0].name.to_text() == "child.example.com."
    assert ask("r22.example.com.").rcode() == dns.rcode.NXDOMAIN
    www = ask("www.example.com.")
    assert {rr.address for rr in www.answer[0]} == {"192.0.2.1", "192.0.2.2"}
