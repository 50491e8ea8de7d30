"""Sign one answer (a ``gslb.dns.lookup.Result``) before the responder packs it.

The responder calls ``ZoneSigner.sign`` once per packed reply for a DO query in a signed zone;
the packed bytes are cached, so a repeat costs nothing here. What it adds (RFC 4035, RFC 9824):

- an RRSIG after every RRset of ours in answer and authority (never glue, never the NS of a
  delegation), DNSKEY/CDS/CDNSKEY signed by every published key, the rest by the active key;
- compact denial: one NSEC owned by the name denied, next name ``\\000.name``, bitmap
  ``NXNAME RRSIG NSEC`` for a name that does not exist and the types present otherwise, with
  rcode NOERROR; wildcard answers are signed as the expanded name (no NSEC needed);
- at an unsigned delegation, an NSEC owned by the cut with ``NS RRSIG NSEC``;
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
from gslb.dns.wire import FORMERR, NOERROR, NXDOMAIN
from gslb.dnssec.canonical import count_labels, rdata_wire, rrset_wire, type_bitmap
from gslb.dnssec.settings import CDNSKEY, CDS, DNSKEY, ZoneSigning
from gslb.dnssec.window import MAX_SIGNED_TTL, Window, window_at

RRSIG, NSEC, NXNAME = 46, 47, 128
APEX_KEY_TYPES = frozenset({DNSKEY, CDS, CDNSKEY})
RRSIG_HEAD = struct.Struct("!HBBIIIH")
CACHE_LIMIT = 200_000
MEMO_LIMIT = 20_000


class OverBudget(Exception):
    """The per-second ration of fresh denial signatures is spent: answer SERVFAIL, uncached."""


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

    def sign(self, qname: bytes, qtype: int, result: lookup.Result, zone: Zone) -> lookup.Result:
        if qtype == NXNAME:
            return lookup.Result(rcode=FORMERR, aa=False)  # RFC 9824 3.5: a meta-type
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
        nsec = RRset(denied, NSEC, soa.ttl, (RD(b"\x01\x00" + denied + nsec_bitmap(types)),))
        authority = [soa, self.rrsig(soa), nsec, self.rrsig(nsec, rationed=True)]
        return lookup.Result(NOERROR, True, answer, authority, result.additional)

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


def nsec_bitmap(types: set[int] | None) -> bytes:
    """None: the name does not exist (RFC 9824 NXNAME)."""
    present = {NXNAME} if types is None else types
    return type_bitmap(present | {RRSIG, NSEC})


def after_cut(cut: bytes) -> bytes:
    """The NSEC next name at a delegation ``sub.zone``: ``sub\\000.zone`` (RFC 9824 3.4),
    past every name under the cut; ``\\000.sub.zone`` when the label is already 63 bytes."""
    length = cut[0]
    if length >= 63:
        return b"\x01\x00" + cut
    return bytes((length + 1,)) + cut[1 : 1 + length] + b"\x00" + cut[1 + length :]


class Signing:
    """The responder's signing state: one signer per signed zone, one signature cache shared
    by all (it outlives reloads: unchanged RRsets keep their signatures), the current window."""

    def __init__(self, stats, now: float | None = None) -> None:
        self.stats = stats
        self.cache = SignatureCache()
        self.window = window_at(time.time() if now is None else now)
        self.signers: dict[bytes, ZoneSigner] = {}

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
