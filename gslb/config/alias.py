"""ALIAS at the apex: answered as the A/AAAA of its target, resolved once at load time.

A zone apex cannot hold a CNAME (it holds SOA and NS), so providers offer ALIAS: "answer A and
AAAA here with whatever the target has". gslb is authoritative only and never asks other
servers (nothing on the answer path may wait on the network), so it answers ALIAS from its
own data: when the target is a name in one of gslb's zones, the apex gets the target's A/AAAA
records, or the target's dynamic A/AAAA record itself, so the apex is steered by the same
policy chain and health checks as the target. In-zone CNAMEs on the way are followed.

What cannot be answered is said at load time (``gslb check``, the log, ``/status``): a target
outside gslb's zones (gslb would have to resolve it, and the answer would be a guess about
another operator's data when the query arrives), a target that does not exist, or one whose
answer is a dynamic CNAME (a CDN hostname outside gslb's zones). The apex then has no A/AAAA:
resolvers get NODATA for them, and every other apex record is served as usual.
"""

from __future__ import annotations

from dataclasses import replace

from gslb.config import model
from gslb.config.model import Node, RRset, Zone
from gslb.config.names import to_text

MAX_STEPS = 8  # CNAMEs followed from the ALIAS target, as the responder chases them


def resolve_aliases(zones: dict[bytes, Zone], warnings: list[str]) -> None:
    """Give every apex with an ALIAS its A/AAAA; note in ``warnings`` what cannot be."""
    done: set[bytes] = set()
    for zone in zones.values():
        resolve(zone, zones, warnings, done, ())


def resolve(
    zone: Zone, zones: dict[bytes, Zone], warnings: list[str], done: set[bytes], path: tuple
) -> None:
    if zone.alias is None or zone.origin in done:
        return
    if zone.origin in path:
        warnings.append(f"{zone.alias[2]}: ALIAS loop through {zone.fqdn}; no A/AAAA served")
        return
    target, ttl, where = zone.alias
    node, problem = follow(target, zones, warnings, done, (*path, zone.origin))
    done.add(zone.origin)
    if node is None:
        warnings.append(f"{where}: {problem}")
        return
    apex = zone.nodes[zone.origin]
    found = False
    for rtype in (model.A, model.AAAA):
        dynamic = node.dynamic.get(rtype)
        rrset = node.rrsets.get(rtype)
        if dynamic is not None:
            apex.dynamic[rtype] = replace(dynamic, name=zone.origin, fqdn=zone.fqdn)
            found = True
        elif rrset is not None:
            apex.rrsets[rtype] = RRset(zone.origin, rtype, ttl, rrset.rdatas)
            found = True
    if model.CNAME in node.dynamic:
        warnings.append(
            f"{where}: ALIAS target {to_text(target)} is a dynamic CNAME record: its answers "
            "are CDN names outside gslb's zones, which gslb does not resolve; the apex has no "
            "A/AAAA (point the ALIAS at a dynamic A/AAAA record to steer the apex)"
        )
    elif not found:
        warnings.append(
            f"{where}: ALIAS target {to_text(target)} has no A or AAAA records; the apex has "
            "no A/AAAA"
        )


def follow(
    target: bytes, zones: dict[bytes, Zone], warnings: list[str], done: set[bytes], path: tuple
) -> tuple[Node | None, str]:
    """The node whose A/AAAA the ALIAS answers with, following in-zone CNAMEs."""
    name = target
    for _ in range(MAX_STEPS + 1):
        zone = enclosing(zones, name)
        if zone is None:
            return None, (
                f"ALIAS target {to_text(name)} is outside gslb's zones: gslb is authoritative "
                "only and does not resolve other operators' names, so the apex has no A/AAAA "
                "(queries for them get NODATA); point the ALIAS at a name in a zone gslb "
                "serves, or publish the addresses as A/AAAA records"
            )
        if name == zone.origin:
            resolve(zone, zones, warnings, done, path)  # the target's own apex ALIAS first
        node = zone.nodes.get(name)
        if node is None:
            return None, f"ALIAS target {to_text(name)} does not exist in zone {zone.fqdn}"
        cname = node.rrsets.get(model.CNAME)
        if cname is None:
            return node, ""
        name = wire_of(cname.rdatas[0].label)
    return None, f"ALIAS target {to_text(target)}: more than {MAX_STEPS} CNAMEs"


def enclosing(zones: dict[bytes, Zone], name: bytes) -> Zone | None:
    while True:
        zone = zones.get(name)
        if zone is not None or name == b"\x00":
            return zone
        name = name[1 + name[0] :]


def wire_of(label) -> bytes:
    out = bytearray()
    for part in label.label:
        out.append(len(part))
        out += part.lower()
    out.append(0)
    return bytes(out)
