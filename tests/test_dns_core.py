"""RFC behaviour of the authoritative core, over real UDP and TCP with dnspython as client."""

from __future__ import annotations

import random
import socket
import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest


def query(name: str, rdtype: str = "A", **kwargs) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **kwargs)


def rrset(reply, section: str, rdtype: str):
    for rr in getattr(reply, section):
        if rr.rdtype == dns.rdatatype.from_text(rdtype):
            return rr
    return None


def assert_negative(reply, rcode) -> None:
    assert reply.rcode() == rcode
    assert reply.flags & dns.flags.AA
    assert not reply.answer
    soa = rrset(reply, "authority", "SOA")
    assert soa is not None, "negative answers carry the zone SOA"
    assert soa.ttl == 300  # min(SOA TTL 3600, SOA minimum 300), RFC 2308


# -- positive answers ------------------------------------------------------------------------


def test_soa_at_apex_is_authoritative(core_server):
    reply = core_server.udp(query("example.com", "SOA"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and reply.flags & dns.flags.QR
    assert not reply.flags & dns.flags.RA
    soa = rrset(reply, "answer", "SOA")
    assert soa[0].serial == 2026112101 and soa[0].minimum == 300


def test_a_rrset_with_its_ttl(core_server):
    reply = core_server.udp(query("www.example.com"))
    answer = rrset(reply, "answer", "A")
    assert sorted(r.address for r in answer) == ["192.0.2.1", "192.0.2.2"]
    assert answer.ttl == 300


def test_question_case_is_echoed_exactly(core_server):
    message = query("WwW.ExAmPlE.CoM")
    wire = message.to_wire()
    raw = core_server.raw_udp(wire)
    assert raw[12 : 12 + len("www.example.com") + 2] == wire[12 : 12 + len("www.example.com") + 2]
    reply = dns.message.from_wire(raw)
    assert reply.id == message.id and len(reply.answer[0]) == 2


@pytest.mark.parametrize("rd", [True, False])
def test_id_and_rd_copied_ra_clear(core_server, rd):
    message = query("www.example.com")
    if not rd:
        message.flags &= ~dns.flags.RD
    reply = core_server.udp(message)
    assert reply.id == message.id
    assert bool(reply.flags & dns.flags.RD) == rd
    assert not reply.flags & dns.flags.RA


def test_structured_types(core_server):
    mx = rrset(core_server.udp(query("example.com", "MX")), "answer", "MX")
    assert (mx[0].preference, mx[0].exchange.to_text()) == (10, "mail.example.com.")
    srv = rrset(core_server.udp(query("_sip._tcp.example.com", "SRV")), "answer", "SRV")
    assert (srv[0].priority, srv[0].weight, srv[0].port) == (10, 5, 5060)
    caa = rrset(core_server.udp(query("example.com", "CAA")), "answer", "CAA")
    assert (caa[0].flags, caa[0].tag, caa[0].value) == (0, b"issue", b"letsencrypt.org")
    ptr = rrset(core_server.udp(query("ptr.example.com", "PTR")), "answer", "PTR")
    assert ptr[0].target.to_text() == "host.example.com."


def test_txt_escapes_and_255_byte_chunks(core_server):
    txt = rrset(core_server.udp(query("example.com", "TXT")), "answer", "TXT")
    assert sorted(b"".join(r.strings) for r in txt) == [b"key=value; second part", b"v=spf1 -all"]
    long = rrset(core_server.tcp(query("long.example.com", "TXT")), "answer", "TXT")
    assert [len(s) for s in long[0].strings] == [255, 255, 90]


# -- negative answers ------------------------------------------------------------------------


def test_nxdomain_with_soa(core_server):
    assert_negative(core_server.udp(query("nothere.example.com")), dns.rcode.NXDOMAIN)


def test_nodata_for_existing_name(core_server):
    assert_negative(core_server.udp(query("www.example.com", "AAAA")), dns.rcode.NOERROR)


@pytest.mark.parametrize("name", ["b.c.example.com", "c.example.com", "_tcp.example.com"])
def test_empty_non_terminal_is_nodata(core_server, name):
    assert_negative(core_server.udp(query(name)), dns.rcode.NOERROR)


def test_outside_our_zones_is_refused(core_server):
    reply = core_server.udp(query("example.org"))
    assert reply.rcode() == dns.rcode.REFUSED
    assert not reply.flags & dns.flags.AA and not reply.answer


def test_child_zone_we_also_serve_has_synthesized_soa(core_server):
    reply = core_server.udp(query("sub2.example.com", "SOA"))
    soa = rrset(reply, "answer", "SOA")
    assert reply.flags & dns.flags.AA
    assert soa[0].mname.to_text() == "ns1.example.com." and soa[0].serial > 0


# -- CNAME, wildcards, delegation ------------------------------------------------------------


def test_in_zone_cname_is_chased(core_server):
    reply = core_server.udp(query("alias.example.com"))
    cname = rrset(reply, "answer", "CNAME")
    assert cname[0].target.to_text() == "www.example.com."
    assert len(rrset(reply, "answer", "A")) == 2


def test_cname_returned_for_any_qtype_and_not_chased_out_of_zone(core_server):
    reply = core_server.udp(query("external.example.com", "MX"))
    assert [rr.rdtype for rr in reply.answer] == [dns.rdatatype.CNAME]
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA


def test_qtype_cname_returns_only_the_cname(core_server):
    reply = core_server.udp(query("alias.example.com", "CNAME"))
    assert [rr.rdtype for rr in reply.answer] == [dns.rdatatype.CNAME]


@pytest.mark.parametrize("name", ["x.wild.example.com", "a.b.wild.example.com"])
def test_wildcard_synthesis(core_server, name):
    reply = core_server.udp(query(name))
    answer = rrset(reply, "answer", "A")
    assert answer.name.to_text().lower() == name + "."
    assert answer[0].address == "192.0.2.4"


def test_wildcard_does_not_cover_existing_names_or_other_types(core_server):
    assert_negative(core_server.udp(query("exists.wild.example.com")), dns.rcode.NOERROR)
    assert_negative(core_server.udp(query("x.wild.example.com", "AAAA")), dns.rcode.NOERROR)


def test_referral_for_delegated_child(core_server):
    reply = core_server.udp(query("host.sub.example.com"))
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AA and not reply.answer
    ns = rrset(reply, "authority", "NS")
    assert sorted(r.target.to_text() for r in ns) == ["ns.elsewhere.net.", "ns1.sub.example.com."]
    glue = rrset(reply, "additional", "A")
    assert glue.name.to_text() == "ns1.sub.example.com." and glue[0].address == "192.0.2.99"


def test_ds_at_delegation_answered_by_parent(core_server):
    assert_negative(core_server.udp(query("sub.example.com", "DS")), dns.rcode.NOERROR)


# -- EDNS(0) -----------------------------------------------------------------------------------


def test_opt_only_when_query_had_one(core_server):
    assert core_server.udp(query("www.example.com")).edns == -1
    reply = core_server.udp(query("www.example.com", use_edns=0, payload=4096))
    assert reply.edns == 0 and reply.payload == 1232


def test_do_bit_copied(core_server):
    reply = core_server.udp(query("www.example.com", use_edns=0, want_dnssec=True))
    assert reply.ednsflags & dns.flags.DO
    reply = core_server.udp(query("www.example.com", use_edns=0))
    assert not reply.ednsflags & dns.flags.DO


def test_edns_version_1_gets_badvers(core_server):
    reply = core_server.udp(query("www.example.com", use_edns=1))
    assert reply.rcode() == dns.rcode.BADVERS
    assert reply.edns == 0 and not reply.answer


def test_unknown_edns_option_ignored(core_server):
    option = dns.edns.GenericOption(65001, b"hello")
    reply = core_server.udp(query("www.example.com", use_edns=0, options=[option]))
    assert reply.rcode() == dns.rcode.NOERROR and len(reply.answer[0]) == 2


def opt_rr(owner: bytes = b"\x00") -> bytes:
    return owner + struct.pack("!HHIH", 41, 1232, 0, 0)


def raw_query(name: bytes = b"\x03www\x07example\x03com\x00", *, qd=1, ar=0, extra=b"") -> bytes:
    header = struct.pack("!HHHHHH", 0x1234, 0x0100, qd, 0, 0, ar)
    return header + (name + struct.pack("!HH", 1, 1) if qd else b"") + extra


@pytest.mark.parametrize(
    "payload",
    [
        raw_query(ar=2, extra=opt_rr() + opt_rr()),  # two OPT records
        raw_query(ar=1, extra=opt_rr(b"\x03www\x00")),  # OPT not owned by the root
        raw_query(qd=2),  # QDCOUNT 2
        raw_query(qd=0),  # QDCOUNT 0
    ],
)
def test_formerr_cases(core_server, payload):
    reply = dns.message.from_wire(core_server.raw_udp(payload), question_only=True)
    assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR


def test_payload_under_512_counts_as_512(core_server):
    reply = core_server.udp(query("example.com", "TXT", use_edns=0, payload=100))
    assert not reply.flags & dns.flags.TC and reply.answer


# -- sizes and truncation -------------------------------------------------------------------


def test_udp_truncation_without_partial_rrset(core_server):
    for message in (query("many.example.com"), query("many.example.com", use_edns=0)):
        reply = core_server.udp(message)
        assert reply.flags & dns.flags.TC
        assert not reply.answer and reply.question[0].name.to_text() == "many.example.com."


def test_tcp_carries_the_full_answer(core_server):
    reply = core_server.tcp(query("many.example.com"))
    assert not reply.flags & dns.flags.TC and len(reply.answer[0]) == 100


def test_tcp_pipelined_queries_on_one_connection(core_server):
    names = ["www.example.com", "nothere.example.com", "example.com"]
    messages = [query(n) for n in names]
    with socket.create_connection(("127.0.0.1", core_server.dns_port), timeout=3) as sock:
        sock.sendall(
            b"".join(struct.pack("!H", len(w)) + w for w in (m.to_wire() for m in messages))
        )
        replies = [read_tcp_message(sock) for _ in messages]
    by_id = {r.id: r for r in replies}
    assert set(by_id) == {m.id for m in messages}
    assert by_id[messages[1].id].rcode() == dns.rcode.NXDOMAIN


def read_tcp_message(sock: socket.socket) -> dns.message.Message:
    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed early"
            data += chunk
        return data

    (length,) = struct.unpack("!H", read(2))
    return dns.message.from_wire(read(length))


# -- opcodes, classes, special types ------------------------------------------------------


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.IQUERY])
def test_unknown_opcodes_get_notimp(core_server, opcode):
    message = query("example.com", "SOA")
    message.set_opcode(opcode)
    reply = dns.message.from_wire(core_server.raw_udp(message.to_wire()), question_only=True)
    assert reply.rcode() == dns.rcode.NOTIMP and reply.id == message.id
    assert reply.opcode() == opcode


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfers_refused(core_server, rdtype):
    assert core_server.tcp(query("example.com", rdtype)).rcode() == dns.rcode.REFUSED


def test_any_answered_per_rfc8482(core_server):
    reply = core_server.udp(query("www.example.com", "ANY"))
    hinfo = rrset(reply, "answer", "HINFO")
    assert len(reply.answer) == 1 and hinfo[0].cpu == b"RFC8482"
    assert core_server.udp(query("nothere.example.com", "ANY")).rcode() == dns.rcode.NXDOMAIN


def test_chaos_refused_unless_configured(core_server):
    message = dns.message.make_query("version.bind", "TXT", rdclass="CH")
    assert core_server.udp(message).rcode() == dns.rcode.REFUSED


def test_nsid_not_sent_unless_configured(core_server):
    reply = core_server.udp(
        query("www.example.com", use_edns=0, options=[dns.edns.NSIDOption(b"")])
    )
    assert not [o for o in reply.options if o.otype == dns.edns.NSID]


# -- malformed input -----------------------------------------------------------------------


def test_unreadable_header_gets_silence_then_normal_service(core_server):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(b"\x12\x34\x01", ("127.0.0.1", core_server.dns_port))  # 3 bytes
        response = raw_query()[:2] + b"\x81\x00" + raw_query()[4:]  # QR set: a response
        sock.sendto(response, ("127.0.0.1", core_server.dns_port))
        good = query("www.example.com")
        sock.sendto(good.to_wire(), ("127.0.0.1", core_server.dns_port))
        first = dns.message.from_wire(sock.recv(65535))
    assert first.id == good.id, "neither the short packet nor the response was answered"


def test_readable_header_garbage_gets_formerr_with_same_id(core_server):
    payload = struct.pack("!HHHHHH", 0xBEEF, 0, 1, 0, 0, 0) + b"\x05ab"  # label runs past end
    reply = dns.message.from_wire(core_server.raw_udp(payload), question_only=True)
    assert reply.id == 0xBEEF and reply.rcode() == dns.rcode.FORMERR


def test_hundreds_of_malformed_packets_then_a_normal_answer(core_server):
    rng = random.Random(7)
    valid = query("www.example.com", use_edns=0).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _ in range(400):
            if rng.random() < 0.5:
                packet = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
            else:
                mutated = bytearray(valid)
                for _ in range(rng.randrange(1, 6)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                packet = bytes(mutated[: rng.randrange(1, len(mutated) + 1)])
            sock.sendto(packet, ("127.0.0.1", core_server.dns_port))
    reply = core_server.udp(query("www.example.com"))
    assert len(rrset(reply, "answer", "A")) == 2
    assert sum(core_server.app.stats.malformed.values()) > 0


@pytest.mark.parametrize(
    "ecs",
    [
        struct.pack("!HBB", 3, 24, 0) + b"\x01\x02\x03",  # unknown family
        struct.pack("!HBB", 1, 33, 0) + b"\x01\x02\x03\x04\x05",  # prefix too long
        struct.pack("!HBB", 1, 24, 8) + b"\x01\x02\x03",  # scope set in a query
        struct.pack("!HBB", 1, 20, 0) + b"\x01\x02\x0f",  # bits set past the prefix
        struct.pack("!HBB", 1, 24, 0) + b"\x01\x02",  # address shorter than the prefix
    ],
)
def test_malformed_ecs_is_formerr(core_server, ecs):
    option = struct.pack("!HH", 8, len(ecs)) + ecs
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    reply = dns.message.from_wire(core_server.raw_udp(raw_query(ar=1, extra=opt)))
    assert reply.rcode() == dns.rcode.FORMERR and reply.id == 0x1234


def test_static_answer_echoes_ecs_with_scope_zero(core_server):
    option = dns.edns.ECSOption("81.2.69.0", 24)
    reply = core_server.udp(query("www.example.com", use_edns=0, options=[option]))
    echoed = [o for o in reply.options if o.otype == dns.edns.ECS]
    assert len(echoed) == 1
    assert (echoed[0].address, echoed[0].srclen, echoed[0].scopelen) == ("81.2.69.0", 24, 0)


def test_chaos_and_nsid_answered_when_configured(tmp_path, geo_db):
    from tests.conftest import ZONE_HEAD, write_zone
    from tests.server import ServerThread

    write_zone(tmp_path, "example.com", ZONE_HEAD)
    overrides = {"identity": b"ns-fra-1", "version_string": "gslb test"}
    with ServerThread(tmp_path, geo_db, **overrides) as server:
        for name, text in (("version.bind", b"gslb test"), ("id.server", b"ns-fra-1")):
            reply = server.udp(dns.message.make_query(name, "TXT", rdclass="CH"))
            assert reply.rcode() == dns.rcode.NOERROR
            assert reply.answer[0][0].strings == (text,)
        query = dns.message.make_query(
            "ns1.example.com", "A", use_edns=0, options=[dns.edns.NSIDOption(b"")]
        )
        reply = server.udp(query)
        nsid = [o for o in reply.options if o.otype == dns.edns.NSID]
        assert nsid and nsid[0].nsid == b"ns-fra-1"
