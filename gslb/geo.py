"""Client location from a MaxMind-format database (GeoIP2/GeoLite2, DB-IP, our reduced default).

This sits on the DNS answer path, so lookups go straight to ``maxminddb`` (a few microseconds)
instead of through ``geoip2`` model objects (tens of microseconds), and results are cached twice:
per address (a repeat client costs one dict hit) and per database network (every address of one
network gets the *same* ``Location`` object, so callers can cache decisions per location).
"""

from __future__ import annotations

import bisect
import datetime
import functools
import gzip
import ipaddress
import logging
import math
import os
import pathlib
import shutil
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import maxminddb

__all__ = [
    "DEFAULT_DB_NAME",
    "GeoDB",
    "GeoError",
    "Location",
    "default_db_path",
    "haversine_km",
]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_DB_NAME = "dbip-city-hub.mmdb.gz"
ENV_DB = "GSLB_GEOIP_DB"
DEFAULT_CACHE_SIZE = 65536
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)

_GZIP_MAGIC = b"\x1f\x8b"
# Never routed on the public Internet, so a database answer for them would be noise. Our own
# table: ipaddress.is_global costs ~10 us per new address and changes between Python versions.
_RESERVED = {
    4: (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    ),
    6: (
        "::/96", "100::/64", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8",
    ),
}  # fmt: skip
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MISS = object()  # cache sentinel: None is a valid cached answer ("unknown client")
_OPEN_ERRORS = (OSError, EOFError, ValueError, RuntimeError, zlib.error)


class GeoError(Exception):
    """The geo database cannot be used: missing, not a MaxMind DB, or corrupt."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where a client is, as far as the database knows; compared and hashed by value."""

    country: str | None  # ISO 3166-1 alpha-2, "DE"
    continent: str | None  # "EU", "NA", "AS", "OC", "AF", "SA", "AN"
    subdivision: str | None  # ISO 3166-2 code without the country part, "CA"
    lat: float | None
    lon: float | None
    network: IPNetwork  # the database network that matched
    _geos: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Computed once per interned object: policies ask for it on every query.
        object.__setattr__(
            self, "_geos", _geo_codes(self.continent, self.country, self.subdivision)
        )

    def geos(self) -> tuple[str, ...]:
        """octoDNS geo codes this location matches, most specific first: NA-US-CA, NA-US, NA."""
        return self._geos


@functools.lru_cache(maxsize=8192)
def _geo_codes(
    continent: str | None, country: str | None, subdivision: str | None
) -> tuple[str, ...]:
    """Build the octoDNS chain; each level needs its parent, as octoDNS codes are nested.
    Cached: every location of one subdivision shares one tuple (a City database has 100k+
    locations, ~200 bytes of strings each when built apart)."""
    if continent is None:
        return ()
    if country is None:
        return (continent,)
    if subdivision is None:
        return (f"{continent}-{country}", continent)
    return (f"{continent}-{country}-{subdivision}", f"{continent}-{country}", continent)


class GeoDB:
    """A read-only geo database with per-address and per-network caches.

    Meant for one event loop. Sharing it between threads is still safe, because each dict
    operation is atomic under the GIL; at worst an address is looked up twice.
    """

    def __init__(self, reader: Any, path: str, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        meta = reader.metadata()
        self._reader = reader
        self.path = path
        self.database_type: str = str(meta.database_type)
        self.build_epoch: int = int(meta.build_epoch)
        self._ipv6_db = meta.ip_version == 6
        self._cache_size = max(1, cache_size)
        self._by_address: dict[IPAddress, Location | None] = {}
        self._by_network: dict[tuple[int, int, int], Location | None] = {}
        self._warned = False

    @classmethod
    def open(cls, path: str | os.PathLike, *, cache_size: int = DEFAULT_CACHE_SIZE) -> GeoDB:
        """Open a ``.mmdb`` or gzip-compressed ``.mmdb.gz``; raise GeoError with the reason."""
        name = os.fspath(path)
        if not os.path.isfile(name):
            raise GeoError(f"GeoIP database {name}: no such file")
        try:
            reader = _open_reader(name)
        except _OPEN_ERRORS as exc:
            raise GeoError(f"GeoIP database {name}: not a readable MaxMind DB ({exc})") from exc
        try:
            _probe(reader)
            return cls(reader, name, cache_size)
        except _OPEN_ERRORS + (TypeError, AttributeError) as exc:
            reader.close()
            raise GeoError(f"GeoIP database {name}: corrupt MaxMind DB ({exc})") from exc

    @property
    def description(self) -> str:
        """One line for logs and --version: type, data date and file."""
        built = datetime.datetime.fromtimestamp(self.build_epoch, datetime.UTC).date()
        return f"{self.database_type} built {built.isoformat()} ({_display_path(self.path)})"

    def locate(self, address: IPAddress) -> Location | None:
        """Return the client's location, or None when unknown. Never raises."""
        location = self._by_address.get(address, _MISS)
        if location is _MISS:
            location = self._lookup(address)
            if len(self._by_address) >= self._cache_size:
                self._by_address.clear()  # cheaper and simpler than LRU bookkeeping per hit
            self._by_address[address] = location
        return location  # type: ignore[return-value]

    def close(self) -> None:
        """Release the database; later lookups return None."""
        self._reader.close()
        self._by_address.clear()
        self._by_network.clear()

    def __enter__(self) -> GeoDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _lookup(self, address: IPAddress) -> Location | None:
        try:
            if address.version == 6 and address.ipv4_mapped is not None:
                address = address.ipv4_mapped  # our DBs store IPv4 only under ::/96
            if _is_reserved(address):
                return None  # private, loopback, link-local, documentation, CGNAT, multicast
            record, prefix = self._reader.get_with_prefix_len(address)
        except ValueError:
            return None  # IPv6 address in an IPv4-only DB, or the DB was closed
        except Exception as exc:  # corrupt data section: degrade to "unknown", say so once
            if not self._warned:
                self._warned = True
                logger.warning("geo lookup failed in %s: %s", self.path, exc)
            return None
        if record is None:
            return None
        return self._intern(address, prefix, record)

    def _intern(self, address: IPAddress, prefix: int, record: Any) -> Location | None:
        bits = address.max_prefixlen
        if bits == 32 and self._ipv6_db and prefix > 32:
            prefix -= 96  # a reader that counts the ::/96 bits (maxminddb 3.2 does not)
        prefix = min(max(prefix, 0), bits)
        shift = bits - prefix
        key = (bits, int(address) >> shift << shift, prefix)
        location = self._by_network.get(key, _MISS)
        if location is _MISS:
            network_class = ipaddress.IPv4Network if bits == 32 else ipaddress.IPv6Network
            location = _parse(record, network_class((key[1], prefix)))
            if len(self._by_network) >= self._cache_size:
                self._by_network.clear()
            self._by_network[key] = location
        return location  # type: ignore[return-value]


def _interval_table(cidrs: tuple[str, ...]) -> tuple[list[int], list[int]]:
    networks = sorted(ipaddress.ip_network(cidr) for cidr in cidrs)
    return [int(n.network_address) for n in networks], [int(n.broadcast_address) for n in networks]


_RESERVED_TABLES = {version: _interval_table(cidrs) for version, cidrs in _RESERVED.items()}


def _is_reserved(address: IPAddress) -> bool:
    """Binary search in disjoint sorted ranges: well under a microsecond."""
    firsts, lasts = _RESERVED_TABLES[address.version]
    value = int(address)
    i = bisect.bisect_right(firsts, value) - 1
    return i >= 0 and value <= lasts[i]


def _parse(record: Any, network: IPNetwork) -> Location | None:
    """Turn a City or Country record into a Location; None when it carries no geo data.

    Records of real databases are GeoIP2-shaped; anything else counts as "no data" rather than
    an error, without paying for type checks on every field.
    """
    try:
        country = record.get("country", _EMPTY).get("iso_code")
        continent = record.get("continent", _EMPTY).get("code")
        subdivisions = record.get("subdivisions")
        # The first subdivision is the largest one (state, not county).
        subdivision = subdivisions[0].get("iso_code") if subdivisions else None
        point = record.get("location", _EMPTY)
        lat, lon = point.get("latitude"), point.get("longitude")
        lat, lon = (None, None) if lat is None or lon is None else (float(lat), float(lon))
    except (AttributeError, TypeError, ValueError, IndexError, KeyError):
        return None
    if country is None and continent is None and lat is None:
        return None
    return Location(country, continent, subdivision, lat, lon, network)


def _open_reader(path: str) -> Any:
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    if not compressed:
        return maxminddb.open_database(path)
    return _open_gzip(path)


def _open_gzip(path: str) -> Any:
    """Unpack to an unlinked temp file so the C reader can mmap it.

    maxminddb's MODE_FD would read the gzip stream directly but uses the pure-Python reader,
    which is about ten times slower per lookup; MODE_FD stays as the fallback when no temp
    file can be written.
    """
    try:
        fd, tmp_name = tempfile.mkstemp(prefix="gslb-geoip-", suffix=".mmdb")
    except OSError:
        with gzip.open(path, "rb") as src:
            return maxminddb.open_database(src, mode=maxminddb.MODE_FD)
    try:
        with os.fdopen(fd, "wb") as tmp, gzip.open(path, "rb") as src:
            shutil.copyfileobj(src, tmp, 1 << 20)
        return maxminddb.open_database(tmp_name)  # the mapping outlives the unlink below
    finally:
        os.unlink(tmp_name)


def _probe(reader: Any) -> None:
    """Touch the tree and the data section once, so corruption shows at open, not per query."""
    meta = reader.metadata()
    if meta.ip_version not in (4, 6) or not isinstance(meta.database_type, str):
        raise ValueError(f"unexpected metadata: ip_version={meta.ip_version}")
    int(meta.build_epoch)
    for address in ("1.1.1.1", "8.8.8.8", "81.2.69.160"):
        reader.get(address)
    if meta.ip_version == 6:
        reader.get("2001:4860:4860::8888")


def _display_path(path: str) -> str:
    """Show paths inside the repository relative to it, as in geoip/dbip-city-hub.mmdb.gz."""
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        return str(pathlib.Path(path).resolve().relative_to(root))
    except ValueError:
        return path


def default_db_path() -> pathlib.Path:
    """The shipped database in <repo>/geoip/, unless GSLB_GEOIP_DB names another file."""
    override = os.environ.get(ENV_DB)
    if override:
        return pathlib.Path(override)
    return pathlib.Path(__file__).resolve().parent.parent / "geoip" / DEFAULT_DB_NAME


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km; good to ~0.5 %, far finer than any IP geolocation."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlam = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlam / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(1.0, a)))
