"""GSLB answers end to end: real server, real UDP/TCP queries carrying ECS from test countries."""

from __future__ import annotations

import collections
import struct

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.conftest import ZONE_HEAD, write_zone
from tests.geodb import CLIENTS, CLIENTS6
from tests.server import ServerThread

ZONE = (
    ZONE_HEAD
    + """\
origin:
  type: A
  ttl: 60
  values: [192.0.2.10, 192.0.2.11]
content:
  type: CNAME
  ttl: 30
  value: origin.example.com.
  dynamic:
    pools:
      europe:
        fallback: global
        values:
          - {value: eu.cdn-a.net., weight: 70}
          - {value: eu.cdn-b.net., weight: 30}
      asia:
        fallback: global
        values:
          - {value: asia.cdn-c.net.}
      partner:
        values:
          - {value: partner.cdn-c.net.}
      global:
        values:
          - {value: global.cdn-a.net., weight: 50}
          - {value: global.cdn-b.net., weight: 50}
    rules:
      - subnets: [198.51.100.0/24]
        pool: partner
      - geos: [EU]
        pool: europe
      - geos: [AS]
        pool: asia
      - pool: global
  gslb:
    degraded_ttl: 5
down:
  type: CNAME
  ttl: 30
  value: origin.example.com.
  dynamic:
    pools:
      first:
        fallback: second
        values:
          - {value: a.cdn.net., status: down}
      second:
        values:
          - {value: b.cdn.net., status: down}
    rules:
      - pool: first
  gslb:
    degraded_ttl: 7
images:
  type: A
  ttl: 30
  values: [192.0.2.10]
  dynamic:
    pools:
      cdns:
        values:
          - {value: 203.0.113.10}
          - {value: 203.0.113.20}
    rules:
      - pool: cdns
  gslb:
    answers: 2
    proximity: {km: 1000}
    targets:
      203.0.113.10:
        pops:
          - {name: fra, lat: 50.11, lon: 8.68, addresses: [203.0.113.11, 203.0.113.12]}
          - {name: iad, lat: 38.95, lon: -77.45, addresses: [203.0.113.13, 203.0.113.14]}
      203.0.113.20:
        pops:
          - {name: bom, lat: 19.09, lon: 72.87, addresses: [203.0.113.21, 203.0.113.22]}
          - {name: nrt, lat: 35.77, lon: 140.39, addresses: [203.0.113.23, 203.0.113.24]}
sticky:
  type: CNAME
  value: origin.example.com.
  dynamic:
    pools:
      all:
        values:
          - {value: a.cdn.net.}
          - {value: b.cdn.net.}
          - {value: c.cdn.net.}
    rules:
      - pool: all
  gslb:
    sticky: true
weighted:
  type: CNAME
  value: origin.example.com.
  dynamic:
    pools:
      all:
        values:
          - {value: a.cdn.net., weight: 75}
          - {value: b.cdn.net., weight: 25}
    rules:
      - pool: all
"""
)


@pytest.fixture(scope="module")
def gslb_server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", ZONE)
    with ServerThread(zones, geo_db) as server:
        yield server


def ask(server, name, rdtype="A", ecs=None, prefix=24, tcp=False):
    options = [dns.edns.ECSOption(ecs, prefix)] if ecs else []
    message = dns.message.make_query(name, rdtype, use_edns=0, options=options)
    return server.tcp(message) if tcp else server.udp(message)


def cname_target(reply) -> str:
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.CNAME:
            return rrset[0].target.to_text()
    raise AssertionError(f"no CNAME in {reply}")


def ecs_option(reply):
    (option,) = [o for o in reply.options if o.otype == dns.edns.ECS]
    return option


@pytest.mark.parametrize("tcp", [False, True])
def test_geo_rule_routes_europe_and_asia(gslb_server, tcp):
    for country in ("DE", "FR", "GB"):
        reply = ask(gslb_server, "content.example.com", ecs=CLIENTS[country], tcp=tcp)
        assert cname_target(reply) in {"eu.cdn-a.net.", "eu.cdn-b.net."}
        assert reply.flags & dns.flags.AA
    for country in ("IN", "JP", "SG"):
        reply = ask(gslb_server, "content.example.com", ecs=CLIENTS[country], tcp=tcp)
        assert cname_target(reply) == "asia.cdn-c.net."
    reply = ask(gslb_server, "content.example.com", ecs=CLIENTS["US-CA"], tcp=tcp)
    assert cname_target(reply) in {"global.cdn-a.net.", "global.cdn-b.net."}


def test_ipv6_ecs_locates_the_client(gslb_server):
    reply = ask(gslb_server, "content.example.com", ecs=CLIENTS6["JP"], prefix=48)
    assert cname_target(reply) == "asia.cdn-c.net."


def test_subnet_rule_wins_and_sets_scope(gslb_server):
    reply = ask(gslb_server, "content.example.com", ecs="198.51.100.0", prefix=24)
    assert cname_target(reply) == "partner.cdn-c.net."
    assert ecs_option(reply).scopelen == 24


def test_without_ecs_the_resolver_address_decides(gslb_server):
    reply = gslb_server.udp(dns.message.make_query("content.example.com", "A"))
    assert cname_target(reply) in {"global.cdn-a.net.", "global.cdn-b.net."}  # 127.0.0.1
    assert reply.edns == -1, "no OPT in the reply when the query had none"


def test_ecs_echo_and_scope_byte_by_byte(gslb_server):
    address = bytes(map(int, CLIENTS["DE"].split(".")))[:3]  # /24 of the German client
    payload = struct.pack("!HBB", 1, 24, 0) + address
    option = struct.pack("!HH", 8, len(payload)) + payload
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    name = b"\x07content\x07example\x03com\x00"
    query = struct.pack("!HHHHHH", 0xABCD, 0, 1, 0, 0, 1) + name + b"\x00\x01\x00\x01" + opt
    raw = gslb_server.raw_udp(query)
    reply = dns.message.from_wire(raw)
    expected = struct.pack("!HH", 8, 7) + struct.pack("!HBB", 1, 24, 16) + address
    assert raw.endswith(expected), "family, source and address echoed; scope = GeoIP /16"
    assert reply.id == 0xABCD


def test_pure_weighted_answer_has_scope_zero(gslb_server):
    reply = ask(gslb_server, "weighted.example.com", ecs=CLIENTS["DE"])
    assert ecs_option(reply).scopelen == 0


def test_aaaa_for_a_only_dynamic_name_is_nodata(gslb_server):
    reply = ask(gslb_server, "images.example.com", "AAAA", ecs=CLIENTS["DE"])
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_down_and_exhausted_fallback_answer_the_origin_with_degraded_ttl(gslb_server):
    reply = ask(gslb_server, "down.example.com")
    assert cname_target(reply) == "origin.example.com."
    cname = reply.answer[0]
    assert cname.ttl == 7
    chased = [rr for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A for rr in rrset]
    assert sorted(rr.address for rr in chased) == ["192.0.2.10", "192.0.2.11"]


def test_proximity_picks_the_nearest_pop(gslb_server):
    india = ask(gslb_server, "images.example.com", ecs=CLIENTS["IN"])
    assert {rr.address for rr in india.answer[0]} == {"203.0.113.21", "203.0.113.22"}
    germany = ask(gslb_server, "images.example.com", ecs=CLIENTS["DE"])
    assert {rr.address for rr in germany.answer[0]} == {"203.0.113.11", "203.0.113.12"}


def test_sticky_clients_keep_their_answer(gslb_server):
    seen = set()
    for country in ("DE", "IN", "US-CA", "BR", "AU", "ZA"):
        answers = {cname_target(ask(gslb_server, "sticky.example.com", ecs=CLIENTS[country]))
                   for _ in range(10)}  # fmt: skip
        assert len(answers) == 1, f"{country} moved between {answers}"
        seen |= answers
    assert len(seen) > 1, "different subnets spread over the targets"


def test_weighted_split_over_real_queries(gslb_server):
    counts = collections.Counter(
        cname_target(ask(gslb_server, "weighted.example.com")) for _ in range(2000)
    )
    share = counts["a.cdn.net."] / 2000
    assert 0.71 <= share <= 0.79, counts  # 75 % +- 4 points (2000 draws: 3.9 sigma)


def test_answers_counted_by_record_target_and_reason(gslb_server):
    stats = gslb_server.app.stats
    before = stats.answers[("down.example.com.", "origin", "origin")]
    ask(gslb_server, "down.example.com")
    assert stats.answers[("down.example.com.", "origin", "origin")] == before + 1


def test_repeated_query_bytes_are_replayed_with_their_own_id_and_counted(gslb_server):
    """The replay cache answers identical query bytes without parsing: the ID must still be
    the query's, the weighted pick must still vary, and every answer must be counted."""
    message = dns.message.make_query("weighted.example.com", "A", use_edns=0,
                                     options=[dns.edns.ECSOption(CLIENTS["DE"], 24)])  # fmt: skip
    stats = gslb_server.app.stats
    before = sum(v for k, v in stats.answers.items() if k[0] == "weighted.example.com.")
    targets = set()
    for ident in range(1, 201):
        message.id = ident
        reply = dns.message.from_wire(gslb_server.raw_udp(message.to_wire()))
        assert reply.id == ident
        targets.add(cname_target(reply))
    assert targets == {"a.cdn.net.", "b.cdn.net."}
    after = sum(v for k, v in stats.answers.items() if k[0] == "weighted.example.com.")
    assert after - before == 200
