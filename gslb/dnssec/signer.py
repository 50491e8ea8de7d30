"""Sign one answer (a ``gslb.dns.lookup.Result``) before the responder packs it.

The responder calls ``ZoneSigner.sign`` once per packed reply for a DO query in a signed zone;
the packed bytes are cached, so a repeat costs nothing here. What it adds (RFC 4035, RFC 9824):

- an RRSIG after every RRset of ours in answer and authority (never glue, never the NS of a
  delegation), DNSKEY/CDS/CDNSKEY signed by every published key, the rest by the active key;
- compact denial: one NSEC owned by the name denied, next name ``\\000.name``, bitmap
  ``NXNAME RRSIG NSEC`` for a name that does not exist and the types present otherwise, with
  rcode NOERROR (NXDOMAIN when the query set CO, RFC 9824 5.1); wildcard answers are signed
  as the expanded name (no NSEC needed);
- at an unsigned delegation, an NSEC owned by the cut with ``NS RRSIG NSEC``;
- the DNSSEC types asked for themselves: NSEC answered with the name's compact NSEC, RRSIG with
  a NODATA whose NSEC leaves RRSIG out, NXNAME with FORMERR (with or without DO);
- TTLs capped at a day, below the signatures' remaining validity.

Signatures come from a cache keyed on the whole signing input (key tag, window, owner, type,
TTL and every RDATA), so two different RRsets can never share a signature. Signatures for
denials are rationed per second and not cached: a random-subdomain flood can take neither the
CPU nor the cache.
"""

from __future__ import annotations

import struct
import time

from dnslib import RD

from gslb.config import model
from gslb.config.model import RRset, Zone
from gslb.dns import lookup
from gslb.dns.wire import NOERROR, NXDOMAIN
from gslb.dnssec.canonical import count_labels, rdata_wire, rrset_wire, successor, type_bitmap
from gslb.dnssec.settings import CDNSKEY, CDS, DNSKEY, ZoneSigning
from gslb.dnssec.window import MAX_SIGNED_TTL, Window, window_at

RRSIG, NSEC, NXNAME = 46, 47, 128
# What a query asks of signing (the last part of the responder's reply-cache key): nothing
# (no DO), signed answers (DO), or signed answers with NXDOMAIN kept (DO + CO, RFC 9824 5.1).
UNSIGNED, SIGNED, COMPACT_OK = 0, 1, 2
APEX_KEY_TYPES = frozenset({DNSKEY, CDS, CDNSKEY})
RRSIG_HEAD = struct.Struct("!HBBIIIH")
CACHE_LIMIT = 200_000
MEMO_LIMIT = 20_000


class OverBudget(Exception):
    """The per-second ration of fresh denial signatures is spent: answer SERVFAIL, uncached."""


class Unprovable(OverBudget):
    """No NSEC can deny this name alone (254 or more octets, a first label of 0xFF octets
    only): answered SERVFAIL, uncached, like a spent ration."""


class SignatureCache:
    """Signing input -> signature. Full: the oldest entry leaves as each new one comes in, so
    the cache never stalls in a wholesale clear (pdns#12899) and survives reloads."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self.limit = limit
        self.entries: dict[bytes, bytes] = {}

    def get(self, data: bytes) -> bytes | None:
        return self.entries.get(data)

    def put(self, data: bytes, signature: bytes) -> None:
        entries = self.entries
        if len(entries) >= self.limit:
            del entries[next(iter(entries))]
        entries[data] = signature


class ZoneSigner:
    """Signs answers of one zone with its ``ZoneSigning`` keys in the current window."""

    def __init__(self, settings: ZoneSigning, cache: SignatureCache, stats, window: Window):
        self.settings = settings
        self.cache = cache
        self.stats = stats
        self.window = window
        self.label = settings.fqdn
        self.budget_left = settings.budget
        self.budget_second = 0
        self.clock = time.monotonic
        # (key, algorithm, tag): the tag is a sum over the DNSKEY, worth computing once
        self.all_keys = tuple((k, k.algorithm, k.tag) for k in settings.keys)
        self.active_key = self.all_keys[:1]
        # RRSIGs of RRsets whose RDATA the zone shares between replies (the SOA of every
        # negative answer, static data): (owner, type, TTL, id(rdatas)) -> (rdatas, RRSIG)
        self.memo: dict[tuple, tuple] = {}

    # -- what the responder calls -------------------------------------------------------

    def sign(
        self, qname: bytes, qtype: int, result: lookup.Result, zone: Zone, mode: int = SIGNED
    ) -> lookup.Result:
        if not result.aa:
            if result.authority and result.authority[0].rtype == model.NS:
                return self.referral(result, zone)
            return result
        answer = self.signed(result.answer)
        negative = result.rcode == NXDOMAIN or (
            result.authority and result.authority[0].rtype == model.SOA
        )
        if not negative:
            return lookup.Result(result.rcode, True, answer, self.signed(result.authority),
                                 result.additional)  # fmt: skip
        denied = denied_name(qname, result.answer)
        soa = capped(result.authority[0])
        types = None if result.rcode == NXDOMAIN else types_at(zone, denied)
        nsec = self.compact_nsec(denied, soa.ttl, nsec_bitmap(types, qtype))
        if qtype == NSEC:  # a DNAME's target asked for NSEC: its NSEC, as ``nsec_answer``
            return lookup.Result(NOERROR, True, [*answer, nsec, self.rrsig(nsec, rationed=True)])
        authority = [soa, self.rrsig(soa), nsec, self.rrsig(nsec, rationed=True)]
        # RFC 9824 5.1: a resolver that sent CO gets NXDOMAIN back, with the same proof
        rcode = NXDOMAIN if mode == COMPACT_OK and result.rcode == NXDOMAIN else NOERROR
        return lookup.Result(rcode, True, answer, authority, result.additional)

    def nsec_answer(self, qname: bytes, zone: Zone) -> lookup.Result | None:
        """A query for type NSEC: the name's compact NSEC itself, signed, in the answer (the
        record every denial for the name carries; it spans the name alone, so nothing can be
        walked). A name that does not exist gets its NXNAME NSEC. None: not ours to answer
        here (at or below a delegation, below a DNAME): the usual lookup answers."""
        if lookup.find_cut(zone, qname) is not None or lookup.find_dname(zone, qname):
            return None
        soa = capped(lookup.negative(zone, NOERROR).authority[0])
        nsec = self.compact_nsec(qname, soa.ttl, nsec_bitmap(name_types(zone, qname)))
        return lookup.Result(NOERROR, True, [nsec, self.rrsig(nsec, rationed=True)])

    @staticmethod
    def compact_nsec(owner: bytes, ttl: int, bitmap: bytes) -> RRset:
        """RFC 9824 3.1/3.2: owned by the name, next name ``\\000.name`` (from the lowercase
        key, never lowercased again: RFC 6840 5.1; ``successor`` for the longest names)."""
        after = successor(owner)
        if after is None:
            raise Unprovable(owner)
        return RRset(owner, NSEC, ttl, (RD(after + bitmap),))

    def referral(self, result: lookup.Result, zone: Zone) -> lookup.Result:
        """Delegation: the parent's DS (signed) or an NSEC proving there is none."""
        ns = result.authority[0]
        ds = zone.nodes[ns.name].rrsets.get(model.DS)
        if ds is not None:
            proof = [capped(ds), self.rrsig(capped(ds))]
        else:
            types = type_bitmap((model.NS, RRSIG, NSEC))
            nsec = RRset(ns.name, NSEC, capped(ns).ttl, (RD(after_cut(ns.name) + types),))
            proof = [nsec, self.rrsig(nsec)]
        return lookup.Result(result.rcode, False, [], [ns, *proof], result.additional)

    # -- signatures ----------------------------------------------------------------------

    def signed(self, section: list) -> list:
        out = []
        for rrset in section:
            rrset = capped(rrset)
            out.append(rrset)
            out.append(self.rrsig(rrset))
        return out

    def rrsig(self, rrset: RRset, *, rationed: bool = False) -> RRset:
        memo_key = (rrset.name, rrset.rtype, rrset.ttl, id(rrset.rdatas))
        known = self.memo.get(memo_key)
        if known is not None and known[0] is rrset.rdatas and known[2] is self.window:
            self.stats.dnssec_cache_hits[self.label] += len(known[1].rdatas)
            return known[1]
        signature = self.make_rrsig(rrset, rationed)
        if not rationed:  # denials are one-off names: not worth remembering here
            if len(self.memo) >= MEMO_LIMIT:
                del self.memo[next(iter(self.memo))]
            self.memo[memo_key] = (rrset.rdatas, signature, self.window)
        return signature

    def make_rrsig(self, rrset: RRset, rationed: bool) -> RRset:
        settings, window = self.settings, self.window
        keys = self.all_keys if rrset.rtype in APEX_KEY_TYPES else self.active_key
        canonical = [rdata_wire(rrset.rtype, rdata) for rdata in rrset.rdatas]
        body = rrset_wire(rrset.name, rrset.rtype, 1, rrset.ttl, canonical)
        labels = count_labels(rrset.name)
        rdatas = []
        for key, algorithm, tag in keys:
            head = RRSIG_HEAD.pack(rrset.rtype, algorithm, labels, rrset.ttl,
                                   window.expiration, window.inception, tag)  # fmt: skip
            head += settings.origin
            data = head + body
            # Denials are one-off names (random-subdomain floods): they are rationed and not
            # kept, so they never push useful signatures out; the reply cache keeps recent ones.
            signature = None if rationed else self.cache.get(data)
            if signature is None:
                if rationed:
                    self.spend()
                signature = key.sign(data)
                if not rationed:
                    self.cache.put(data, signature)
                self.stats.dnssec_signatures[self.label] += 1
            else:
                self.stats.dnssec_cache_hits[self.label] += 1
            rdatas.append(RD(head + signature))
        return RRset(rrset.name, RRSIG, rrset.ttl, tuple(rdatas))

    def spend(self) -> None:
        second = int(self.clock())
        if second != self.budget_second:
            self.budget_second, self.budget_left = second, self.settings.budget
        if self.budget_left <= 0:
            self.stats.dnssec_budget_drops[self.label] += 1
            raise OverBudget(self.label)
        self.budget_left -= 1


def capped(rrset: RRset) -> RRset:
    if rrset.ttl <= MAX_SIGNED_TTL:
        return rrset
    return RRset(rrset.name, rrset.rtype, MAX_SIGNED_TTL, rrset.rdatas)


def denied_name(qname: bytes, answer: list) -> bytes:
    """The name a negative answer is about: the query name, or where its CNAME chain ends."""
    name = qname
    for rrset in answer:
        if rrset.rtype == model.CNAME and rrset.name == name:
            name = lookup.label_wire(rrset.rdatas[0].label)
    return name


def types_at(zone: Zone, name: bytes) -> set[int]:
    """Types a NODATA NSEC lists: what the name (or the wildcard answering for it) holds,
    dynamic records included; at a delegation only NS and DS are the parent's."""
    node = zone.nodes.get(name)
    if node is None and name not in zone.existing:
        node = lookup.wildcard_node(zone, name)
    if node is None:
        return set()  # empty non-terminal
    types = set(node.rrsets) | set(node.dynamic)
    if name in zone.cuts:
        types &= {model.NS, model.DS}
    return types


def name_types(zone: Zone, name: bytes) -> set[int] | None:
    """What an NSEC owned by ``name`` lists; None when the name does not exist (not even
    through a wildcard)."""
    if name not in zone.existing and lookup.wildcard_node(zone, name) is None:
        return None
    return types_at(zone, name)


def nsec_bitmap(types: set[int] | None, qtype: int = NSEC) -> bytes:
    """None: the name does not exist (RFC 9824 NXNAME). A NODATA for type RRSIG leaves the
    RRSIG bit out: signatures travel only with the RRsets they cover, and a proof that
    listed RRSIG would deny nothing (Unbound and Knot Resolver call it bogus)."""
    present = ({NXNAME} if types is None else types) | {RRSIG, NSEC}
    if qtype == RRSIG:
        present.discard(RRSIG)
    return type_bitmap(present)


def after_cut(cut: bytes) -> bytes:
    """The NSEC next name at a delegation ``sub.zone``: ``sub\\000.zone`` (RFC 9824 3.4),
    past every name under the cut; ``\\000.sub.zone`` when the label is already 63 bytes."""
    length = cut[0]
    if length >= 63:
        return b"\x01\x00" + cut
    return bytes((length + 1,)) + cut[1 : 1 + length] + b"\x00" + cut[1 + length :]


def answer_mode(opt) -> int:
    """UNSIGNED, SIGNED or COMPACT_OK for a query's OPT record (None: no EDNS). CO without DO
    asks nothing: unsigned answers keep NXDOMAIN anyway."""
    if opt is None or not opt.do:
        return UNSIGNED
    return COMPACT_OK if opt.co else SIGNED


class Signing:
    """The responder's signing state: one signer per signed zone, one signature cache shared
    by all (it outlives reloads: unchanged RRsets keep their signatures), the current window."""

    def __init__(self, stats, now: float | None = None) -> None:
        self.stats = stats
        self.cache = SignatureCache()
        self.window = window_at(time.time() if now is None else now)
        self.signers: dict[bytes, ZoneSigner] = {}

    def sign(self, key: tuple, zone: Zone, result: lookup.Result) -> lookup.Result:
        """A reply about to be packed for ``key`` (qname, qtype, qclass, mode), signed when the
        query asked for DNSSEC and the zone is signed; otherwise ``result`` unchanged."""
        qname, qtype, _, mode = key
        signer = self.signers.get(zone.origin)
        if signer is None or not mode:
            return result
        return signer.sign(qname, qtype, result, zone, mode)

    def refuses(self, key: tuple, zone: Zone) -> bool:
        """RFC 9824 3.5: a query for the NXNAME pseudo-type in a zone signed with compact
        denial gets FORMERR (DO or not; the responder adds EDE 30)."""
        return key[1] == NXNAME and zone.origin in self.signers

    def nsec_answer(self, key: tuple, zone: Zone) -> lookup.Result | None:
        """The answer to a DO query for type NSEC in a signed zone, or None (the lookup's)."""
        qname, qtype, _, mode = key
        signer = self.signers.get(zone.origin) if mode and qtype == NSEC else None
        return None if signer is None else signer.nsec_answer(qname, zone)

    def set_config(self, signing: dict[bytes, ZoneSigning]) -> None:
        old = self.signers
        self.signers = {
            origin: old[origin]
            if origin in old and old[origin].settings == settings
            else ZoneSigner(settings, self.cache, self.stats, self.window)
            for origin, settings in signing.items()
        }

    def roll(self, now: float) -> bool:
        """Move to the window of ``now``; True when it changed (cached replies are stale)."""
        window = window_at(now)
        if window == self.window:
            return False
        self.window = window
        for signer in self.signers.values():
            signer.window = window
        return True
