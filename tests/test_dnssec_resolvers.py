"""End to end: gslb's signed answers through real validating resolvers (Unbound with
use-caps-for-id, Knot Resolver) on loopback, each trusting only the test zone's DS. Every
answer must come back with AD; a deliberately corrupted signature must come back SERVFAIL,
which proves the check can fail. ``make test-dnssec`` installs the resolvers and runs this."""

from __future__ import annotations

import random

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from gslb.config.load import load_config
from gslb.dnssec.tools import ds_lines, keygen
from tests.conftest import write_zone
from tests.resolvers import Resolver
from tests.server import ServerThread

pytestmark = pytest.mark.resolvers

ZONE = "example.com."
ZONE_TEXT = """\
'':
  - type: NS
    value: ns1.example.com.
  - type: MX
    value: {preference: 10, exchange: mail.example.com.}
  - type: TXT
    value: v=spf1 -all
ns1:
  type: A
  value: 127.0.0.1
mail:
  type: A
  value: 192.0.2.25
www:
  type: A
  ttl: 300
  values: [192.0.2.1, 192.0.2.2]
alias:
  type: CNAME
  value: www.example.com.
chain:
  type: CNAME
  value: alias.example.com.
edge-a:
  - type: A
    value: 192.0.2.31
  - type: AAAA
    value: 2001:db8::31
edge-b:
  - type: A
    value: 192.0.2.32
  - type: AAAA
    value: 2001:db8::32
content:
  type: CNAME
  ttl: 30
  value: edge-b.example.com.
  dynamic:
    pools:
      local:
        values:
          - {value: edge-a.example.com., weight: 60}
          - {value: edge-b.example.com., weight: 40}
      rest:
        values: [{value: edge-b.example.com.}]
    rules:
      - subnets: [127.0.0.0/8]
        pool: local
      - pool: rest
images:
  - type: A
    ttl: 30
    values: [192.0.2.20]
    dynamic:
      pools:
        local: {values: [{value: 203.0.113.10}, {value: 203.0.113.11}]}
        rest: {values: [{value: 203.0.113.20}]}
      rules:
        - subnets: [127.0.0.0/8]
          pool: local
        - pool: rest
  - type: AAAA
    ttl: 30
    values: ['2001:db8::20']
    dynamic:
      pools:
        local: {values: [{value: '2001:db8::10'}]}
      rules:
        - pool: local
'*.wild':
  type: A
  value: 192.0.2.4
a.b.c:
  type: A
  value: 192.0.2.3
bad:
  type: A
  value: 192.0.2.66
child:
  type: NS
  value: ns1.example.com.
plain:
  type: NS
  value: ns1.example.com.
"""
# A signed child zone on the same server: its DS comes from the parent's side of the cut.
CHILD_TEXT = """\
'':
  type: NS
  value: ns1.example.com.
www:
  type: A
  value: 192.0.2.7
"""

# (name, type, kind): kind "data" expects records of the type, "nodata" expects none
CASES = [
    ("www.example.com", "A", "data"),
    ("example.com", "MX", "data"),
    ("example.com", "TXT", "data"),
    ("chain.example.com", "A", "data"),
    ("content.example.com", "A", "data"),
    ("content.example.com", "AAAA", "data"),
    ("images.example.com", "A", "data"),
    ("images.example.com", "AAAA", "data"),
    ("anything.wild.example.com", "A", "data"),
    ("example.com", "DNSKEY", "data"),
    ("example.com", "CDS", "data"),
    ("example.com", "CDNSKEY", "data"),
    ("www.example.com", "AAAA", "nodata"),
    ("images.example.com", "TXT", "nodata"),
    ("b.c.example.com", "A", "nodata"),
    ("nothere.example.com", "A", "nodata"),
    ("deep.nothere.example.com", "AAAA", "nodata"),
    ("anything.wild.example.com", "MX", "nodata"),
]


def mixed_case(name: str) -> str:
    rng = random.Random(name)
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


@pytest.fixture(scope="module")
def gslb(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("signed")
    write_zone(zones, "example.com", ZONE_TEXT)
    keygen(zones, ZONE, 13)
    write_zone(zones, "child.example.com", CHILD_TEXT)
    keygen(zones, "child.example.com.", 15)
    write_zone(zones, "plain.example.com", CHILD_TEXT)  # served too, not signed
    with ServerThread(zones, geo_db) as server:
        corrupt_signature(server, b"\x03bad\x07example\x03com\x00")
        record_questions(server)
        yield server


def record_questions(server) -> None:
    """Keep the raw question names the resolvers send (to see their 0x20 case)."""
    responder = server.app.responder
    handle = responder.handle
    server.questions = []

    def recording(data: bytes, client: str, transport: str = "udp"):
        server.questions.append(bytes(data[12:60]))
        return handle(data, client, transport)

    responder.handle = recording


def corrupt_signature(server, owner: bytes) -> None:
    """Sign ``owner``'s A RRset once, then flip a bit of that signature in the server's
    signature cache: every later reply carries the broken RRSIG."""
    import dns.message

    server.udp(dns.message.make_query("bad.example.com", "A", want_dnssec=True))
    responder = server.app.responder
    entries = responder.signing.cache.entries
    (data,) = [d for d in entries if owner in d and d[:2] == b"\x00\x01"]
    signature = bytearray(entries[data])
    signature[5] ^= 0x01
    entries[data] = bytes(signature)
    responder.roll_window(0)  # a window change rebuilds cached replies ...
    responder.roll_window()  # ... and back to today's, now with the broken signature


@pytest.fixture(scope="module", params=["unbound", "kresd"])
def resolver(request, gslb, tmp_path_factory):
    config, errors = load_config(gslb.settings.zones)
    assert not errors
    (ds,) = ds_lines(config.signing[b"\x07example\x03com\x00"])
    ds = ds.replace(" 3600 IN ", " ")
    daemon = Resolver(request.param, tmp_path_factory.mktemp(request.param), ZONE, ds,
                      gslb.dns_port)  # fmt: skip
    yield daemon
    daemon.stop()


@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize(("name", "rdtype", "kind"), CASES)
def test_every_answer_is_authenticated(resolver, name, rdtype, kind, case):
    qname = mixed_case(name) if case == "mixed" else name
    reply = resolver.ask(qname, rdtype)
    log = resolver.log.read_text()[-1500:]
    assert reply.rcode() == dns.rcode.NOERROR, f"{resolver.kind}: {reply}\n{log}"
    assert reply.flags & dns.flags.AD, f"{resolver.kind}: no AD for {qname} {rdtype}\n{log}"
    wanted = dns.rdatatype.from_text(rdtype)
    present = [r for r in reply.answer if r.rdtype == wanted]
    assert bool(present) == (kind == "data"), str(reply)


# DNSSEC meta-types (README, DNSSEC): NSEC answered with the name's compact NSEC, NSEC3 and
# NSEC3PARAM with a NODATA; both validate.
META_CASES = [
    ("www.example.com", "NSEC"),
    ("nothere.example.com", "NSEC"),
    ("content.example.com", "NSEC"),
    ("images.example.com", "NSEC"),
    ("b.c.example.com", "NSEC"),
    ("anything.wild.example.com", "NSEC"),
    ("example.com", "NSEC"),
    ("example.com", "NSEC3PARAM"),
    ("www.example.com", "NSEC3"),
]


@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize(("name", "rdtype"), META_CASES)
def test_meta_type_queries_are_authenticated(resolver, name, rdtype, case):
    reply = resolver.ask(mixed_case(name) if case == "mixed" else name, rdtype)
    log = resolver.log.read_text()[-1500:]
    assert reply.rcode() == dns.rcode.NOERROR, f"{resolver.kind}: {reply}\n{log}"
    assert reply.flags & dns.flags.AD, f"{resolver.kind}: no AD for {name} {rdtype}\n{log}"
    answered = [r.rdtype for r in reply.answer]
    assert (dns.rdatatype.NSEC in answered) == (rdtype == "NSEC"), str(reply)


@pytest.mark.parametrize("name", ["www.example.com", "nothere.example.com", "b.c.example.com"])
def test_rrsig_queries_are_never_bogus(resolver, name):
    """The NODATA for type RRSIG leaves RRSIG out of its NSEC: with it, both resolvers called
    the proof bogus (SERVFAIL). Unbound validates it (AD); Knot Resolver answers it NOERROR
    but sets no AD on it."""
    reply = resolver.ask(mixed_case(name), "RRSIG")
    assert reply.rcode() == dns.rcode.NOERROR, f"{resolver.kind}: {reply}"
    assert not reply.answer
    if resolver.kind == "unbound":
        assert reply.flags & dns.flags.AD, str(reply)


def test_co_from_a_client_still_validates(resolver):
    """RFC 9824 5.1: CO is hop by hop. A client's CO reaches the resolver, not gslb (neither
    resolver here sends CO upstream), so the resolver's own rules decide the rcode; the
    compact NXNAME proof it gets validates either way."""
    reply = resolver.ask("co-probe.nothere.example.com", "A", ednsflags=0x4000)
    assert reply.flags & dns.flags.AD, f"{resolver.kind}: {reply}"
    assert reply.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN) and not reply.answer


@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize(("name", "rdtype"), [("www.child.example.com", "A"),
                                              ("child.example.com", "DNSKEY"),
                                              ("nothere.child.example.com", "A")])  # fmt: skip
def test_signed_child_validates_through_the_parents_ds(resolver, name, rdtype, case):
    """The resolvers trust only the parent: the child (signed with its own Ed25519 key) is
    secure through the DS gslb publishes at the parent's cut, answered from the parent's
    side (RFC 4035 3.1.4.1)."""
    reply = resolver.ask(mixed_case(name) if case == "mixed" else name, rdtype)
    log = resolver.log.read_text()[-1500:]
    assert reply.rcode() == dns.rcode.NOERROR, f"{resolver.kind}: {reply}\n{log}"
    assert reply.flags & dns.flags.AD, f"{resolver.kind}: no AD for {name}\n{log}"


def test_unsigned_child_is_provably_insecure(resolver):
    """An unsigned child on the same server: the parent's signed NSEC (NS, no DS) answers the
    DS query, so the child's answers pass as insecure (no AD), not bogus."""
    reply = resolver.ask("WwW.pLaIn.example.com", "A")
    assert reply.rcode() == dns.rcode.NOERROR, f"{resolver.kind}: {reply}"
    assert reply.answer and not reply.flags & dns.flags.AD


def test_corrupted_signature_is_bogus(resolver):
    reply = resolver.ask("bad.example.com", "A")
    assert reply.rcode() == dns.rcode.SERVFAIL, f"{resolver.kind} accepted a broken RRSIG"
    assert not reply.answer


def test_resolvers_randomize_case_and_still_validate(resolver, gslb):
    """Unbound (use-caps-for-id) and kresd send names to gslb in random case (0x20); compact
    denial and signatures are made over the lowercase name, so the answer still validates."""
    before = len(gslb.questions)
    reply = resolver.ask("0x20-probe-name.nothere.example.com", "A")
    assert reply.flags & dns.flags.AD
    sent = [q for q in gslb.questions[before:] if b"probe" in q.lower()]
    assert sent and any(q != q.lower() for q in sent), f"{resolver.kind} sent no mixed-case name"


@pytest.mark.parametrize(("total", "first"), [(254, 63), (255, 20)])
def test_the_longest_names_validate(resolver, total, first):
    """254 and 255 octets: no room for ``\\000.name``; the RFC 4471 successor validates."""
    from tests.test_dnssec_meta import name_of_length

    name = name_of_length(total, first).to_text()
    reply = resolver.ask(mixed_case(name), "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AD, str(reply)
