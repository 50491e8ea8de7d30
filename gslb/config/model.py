"""The configuration model: immutable snapshots built by the loader, read by the answer path.

Names are kept as lowercase uncompressed wire bytes (``b"\\x03www\\x07example\\x03com\\x00"``):
the answer path parses query names into exactly that form, so a lookup is one dict access and
walking up to a parent is a slice, with no per-query string handling.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from dnslib import RD

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Type codes by number (RFC 1035 and successors; the IANA "Resource Record (RR) TYPEs").
A, NS, CNAME, SOA, PTR, HINFO, MX, TXT = 1, 2, 5, 6, 12, 13, 15, 16
AAAA, LOC, SRV, NAPTR, DNAME, OPT, DS, SSHFP = 28, 29, 33, 35, 39, 41, 43, 44
RRSIG, NSEC, DNSKEY, NSEC3, NSEC3PARAM, TLSA, OPENPGPKEY = 46, 47, 48, 50, 51, 52, 61
CDS, CDNSKEY, SVCB, HTTPS, SPF, NXNAME, URI, CAA = 59, 60, 64, 65, 99, 128, 256, 257
IXFR, AXFR, MAILB, MAILA, ANY = 251, 252, 253, 254, 255


@dataclass(frozen=True, slots=True)
class RRset:
    """All records of one type at one owner name; one TTL for the set (RFC 2181 section 5.2)."""

    name: bytes  # lowercase wire form
    rtype: int
    ttl: int
    rdatas: tuple[RD, ...]


@dataclass(frozen=True, slots=True)
class Pop:
    """A point of presence of a CDN: where it is and, for A/AAAA answers, its own addresses."""

    name: str
    lat: float
    lon: float
    addresses: tuple[str, ...] = ()
    check: str | None = None  # key of this PoP's own health check, if it has one


@dataclass(frozen=True, slots=True)
class Target:
    """One value of a dynamic pool: a CDN hostname (CNAME) or an address (A/AAAA)."""

    value: str  # rdata text exactly as the answer carries it (IP, or absolute fqdn with dot)
    weight: int = 1  # 1..100 (octoDNS)
    status: str = "obey"  # up | down | obey
    cost: float | None = None  # relative cost per GB, any unit, lower is cheaper
    pops: tuple[Pop, ...] = ()  # locations; empty = no coordinates (proximity keeps it)
    check: str | None = None  # key of the health check in the HealthView; None = no check


@dataclass(frozen=True, slots=True)
class Pool:
    id: str
    targets: tuple[Target, ...]
    fallback: str | None = None  # another pool id; None = the record's own values (origin)


@dataclass(frozen=True, slots=True)
class Rule:
    pool: str
    geos: tuple[str, ...] = ()  # "EU", "NA-US", "NA-US-CA"
    subnets: tuple[IPNetwork, ...] = ()

    @property
    def catch_all(self) -> bool:
        return not self.geos and not self.subnets


DEFAULT_CHAIN = ("rules", "health", "performance", "proximity", "cost", "weighted")


@dataclass(frozen=True, slots=True)
class GslbOptions:
    """Our extensions to the octoDNS dynamic schema, from the record's ``gslb:`` block."""

    chain: tuple[str, ...] = DEFAULT_CHAIN
    answers: int = 1  # how many values to return
    sticky: bool = False  # hash of the client subnet instead of random
    ecs: bool = True  # use EDNS Client Subnet when present
    degraded_ttl: int | None = None  # TTL while answering from a fallback or the origin
    proximity_km: float | None = None  # keep values within this many km of the nearest
    proximity_ratio: float | None = 1.5  # or within nearest * ratio (used when km is unset)
    proximity_min_km: float = 500.0  # ratio mode keeps at least nearest + this (GeoIP noise)
    cost_tolerance: float = 0.2  # keep values costing at most cheapest * (1 + tolerance)
    latency_tolerance: float = 0.5  # performance: keep latency <= best * (1 + tolerance)
    latency_margin: float = 0.02  # ... or <= best + margin (s): 1 ms vs 2 ms is not slow
    success_floor: float = 0.9  # performance: drop values whose success ratio fell below
    fail_open: bool = True  # answer the origin even when its own check says down
    origin_check: str | None = None  # health check key for the origin values


@dataclass(frozen=True, slots=True)
class DynamicRecord:
    """An octoDNS ``dynamic`` record: the GSLB decision for one name and type."""

    name: bytes  # lowercase wire form
    fqdn: str  # for messages and metrics labels, lowercase with trailing dot
    rtype: int  # A, AAAA or CNAME
    ttl: int
    origin: tuple[str, ...]  # the record's own value(s): the last resort
    pools: dict[str, Pool]
    rules: tuple[Rule, ...]
    options: GslbOptions = field(default_factory=GslbOptions)
    # The origin values as Targets (cost, PoPs, origin check); empty = plain ``origin`` values.
    origin_targets: tuple[Target, ...] = ()
    rum: Any = None  # gslb.rum.config.RumOptions: steering by real-user measurements
    commit: Any = None  # gslb.commit.contract.CommitSpec: contracts and controller settings


@dataclass(slots=True)
class Node:
    """Everything owned by one name in a zone."""

    name: bytes
    rrsets: dict[int, RRset] = field(default_factory=dict)
    dynamic: dict[int, DynamicRecord] = field(default_factory=dict)

    @property
    def has_cname(self) -> bool:
        return CNAME in self.rrsets or CNAME in self.dynamic


@dataclass(slots=True)
class Zone:
    """One zone, loaded from ``<zone>.yaml``."""

    origin: bytes  # lowercase wire form of the apex
    fqdn: str  # "example.com."
    source: str  # file it came from
    soa: RRset
    nodes: dict[bytes, Node]
    existing: frozenset[bytes]  # every node name plus every empty non-terminal
    cuts: frozenset[bytes]  # delegation points below the apex (names with NS)
    wildcards: bool  # whether any "*" owner exists (skip wildcard search otherwise)
    # DNAME owners -> their target (wire), for RFC 6672 synthesis; empty = no search at all.
    dnames: dict[bytes, bytes] = field(default_factory=dict)
    # The apex ALIAS as written: (target wire name, TTL, "file: record" for messages).
    alias: tuple[bytes, int, str] | None = None

    @property
    def serial(self) -> int:
        return self.soa.rdatas[0].times[0]
