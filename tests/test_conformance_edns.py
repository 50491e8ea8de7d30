"""RFC 6891 section 7 and RFC 1035 section 4.1 at the edges: a FORMERR or NOTIMP reply to a
query whose OPT was well formed carries an OPT (also when there is no question at all), and a
malformed record in the answer, authority or additional section makes the query FORMERR."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

QNAME = b"\x03www\x07example\x03com\x00"
QUESTION = QNAME + struct.pack("!HH", 1, 1)
OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x8000, 0)  # DO set
A_RR = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes((192, 0, 2, 1))


def message(*, qd: list[bytes], an: list[bytes] = (), ns: list[bytes] = (),
            ar: list[bytes] = (), opcode: int = 0) -> bytes:  # fmt: skip
    flags = 0x0100 | (opcode << 11)
    header = struct.pack("!6H", 0x4242, flags, len(qd), len(an), len(ns), len(ar))
    return header + b"".join([*qd, *an, *ns, *ar])


def exchange(server, payload: bytes) -> dns.message.Message:
    data = server.raw_udp(payload, timeout=3.0)
    assert data is not None, "no reply"
    reply = dns.message.from_wire(data)
    assert reply.id == 0x4242 and reply.flags & dns.flags.QR
    assert len(data) <= len(payload) + len(OPT)  # error replies never amplify
    return reply


@pytest.mark.parametrize(
    ("payload", "rcode"),
    [
        (message(qd=[], ar=[OPT]), dns.rcode.FORMERR),  # QDCOUNT 0
        (message(qd=[QUESTION, QUESTION], ar=[OPT]), dns.rcode.FORMERR),  # QDCOUNT 2
        (message(qd=[QUESTION], ar=[OPT], opcode=dns.opcode.NOTIFY), dns.rcode.NOTIMP),
        (message(qd=[], ar=[OPT], opcode=dns.opcode.UPDATE), dns.rcode.NOTIMP),
        (message(qd=[QUESTION], ar=[OPT, A_RR[:-1]]), dns.rcode.FORMERR),
    ],
    ids=["qdcount-0", "qdcount-2", "notify", "update-no-question", "bad-record-after-opt"],
)
def test_error_replies_to_a_well_formed_opt_carry_an_opt(core_server, payload, rcode):
    reply = exchange(core_server, payload)
    assert reply.rcode() == rcode
    assert reply.edns == 0, "the reply must carry an OPT (RFC 6891 section 7)"
    assert reply.ednsflags & dns.flags.DO  # DO copied


@pytest.mark.parametrize(
    "payload",
    [
        message(qd=[], ar=[OPT, OPT]),  # two OPTs: the OPT itself is malformed
        message(qd=[QUESTION], ar=[b"\x03www\x00" + OPT[1:]]),  # OPT not owned by the root
        message(qd=[]),  # no OPT to echo
    ],
    ids=["two-opts", "opt-owner", "no-opt"],
)
def test_error_replies_without_a_well_formed_opt_carry_none(core_server, payload):
    reply = exchange(core_server, payload)
    assert reply.rcode() == dns.rcode.FORMERR and reply.edns == -1


BAD_RECORDS = {
    "a-rdata-3-bytes": b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 3) + b"\xc0\x00\x02",
    "aaaa-rdata-4-bytes": b"\xc0\x0c" + struct.pack("!HHIH", 28, 1, 60, 4) + b"\x20\x01\x0d\xb8",
    "forward-pointer": b"\xc0\x40" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(4),
    # the record starts at offset 33 (header 12, question 21): its pointer sits at 35
    "pointer-to-itself": b"\x01a\xc0\x23" + struct.pack("!HHIH", 16, 1, 60, 1) + b"\x00",
    "reserved-label-type": b"\x41a\x00" + struct.pack("!HHIH", 16, 1, 60, 1) + b"\x00",
    "rdata-past-the-end": b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, 40) + b"\x03abc",
    "truncated-fixed-part": b"\xc0\x0c" + struct.pack("!HH", 1, 1),
    "name-over-255-bytes": b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
    + b"\x3f" + b"d" * 63 + b"\x00" + struct.pack("!HHIH", 16, 1, 60, 1) + b"\x00",
}  # fmt: skip


@pytest.mark.parametrize("section", ["answer", "authority", "additional"])
@pytest.mark.parametrize("record", BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_a_malformed_record_in_any_section_is_formerr(core_server, section, record):
    sections = {"answer": "an", "authority": "ns", "additional": "ar"}
    payload = message(qd=[QUESTION], **{sections[section]: [record]})
    reply = exchange(core_server, payload)
    assert reply.rcode() == dns.rcode.FORMERR and not reply.answer


def test_well_formed_records_in_a_query_do_not_stop_the_answer(core_server):
    """A query may carry records (a known answer, SIG(0) and the like): answered as usual."""
    payload = message(qd=[QUESTION], an=[A_RR], ar=[OPT])
    reply = dns.message.from_wire(core_server.raw_udp(payload, timeout=3.0))
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer and reply.edns == 0
