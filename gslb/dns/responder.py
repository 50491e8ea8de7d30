"""One DNS message in, one out (or silence): the whole answer path, transport-agnostic.

Static answers are packed once with dnslib and kept as bytes; a query then costs a header
parse, a dict lookup and a few byte concatenations (ID, flags and the question copied from the
query, so its letter case is kept). GSLB answers are packed once per distinct outcome.
"""

from __future__ import annotations

import gc
import ipaddress
import struct
import time
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol

from dnslib import AAAA as AAAARD
from dnslib import CNAME as CNAMERD
from dnslib import RR, TXT, DNSHeader, DNSLabel, DNSQuestion, DNSRecord
from dnslib import A as ARD

from gslb.config import model
from gslb.config.load import Config
from gslb.config.model import DynamicRecord, RRset
from gslb.config.names import labels, to_wire
from gslb.config.records import TYPE_NAMES
from gslb.dns import lookup
from gslb.dns.demand import DEFAULT_EVERY, DemandSampler, ttls_of
from gslb.dns.shapes import (
    ECS_AT,
    OUTCOME_LIMIT,
    SCOPES,
    TOO_BIG,
    DynamicShape,
    StaticShape,
    dynamic_shape,
    plain_layout,
    sibling_key,
    static_shape,
)
from gslb.dns.wire import (
    AA,
    BADVERS,
    FORMERR,
    HEADER,
    MAX_UDP,
    NOERROR,
    NOTIMP,
    NXDOMAIN,
    OPT_ECS,
    OPT_TYPE,
    QR,
    REFUSED,
    SERVFAIL,
    TC,
    TWO,
    FormatError,
    Query,
    edns_flags,
    header,
    opt_record,
    parse_query,
    reply_flags,
    udp_limit,
)
from gslb.dnssec.delegation import ds_zone
from gslb.dnssec.signer import OverBudget, Signing, answer_mode
from gslb.health.view import EMPTY_VIEW, HealthView
from gslb.policy import weighted
from gslb.stats import Stats

CLASS_IN, CLASS_CH = 1, 3
MAX_CHASE = 8
CACHE_LIMIT = 100_000
REPLAY_LIMIT = 50_000
SHAPE_LIMIT = 50_000
# Shapes of names that do not exist (``sibling_key``), kept apart: a flood of random names
# under random parents makes one per query, and must not push the real names' shapes out.
SIBLING_LIMIT = 4096
MAX_NAME_END = 12 + 255  # where a question name's root byte can be at the latest
RESOLVER_LIMIT = 4096
# Slots of the table of query bytes answered once (see ``handle``), per transport: two
# 8-byte words each (fingerprint, when), 8 MiB for UDP; ten times the replay cache's reach,
# so a repeat within it is recognised nine times in ten.
SIGHTINGS = {"udp": 1 << 19, "tcp": 1 << 16}
MIN_TEMPLATE_NAME = 8  # shorter names cannot hold the stand-in of ``stand_in_name``
OPT_HEAD = struct.Struct("!xHHIH")  # root owner, type, payload size, TTL (DO), RDLENGTH
TCP_LIMIT = 65535
QTYPE_LABELS = TYPE_NAMES  # the metric label of a query type; any other is "other"
RCODE_LABELS = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
                5: "REFUSED", 6: "YXDOMAIN", 16: "BADVERS"}  # fmt: skip
CHAOS_VERSION = {to_wire("version.bind."), to_wire("version.server.")}
CHAOS_ID = {to_wire("id.server."), to_wire("hostname.bind.")}


class Engine(Protocol):
    def answer(self, record, resolver, ecs, health): ...  # gslb.policy.chain.Engine


@dataclass(frozen=True, slots=True)
class Packed:
    """A reply without header ID/RD and question, ready to be completed for one query."""

    flags: int
    an: int
    ns: int
    ar: int
    tail: bytes  # everything after the question
    zone: str  # metrics label
    rcode: int
    # Worth a query shape: an answer for a name of the zone. Names a wildcard, a cut or a
    # DNAME answers for are countless (random-subdomain floods): they take the parser.
    shaped: bool = True
    # An unsigned NXDOMAIN shared by every name of its length in the zone: worth a shape per
    # parent name and length (``gslb.dns.shapes.sibling_key``).
    siblings: bool = False
    # EDNS options our OPT carries besides ECS and NSID (an Extended DNS Error), when the
    # query had an OPT; such replies are never shaped (``complete`` adds them)
    options: bytes = b""


@dataclass(frozen=True, slots=True)
class Dynamic:
    """A cache entry whose answer depends on the client: re-decided on every query."""

    zone: model.Zone
    first: lookup.Result
    record: DynamicRecord  # the one dynamic record the answer starts with


@dataclass(frozen=True, slots=True)
class Outcome:
    """The part of a policy answer that goes into the packed reply."""

    values: tuple[str, ...]
    ttl: int


@dataclass(frozen=True, slots=True)
class Replay:
    """A reply already sent for exactly these query bytes (the ID aside), under the config
    and health view in force: a repeat costs one dict lookup, no parsing. GSLB answers keep
    one reply per choice and pick among them with the engine's own weighted pick."""

    tails: tuple[bytes, ...]  # reply[2:] per choice
    answers: tuple[tuple | None, ...]  # gslb_answers_total labels per choice
    queries: tuple  # gslb_queries_total labels
    ecs: tuple | None  # gslb_ecs_queries_total labels
    truncated: tuple[bool, ...]  # per choice
    cumulative: tuple[int, ...] = ()  # weights to pick a choice with; empty: choice 0
    total: int = 0


@dataclass(slots=True)
class Options:
    identity: bytes | None = None  # id.server / hostname.bind / NSID; None = refuse
    version: str | None = None  # version.bind; None = refuse
    demand_sample: int = DEFAULT_EVERY  # --commit-demand-sample: one GSLB answer in N; 0 off
    spread: int = 1  # processes sharing the queries (--workers)


class Responder:
    def __init__(
        self,
        config: Config,
        engine: Engine | None = None,
        options: Options | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.engine = engine
        self.options = options or Options()
        self.stats = stats or Stats()
        # (query name, client) for names never answered before; set by gslb.rum.resolvers
        self.rum_watch: Callable[[bytes, str], None] | None = None
        self.health: HealthView = EMPTY_VIEW
        # Every cache is bounded and evicts its oldest entry one at a time: a flood of new
        # names or subnets never triggers a wholesale clear (a stall, then a refill storm).
        self.cache: Bounded = Bounded(CACHE_LIMIT)
        self.outcomes: Bounded = Bounded(CACHE_LIMIT)
        self.negatives: dict[tuple, Packed] = {}  # NXDOMAIN/NODATA per zone and name length
        self.opts: dict[tuple, bytes] = {}  # OPT records without ECS: a handful of variants
        self.resolvers: Bounded = Bounded(RESOLVER_LIMIT)
        self.replays: dict[str, Bounded] = self.new_replays()
        self.shapes: dict[str, Bounded] = self.new_shapes()
        # hash(query bytes) and the query's sequence number by slot: a second sighting is
        # remembered in the replay cache. Fixed tables: a flood of new queries overwrites
        # slots, never grows or evicts.
        self.sightings = {name: array("q", bytes(8 * size)) for name, size in SIGHTINGS.items()}
        self.sighted_at = {name: array("q", bytes(8 * size)) for name, size in SIGHTINGS.items()}
        self.sequence = 0  # queries seen: how far back a sighting was
        self.signing = Signing(self.stats)
        # one GSLB answer in N kept for the commit estimate's demand weights (gslb.dns.demand);
        # None while no record has a commit: the answer path then pays one None check
        self.demand: DemandSampler | None = None
        self.set_config(config)

    @staticmethod
    def new_replays() -> dict[str, Bounded]:
        return {"udp": Bounded(REPLAY_LIMIT), "tcp": Bounded(REPLAY_LIMIT)}

    @staticmethod
    def new_shapes(limit: int | None = None) -> dict[str, Bounded]:
        limit = SHAPE_LIMIT if limit is None else limit
        return {"udp": Bounded(limit), "tcp": Bounded(limit)}

    def set_config(self, config: Config) -> None:
        """Swap in a new configuration; the caches belong to the old one. The engine starts
        compiling the new dynamic records' address tables (off the answer path)."""
        self.config = config
        self.signing.set_config(config.signing)
        self.cache = Bounded(CACHE_LIMIT)
        self.outcomes = Bounded(CACHE_LIMIT)
        self.negatives = {}
        self.replays = self.new_replays()
        self.shapes = self.new_shapes()
        self.sibling_shapes = self.new_shapes(SIBLING_LIMIT)
        records = dynamic_records(config)
        plan = getattr(self.engine, "plan", None)
        if plan is not None:
            plan(records)
        self.sample_demand(ttls_of(records))
        settle_heap()

    def sample_demand(self, ttls: dict) -> None:
        """Sample answers for the demand weights while some record has a commit."""
        every = self.options.demand_sample
        if not ttls or every <= 0:
            self.demand = self.stats.demand_sampler = None
        elif self.demand is None:
            self.demand = DemandSampler(ttls, every, self.options.spread)
            self.stats.demand_sampler = self.demand
        else:
            self.demand.configure(ttls)

    def set_health(self, view: HealthView) -> None:
        self.health = view
        self.replays = self.new_replays()

    def roll_window(self, now: float | None = None) -> None:
        """A new signature validity window (a new UTC day): signed replies are rebuilt."""
        if self.signing.roll(time.time() if now is None else now):
            self.cache = Bounded(CACHE_LIMIT)
            self.outcomes = Bounded(CACHE_LIMIT)
            self.negatives = {}
            self.replays = self.new_replays()
            self.shapes = self.new_shapes()
            self.sibling_shapes = self.new_shapes(SIBLING_LIMIT)

    # -- the answer path ---------------------------------------------------------------

    def handle(self, data: bytes, client: str, transport: str = "udp") -> bytes | None:
        """Answer one message from ``client`` (an IP string). None means stay silent.

        Three paths, cheapest first: bytes answered before (the replay cache), a query of a
        known shape (gslb.dns.shapes: only the ID, the name's letter case and the ECS address
        are new), and the parser. Replies are remembered on the second sighting of the same
        bytes, so a stream that never repeats (0x20 names, an ECS subnet per query) costs
        one slot of the sightings table, never a cache entry."""
        replays = self.replays[transport]
        body = data[2:]
        replay = replays.get(body)
        if replay is None:
            replay = replays.get((client, body))
        if replay is not None:
            return self.replay(replay, data, transport, client)
        # A second sighting counts only within the replay cache's reach: bytes that come
        # back after more distinct queries than it holds would evict each other's replies
        # before any was used, so they are not worth building.
        sightings, sighted_at = self.sightings[transport], self.sighted_at[transport]
        fingerprint = hash(body)
        slot = fingerprint & (len(sightings) - 1)
        sequence = self.sequence = self.sequence + 1
        seen = sightings[slot] == fingerprint and sequence - sighted_at[slot] < REPLAY_LIMIT
        sightings[slot], sighted_at[slot] = fingerprint, sequence
        name_end = data.find(0, 12)  # shape_key, inlined: this is the answer path
        shape_bytes = data[2:12] + data[12:name_end].lower() + data[name_end : name_end + ECS_AT]
        shape = self.shapes[transport].get(shape_bytes) if name_end > 0 else None
        if shape is None and 12 < name_end <= MAX_NAME_END:  # a random name, maybe
            shape = self.sibling_shapes[transport].get(sibling_key(data, name_end))
        if shape is not None and len(data) == shape.length:
            reply = self.shaped(shape, data, client, replays if seen else None)
            if reply is not None:
                return reply
        try:
            query = parse_query(data)
        except FormatError as exc:
            self.stats.malformed[transport] += 1
            if exc.query is None or exc.query.flags & QR:
                return None
            return self.error(exc.query, data, FORMERR, transport, keep_question=False)
        if query.flags & QR:
            self.stats.malformed[transport] += 1
            return None  # a response is never answered: no reflection loops
        if query.opcode != 0:
            return self.error(query, data, NOTIMP, transport)
        if query.qdcount != 1:
            return self.error(query, data, FORMERR, transport, keep_question=False)
        opt = query.opt
        if opt is not None and opt.version > 0:
            return self.error(query, data, BADVERS, transport)
        key = (query.qname.lower(), query.qtype, query.qclass, answer_mode(opt))
        entry = self.cache.get(key)
        if entry is None:
            if self.rum_watch is not None:  # gslb.rum.resolvers: <sid>.<name>, first sighting
                self.rum_watch(key[0], client)
            try:
                entry = self.build(key)
            except OverBudget:  # DNSSEC signing ration spent: not answered, not cached
                return self.error(query, data, SERVFAIL, transport)
        scope = 0
        front = None
        dynamic = entry if entry.__class__ is Dynamic else None
        if dynamic is not None:
            entry, scope, front = self.decide(dynamic, key, query, client)
        limit = TCP_LIMIT if transport == "tcp" else udp_limit(opt)
        labels = (entry.zone, QTYPE_LABELS.get(query.qtype, "other"), RCODE_LABELS[entry.rcode],
                  transport)  # fmt: skip
        reply = self.complete(query, data, entry, scope, limit)
        truncated = bool(reply[2] & 0x02)
        ecs = (opt.ecs.family, scope) if opt is not None and opt.ecs is not None else None
        self.count(labels, ecs, truncated, transport)
        if seen and dynamic is None:
            replays.put(body, Replay((reply[2:],), (None,), labels, ecs, (truncated,)))
        elif seen and front is not None:
            tail_of = partial(self.completed_tail, query, data, scope, limit)
            self.remember_choices(replays, (client, body), dynamic, key, front, labels, ecs,
                                  tail_of)  # fmt: skip
        if shape is None and name_end >= 12:
            self.learn(shape_bytes, query, data, name_end, dynamic or entry, key, reply, labels,
                       ecs, limit, transport)  # fmt: skip
        return reply

    def learn_siblings(
        self, query: Query, data: bytes, end: int, key: tuple, reply: bytes, labels: tuple,
        ecs: tuple | None, transport: str,
    ) -> None:  # fmt: skip
        """An unsigned NXDOMAIN: a shape for the names beside this one (``sibling_key``).
        Not while the RUM resolver map watches first sightings of names (its one-off names
        must reach ``rum_watch``), and not for a name of one label under the root."""
        if self.rum_watch is not None or not 12 < end <= MAX_NAME_END or data[12] + 13 >= end:
            return
        zone = self.config.zone_for(key[0])
        if zone is None or not plain_layout(query, data, end):
            return
        shape = static_shape(query, data, end, reply, labels, ecs, absent=zone)
        if shape is not None:
            self.sibling_shapes[transport].put(sibling_key(data, end), shape)

    # -- query shapes (gslb.dns.shapes): the parser's path teaches, the next query skips it --

    def learn(
        self, shape_bytes: bytes, query: Query, data: bytes, end: int, entry: Packed | Dynamic,
        key: tuple, reply: bytes, labels: tuple, ecs: tuple | None, limit: int, transport: str,
    ) -> None:  # fmt: skip
        """Keep the shape of a query just answered. Names that do not exist, and names a
        wildcard, a cut or a DNAME answers for, are left out: a random-name flood would only
        push useful shapes out."""
        if entry.__class__ is Dynamic:
            if not plain_layout(query, data, end):
                return
            opt = self.opt_for(query, 0) if query.opt is not None else b""
            shape = dynamic_shape(query, data, end, entry, key, opt, limit, transport,
                                  labels[1])  # fmt: skip
        elif entry.siblings:
            self.learn_siblings(query, data, end, key, reply, labels, ecs, transport)
            return
        elif entry.rcode == NOERROR and entry.shaped and plain_layout(query, data, end):
            shape = static_shape(query, data, end, reply, labels, ecs)
        else:
            return
        if shape is not None:
            self.shapes[transport].put(shape_bytes, shape)

    def shaped(
        self, shape: StaticShape | DynamicShape, data: bytes, client: str, remember: Bounded | None
    ) -> bytes | None:
        """The reply to a query of a known shape; None: the parser's path answers it (a
        malformed address, an answer that needs truncation, a decision the table leaves to
        the step-by-step chain). Counts exactly what ``handle`` counts; with ``remember``
        (the second sighting of these bytes) the reply goes into that replay cache."""
        end = shape.end
        if shape.last_mask and data[-1] & shape.last_mask:
            return None  # bits past the ECS prefix: FORMERR, from the parser
        if shape.__class__ is StaticShape:
            absent = shape.absent
            if absent is not None:  # a sibling of a name that does not exist: nor may this one
                name = data[12 : end + 1].lower()
                if name in absent.nodes or name in absent.existing or name in self.config.zones:
                    return None  # a name of the zone, or the apex of another zone we serve
            self.stats.queries[shape.labels] += 1
            reply = data[:2] + shape.head + data[12 : end + 5] + shape.after
            if shape.ecs_labels is not None:
                self.stats.ecs[shape.ecs_labels] += 1
                reply += data[end + ECS_AT :]
            if remember is not None:
                remember.put(data[2:], Replay((reply[2:],), (None,), shape.labels,
                                              shape.ecs_labels, (False,)))  # fmt: skip
            return reply
        entry = shape.entry
        if shape.ecs:
            address = data[end + ECS_AT :]
            version, ip = shape.version, int.from_bytes(address) << shape.shift
        else:
            version, ip = self.resolver(client)
            if not version:
                return None
        decided = self.engine.decide(entry.record, version, ip, shape.source, self.health)
        if decided is None:
            return None
        answer = decided[0]
        outcome = shape.outcomes.get((answer.values, answer.ttl))
        if outcome is None:
            try:
                packed = self.packed_outcome(entry, shape.key, answer.values, answer.ttl)
            except OverBudget:
                return None
            outcome = shape.outcome(packed, RCODE_LABELS)
            if len(shape.outcomes) < OUTCOME_LIMIT:
                shape.outcomes[(answer.values, answer.ttl)] = outcome
        if outcome is TOO_BIG:
            return None
        stats = self.stats
        counted = (entry.record.fqdn, answer.target, answer.reason)
        stats.answers[counted] += 1
        demand = self.demand
        if demand is not None:  # DemandSampler.see, inlined: this is the answer path
            demand.left -= 1
            if not demand.left:
                demand.take(client, data, counted, answer.scope)
        stats.queries[outcome.labels] += 1
        ecs = None
        if shape.ecs:
            ecs = (shape.family, answer.scope)
            stats.ecs[ecs] += 1
        reply = data[:2] + shape.splice(outcome, data, answer.scope)
        if remember is not None:
            tail_of = partial(spliced_tail, shape, data, answer.scope)
            self.remember_choices(remember, (client, data[2:]), entry, shape.key, decided,
                                  outcome.labels, ecs, tail_of)  # fmt: skip
        return reply

    def replay_choices(self, prepared: Any, sticky: int) -> Any:
        """The choices to keep a packed reply for: all of them when each query draws one at
        random, else this client's own pick; None when an answer holds several choices
        (replies for every combination would be needed)."""
        if not prepared.choices or (prepared.answers > 1 and len(prepared.choices) > 1):
            return None
        if prepared.weighted and not prepared.sticky and len(prepared.choices) > 1:
            return range(len(prepared.choices))
        return weighted.pick(prepared, self.engine.rng, sticky)[:1]

    def count(self, labels: tuple, ecs: tuple | None, truncated: bool, transport: str) -> None:
        stats = self.stats
        stats.queries[labels] += 1
        if ecs is not None:
            stats.ecs[ecs] += 1
        if truncated:
            stats.truncated[transport] += 1

    def replay(self, replay: Replay, data: bytes, transport: str, client: str) -> bytes:
        index = 0
        if replay.cumulative:  # the same draw as gslb.policy.weighted.pick for one answer
            index = bisect_right(replay.cumulative, self.engine.rng.random() * replay.total)
            index = min(index, len(replay.tails) - 1)
        answer = replay.answers[index]
        if answer is not None:
            self.stats.answers[answer] += 1
            demand = self.demand
            if demand is not None:  # DemandSampler.see, inlined: this is the answer path
                demand.left -= 1
                if not demand.left:
                    demand.take(client, data, answer, replay.ecs[1] if replay.ecs else 0)
        self.count(replay.queries, replay.ecs, replay.truncated[index], transport)
        return data[:2] + replay.tails[index]

    def remember_choices(
        self, replays: Bounded, replay_key: tuple, dynamic: Dynamic, key: tuple,
        decided: tuple, labels: tuple, ecs: tuple | None,
        tail_of: Callable[[Packed], bytes | None],
    ) -> None:  # fmt: skip
        """One packed reply per choice of the prepared decision, when one pick of one choice
        is the whole answer (several answers per reply would need every combination).
        ``decided`` is (answer, prepared decision, sticky key) from ``decide``; ``tail_of``
        completes a packed outcome into this query's reply after its ID (None: it cannot be
        kept), by the parser's path or by the query's shape."""
        _answer, prepared, sticky = decided
        indices = self.replay_choices(prepared, sticky)
        if indices is None:
            return
        tails, answers = [], []
        for index in indices:
            choice = prepared.choices[index]
            values = weighted.values_of(prepared, [index])
            try:
                packed = self.packed_outcome(dynamic, key, values, prepared.ttl)
            except OverBudget:
                return  # the signing ration is spent: not worth a replay now
            tail = tail_of(packed)
            if tail is None:
                return
            tails.append(tail)
            answers.append((dynamic.record.fqdn, choice.label, choice.reason))
        truncated = tuple(bool(tail[0] & 0x02) for tail in tails)
        cumulative = prepared.cumulative if len(indices) > 1 else ()
        replays.put(replay_key, Replay(tuple(tails), tuple(answers), labels, ecs, truncated,
                                       cumulative, prepared.total))  # fmt: skip

    def completed_tail(
        self, query: Query, data: bytes, scope: int, limit: int, packed: Packed
    ) -> bytes:
        """``complete`` after the ID: ``remember_choices``'s ``tail_of`` on the parser's path
        (a partial, not a closure: a closure would make ``handle``'s locals cells)."""
        return self.complete(query, data, packed, scope, limit)[2:]

    def complete(self, query: Query, data: bytes, entry: Packed, scope: int, limit: int) -> bytes:
        """The reply bytes; counts nothing (the caller counts what it sends)."""
        flags = entry.flags | (query.flags & 0x0110)  # RD and CD copied
        question = data[12 : query.question_end]
        opt = b""
        if query.opt is not None:
            opt = self.opt_for(query, scope)
            if entry.options:
                opt = with_options(opt, entry.options)
        arcount = entry.ar + (1 if opt else 0)
        reply = HEADER.pack(query.id, flags, 1, entry.an, entry.ns, arcount)
        reply += question + entry.tail + opt
        if len(reply) > limit:
            reply = HEADER.pack(query.id, flags | TC, 1, 0, 0, 1 if opt else 0) + question + opt
        return reply

    def opt_for(self, query: Query, scope: int) -> bytes:
        """Our OPT record. Without ECS the same few variants recur, so they are built once and
        kept; with ECS the echo (family, source, address, our scope) is spliced in per query,
        since resolvers send a different subnet nearly every time."""
        opt = query.opt
        ecs = opt.ecs
        if ecs is None:
            key = (opt.do, opt.co, opt.nsid)
            record = self.opts.get(key)
            if record is None:
                record = self.opts[key] = opt_record(opt, options=self.nsid_option(opt))
            return record
        raw = ecs.raw
        nsid = self.nsid_option(opt)
        size = 4 + len(raw) + len(nsid)
        return (OPT_HEAD.pack(OPT_TYPE, MAX_UDP, edns_flags(opt), size)
                + TWO.pack(OPT_ECS, len(raw)) + raw[:3] + SCOPES[scope] + raw[4:]
                + nsid)  # fmt: skip

    def nsid_option(self, opt) -> bytes:
        if opt.nsid and self.options.identity is not None:
            nsid = self.options.identity
            return (3).to_bytes(2, "big") + len(nsid).to_bytes(2, "big") + nsid
        return b""

    def error(
        self, query: Query, data: bytes, rcode: int, transport: str, *, keep_question: bool = True
    ) -> bytes:
        """FORMERR / NOTIMP / BADVERS: the query's ID, no data, OPT kept when it was valid."""
        self.stats.queries[("", QTYPE_LABELS.get(query.qtype, "other"), RCODE_LABELS[rcode],
                            transport)] += 1  # fmt: skip
        question = data[12 : query.question_end] if keep_question and query.qname else b""
        opt = b""
        if query.opt is not None:  # an OPT that was well formed: RFC 6891 section 7
            opt = opt_record(query.opt, ext_rcode=rcode >> 4)
        flags = reply_flags(query.flags, rcode & 0xF, aa=False)
        return header(query.id, flags, 1 if question else 0, 0, 0, 1 if opt else 0) + question + opt

    # -- building cached entries --------------------------------------------------------

    def build(self, key: tuple) -> Packed | Dynamic:
        entry = self.resolve_static(key)
        self.cache.put(key, entry)  # bounded: random-name floods evict the oldest names
        return entry

    def resolve_static(self, key: tuple) -> Packed | Dynamic:
        qname, qtype, qclass, _ = key
        if qclass == CLASS_CH:
            return self.chaos(qname, qtype, qclass)
        zone = self.config.zone_for(qname)
        if qclass != CLASS_IN or zone is None:
            return pack(qname, qtype, qclass, lookup.Result(rcode=REFUSED, aa=False), "")
        if qtype == model.DS:  # RFC 4035 3.1.4.1: the parent's, when we serve both sides
            zone = ds_zone(self.config.zones, zone, qname)
        if qtype in (model.AXFR, model.IXFR):
            return pack(qname, qtype, qclass, lookup.Result(rcode=REFUSED, aa=False), zone.fqdn)
        if qtype in (model.MAILA, model.MAILB):
            return pack(qname, qtype, qclass, lookup.Result(rcode=NOTIMP, aa=False), zone.fqdn)
        if self.signing.refuses(key, zone):  # RFC 9824 3.5: NXNAME in a signed zone
            return pack(qname, qtype, qclass, lookup.Result(rcode=FORMERR, aa=False), zone.fqdn,
                        shaped=False, options=EDE_INVALID_QUERY_TYPE)  # fmt: skip
        nsec = self.signing.nsec_answer(key, zone)  # DNSSEC meta-type: gslb.dnssec.signer
        if nsec is not None:
            return pack(qname, qtype, qclass, nsec, zone.fqdn)
        first = lookup.lookup(zone, qname, qtype)
        if first.answer and isinstance(first.answer[0], DynamicRecord):
            return Dynamic(zone, first, first.answer[0])
        result = self.chase(zone, qname, qtype, first) or first
        signed = self.sign(key, zone, result)
        unsigned_negative = signed is result and not result.answer and not result.additional
        if unsigned_negative and len(qname) >= MIN_TEMPLATE_NAME:
            shaped = result.rcode == NOERROR and qname in zone.nodes  # NODATA at a real name
            return self.negative(qname, qtype, qclass, result, zone.fqdn, shaped)
        return pack(qname, qtype, qclass, signed, zone.fqdn, shaped=qname in zone.nodes)

    def sign(self, key: tuple, zone: model.Zone, result: lookup.Result) -> lookup.Result:
        """DNSSEC, in one place: a DO query in a signed zone gets RRSIGs and denial proofs
        added right before the reply is packed, so the cached bytes carry them (the key's
        last part, ``gslb.dnssec.signer.answer_mode``, says what the query asked for)."""
        return self.signing.sign(key, zone, result)

    def negative(
        self, qname: bytes, qtype: int, qclass: int, result: lookup.Result, zone: str,
        shaped: bool,
    ) -> Packed:  # fmt: skip
        """NXDOMAIN and NODATA replies do not mention the query name after the question, so
        one packed reply serves every name of the same length in the zone (random-name
        floods): packed once with a stand-in name that nothing can compress against."""
        authority = tuple((r.name, r.rtype, r.ttl, id(r.rdatas)) for r in result.authority)
        key = (zone, result.rcode, result.aa, authority, qclass, len(qname), shaped)
        packed = self.negatives.get(key)
        if packed is None:
            siblings = result.rcode == NXDOMAIN
            packed = pack(stand_in_name(len(qname)), qtype, qclass, result, zone, shaped=shaped,
                          siblings=siblings)  # fmt: skip
            if len(self.negatives) < CACHE_LIMIT:
                self.negatives[key] = packed
        return packed

    def chase(
        self, zone: model.Zone, qname: bytes, qtype: int, result: lookup.Result
    ) -> lookup.Result | None:
        """Follow in-zone CNAMEs (up to MAX_CHASE) so a resolver gets the data in one answer.

        Meeting a dynamic record on the way returns None: that part of the answer depends on
        the client, so the chain stops before it and the resolver asks for the target itself.
        """
        answer = list(result.answer)
        seen = {qname}
        target = result.cname_target
        while target is not None and qtype not in (model.CNAME, model.ANY):
            if target in seen or len(seen) > MAX_CHASE or self.config.zone_for(target) is not zone:
                break
            seen.add(target)
            step = lookup.lookup(zone, target, qtype)
            if not step.aa:
                break  # the target is delegated away: the resolver follows it
            if any(isinstance(item, DynamicRecord) for item in step.answer):
                return None
            answer.extend(step.answer)
            result = lookup.Result(step.rcode, True, answer, step.authority, step.additional)
            target = step.cname_target
        result.answer = answer
        return result

    def chaos(self, qname: bytes, qtype: int, qclass: int) -> Packed:
        text = None
        if qtype in (model.TXT, model.ANY):
            if qname in CHAOS_VERSION and self.options.version is not None:
                text = self.options.version.encode()
            elif qname in CHAOS_ID and self.options.identity is not None:
                text = self.options.identity
        if text is None:
            return pack(qname, qtype, qclass, lookup.Result(rcode=REFUSED, aa=False), "")
        rrset = RRset(qname, model.TXT, 0, (TXT([text[:255]]),))
        return pack(qname, qtype, qclass, lookup.Result(answer=[rrset]), "", rclass=CLASS_CH)

    # -- GSLB answers ----------------------------------------------------------------

    def decide(self, entry: Dynamic, key: tuple, query: Query, client: str):
        """Ask the policy engine, then reuse the packed reply of an outcome seen before.

        Returns (packed reply, ECS scope, what ``remember_choices`` needs or None). The
        compiled table answers a client from its integer address; the step-by-step path runs
        while a table is being built, for ranges the table leaves to the database, and for an
        ECS option with source /0 (the resolver's own address then decides).
        """
        opt = query.opt
        ecs_opt = opt.ecs if opt is not None else None
        record = entry.record
        if ecs_opt is None or (ecs_opt.source and record.options.ecs):
            if ecs_opt is not None:
                version = 4 if ecs_opt.family == 1 else 6
                ip = int.from_bytes(ecs_opt.address + ZEROS[version][len(ecs_opt.address) :])
                source = ecs_opt.source
            else:
                version, ip = self.resolver(client)
                source = None
            if version:
                decided = self.engine.decide(record, version, ip, source, self.health)
                if decided is not None:
                    answer = decided[0]
                    self.count_answer(record, answer, client, query)
                    packed = self.packed_outcome(entry, key, answer.values, answer.ttl)
                    return packed, answer.scope, decided
        ecs_opt = used_ecs(opt)
        key_of_client = client_key(client, ecs_opt)
        answer = self.engine.answer_cached(record, key_of_client, self.health)
        if answer is None:
            answer = self.first_answer(record, client, ecs_opt, key_of_client)
        self.count_answer(record, answer, client, query)
        front = self.engine.front(record, key_of_client, self.health)
        decided = None if front is None else (answer, front.prepared, front.sticky_key)
        return self.packed_outcome(entry, key, answer.values, answer.ttl), answer.scope, decided

    def count_answer(self, record: DynamicRecord, answer: Any, client: str, query: Query) -> None:
        counted = (record.fqdn, answer.target, answer.reason)
        self.stats.answers[counted] += 1
        if self.demand is not None:
            self.demand.see(client, query, counted, answer.scope)

    def resolver(self, client: str) -> tuple[int, int]:
        """(family, integer address) of a resolver's address text; (0, 0) for an IPv4-mapped
        IPv6 resolver (the step-by-step path unwraps it). Kept per resolver, bounded."""
        known = self.resolvers.get(client)
        if known is None:
            address = ipaddress.ip_address(client)
            if address.version == 6 and address.ipv4_mapped is not None:
                known = (0, 0)
            else:
                known = (address.version, int(address))
            self.resolvers.put(client, known)
        return known

    def packed_outcome(self, entry: Dynamic, key: tuple, values: tuple, ttl: int) -> Packed:
        """The packed reply of one outcome, packed with dnslib once and kept."""
        out_key = (key, values, ttl)
        packed = self.outcomes.get(out_key)
        if packed is None:
            packed = self.pack_outcome(entry, key, Outcome(values, ttl))
            self.outcomes.put(out_key, packed)
        return packed

    def first_answer(self, record: DynamicRecord, client: str, ecs_opt, client_key: tuple):
        """A client (or health view) not seen before: build addresses, run the full chain."""
        resolver = ipaddress.ip_address(client)
        ecs = None
        if ecs_opt is not None:
            raw = ecs_opt.ip_bytes()
            ecs = (IPv4Address(raw) if ecs_opt.family == 1 else IPv6Address(raw), ecs_opt.source)
        return self.engine.answer(record, resolver, ecs, self.health, client_key)

    def pack_outcome(self, entry: Dynamic, key: tuple, answer) -> Packed:
        qname, qtype, qclass, _ = key
        record, first = entry.record, entry.first
        if not answer.values:  # fail_open: false and everything down
            return pack(qname, qtype, qclass, lookup.Result(rcode=SERVFAIL, aa=False), "")
        rrset = RRset(qname, record.rtype, answer.ttl, rdatas(record.rtype, answer.values))
        result = lookup.Result(first.rcode, first.aa, [rrset], first.authority, first.additional)
        if record.rtype == model.CNAME:
            result.cname_target = to_wire(answer.values[0])
        unchased = lookup.Result(result.rcode, True, [rrset], first.authority)
        # A chain into another dynamic record stops there: the resolver asks for it.
        result = self.chase(entry.zone, qname, qtype, result) or unchased
        return pack(qname, qtype, qclass, self.sign(key, entry.zone, result), entry.zone.fqdn)


def spliced_tail(shape: DynamicShape, data: bytes, scope: int, packed: Packed) -> bytes | None:
    """A packed outcome spliced for a shaped query, after the ID (None: it needs truncation):
    ``remember_choices``'s ``tail_of`` for query shapes."""
    parts = shape.outcome(packed, RCODE_LABELS)
    return None if parts is TOO_BIG else shape.splice(parts, data, scope)


ZEROS = {4: bytes(4), 6: bytes(16)}


class Bounded(OrderedDict):
    """A dict that holds at most ``limit`` entries, evicting the oldest one per insert: the
    cost of a flood of new keys is spread evenly, never a wholesale clear."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: Any, value: Any) -> None:
        if len(self) >= self.limit:
            self.popitem(last=False)
        self[key] = value


def dynamic_records(config: Config) -> list[DynamicRecord]:
    return [record for zone in config.zones.values() for node in zone.nodes.values()
            for record in node.dynamic.values()]  # fmt: skip


def stand_in_name(length: int) -> bytes:
    """A wire name of exactly ``length`` bytes whose last label is no hostname label (so no
    name in a reply compresses against it)."""
    body = length - 1  # the root byte
    labels_out = []
    while body > 0:
        size = min(63, body - 1)
        if body - size - 1 == 1:
            size -= 1  # never leave a one-byte rest: that would be a root label mid-name
        labels_out.append(bytes((size,)) + b"#" * size)
        body -= size + 1
    return b"".join(labels_out) + b"\x00"


def used_ecs(opt):
    """The query's Client Subnet option, unless absent or /0 ("use the resolver", RFC 7871)."""
    if opt is not None and opt.ecs is not None and opt.ecs.source:
        return opt.ecs
    return None


def client_key(client: str, ecs) -> tuple:
    """Everything of a query a GSLB decision may depend on: the resolver and the ECS bytes."""
    return (client, None if ecs is None else ecs.raw)


def settle_heap() -> None:
    """Collect the old configuration, then move everything alive into the permanent
    generation: a 100k-record config is millions of objects, and full collections walking
    them paused workers for 17-160 ms under load (measured), which is a p99 disaster."""
    gc.collect()
    gc.freeze()


def rdatas(rtype: int, values: tuple[str, ...]) -> tuple:
    if rtype == model.A:
        return tuple(ARD(v) for v in values)
    if rtype == model.AAAA:
        return tuple(AAAARD(v) for v in values)
    return tuple(CNAMERD(DNSLabel(labels(to_wire(v)))) for v in values)


def pack(
    qname: bytes,
    qtype: int,
    qclass: int,
    result: lookup.Result,
    zone: str,
    *,
    rclass: int = CLASS_IN,
    shaped: bool = True,
    siblings: bool = False,
    options: bytes = b"",
) -> Packed:
    """Pack a result once with dnslib (name compression included) and keep the bytes."""
    record = DNSRecord(DNSHeader(id=0, qr=1, aa=int(result.aa), rd=0, rcode=result.rcode))
    record.add_question(DNSQuestion(DNSLabel(labels(qname)), qtype, qclass))
    for section, add in (
        (result.answer, record.add_answer),
        (result.authority, record.add_auth),
        (result.additional, record.add_ar),
    ):
        for rrset in section:
            owner = DNSLabel(labels(rrset.name))
            for rdata in rrset.rdatas:
                add(RR(owner, rrset.rtype, rclass, rrset.ttl, rdata))
    raw = record.pack()
    _, flags, _, an, ns, ar = HEADER.unpack_from(raw)
    tail = raw[12 + len(qname) + 4 :]
    flags = (flags & ~0x0110) | QR | (AA if result.aa else 0)
    rcode = result.rcode if result.rcode < 16 else NOERROR
    return Packed(flags, an, ns, ar, tail, zone, rcode, shaped, siblings, options)


def with_options(opt: bytes, options: bytes) -> bytes:
    """Our OPT record with ``options`` appended to its RDATA (RDLENGTH follows)."""
    rdlength = int.from_bytes(opt[9:11]) + len(options)
    return opt[:9] + rdlength.to_bytes(2) + opt[11:] + options


# RFC 8914 Extended DNS Error 30, Invalid Query Type (RFC 9824 3.5: with the NXNAME FORMERR)
EDE_INVALID_QUERY_TYPE = (15).to_bytes(2) + (2).to_bytes(2) + (30).to_bytes(2)


__all__ = ["Responder", "Options", "NOERROR"]
