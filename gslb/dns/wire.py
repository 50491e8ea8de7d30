"""Bytes in, bytes out: the parts of a DNS message the answer path needs, parsed with ``struct``.

Only the header, the question and the OPT record (with its Client Subnet option) are read; no
object tree is built. Anything malformed raises ``FormatError`` carrying what could be read, so
the caller can still answer FORMERR with the query's ID (or stay silent when even that failed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("!HHHHHH")
RR_FIXED = struct.Struct("!HHIH")
TWO = struct.Struct("!HH")

QR, AA, TC, RD = 0x8000, 0x0400, 0x0200, 0x0100
CD = 0x0010
OPCODE_MASK = 0x7800

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED, YXDOMAIN = 0, 1, 2, 3, 4, 5, 6
BADVERS = 16

OPT_TYPE = 41
OPT_ECS = 8
OPT_NSID = 3
MAX_UDP = 1232  # DNS Flag Day 2020, RFC 9715
MIN_UDP = 512
DO_BIT = 0x8000
CO_BIT = 0x4000  # RFC 9824 5.1 Compact Answers OK: the EDNS flag right after DO


class FormatError(Exception):
    """Malformed message. ``query`` is set when the header (and maybe question) was readable;
    ``opt`` when a well-formed OPT was read before the problem (the FORMERR then carries one,
    RFC 6891 section 7)."""

    def __init__(self, reason: str, query: Query | None = None, opt: Opt | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.query = query
        self.opt = opt


@dataclass(slots=True)
class Ecs:
    family: int
    source: int
    address: bytes  # exactly ceil(source / 8) bytes, as sent
    raw: bytes  # option payload, reused for the echo

    def echo(self, scope: int) -> bytes:
        """The option for the reply: family, source and address echoed, SCOPE set."""
        payload = self.raw[:3] + bytes((scope,)) + self.raw[4:]
        return TWO.pack(OPT_ECS, len(payload)) + payload

    def ip_bytes(self) -> bytes:
        """Full-length address (4 or 16 bytes), zero-padded past the source prefix."""
        size = 4 if self.family == 1 else 16
        return self.address + bytes(size - len(self.address))


@dataclass(slots=True)
class Opt:
    udp_size: int
    version: int
    do: bool
    ecs: Ecs | None = None
    nsid: bool = False
    co: bool = False  # RFC 9824 Compact Answers OK: NXDOMAIN wanted with a compact denial


@dataclass(slots=True)
class Query:
    id: int
    flags: int
    qdcount: int
    qname: bytes = b""  # exactly as sent (letter case kept)
    qtype: int = 0
    qclass: int = 0
    question_end: int = 12
    opt: Opt | None = None

    @property
    def opcode(self) -> int:
        return (self.flags & OPCODE_MASK) >> 11


def read_name(data: bytes, pos: int) -> int:
    """Position after an uncompressed name starting at ``pos`` (question names are never
    compressed: nothing precedes them to point at)."""
    end = len(data)
    start = pos
    while True:
        if pos >= end:
            raise FormatError("name runs past the end")
        length = data[pos]
        if length == 0:
            pos += 1
            if pos - start > 255:
                raise FormatError("name longer than 255 bytes")
            return pos
        if length > 63:
            raise FormatError("compressed or unknown label type in question")
        pos += 1 + length


def skip_name(data: bytes, pos: int) -> int:
    """Position after a possibly compressed name. Pointers are followed only to check them:
    each must point strictly backwards (so no loop can form), and the whole name must fit in
    255 bytes (RFC 1035 sections 3.1 and 4.1.4)."""
    end = len(data)
    after = None  # where the name ends in the message (after its first pointer)
    length = 0
    while True:
        if pos >= end:
            raise FormatError("name runs past the end")
        label = data[pos]
        if label == 0:
            return pos + 1 if after is None else after
        if label & 0xC0 == 0xC0:
            if pos + 2 > end:
                raise FormatError("truncated pointer")
            target = ((label & 0x3F) << 8) | data[pos + 1]
            if target >= pos:
                raise FormatError("compression pointer does not point backwards")
            if after is None:
                after = pos + 2
            pos = target
            continue
        if label > 63:
            raise FormatError("unknown label type")
        length += 1 + label
        if length > 254:
            raise FormatError("name longer than 255 bytes")
        pos += 1 + label


def parse_query(data: bytes) -> Query:
    """Parse what the answer path needs. Raises FormatError (with ``query`` when possible)."""
    if len(data) < 12:
        raise FormatError("shorter than a header")
    ident, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    query = Query(ident, flags, qdcount)
    if qdcount != 1:
        query.opt = opt_of_odd_query(data, qdcount, ancount + nscount, arcount)
        if qdcount == 0 or query.opcode != 0:
            return query  # caller answers FORMERR / NOTIMP, with an OPT when one was read
        raise FormatError("QDCOUNT must be 1", query)
    try:
        end = read_name(data, 12)
    except FormatError as exc:
        raise FormatError(exc.reason, query) from None
    if end + 4 > len(data):
        raise FormatError("question runs past the end", query)
    query.qname = data[12:end]
    query.qtype, query.qclass = TWO.unpack_from(data, end)
    pos = query.question_end = end + 4
    try:
        if arcount == 1 and not ancount and not nscount and len(data) >= pos + 11:
            # The usual query: one OPT right after the question. Skip the general walk.
            rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, pos + 1)
            if rtype == OPT_TYPE and data[pos] == 0 and pos + 11 + rdlength == len(data):
                query.opt = parse_opt(data, pos + 11, len(data), rclass, ttl)
                return query
        query.opt = parse_records(data, pos, ancount + nscount, arcount)
    except FormatError as exc:
        query.opt = exc.opt
        raise FormatError(exc.reason, query) from None
    return query


def opt_of_odd_query(data: bytes, qdcount: int, skip: int, arcount: int) -> Opt | None:
    """The OPT of a message with no or several questions, when the rest is well formed: the
    FORMERR (or NOTIMP) answering it carries an OPT too (RFC 6891 section 7)."""
    pos = 12
    try:
        for _ in range(qdcount):
            pos = skip_name(data, pos) + 4
            if pos > len(data):
                return None
        return parse_records(data, pos, skip, arcount)
    except FormatError as exc:
        return exc.opt


FIXED_RDATA = {(1, 1): 4, (28, 1): 16}  # (type, class IN): A and AAAA have one exact size


def parse_records(data: bytes, pos: int, skip: int, arcount: int) -> Opt | None:
    """Walk answer/authority/additional, checking every record's framing; return the OPT.

    A malformed record anywhere makes the message FORMERR (RFC 1035 section 4.1); a
    well-formed OPT read before it is attached to the error so the reply can carry an OPT."""
    opt = None
    for index in range(skip + arcount):
        owner = pos
        try:
            pos = skip_name(data, pos)
            if pos + 10 > len(data):
                raise FormatError("record runs past the end")
            rtype, rclass, ttl, rdlength = RR_FIXED.unpack_from(data, pos)
            pos += 10
            rdata_end = pos + rdlength
            if rdata_end > len(data):
                raise FormatError("rdata runs past the end")
            size = FIXED_RDATA.get((rtype, rclass))
            if size is not None and rdlength != size:
                raise FormatError(f"type {rtype} rdata of {rdlength} bytes")
        except FormatError as exc:
            raise FormatError(exc.reason, opt=opt) from None
        if rtype == OPT_TYPE:
            if index < skip:
                raise FormatError("OPT outside the additional section")
            if opt is not None:
                raise FormatError("more than one OPT record")
            if data[owner] != 0:
                raise FormatError("OPT owner is not the root")
            opt = parse_opt(data, pos, rdata_end, rclass, ttl)
        pos = rdata_end
    if pos != len(data):
        raise FormatError("trailing bytes after the last record", opt=opt)
    return opt


def parse_opt(data: bytes, pos: int, end: int, udp_size: int, ttl: int) -> Opt:
    opt = Opt(udp_size=udp_size, version=(ttl >> 16) & 0xFF, do=bool(ttl & DO_BIT),
              co=bool(ttl & CO_BIT))  # fmt: skip
    while pos < end:
        if pos + 4 > end:
            raise FormatError("truncated EDNS option")
        code, length = TWO.unpack_from(data, pos)
        pos += 4
        if pos + length > end:
            raise FormatError("EDNS option runs past the OPT record")
        if code == OPT_ECS:
            if opt.ecs is not None:
                raise FormatError("more than one Client Subnet option")
            opt.ecs = parse_ecs(data[pos : pos + length])
        elif code == OPT_NSID:
            opt.nsid = True
        pos += length
    return opt


def parse_ecs(payload: bytes) -> Ecs:
    """RFC 7871 section 6 and 7.1.1: every malformed form is FORMERR."""
    if len(payload) < 4:
        raise FormatError("Client Subnet option too short")
    family, source, scope = struct.unpack_from("!HBB", payload)
    if family not in (1, 2):
        raise FormatError(f"Client Subnet family {family} unknown")
    if source > (32 if family == 1 else 128):
        raise FormatError(f"Client Subnet source prefix {source} too long")
    if scope != 0:
        raise FormatError("Client Subnet scope must be 0 in a query")
    address = payload[4:]
    if len(address) != (source + 7) // 8:
        raise FormatError("Client Subnet address length does not match the prefix")
    if address and source % 8 and address[-1] & (0xFF >> (source % 8)):
        raise FormatError("Client Subnet address has bits set past the prefix")
    return Ecs(family, source, address, payload)


def udp_limit(opt: Opt | None) -> int:
    """RFC 6891 6.2.3/6.2.5: no OPT -> 512; else min(client, ours), never under 512."""
    if opt is None:
        return MIN_UDP
    return min(max(opt.udp_size, MIN_UDP), MAX_UDP)


def opt_record(query_opt: Opt, *, ext_rcode: int = 0, options: bytes = b"") -> bytes:
    """Our OPT: version 0, our payload size, the DO bit copied (RFC 3225), CO echoed."""
    ttl = (ext_rcode << 24) | edns_flags(query_opt)
    return b"\x00" + RR_FIXED.pack(OPT_TYPE, MAX_UDP, ttl, len(options)) + options


def edns_flags(query_opt: Opt) -> int:
    """The EDNS flags of our OPT: DO copied (RFC 3225); CO echoed, as RFC 9824 5.1 asks of a
    server that answers it."""
    return (DO_BIT if query_opt.do else 0) | (CO_BIT if query_opt.co else 0)


def header(ident: int, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return HEADER.pack(ident, flags, qd, an, ns, ar)


def reply_flags(query_flags: int, rcode: int, *, aa: bool) -> int:
    """QR set, opcode, RD and CD copied, RA clear (we never recurse)."""
    flags = QR | (query_flags & (OPCODE_MASK | RD | CD)) | (rcode & 0xF)
    return flags | AA if aa else flags
