"""Query shapes: answering a query that differs from one answered before only in its ID, the
letter case of its name (0x20) and its Client Subnet address, without parsing it.

Real resolvers rarely send the same bytes twice: they randomise the name's letter case and
carry each client's subnet. What they do repeat is the *shape* of a query: header flags and
counts, the name in lower case, type and class, the OPT record's payload size and flags, and
the ECS option's family and prefix length. The full parser (``wire.parse_query``) learns a
shape when it answers one; from then on a query of that shape costs one ``bytes.find``, a
lower-cased key and one dict lookup, plus, for a GSLB name, the compiled address table's
bisect and the weighted pick. The reply is spliced from the query's own ID and question (its
letter case kept) and bytes prepared when the shape was learnt.

Only the everyday forms get a shape (one question; no OPT, or an OPT with no option or only a
Client Subnet option, last in the message); anything else, and every error, takes the parser.
A key match is a proof of the parse: the name in the key was read label by label when the
shape was learnt, so a message that matches it byte for byte has that name, that type and
that OPT, and its total length (checked too) leaves exactly the ECS address after them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gslb.dns.wire import HEADER, OPT_ECS, OPT_TYPE, TC, TWO, Query

# From the root byte of the question name to the first byte of the ECS address: QTYPE, QCLASS,
# the OPT record's fixed part (root owner, type, size, TTL, RDLENGTH), the option's code and
# length, family, source and scope prefixes.
ECS_AT = 5 + 11 + 8
QUESTION_TAIL = 5  # the name's root byte, QTYPE, QCLASS
OUTCOME_LIMIT = 64  # prepared replies per dynamic shape (one per distinct answer)
SCOPES = tuple(bytes((n,)) for n in range(256))
TOO_BIG = object()  # an outcome whose reply needs truncation: the parser's path answers it


def shape_key(data: bytes) -> tuple[bytes, int]:
    """(key, position of the name's root byte), or (b"", -1) when there is no root byte."""
    end = data.find(0, 12)
    if end < 0:
        return b"", -1
    return data[2:12] + data[12:end].lower() + data[end : end + ECS_AT], end


def sibling_key(data: bytes, end: int) -> bytes:
    """The key of a name that does not exist, shared by every name of the same length made of
    one more label under the same parent (random-name floods: ``<random>.example.com``).

    An NXDOMAIN for ``x.P`` (a name that is no node and has none below it) means that no cut,
    DNAME or wildcard covers ``P``'s children, so any other ``y.P`` that is not a name of the
    zone gets the same reply (the same closest encloser, the same SOA); the responder checks
    that last part with two set lookups. 0xFF marks the key (a regular key has a label length
    there, at most 63); the name's length is in it because the packed negative reply is per
    length. Callers ensure ``12 < end <= 267`` (a name is at most 255 bytes)."""
    first = data[12]
    return (data[2:12] + b"\xff" + SCOPES[end - 12] + data[13 + first : end].lower()
            + data[end : end + ECS_AT])  # fmt: skip


@dataclass(slots=True, eq=False)
class StaticShape:
    """A query whose answer does not depend on the client: the reply but for ID, question
    and ECS address is fixed."""

    length: int  # of the whole query: anything else is another shape or malformed
    end: int  # the name's root byte
    head: bytes  # the reply header after the ID
    after: bytes  # the sections after the question, our OPT up to the ECS address
    ecs: bool  # the query's ECS address (scope 0) is echoed after ``after``
    last_mask: int  # bits of the last address byte that must be 0 (past the prefix)
    labels: tuple  # gslb_queries_total
    ecs_labels: tuple | None  # gslb_ecs_queries_total
    # Set for the shape of a name that does not exist (``sibling_key``): the zone whose names
    # (nodes and empty non-terminals) the query's name must not be one of.
    absent: Any = None


@dataclass(slots=True, eq=False)
class ReplyParts:
    """One answer of a dynamic shape, prepared: header after the ID, sections after the
    question, metric labels."""

    head: bytes
    tail: bytes
    labels: tuple


@dataclass(slots=True, eq=False)
class DynamicShape:
    """A query for a GSLB name: the decision is the compiled table's, the reply is spliced
    from the outcome's prepared bytes."""

    length: int
    end: int
    entry: Any  # responder.Dynamic
    key: tuple  # the responder's cache key: (lower-case name, qtype, qclass, DO)
    ecs: bool  # the client is the ECS address (else the resolver's address)
    version: int  # 4 or 6 (ECS family); 0 without ECS
    family: int  # the ECS family code (1, 2) for gslb_ecs_queries_total; 0 without ECS
    shift: int  # address bytes -> integer address
    source: int | None  # ECS source prefix, None without ECS
    last_mask: int
    opt: bytes  # our OPT: whole (no ECS) or up to the scope byte
    flags: int  # query flags copied into the reply (RD, CD)
    limit: int  # reply size limit (UDP payload or TCP)
    transport: str
    qtype_label: str
    outcomes: dict = field(default_factory=dict)  # (values, ttl) -> ReplyParts | TOO_BIG

    def splice(self, outcome: ReplyParts, data: bytes, scope: int) -> bytes:
        """The reply after its ID: the outcome's bytes around the query's own question (its
        letter case kept) and, with ECS, our scope and the query's address."""
        end = self.end
        if self.ecs:
            return b"".join((outcome.head, data[12 : end + QUESTION_TAIL], outcome.tail,
                             self.opt, SCOPES[scope], data[end + ECS_AT :]))  # fmt: skip
        return outcome.head + data[12 : end + QUESTION_TAIL] + outcome.tail + self.opt

    def outcome(self, packed: Any, rcode_labels: dict[int, str]) -> Any:
        """Prepare (and keep, bounded) the reply parts of one packed outcome."""
        size = (self.end + QUESTION_TAIL + len(packed.tail) + len(self.opt)
                + ((self.length - self.end - ECS_AT + 1) if self.ecs else 0))  # fmt: skip
        if size > self.limit:
            return TOO_BIG
        arcount = packed.ar + (1 if self.opt else 0)
        head = HEADER.pack(0, packed.flags | self.flags, 1, packed.an, packed.ns, arcount)[2:]
        labels = (packed.zone, self.qtype_label, rcode_labels[packed.rcode], self.transport)
        return ReplyParts(head, packed.tail, labels)


def plain_layout(query: Query, data: bytes, end: int) -> bool:
    """Is this query in the one layout shapes understand: one question whose name holds no
    zero byte, then nothing, or one OPT with no option or only a Client Subnet option?"""
    if end + QUESTION_TAIL != query.question_end:
        return False  # a zero byte inside a label: find() stopped early
    _, _, _, ancount, nscount, arcount = HEADER.unpack_from(data)
    if ancount or nscount or arcount > 1:
        return False
    opt = query.opt
    if opt is None:
        return arcount == 0 and len(data) == query.question_end
    if opt.nsid:
        return False
    size = 11 + (4 + len(opt.ecs.raw) if opt.ecs is not None else 0)
    if len(data) != query.question_end + size:
        return False
    if opt.ecs is not None:
        start = query.question_end + 11
        return TWO.unpack_from(data, start) == (OPT_ECS, len(opt.ecs.raw))
    return data[query.question_end + 1 : query.question_end + 3] == OPT_TYPE.to_bytes(2, "big")


def last_mask(query: Query) -> int:
    ecs = query.opt.ecs if query.opt is not None else None
    if ecs is None or not ecs.source % 8:
        return 0
    return 0xFF >> (ecs.source % 8)


def static_shape(query: Query, data: bytes, end: int, reply: bytes, labels: tuple,
                 ecs_labels: tuple | None, absent: Any = None) -> StaticShape | None:  # fmt: skip
    """The shape of a static answer, from the reply just built for it (``absent``: see
    ``StaticShape``)."""
    if reply[2] & (TC >> 8):
        return None
    ecs = query.opt is not None and query.opt.ecs is not None
    address = len(query.opt.ecs.address) if ecs else 0  # type: ignore[union-attr]
    after = reply[query.question_end : len(reply) - address]
    return StaticShape(len(data), end, reply[2:12], after, ecs, last_mask(query), labels,
                       ecs_labels, absent)  # fmt: skip


def dynamic_shape(query: Query, data: bytes, end: int, entry: Any, key: tuple, opt: bytes,
                  limit: int, transport: str, qtype_label: str) -> DynamicShape | None:  # fmt: skip
    """The shape of a GSLB query, when the compiled path can decide it: the client is the
    ECS address the record uses, or the resolver when there is no ECS option."""
    ecs = query.opt.ecs if query.opt is not None else None
    if ecs is not None and (not ecs.source or not entry.record.options.ecs):
        return None  # /0 or a record that ignores ECS: the parser's path decides
    version, family, shift, source = 0, 0, 0, None
    if ecs is not None:
        family = ecs.family
        version = 4 if ecs.family == 1 else 6
        shift = (32 if version == 4 else 128) - 8 * len(ecs.address)
        source = ecs.source
        opt = opt[: len(opt) - len(ecs.address) - 1]  # up to the scope byte
    return DynamicShape(len(data), end, entry, key, ecs is not None, version, family, shift, source,
                        last_mask(query), opt, query.flags & 0x0110, limit, transport,
                        qtype_label)  # fmt: skip
