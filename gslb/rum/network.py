"""Where a measurement comes from, at every aggregation level, and nothing more.

A beacon's source address is turned into a ``NetInfo`` (its /24 or /48, its ASN within its
country, its country, its continent) and then dropped: the store never sees an address. The
same keys are computed on the DNS path from the query's client address, so a query finds the
decisions made for its network.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from typing import Any

import maxminddb

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
PREFIX = {4: 24, 6: 48}  # the finest level: a client network, as ECS resolvers send it
_V6_TAG = 1 << 48
GLOBAL = "*"


def prefix_key(address: Address) -> int:
    """The client's /24 (IPv4) or /48 (IPv6) as one int, the two families kept apart."""
    return prefix_key_of(address.version, int(address))


def prefix_key_of(version: int, ip: int) -> int:
    """``prefix_key`` of an address given as (family, integer): the compiled DNS path has
    no address object."""
    return ip >> 8 if version == 4 else (ip >> 80) | _V6_TAG


def prefix_text(key: int) -> str:
    if key & _V6_TAG:
        net = ipaddress.IPv6Network(((key & (_V6_TAG - 1)) << 80, 48))
    else:
        net = ipaddress.IPv4Network((key << 8, 24))
    return str(net)


def asn_key(asn: int, country: str | None) -> str:
    """ASN within a country: a carrier's users in two countries reach CDNs differently."""
    return f"AS{asn}-{country or '??'}"


@dataclass(frozen=True, slots=True)
class NetInfo:
    """A measurement's origin at every level (None: unknown at that level)."""

    prefix: int | None  # None: the source was coarser than a client network
    asn: str | None
    country: str | None
    continent: str | None
    source: Any = None  # who measured (the /24 or /48, or a bulk feed's network): counted
    resolver: int | None = None  # the /24 or /48 of the resolver that served this session

    def key(self, level: str) -> Any:
        if level == "prefix":
            return self.prefix
        if level == "global":
            return GLOBAL
        return getattr(self, level)


class AsnDB:
    """A MaxMind GeoLite2-ASN / DB-IP ASN Lite database (``--asn-db``), with a bounded
    per-address cache as ``gslb.geo.GeoDB`` has: the lookup sits on the DNS path."""

    def __init__(self, reader: Any, path: str, cache_size: int = 65536) -> None:
        self._reader = reader
        self.path = path
        self._cache: dict[Address, tuple[int, int] | None] = {}
        self._cache_size = cache_size
        meta = reader.metadata()
        self.description = f"{meta.database_type} built {meta.build_epoch}"

    @classmethod
    def open(cls, path: str) -> AsnDB:
        """Raises OSError / ValueError on a missing or invalid file."""
        reader = maxminddb.open_database(str(path))
        return cls(reader, str(path))

    def lookup(self, address: Address) -> tuple[int, int] | None:
        """(ASN, prefix length of the database network) or None when unknown."""
        hit = self._cache.get(address, False)
        if hit is not False:
            return hit
        try:
            record, prefix = self._reader.get_with_prefix_len(address)
        except ValueError:
            record, prefix = None, 0
        number = record.get("autonomous_system_number") if isinstance(record, dict) else None
        result = (int(number), prefix) if isinstance(number, int) else None
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[address] = result
        return result

    def close(self) -> None:
        self._reader.close()


def net_info(address: Address, location: Any, asn: AsnDB | None) -> NetInfo:
    """Every level's key for one address: ``location`` from gslb.geo, ``asn`` optional."""
    country = getattr(location, "country", None) if location is not None else None
    continent = getattr(location, "continent", None) if location is not None else None
    found = asn.lookup(address) if asn is not None else None
    prefix = prefix_key(address)
    return NetInfo(
        prefix=prefix,
        asn=asn_key(found[0], country) if found is not None else None,
        country=country,
        continent=continent,
        source=prefix,
    )
