"""The immutable RUM snapshot the DNS path reads: per record, per level, per key, a decision.

Built off the answer path (``gslb.rum.service``) every few seconds and published inside the
health view, so the answer path never waits for ingestion. A query costs one dict lookup per
level at most (finest first): its /24 or /48, its ASN within its country (with ``--asn-db``),
its country, its continent, global. The decision says which targets the ``rum`` step drops
and why, with the figures ``explain`` shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from gslb.rum.network import GLOBAL, PREFIX, AsnDB, asn_key, prefix_key_of


@dataclass(frozen=True, slots=True)
class TargetFigures:
    """One target at the deciding level key, as the decision saw it."""

    target: str
    n: float
    p50: float | None
    p90: float | None
    availability: float
    verdict: str  # kept | dropped | unmeasured
    why: str


@dataclass(frozen=True, slots=True, eq=False)
class Decision:
    """What the ``rum`` step does for every client of one level key. Hashed by identity: the
    engine's decision cache keys on it, and a snapshot holds each decision once."""

    level: str
    key: str  # readable: "198.51.100.0/24", "AS64500-DE", "DE", "EU", "*"
    dropped: dict[str, str]  # target value -> why it leaves
    figures: tuple[TargetFigures, ...]
    samples: float  # fetches behind this decision, all targets
    since: float  # wall-clock time the set last changed
    # The dropped targets, one object per distinct set in a snapshot: what the answer depends
    # on, so the engine's decision cache keys on it (20,000 networks, a handful of sets).
    outcome: frozenset = frozenset()


@dataclass(frozen=True, slots=True)
class RecordDecisions:
    """One record's decisions by level (finest first), keys as ``gslb.rum.network`` makes."""

    levels: tuple[str, ...]
    by_level: dict[str, dict[Any, Decision]]  # level -> {key: Decision}
    # (level, keys) of the levels that have keys, finest first: what a query walks.
    present: tuple[tuple[str, dict[Any, Decision]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        present = tuple((lv, self.by_level[lv]) for lv in self.levels if self.by_level.get(lv))
        object.__setattr__(self, "present", present)


@dataclass(frozen=True, slots=True)
class Snapshot:
    records: dict[tuple[str, int], RecordDecisions] = field(default_factory=dict)
    built_at: float = 0.0  # wall clock, for explain
    serial: int = 0

    def lookup(
        self,
        record: tuple[str, int],
        address: Any,
        source: int | None,
        location: Any,
        asn: AsnDB | None,
    ) -> tuple[Decision | None, int]:
        """The decision for a client and the ECS scope it depends on: the deciding level's
        prefix (its /24 or /48, the ASN or GeoIP network that placed it), never longer than
        the query's source prefix. (None, 0) when no level has enough data. ``location`` may
        be a callable returning it: it is then called only when a level above the /24 is
        asked (a client whose own /24 decides costs no geo lookup)."""

        def where() -> tuple[Any, int]:
            found = location() if callable(location) else location
            return found, found.network.prefixlen if found is not None else 0

        return self.find(record, address.version, int(address), source, where, asn)

    def find(
        self,
        record: tuple[str, int],
        version: int,
        ip: int,
        source: int | None,
        where: Callable[[], tuple[Any, int]],
        asn: AsnDB | None,
    ) -> tuple[Decision | None, int]:
        """``lookup`` for a client given as (family, integer address), as the compiled DNS
        path has it: its /24 costs one dict lookup. ``where()`` gives (location, prefix
        length of the block that located it) and is called only when a level above the /24
        is asked; the compiled path answers it from the flattened database, whose blocks are
        at least as wide as the database network ``lookup`` uses."""
        decisions = self.records.get(record)
        if decisions is None:
            return None, 0
        place = None
        for level, keys in decisions.present:
            if level == "prefix":
                width = PREFIX[version]
                if source is not None and source < width:
                    continue  # the query does not say which /24 the client is in
                decision, scope = keys.get(prefix_key_of(version, ip)), width
            elif level == "resolver":  # without ECS the address is the resolver's
                if source is not None:
                    continue
                decision, scope = keys.get(prefix_key_of(version, ip)), 0
            elif level == "global":
                decision, scope = keys.get(GLOBAL), 0
            else:
                if place is None:
                    place = where()
                decision, scope = _placed(level, keys, version, ip, place, asn)
            if decision is not None:
                return decision, scope if source is None else min(scope, source)
        return None, 0


def _placed(
    level: str, keys: Any, version: int, ip: int, place: tuple[Any, int], asn: AsnDB | None
) -> tuple[Decision | None, int]:
    """The levels that need the client's location: ASN within country, country, continent."""
    location, geo_prefix = place
    country = getattr(location, "country", None) if location is not None else None
    if level == "asn":
        address = IPv4Address(ip) if version == 4 else IPv6Address(ip)
        found = asn.lookup(address) if asn is not None else None
        if found is None:
            return None, 0
        return keys.get(asn_key(found[0], country)), max(found[1], geo_prefix)
    key = country if level == "country" else getattr(location, "continent", None)
    if key is None:
        return None, 0
    return keys.get(key), geo_prefix


EMPTY = Snapshot()
