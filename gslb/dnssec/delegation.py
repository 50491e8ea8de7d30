"""A signed child zone delegated from a parent zone gslb also serves: the parent's side.

The DS RRset lives in the parent (RFC 4035 2.4). When gslb serves both sides of a delegation
and the child is signed, the parent publishes the child's DS itself, computed from the keys
the child announces in CDS (RFC 7344: what a registrar would copy), unless the parent's zone
file already holds a DS there (the operator's word wins). And a DS query for the child's apex
is answered from the parent (RFC 4035 3.1.4.1), never from the child, whose apex has no DS:
a child-side NODATA signed with the child's own key proves nothing to a validator.
"""

from __future__ import annotations

from gslb.config import model
from gslb.config.model import RRset, Zone
from gslb.config.names import parent
from gslb.dnssec.settings import ZoneSigning


def parent_zone(zones: dict[bytes, Zone], child: Zone) -> Zone | None:
    """The closest enclosing zone gslb serves above ``child``, if it delegates to it."""
    name = child.origin
    while name != b"\x00":
        name = parent(name)
        zone = zones.get(name)
        if zone is not None:
            return zone if child.origin in zone.cuts else None
    return None


def publish_child_ds(zones: dict[bytes, Zone], signing: dict[bytes, ZoneSigning]) -> None:
    """Add the DS of every signed child to its served parent's delegation, where the parent's
    file has none. A child announcing no key (``cds: []``) or its own removal
    (``cds: delete``) gets no DS: the delegation becomes provably insecure."""
    for origin, settings in signing.items():
        zone = zones.get(origin)
        above = None if zone is None else parent_zone(zones, zone)
        if above is None:
            continue
        cut = above.nodes[origin]
        ds = settings.parent_ds()
        if model.DS not in cut.rrsets and ds:
            cut.rrsets[model.DS] = RRset(origin, model.DS, settings.dnskey_ttl, ds)


def ds_zone(zones: dict[bytes, Zone], zone: Zone, qname: bytes) -> Zone:
    """The zone that answers a DS query for ``qname``: the parent when ``qname`` is the apex
    of ``zone`` and gslb serves the parent's delegation to it (RFC 4035 3.1.4.1)."""
    if qname != zone.origin:
        return zone
    return parent_zone(zones, zone) or zone
