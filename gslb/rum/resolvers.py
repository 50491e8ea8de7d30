"""Which resolver serves which users: learned from one-off names the beacon resolves.

The recipe gives each page view a session id; the snippet loads ``//<sid>.<name>/`` (``name``
from ``--rum-resolver-name``, a name inside a zone gslb serves), so the browser's resolver asks
gslb for ``<sid>.<name>``. The DNS side reports (sid, resolver address); when the beacon of
that session arrives, its measurements also count for the level ``resolver``, keyed by the
resolver's /24 (/48). A query without ECS from that resolver then gets the decision its users'
measurements support, instead of one for the resolver's own address (Mao et al.; Odin). Only
network keys are kept; entries expire with the session token.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable

from gslb.config.names import to_wire
from gslb.rum.network import prefix_key

TTL = 900.0  # s: a little longer than a session token lives


class ResolverLinks:
    """sid -> the resolver network that asked for it, bounded and expiring."""

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = max_items
        self.links: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self.seen_total = 0
        self.linked_total = 0

    def seen(self, sid: str, resolver: str, now: float) -> None:
        try:
            address = ipaddress.ip_address(resolver)
        except ValueError:
            return
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        while self.links and next(iter(self.links.values()))[1] < now:
            self.links.popitem(last=False)
        if sid not in self.links and len(self.links) >= self.max_items:
            self.links.popitem(last=False)
        self.links[sid] = (prefix_key(address), now + TTL)
        self.seen_total += 1

    def take(self, sid: str, now: float) -> int | None:
        """The resolver network of a session, once (a replayed sid finds nothing)."""
        found = self.links.pop(sid, None)
        if found is None or found[1] < now:
            return None
        self.linked_total += 1
        return found[0]


def suffix(name: str) -> bytes:
    """The wire form a watched query name ends with: ``rum.example.com`` -> ``\\x03rum...``."""
    return to_wire(name if name.endswith(".") else name + ".")


def sid_of(qname: bytes, watched: bytes) -> str | None:
    """``<sid>.<name>`` in lowercase wire form -> sid; anything else (deeper names, the name
    itself, labels that are not a session id) -> None."""
    if not qname.endswith(watched) or len(qname) <= len(watched):
        return None
    length = qname[0]
    if length + 1 + len(watched) != len(qname) or not 8 <= length <= 32:
        return None
    label = qname[1 : 1 + length]
    if not label.isalnum():
        return None
    return label.decode("ascii", "replace")


def watcher(name: str, report: Callable[[str, str], None]) -> Callable[[bytes, str], None]:
    """The responder's hook: report (sid, resolver address) for ``<sid>.<name>`` queries."""
    watched = suffix(name)

    def watch(qname: bytes, client: str) -> None:
        if qname.endswith(watched):
            sid = sid_of(qname, watched)
            if sid is not None:
                report(sid, client)

    return watch


class Batch:
    """A worker's sightings on their way to the supervisor: sent at most every ``flush``
    call, at most ``limit`` per batch (a random-name flood under the watched name costs one
    bounded message per interval, not one per query; the excess is counted and dropped)."""

    def __init__(self, send: Callable[[list[tuple[str, str]]], None], limit: int = 2000) -> None:
        self.send, self.limit = send, limit
        self.items: list[tuple[str, str]] = []
        self.dropped = 0

    def add(self, sid: str, client: str) -> None:
        if len(self.items) < self.limit:
            self.items.append((sid, client))
        else:
            self.dropped += 1

    def flush(self) -> None:
        if self.items:
            items, self.items = self.items, []
            self.send(items)
