"""Tiny MaxMind-format databases for tests, written with mmdb-writer in a few milliseconds.

Import from any test: ``from tests.geodb import CLIENTS, write_world_db``. ``WORLD`` places a
handful of public-looking networks in different countries at real city coordinates; ``CLIENTS``
and ``CLIENTS6`` give one address inside each, e.g. ``CLIENTS["IN"]`` for an ECS query "from
India". The networks are made up for tests: they are not where those ranges really are.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet

# network -> {"country", "continent", "lat", "lon", "subdivision"}; every key is optional.
WORLD: dict[str, dict[str, Any]] = {
    "46.4.0.0/16": {"country": "DE", "continent": "EU", "lat": 50.1109, "lon": 8.6821},
    "51.15.0.0/16": {"country": "FR", "continent": "EU", "lat": 48.8566, "lon": 2.3522},
    "2.96.0.0/16": {"country": "GB", "continent": "EU", "lat": 51.5074, "lon": -0.1278},
    "13.52.0.0/16": {
        "country": "US",
        "continent": "NA",
        "subdivision": "CA",
        "lat": 37.7749,
        "lon": -122.4194,
    },
    "64.106.0.0/16": {
        "country": "US",
        "continent": "NA",
        "subdivision": "NY",
        "lat": 40.7128,
        "lon": -74.006,
    },
    "49.32.0.0/16": {"country": "IN", "continent": "AS", "lat": 19.076, "lon": 72.8777},
    "126.0.0.0/16": {"country": "JP", "continent": "AS", "lat": 35.6762, "lon": 139.6503},
    "13.228.0.0/16": {"country": "SG", "continent": "AS", "lat": 1.3521, "lon": 103.8198},
    "200.147.0.0/16": {"country": "BR", "continent": "SA", "lat": -23.5505, "lon": -46.6333},
    "1.128.0.0/16": {"country": "AU", "continent": "OC", "lat": -33.8688, "lon": 151.2093},
    "41.0.0.0/16": {"country": "ZA", "continent": "AF", "lat": -26.2041, "lon": 28.0473},
    "2a01:4f8::/32": {"country": "DE", "continent": "EU", "lat": 50.1109, "lon": 8.6821},
    "2600:1f1c::/32": {
        "country": "US",
        "continent": "NA",
        "subdivision": "CA",
        "lat": 37.7749,
        "lon": -122.4194,
    },
    "2400:4050::/32": {"country": "JP", "continent": "AS", "lat": 35.6762, "lon": 139.6503},
}

# One client address per place ("US-CA", "US-NY" for the two US states).
CLIENTS: dict[str, str] = {
    "DE": "46.4.1.10",
    "FR": "51.15.1.10",
    "GB": "2.96.1.10",
    "US-CA": "13.52.1.10",
    "US-NY": "64.106.1.10",
    "IN": "49.32.1.10",
    "JP": "126.0.1.10",
    "SG": "13.228.1.10",
    "BR": "200.147.1.10",
    "AU": "1.128.1.10",
    "ZA": "41.0.1.10",
}
CLIENTS6: dict[str, str] = {
    "DE": "2a01:4f8::10",
    "US-CA": "2600:1f1c::10",
    "JP": "2400:4050::10",
}

# An address in no network of WORLD and not private: the "unknown client".
UNKNOWN_CLIENT = "9.9.9.9"


def mmdb_record(spec: dict[str, Any]) -> dict[str, Any]:
    """Translate a flat spec into the nested GeoIP2 record layout real databases use."""
    record: dict[str, Any] = {}
    if spec.get("country"):
        record["country"] = {"iso_code": spec["country"]}
    if spec.get("continent"):
        record["continent"] = {"code": spec["continent"]}
    if spec.get("subdivision"):
        record["subdivisions"] = [{"iso_code": spec["subdivision"]}]
    if spec.get("lat") is not None and spec.get("lon") is not None:
        record["location"] = {"latitude": float(spec["lat"]), "longitude": float(spec["lon"])}
    return record


def write_test_db(
    path: str | os.PathLike,
    networks: dict[str, dict[str, Any]],
    *,
    database_type: str = "GSLB-Test-City",
    ip_version: int = 6,
) -> Path:
    """Write ``networks`` (inserted in order: put supernets before their subnets) to ``path``.

    The default is an IPv6 City DB with IPv4 under ::/96, the layout of the shipped default DB.
    """
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en"],
        description="gslb test geo db",
    )
    for network, spec in networks.items():
        ipaddress.ip_network(network)  # fail on typos with a clear message
        writer.insert_network(IPSet([network]), mmdb_record(spec))
    target = Path(path)
    writer.to_db_file(str(target))
    return target


def write_world_db(directory: str | os.PathLike) -> Path:
    """Write WORLD to ``directory``/world.mmdb (e.g. pytest's tmp_path) and return its path."""
    return write_test_db(Path(directory) / "world.mmdb", WORLD)
