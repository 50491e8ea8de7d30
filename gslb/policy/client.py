"""Who is asking: the ECS address when the query carried one (and the record uses ECS), else the
resolver's address; and where that address is, from the geo database (gdnsd's rule, RFC 7871).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Protocol

from gslb.config.model import GslbOptions

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

STICKY_PREFIX = {4: 24, 6: 56}  # a client "keeps its CDN" per /24 or /56, like RRL buckets


class LocationLike(Protocol):
    """What the policy reads from ``gslb.geo.Location``."""

    @property
    def lat(self) -> float | None: ...
    @property
    def lon(self) -> float | None: ...
    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network: ...
    def geos(self) -> tuple[str, ...]: ...


class GeoLike(Protocol):
    def locate(self, address: Address) -> Any: ...


@dataclass(slots=True, eq=False)
class Client:
    address: Address
    source_prefix: int | None  # ECS source prefix when the address came from ECS
    location: Any = None  # gslb.geo.Location, or None when unknown or not looked up
    located: bool = False  # whether the geo database was asked at all

    @property
    def from_ecs(self) -> bool:
        return self.source_prefix is not None

    def describe(self) -> dict[str, Any]:
        loc = self.location
        out: dict[str, Any] = {
            "address": str(self.address),
            "from_ecs": self.from_ecs,
            "source_prefix": self.source_prefix,
            "located": self.located,
            "location": None,
        }
        if loc is not None:
            out["location"] = {
                "country": getattr(loc, "country", None),
                "continent": getattr(loc, "continent", None),
                "subdivision": getattr(loc, "subdivision", None),
                "lat": loc.lat,
                "lon": loc.lon,
                "network": str(loc.network),
                "geos": list(loc.geos()),
            }
        return out


def client_address(
    options: GslbOptions, resolver: Address, ecs: tuple[Address, int] | None
) -> tuple[Address, int | None]:
    """ECS address and source prefix when usable; a /0 source means "use the resolver".

    A resolver seen as IPv4-mapped IPv6 (a dual-stack socket) is the IPv4 client it stands
    for: otherwise every IPv4 resolver would share one /56 and miss IPv4 subnet rules.
    """
    if ecs is not None and options.ecs and ecs[1] > 0:
        return ecs[0], ecs[1]
    if resolver.version == 6 and resolver.ipv4_mapped is not None:
        return resolver.ipv4_mapped, None
    return resolver, None


def full_prefix(address: Address) -> int:
    return 32 if address.version == 4 else 128


def sticky_key(address: Address) -> int:
    """The client's /24 (IPv4) or /56 (IPv6) as an int, tagged by family."""
    ip = int(address)
    return ip >> 8 if address.version == 4 else (ip >> 72) | (1 << 60)
