"""DNSSEC meta-types and RFC 9824's Compact Answers OK flag, against the live server.

A query for type NSEC gets the name's compact NSEC itself in the answer; a query for type
RRSIG (or NSEC3, NSEC3PARAM) gets a signed NODATA whose NSEC denies exactly that type; a query
with DO and CO gets NXDOMAIN back for a name that does not exist, with the same proof. Every
RRset is validated with dnspython against the served DNSKEY, in lower and mixed case (0x20).
"""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from gslb.config.load import load_config
from gslb.dns.responder import Responder
from gslb.dnssec.canonical import successor
from gslb.dnssec.tools import keygen
from tests import test_dnssec
from tests.conftest import core_zone_text, write_zone
from tests.server import ServerThread
from tests.test_dnssec import (
    NSEC,
    NXNAME,
    RRSIG,
    ask,
    bitmap_types,
    mixed_case,
    served_keys,
    validate_reply,
)

signed_zones = test_dnssec.signed_zones  # the same signed zone and server, for this module
signed_server = test_dnssec.signed_server

A, AAAA, TXT = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.TXT
CNAME, NSEC3, NSEC3PARAM = dns.rdatatype.CNAME, 50, 51
CO = 0x4000  # RFC 9824 5.1: the EDNS flag right after DO
DNAME_ZONE = """\
old:
  type: DNAME
  value: new.example.com.
www.new:
  type: A
  value: 192.0.2.7
"""

# (name, the types its NSEC lists besides RRSIG and NSEC; None: the name does not exist)
NAMES = [
    ("www.example.com", {A}),
    ("nothere.example.com", None),
    ("a.b.nothere.example.com", None),
    ("content.example.com", {CNAME}),  # GSLB CNAME: what it can answer
    ("images.example.com", {A, AAAA}),  # GSLB A/AAAA from pools
    ("b.c.example.com", set()),  # empty non-terminal
    ("anything.wild.example.com", {A, TXT}),  # wildcard: the expanded name
    ("chain.example.com", {CNAME}),  # a static CNAME: NSEC is not chased
]


def expected_bitmap(types: set[int] | None) -> set[int]:
    return ({NXNAME} if types is None else types) | {RRSIG, NSEC}


def only(section, rdtype):
    (rrset,) = [r for r in section if r.rdtype == rdtype]
    return rrset


@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize(("name", "types"), NAMES)
def test_nsec_query_answers_the_compact_nsec(signed_server, name, types, case):
    reply = ask(signed_server, mixed_case(name) if case == "mixed" else name, "NSEC")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert validate_reply(reply, served_keys(signed_server)) == 1
    nsec = only(reply.answer, NSEC)
    owner = dns.name.from_text(name)
    assert nsec.name == owner
    assert nsec[0].next == dns.name.Name([b"\x00", *owner.labels]), "spans the name alone"
    assert bitmap_types(nsec) == expected_bitmap(types)
    assert not reply.authority, "a positive answer: no proof, no SOA"
    if CNAME not in (types or ()):  # a CNAME answers MX: no denial to compare with
        denial = ask(signed_server, name, "MX")  # the record a denial for the name carries
        assert only(denial.authority, NSEC)[0] == nsec[0]


@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize(("name", "types"), [n for n in NAMES if CNAME not in (n[1] or ())])
@pytest.mark.parametrize("rdtype", ["RRSIG", "NSEC3", "NSEC3PARAM"])
def test_other_meta_types_get_a_signed_nodata(signed_server, name, types, rdtype, case):
    """Signatures travel with the RRsets they cover, and gslb has no NSEC3 chain: NODATA,
    proven by an NSEC that lists neither the asked type nor, for RRSIG, RRSIG itself."""
    reply = ask(signed_server, mixed_case(name) if case == "mixed" else name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert validate_reply(reply, served_keys(signed_server)) == 2  # SOA and NSEC
    nsec = only(reply.authority, NSEC)
    assert nsec.name == dns.name.from_text(name)
    wanted = expected_bitmap(types)
    if rdtype == "RRSIG":
        wanted.discard(RRSIG)
    assert bitmap_types(nsec) == wanted
    assert dns.rdatatype.from_text(rdtype) not in bitmap_types(nsec)


def test_rrsig_query_at_a_cname_follows_the_cname(signed_server):
    reply = ask(signed_server, "chain.example.com", "RRSIG")
    assert [r.rdtype for r in reply.answer if r.rdtype != RRSIG] == [CNAME, CNAME]
    assert validate_reply(reply, served_keys(signed_server)) == 4  # 2 CNAMEs, SOA, NSEC
    assert RRSIG not in bitmap_types(only(reply.authority, NSEC))


@pytest.mark.parametrize("rdtype", ["NSEC", "RRSIG", "NSEC3", "NSEC3PARAM"])
def test_meta_types_at_a_delegation_are_referred(signed_server, rdtype):
    reply = ask(signed_server, "sub.example.com", rdtype)
    assert not reply.flags & dns.flags.AA and not reply.answer
    assert bitmap_types(only(reply.authority, NSEC)) == {dns.rdatatype.NS, RRSIG, NSEC}


@pytest.mark.parametrize("rdtype", ["NSEC", "RRSIG", "NSEC3", "NSEC3PARAM"])
def test_meta_types_without_do_are_answered_as_before(signed_server, rdtype):
    missing = ask(signed_server, "nothere.example.com", rdtype, dnssec=False)
    assert missing.rcode() == dns.rcode.NXDOMAIN
    present = ask(signed_server, "www.example.com", rdtype, dnssec=False)
    assert present.rcode() == dns.rcode.NOERROR and not present.answer
    for reply in (missing, present):
        assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


# -- RFC 9824 5.1: Compact Answers OK ---------------------------------------------------


def ask_flags(server, name, rdtype, flags, tcp=False):
    query = dns.message.make_query(name, rdtype, use_edns=0, ednsflags=flags, payload=1232)
    return server.tcp(query) if tcp else server.udp(query)


@pytest.mark.parametrize("tcp", [False, True])
@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize("name", ["nothere.example.com", "a.b.nothere.example.com"])
def test_co_restores_nxdomain_with_the_same_proof(signed_server, name, case, tcp):
    qname = mixed_case(name) if case == "mixed" else name
    keys = served_keys(signed_server)
    compact = ask_flags(signed_server, qname, "A", dns.flags.DO | CO, tcp)
    plain = ask_flags(signed_server, qname, "A", dns.flags.DO, tcp)
    assert compact.rcode() == dns.rcode.NXDOMAIN and compact.ednsflags & CO, "CO echoed"
    assert plain.rcode() == dns.rcode.NOERROR and not plain.ednsflags & CO
    assert compact.authority == plain.authority, "the same signed NXNAME proof"
    assert bitmap_types(only(compact.authority, NSEC)) == {NXNAME, RRSIG, NSEC}
    assert validate_reply(compact, keys) == 2
    assert compact.ednsflags & dns.flags.DO


def test_co_changes_nothing_for_names_that_exist(signed_server):
    for name, rdtype in [("www.example.com", "A"), ("www.example.com", "AAAA"),
                         ("b.c.example.com", "A"), ("nothere.example.com", "NSEC")]:  # fmt: skip
        compact = ask_flags(signed_server, name, rdtype, dns.flags.DO | CO)
        plain = ask_flags(signed_server, name, rdtype, dns.flags.DO)
        assert compact.rcode() == plain.rcode() == dns.rcode.NOERROR
        assert (compact.answer, compact.authority) == (plain.answer, plain.authority)


def test_co_through_a_cname_chain_and_a_gslb_name(signed_server):
    dangling = ask_flags(signed_server, "dangling.example.com", "A", dns.flags.DO | CO)
    assert dangling.rcode() == dns.rcode.NXDOMAIN, "the chain ends at a name that is not"
    assert only(dangling.authority, NSEC).name == dns.name.from_text("nothere.example.com")
    validate_reply(dangling, served_keys(signed_server))
    steered = ask_flags(signed_server, "content.example.com", "A", dns.flags.DO | CO)
    assert steered.rcode() == dns.rcode.NOERROR and steered.ednsflags & CO
    validate_reply(steered, served_keys(signed_server))


def test_co_without_do_is_a_plain_nxdomain(signed_server):
    reply = ask_flags(signed_server, "nothere.example.com", "A", CO)
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.ednsflags & CO
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


def test_reply_caches_keep_co_apart(signed_zones):
    """Every variant three times (the replay cache keeps a reply from its second sighting
    on), interleaved: a cached NOERROR is never served to a CO query, nor an NXDOMAIN to
    one without CO."""
    config, errors = load_config(signed_zones)
    assert not errors
    responder = Responder(config)

    def rcode(flags: int, ident: int) -> int:
        query = dns.message.make_query("cached.example.com", "A", use_edns=0, ednsflags=flags,
                                       id=ident)  # fmt: skip
        reply = dns.message.from_wire(responder.handle(query.to_wire(), "127.0.0.1"))
        assert bool(reply.ednsflags & CO) == bool(flags & CO)
        return reply.rcode()

    sequence = [dns.flags.DO | CO, dns.flags.DO, 0, CO] * 3
    codes = [rcode(flags, n) for n, flags in enumerate(sequence)]
    wanted = [dns.rcode.NXDOMAIN, dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.NXDOMAIN]
    assert codes == wanted * 3


def test_nxname_is_formerr_with_or_without_do(signed_server):
    """RFC 9824 3.5: a server doing compact denial MUST answer an explicit NXNAME query with
    FORMERR; in a signed zone that holds for queries without DO too. With an OPT, the reply
    says why: Extended DNS Error 30, Invalid Query Type (RFC 8914); repeats (the replay
    cache) and both transports say the same."""
    for dnssec in (True, False, True, False):
        for tcp in (False, True):
            reply = ask(signed_server, "www.example.com", NXNAME, dnssec=dnssec, tcp=tcp)
            assert reply.rcode() == dns.rcode.FORMERR
            (ede,) = [o for o in reply.options if o.otype == dns.edns.OptionType.EDE]
            assert ede.code == dns.edns.EDECode.INVALID_QUERY_TYPE
            assert bool(reply.ednsflags & dns.flags.DO) == dnssec
    plain = dns.message.make_query("www.example.com", NXNAME, use_edns=False)
    reply = signed_server.udp(plain)
    assert reply.rcode() == dns.rcode.FORMERR and reply.edns == -1  # no OPT asked, none sent


def test_nsec_query_through_a_dname_answers_the_targets_nsec(tmp_path, geo_db):
    """Below a DNAME the synthesized CNAME leads to the target; the answer ends with the
    target's NSEC, as a query for NSEC at the target itself gets (a NODATA whose NSEC listed
    NSEC would be bogus)."""
    write_zone(tmp_path, "example.com", core_zone_text() + DNAME_ZONE)
    keygen(tmp_path, "example.com.", 13)
    with ServerThread(tmp_path, geo_db) as server:
        keys = served_keys(server)
        for name in ("www.old.example.com", "WwW.oLd.example.com"):
            reply = ask(server, name, "NSEC")
            assert reply.rcode() == dns.rcode.NOERROR and not reply.authority
            assert validate_reply(reply, keys) == 3  # DNAME, synthesized CNAME, NSEC
            nsec = only(reply.answer, NSEC)
            assert nsec.name == dns.name.from_text("www.new.example.com")
            assert bitmap_types(nsec) == {A, RRSIG, NSEC}
            assert only(ask(server, "www.new.example.com", "NSEC").answer, NSEC) == nsec


def name_of_length(total: int, first: int = 63) -> dns.name.Name:
    """A name under example.com. of exactly ``total`` wire octets, first label ``first`` long."""
    labels, rest = ["b" * first], total - 13 - first - 1
    while rest > 0:
        size = min(63, rest - 1)
        size -= 1 if rest - size - 1 == 1 else 0
        labels.append("a" * size)
        rest -= size + 1
    name = dns.name.from_text(".".join(labels) + ".example.com.")
    assert len(name.to_wire()) == total
    return name


@pytest.mark.parametrize(("total", "first"), [(253, 63), (254, 63), (254, 20), (255, 63),
                                              (255, 20)])  # fmt: skip
@pytest.mark.parametrize("rdtype", ["A", "NSEC"])
def test_the_longest_names_get_a_well_formed_nsec(signed_server, total, first, rdtype):
    """``\\000.name`` would be longer than 255 octets for a 254- or 255-octet name (the reply
    was malformed before): the next name is then the successor RFC 4471 gives, still after
    the name and before every other name that can exist."""
    name = name_of_length(total, first)
    reply = ask(signed_server, name.to_text().upper(), rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert validate_reply(reply, served_keys(signed_server)) >= 1
    (nsec,) = [r for r in reply.answer + reply.authority if r.rdtype == NSEC]
    after = nsec[0].next
    assert nsec.name == name < after and len(after.to_wire()) <= 255
    if total == 253:
        assert after == dns.name.Name([b"\x00", *name.labels])
    assert bitmap_types(nsec) == {NXNAME, RRSIG, NSEC}


def test_successor_steps():
    wire = name_of_length(255).to_wire()
    label = wire[1:64]
    assert successor(wire) == b"\x3f" + label[:-1] + b"c" + wire[64:], "b -> c"
    at = b"\x3f" + b"b" * 62 + b"@" + wire[64:]
    assert successor(at) == b"\x3f" + b"b" * 62 + b"[" + wire[64:], "never an uppercase octet"
    ff = b"\x3f" + b"b" * 61 + b"\xff\xff" + wire[64:]
    assert successor(ff) == b"\x3d" + b"b" * 60 + b"c" + wire[64:], "0xFF dropped, carried"
    assert successor(b"\x3f" + b"\xff" * 63 + wire[64:]) is None, "nothing safe comes next"
    short = name_of_length(254, 20).to_wire()
    assert successor(short) == b"\x15" + short[1:21] + b"\x00" + short[21:]


def test_a_name_no_nsec_can_deny_alone_is_servfail(signed_server):
    """255 octets, a first label of 0xFF octets only: every name after it in canonical order
    could be real, so no compact NSEC is made; SERVFAIL, and the server keeps answering."""
    tail = name_of_length(255).labels[1:]
    reply = ask(signed_server, dns.name.Name([b"\xff" * 63, *tail]), "A")
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert ask(signed_server, "www.example.com", "A").rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("rdtype", ["RRSIG", "NSEC3", "NSEC3PARAM"])
def test_co_restores_nxdomain_for_meta_type_queries_too(signed_server, rdtype):
    reply = ask_flags(signed_server, "nothere.example.com", rdtype, dns.flags.DO | CO)
    assert reply.rcode() == dns.rcode.NXDOMAIN and not reply.answer
    assert NXNAME in bitmap_types(only(reply.authority, NSEC))
    assert validate_reply(reply, served_keys(signed_server)) == 2
