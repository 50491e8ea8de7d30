"""Authoritative lookup on the model (RFC 1034 section 4.3.2, RFC 2308, RFC 4592).

Pure and allocation-light: given a zone and a lowercase wire name, say what the answer holds.
Dynamic records are returned as placeholders; the responder asks the policy engine for their
values, so this module knows nothing of clients, health or geography.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnslib import CNAME as CNAMERD
from dnslib import RD, DNSLabel

from gslb.config import model
from gslb.config.model import DynamicRecord, RRset, Zone
from gslb.config.names import is_below, labels, parent
from gslb.dns.wire import NOERROR, NXDOMAIN, YXDOMAIN

Item = RRset | DynamicRecord
HINFO_RFC8482 = RD(b"\x07RFC8482\x00")  # CPU "RFC8482", OS ""


@dataclass(slots=True)
class Result:
    rcode: int = NOERROR
    aa: bool = True
    answer: list[Item] = field(default_factory=list)
    authority: list[RRset] = field(default_factory=list)
    additional: list[RRset] = field(default_factory=list)
    cname_target: bytes | None = None  # set when the answer ends in a CNAME to chase
    wildcard: bool = False


def negative(zone: Zone, rcode: int) -> Result:
    """NXDOMAIN or NODATA: the SOA in authority, TTL = min(SOA TTL, SOA MINIMUM) (RFC 2308)."""
    soa = zone.soa
    ttl = min(soa.ttl, soa.rdatas[0].times[4])
    return Result(rcode=rcode, authority=[RRset(soa.name, soa.rtype, ttl, soa.rdatas)])


def find_cut(zone: Zone, qname: bytes) -> bytes | None:
    """The highest delegation point at or above ``qname`` (below the apex), if any."""
    if not zone.cuts:
        return None
    found = None
    name = qname
    while name != zone.origin and name != b"\x00":
        if name in zone.cuts:
            found = name
        name = parent(name)
    return found


def referral(zone: Zone, cut: bytes) -> Result:
    """Not ours to answer: NS in authority, in-zone glue in additional, AA clear."""
    ns = zone.nodes[cut].rrsets[model.NS]
    glue = []
    for rdata in ns.rdatas:
        target = zone.nodes.get(label_wire(rdata.label))
        if target is not None:
            glue.extend(target.rrsets[t] for t in (model.A, model.AAAA) if t in target.rrsets)
    return Result(aa=False, authority=[ns], additional=glue)


def label_wire(label: object) -> bytes:
    """dnslib DNSLabel -> lowercase wire bytes."""
    out = bytearray()
    for part in label.label:  # type: ignore[attr-defined]
        out.append(len(part))
        out += part.lower()
    out.append(0)
    return bytes(out)


def dname(zone: Zone, owner: bytes, qname: bytes) -> Result:
    """RFC 6672 section 3.1: the DNAME, then a CNAME from the query name to the same name under
    the DNAME's target (TTL of the DNAME); the responder chases it when it lands in the zone.
    A name that would grow past 255 bytes is YXDOMAIN, with the DNAME alone."""
    rrset = zone.nodes[owner].rrsets[model.DNAME]
    target = qname[: len(qname) - len(owner)] + zone.dnames[owner]
    if len(target) > 255:
        return Result(rcode=YXDOMAIN, answer=[rrset])
    synthesized = RRset(qname, model.CNAME, rrset.ttl, (CNAMERD(DNSLabel(labels(target))),))
    return Result(answer=[rrset, synthesized], cname_target=target)


def wildcard_node(zone: Zone, qname: bytes) -> model.Node | None:
    """RFC 4592: the closest encloser's ``*`` child, when the name itself does not exist."""
    if not zone.wildcards:
        return None
    encloser = parent(qname)
    while encloser not in zone.existing:
        encloser = parent(encloser)
    return zone.nodes.get(b"\x01*" + encloser)


def find_dname(zone: Zone, qname: bytes) -> bytes | None:
    """The highest DNAME owner strictly above ``qname`` (RFC 6672 section 3.2), if any."""
    if not zone.dnames:
        return None
    found = None
    name = qname
    while name != zone.origin and name != b"\x00":
        name = parent(name)
        if name in zone.dnames:
            found = name
    return found


def lookup(zone: Zone, qname: bytes, qtype: int) -> Result:
    """Answer ``qname``/``qtype`` from ``zone`` (which encloses ``qname``)."""
    cut = find_cut(zone, qname)
    owner = find_dname(zone, qname)
    if owner is not None and (cut is None or not is_below(owner, cut) or owner == cut):
        return dname(zone, owner, qname)
    if cut is not None and not (qname == cut and qtype == model.DS):
        return referral(zone, cut)
    node = zone.nodes.get(qname)
    synthesized = False
    if node is None:
        if qname in zone.existing:
            return negative(zone, NOERROR)  # empty non-terminal (RFC 8020)
        node = wildcard_node(zone, qname)
        if node is None:
            return negative(zone, NXDOMAIN)
        synthesized = True
    result = answer_node(zone, node, qname, qtype)
    result.wildcard = synthesized
    return result


def answer_node(zone: Zone, node: model.Node, qname: bytes, qtype: int) -> Result:
    if qtype == model.ANY:
        return Result(answer=[rfc8482(zone, qname)])
    data = node.dynamic.get(qtype) or node.rrsets.get(qtype)
    if data is not None:
        return Result(answer=[owned(data, qname)])
    cname = node.dynamic.get(model.CNAME) or node.rrsets.get(model.CNAME)
    if cname is not None:
        result = Result(answer=[owned(cname, qname)])
        if isinstance(cname, RRset):
            result.cname_target = label_wire(cname.rdatas[0].label)
        return result
    return negative(zone, NOERROR)


def owned(item: Item, qname: bytes) -> Item:
    """Wildcard synthesis: the answer's owner is the query name, not ``*``."""
    if item.name == qname or isinstance(item, DynamicRecord):
        return item
    return RRset(qname, item.rtype, item.ttl, item.rdatas)


def rfc8482(zone: Zone, qname: bytes) -> RRset:
    """RFC 8482 section 4.2: a synthesized HINFO instead of every RRset."""
    ttl = min(zone.soa.ttl, zone.soa.rdatas[0].times[4])
    return RRset(qname, model.HINFO, ttl, (HINFO_RFC8482,))
