"""gslb's compiled address tables on a full-size City database (millions of networks).

No real City database can be fetched here, so ``python bench/citydb.py`` first synthesizes one
in MaxMind DB format with ``bench/mmdbwrite.py`` (seeded, so every run writes the same file;
cached under bench/results/citydb/, never committed). Its shape follows DB-IP City Lite:

* the address space with data, its countries and continents are those of the shipped
  database (geoip/dbip-city-hub.mmdb.gz, itself reduced from DB-IP City Lite), so the gaps,
  the reserved space and each country's share of the addresses are real;
* each country's space is cut into city blocks (cut points aligned to a size drawn around the
  block size, so blocks split into a few CIDR networks each, /8 to /32 and /12 to /128, a few
  finer than /64), each block assigned a city of the country by a Zipf draw; 120,000 cities
  with their own coordinates, subdivisions (first-level codes) and names, plus a
  country-level record per country as real databases have;
* records carry what a City database carries and gslb reads (country and continent codes, a
  subdivision code, location with latitude/longitude/accuracy radius, the city name), with
  the keys and repeated values deduplicated by pointers; 28-bit records like GeoLite2-City;
  ``::ffff:0:0/96``, ``2001::/32`` and ``2002::/16`` alias the IPv4 tree.

The file is checked with the ``maxminddb`` C reader (sampled networks give the record and
prefix written) and with ``gslb.geo.GeoDB``. Then gslb's own code paths are measured:

1. in process: the GeoIP flattening (``gslb.georanges``) and the per-record tables
   (``gslb.policy.compile``) of the bench zone's records, with and without proximity: time,
   ranges, bytes; a rules change rebuilt in the server's slices (time until the new table
   serves); a health change; cold-path microseconds per query (``bench/coldpath.py --geoip``);
2. a real ``gslb serve --geoip <file> --workers 2`` on loopback: start-up until ready, each
   worker's resident memory from /proc (after its tables are built), and the time from a
   health override (HTTP admin API) and from a zone reload until DNS answers change.

Figures go to bench/results/citydb.json with the machine load of the run.
"""

from __future__ import annotations

import argparse
import bisect
import ipaddress
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import benchlib as bl
import coldpath
import yaml
from mmdbwrite import IPV4_ALIASES, write_database

from gslb.geo import GeoDB, default_db_path
from gslb.georanges import build_now

CITY_DIR = bl.RESULTS / "citydb"
V4_SPACE = 1 << 32
ALIGN_SPREAD = 4  # cut points aligned to 2^(k - 0..ALIGN_SPREAD), k = log2(mean block)
V4_MIN_ALIGN = 4  # /28 and coarser boundaries for IPv4
V6_MIN_ALIGN = 64  # /64 and coarser for IPv6, except FINE_V6 of the cuts
FINE_V6 = 0.0005  # share of IPv6 cuts finer than /64 (a handful in real databases)
CIDR_PER_BLOCK = 3.2  # sizes the cuts so the default lands near --networks (measured)


# -- the synthetic world ---------------------------------------------------------------------


class World:
    """Countries (from the shipped database), their cities and subdivisions, as records."""

    def __init__(self, shipped: dict, cities: int, rng: random.Random) -> None:
        self.rng = rng
        addresses: Counter = Counter()
        hubs: dict[str, tuple[str, float, float]] = {}
        for version, table in shipped.items():
            ends = list(table.starts[1:]) + [1 << table.bits]
            for start, end, place in zip(table.starts, ends, table.places, strict=True):
                if place < 0:
                    continue
                loc = table.locations[place]
                key = loc.country or loc.continent
                hubs.setdefault(key, (loc.continent, loc.lat, loc.lon))
                if version == 4:
                    addresses[key] += end - start
        for key in hubs:
            addresses[key] += 256  # IPv6-only places still get a city
        total = sum(addresses.values())
        weight = {key: math.sqrt(addresses[key] / total) for key in hubs}
        scale = cities / sum(weight.values())
        self.records: list[dict] = []
        self.country_record: dict[str, int] = {}
        self.city_records: dict[str, list[int]] = {}
        self.city_weights: dict[str, list[float]] = {}
        for key in sorted(hubs):
            continent, lat, lon = hubs[key]
            share = addresses[key] / total
            self.add_country(key, continent, lat, lon, max(1, round(weight[key] * scale)), share)

    def add_country(self, key: str, continent: str, lat: float, lon: float, count: int,
                    share: float) -> None:  # fmt: skip
        rng = self.rng
        country = {"iso_code": key} if len(key) == 2 and key != continent else None
        base: dict = {"continent": {"code": continent}}
        if country is not None:
            base["country"] = country
        self.country_record[key] = len(self.records)
        self.records.append(
            {**base, "location": {"latitude": lat, "longitude": lon, "accuracy_radius": 1000}}
        )
        spread = min(12.0, 1.0 + 25 * math.sqrt(share))  # degrees around the hub
        regions = max(1, min(60, round(math.sqrt(count))))
        codes = [subdivision_code(i) for i in range(regions)]
        ids, weights = [], []
        for rank in range(count):
            city_lat = max(-85.0, min(85.0, rng.gauss(lat, spread / 2)))
            city_lon = (rng.gauss(lon, spread) + 180.0) % 360.0 - 180.0
            record = dict(base)
            if country is not None:
                code = codes[rng.randrange(regions)]
                record["subdivisions"] = [{"iso_code": code, "names": {"en": f"Region {code}"}}]
            record["city"] = {"names": {"en": f"{key} City {rank + 1}"}}
            record["location"] = {
                "latitude": round(city_lat, 4),
                "longitude": round(city_lon, 4),
                "accuracy_radius": rng.choice((5, 10, 20, 50, 100, 200)),
            }
            ids.append(len(self.records))
            weights.append(1.0 / (rank + 1) ** 0.9)  # a few big cities, a long tail
            self.records.append(record)
        self.city_records[key] = ids
        self.city_weights[key] = list(accumulate(weights))

    def pick(self, key: str) -> int:
        """A city of the country (Zipf), or the country-level record (one block in ten)."""
        rng = self.rng
        if rng.random() < 0.1:
            return self.country_record[key]
        cumulative = self.city_weights[key]
        i = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        return self.city_records[key][min(i, len(cumulative) - 1)]


def accumulate(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def subdivision_code(index: int) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return letters[index // 26 % 26] + letters[index % 26]


def cidrs(first: int, last: int, bits: int):
    """[first, last] as the fewest aligned networks: (address, prefix) in order."""
    while first <= last:
        size = (last - first + 1).bit_length() - 1
        if first:
            size = min(size, (first & -first).bit_length() - 1)
        yield first, bits - size
        first += 1 << size


def alias_spans() -> list[tuple[int, int]]:
    return sorted((a, a | ((1 << (128 - p)) - 1)) for a, p in IPV4_ALIASES)


def synthesize(shipped: dict, world: World, target: int, v4_share: float, rng: random.Random,
               samples: list) -> object:  # fmt: skip
    """Every network of the synthetic database, in address order: (address in the 128-bit
    space, prefix, record). Keeps a reservoir of (address, prefix, record) in ``samples``."""
    seen = 0
    for version in (4, 6):
        table = shipped[version]
        shift = table.shift
        ends = [s << shift for s in table.starts[1:]] + [1 << (table.bits + shift)]
        spans = [
            (start << shift, end - 1, table.locations[place])
            for start, end, place in zip(table.starts, ends, table.places, strict=True)
            if place >= 0
        ]
        if version == 6:
            spans = clip(spans, alias_spans())
        blocks = target * (v4_share if version == 4 else 1 - v4_share) / CIDR_PER_BLOCK
        size_of = (lambda a, b: b - a + 1) if version == 4 else (lambda a, b: math.sqrt(b - a + 1))
        total = sum(size_of(a, b) for a, b, _ in spans)
        bits = 32 if version == 4 else 128
        offset = 96 if version == 4 else 0
        for first, last, loc in spans:
            want = blocks * size_of(first, last) / total
            count = int(want) + (rng.random() < want - int(want))
            key = loc.country or loc.continent
            for a, b in cut(first, last, max(1, count), version, rng):
                record = world.pick(key)
                for address, prefix in cidrs(a, b, bits):
                    seen += 1
                    if len(samples) < 20_000:
                        samples.append((version, address, prefix, record))
                    elif rng.random() < 20_000 / seen:
                        samples[rng.randrange(20_000)] = (version, address, prefix, record)
                    yield address, prefix + offset, record


def clip(spans: list, holes: list[tuple[int, int]]) -> list:
    out = []
    for first, last, loc in spans:
        pieces = [(first, last)]
        for low, high in holes:
            pieces = [
                piece
                for a, b in pieces
                for piece in ((a, min(b, low - 1)), (max(a, high + 1), b))
                if piece[0] <= piece[1]
            ]
        out += [(a, b, loc) for a, b in pieces]
    return out


def cut(first: int, last: int, count: int, version: int, rng: random.Random):
    """``count`` blocks covering [first, last], cut at points aligned to around the mean
    block size (so a block is a few CIDR networks, as real city ranges are)."""
    size = last - first + 1
    if count <= 1:
        yield first, last
        return
    mean = max(1, size // count).bit_length() - 1
    floor = V4_MIN_ALIGN if version == 4 else V6_MIN_ALIGN
    points = set()
    for _ in range(count - 1):
        align = max(floor, mean - rng.randrange(ALIGN_SPREAD + 1))
        if version == 6 and rng.random() < FINE_V6:
            align = rng.choice((80, 96, 112)) - 48  # a /80, /96 or /112 boundary
        point = (first + rng.randrange(size)) >> align << align
        if first < point <= last:
            points.add(point)
    start = first
    for point in sorted(points):
        yield start, point - 1
        start = point
    yield start, last


def generate(path: Path, networks: int, cities: int, v4_share: float, seed: int):
    """Write the synthetic City database to ``path``: (figures, sampled networks, records)."""
    rng = random.Random(seed)
    shipped_db = GeoDB.open(default_db_path())
    shipped = build_now(shipped_db)
    shipped_db.close()
    world = World(shipped, cities, rng)
    samples: list = []
    started = time.perf_counter()
    figures = write_database(
        str(path),
        synthesize(shipped, world, networks, v4_share, rng, samples),
        world.records,
        database_type="GSLB-Synthetic-City",
        description=f"synthetic City-size database, seed {seed} (bench/citydb.py)",
        build_epoch=1_790_000_000,
    )
    figures["generate_seconds"] = round(time.perf_counter() - started, 1)
    figures["file_mib"] = round(path.stat().st_size / 2**20, 1)
    coords = {(r["location"]["latitude"], r["location"]["longitude"]) for r in world.records}
    figures["distinct_coordinates"] = len(coords)
    figures["countries"] = len(world.country_record)
    return figures, samples, world.records


def verify(path: Path, samples: list, records: list[dict] | None = None) -> dict:
    """Sampled networks read back with the maxminddb C reader (record and prefix) and with
    gslb's GeoDB (country, continent, subdivision, coordinates)."""
    import maxminddb

    checked = 0
    counts: Counter = Counter()
    with maxminddb.open_database(str(path)) as reader:
        for version, address, prefix, index in samples:
            bits = 32 if version == 4 else 128
            host = address | random.Random(address).randrange(1 << (bits - prefix))
            ip = ipaddress.ip_address(host) if version == 6 else ipaddress.IPv4Address(host)
            record, got_prefix = reader.get_with_prefix_len(ip)
            if got_prefix != prefix or record is None:
                raise SystemExit(f"verify: {ip} gave prefix {got_prefix}, wrote /{prefix}")
            if records is not None and record != records[index]:
                raise SystemExit(f"verify: {ip} gave {record}, wrote {records[index]}")
            counts[version] += 1
            checked += 1
    geo = GeoDB.open(path)
    located = 0
    for version, address, _prefix, index in samples[:5000]:
        ip = ipaddress.IPv4Address(address) if version == 4 else ipaddress.IPv6Address(address)
        location = geo.locate(ip)
        if location is not None:
            located += 1
            if records is not None:
                want = records[index]
                if (location.lat, location.lon) != (
                    want["location"]["latitude"],
                    want["location"]["longitude"],
                ) or location.continent != want["continent"]["code"]:
                    raise SystemExit(f"verify: GeoDB located {ip} at {location}, wrote {want}")
    geo.close()
    return {"networks_checked": checked, "by_family": dict(counts), "geodb_located": located}


def city_database(args) -> tuple[Path, dict]:
    CITY_DIR.mkdir(parents=True, exist_ok=True)
    name = f"city-{args.networks}-{args.cities}-{args.seed}.mmdb"
    path = CITY_DIR / name
    info_path = path.with_suffix(".json")
    if path.is_file() and info_path.is_file() and not args.regenerate:
        info = json.loads(info_path.read_text())
        print(f"using {path} ({info['networks']:,} networks)", flush=True)
        return path, info
    print(f"writing {path} ...", flush=True)
    tmp = path.with_suffix(".tmp")
    figures, samples, records = generate(tmp, args.networks, args.cities, args.v4_share, args.seed)
    tmp.replace(path)
    print(f"  {figures}", flush=True)
    figures["verify"] = verify(path, samples, records)
    print(f"  verified: {figures['verify']}", flush=True)
    info_path.write_text(json.dumps(figures, indent=2) + "\n")
    return path, figures


# -- in process ------------------------------------------------------------------------------


def zone_dir(work: Path, swap: bool = False) -> Path:
    """The bench zone; ``swap`` changes content's rules (so its table is rebuilt): EU clients
    go to the partner pool (CDN C only), AF joins AS/OC, the partner subnet gets europe."""
    text = (bl.ROOT / "bench" / "zones" / "example.com.yaml").read_text()
    old = "pool: partner\n      - geos: [EU, AF]\n        pool: europe\n      - geos: [AS, OC]\n"
    if old not in text:
        raise SystemExit("bench/zones/example.com.yaml: content's rules moved; update citydb.py")
    if swap:
        new = (
            "pool: europe\n      - geos: [EU]\n        pool: partner\n      - geos: [AS, OC, AF]\n"
        )
        text = text.replace(old, new)
    text += "\n" + yaml.safe_dump(coldpath.WEIGHTED, sort_keys=False)  # cold-path stream
    work.mkdir(parents=True, exist_ok=True)
    (work / "example.com.yaml").write_text(text)
    return work


def resident() -> dict:
    """This process's resident memory (MiB): total, anonymous (its own) and peak."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def build_in_slices(compiler, slice_seconds: float) -> dict:
    """Run the compiler as the DNS server does (``compiler.work(COMPILE_SLICE)`` between
    turns of the event loop): wall and CPU time, slices, and the longest slice (the longest
    an answer can wait behind the build)."""
    wall, cpu = time.perf_counter(), time.process_time()
    slices, longest, longest_cpu = 0, 0.0, 0.0
    while True:
        started, started_cpu = time.perf_counter(), time.process_time()
        more = compiler.work(slice_seconds)
        longest = max(longest, time.perf_counter() - started)
        longest_cpu = max(longest_cpu, time.process_time() - started_cpu)
        slices += 1
        if not more:
            break
    return {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "slices": slices,
        "longest_slice_ms": round(longest * 1000, 1),  # wall: other jobs' turns included
        "longest_slice_cpu_ms": round(longest_cpu * 1000, 1),
    }


def own_bytes(family) -> int:
    """What a family table holds of its own: its ranges, classes and bucket index, or, for a
    table sharing the GeoIP ranges, its class per place and runs (dict entries ~100 bytes)."""
    if hasattr(family, "by_place"):
        size = len(family.by_place) * family.by_place.itemsize + 100 * len(family.runs)
        for part in family.exceptions or ():
            size += len(part) * part.itemsize
    else:
        size = len(family.starts) * (family.starts.itemsize + family.classes.itemsize)
        size += len(family.buckets) * family.buckets.itemsize
    return size + (own_bytes(family.rules) if family.rules is not None else 0)


def table_figures(table) -> dict:
    families = {}
    for version, family in table.families.items():
        rules = family.rules
        families[f"ipv{version}"] = {
            "shares_geoip_ranges": hasattr(family, "by_place"),
            "ranges": len(family.starts),
            "rule_ranges": len(rules.starts) if rules is not None else 0,
            "mib": round(own_bytes(family) / 2**20, 1),
        }
    return {
        "ranges": sum(f["ranges"] + f["rule_ranges"] for f in families.values()),
        "own_ranges": table.ranges(),
        "classes": len(table.classes) - 1,
        "build_s": round(table.build_seconds, 2),
        "mib": round(sum(f["mib"] for f in families.values()), 1),
        "families": families,
    }


def in_process(path: Path, work: Path, cold_count: int) -> dict:
    """Flattening, tables, a rules change, a health change and the cold path, with gslb's
    own Engine, Compiler and Responder as a worker runs them."""
    import gc

    from gslb.config.load import load_config
    from gslb.dns.responder import Responder, dynamic_records
    from gslb.dns.server import COMPILE_SLICE
    from gslb.policy.chain import Engine
    from gslb.policy.compile import MAX_RANGES, Classifier, RecordTable, trim_heap
    from gslb.policy.rules import RuleIndex

    out: dict = {"rss_before_mib": resident(), "max_ranges": MAX_RANGES}
    config, errors = load_config(zone_dir(work / "zones-a"))
    if config is None:
        raise SystemExit("\n".join(errors))
    geo = GeoDB.open(path)
    engine = Engine(geo, random.Random(1))
    responder = Responder(config, engine)
    compiler = engine.compiler
    out["first_build"] = build_in_slices(compiler, COMPILE_SLICE)
    out["geoip_flatten_s"] = round(compiler.geo_seconds, 2)
    out["geoip_ranges"] = {f"ipv{v}": len(t) for v, t in compiler.geo_ranges.items()}
    out["geoip_locations"] = {f"ipv{v}": len(t.locations) for v, t in compiler.geo_ranges.items()}
    out["geoip_mib"] = round(sum(len(t) * (t.starts.itemsize + t.places.itemsize)
                                 for t in compiler.geo_ranges.values()) / 2**20, 1)  # fmt: skip
    index = sum(len(b) * b.itemsize for b, _ in compiler.geo_index.values())
    out["geoip_index_mib"] = round(index / 2**20, 1)
    out["rss_peak_while_building_mib"] = resident()["VmHWM"]
    trim_heap()
    gc.collect()
    trim_heap()
    out["rss_after_build_mib"] = resident()
    records = {}
    for record in dynamic_records(config):
        comp = engine.compile(record)
        table = compiler.table(record, comp.proximity)
        name = record.fqdn.split(".")[0]
        figures = table_figures(table) if table is not None else {"table": None}
        records[name] = {"proximity": comp.proximity, "rules": len(record.rules), **figures}
        if comp.proximity:  # the same record without proximity: merged by rule only
            started = time.perf_counter()
            classifier = Classifier(RuleIndex(record.rules), False,
                                    "rules" not in record.options.chain)  # fmt: skip
            families = {}
            for version, ranges in compiler.geo_ranges.items():
                for family in classifier.family(ranges):
                    if family is not None:
                        families[version] = family
            plain = RecordTable(families, tuple(classifier.classes),
                                time.perf_counter() - started)  # fmt: skip
            records[name]["without_proximity"] = table_figures(plain)
    out["records"] = records
    out["over_cap"] = len(compiler.over_cap)
    print(f"  in process: GeoIP flattened in {out['geoip_flatten_s']} s "
          f"({out['geoip_ranges']}), tables {records}", flush=True)  # fmt: skip
    out["rules_change"] = rules_change(responder, engine, work, COMPILE_SLICE)
    out["rss_after_rules_change_mib"] = resident()
    out["cold_path_us"] = cold_path(responder, cold_count)
    out["rss_after_cold_path_mib"] = resident()
    out["health_change"] = health_change(engine, responder.config, geo)
    geo.close()
    return out


def rules_change(responder, engine, work: Path, slice_seconds: float) -> dict:
    """A reload that changes content's rules (EU/AF to the partner pool): only that table is
    rebuilt, in the server's slices; until it is swapped in the record answers step by step."""
    from gslb.config.load import load_config
    from gslb.dns.responder import dynamic_records

    config, errors = load_config(zone_dir(work / "zones-b", swap=True))
    if config is None:
        raise SystemExit("\n".join(errors))
    started = time.perf_counter()
    responder.set_config(config)
    swap = time.perf_counter() - started
    content = next(r for r in dynamic_records(config) if r.fqdn.startswith("content."))
    comp = engine.compile(content)
    assert engine.compiler.table(content, comp.proximity) is None, "rules changed: rebuilt"
    built = build_in_slices(engine.compiler, slice_seconds)
    table = engine.compiler.table(content, comp.proximity)
    return {"set_config_ms": round(swap * 1000, 1), "until_new_table_serves": built,
            "ranges": table.ranges() if table is not None else None}  # fmt: skip


def health_change(engine, config, geo) -> dict:
    """A new health view: nothing is rebuilt; each class is decided again on its first query.
    Clients: random addresses the database locates (IPv4 /24s), decided right after the flip
    and then again (every class decided already)."""
    from gslb.dns.responder import dynamic_records
    from gslb.health.view import HealthView

    content = next(r for r in dynamic_records(config) if r.fqdn.startswith("content."))
    rng = random.Random(3)
    clients = []
    while len(clients) < 20_000:
        ip = rng.randrange(1 << 24, 224 << 24) & ~0xFF
        if geo.locate(ipaddress.IPv4Address(ip)) is not None:
            clients.append(ip)
    out = {}
    for version in (1, 2):
        view = HealthView(version)
        times = []
        for label in ("after_flip", "again"):
            times = []
            for ip in clients:
                started = time.perf_counter()
                engine.decide(content, 4, ip, 24, view)
                times.append(time.perf_counter() - started)
            times.sort()
            out[label] = {
                "us_per_query": round(sum(times) / len(times) * 1e6, 1),
                "p99_us": round(times[int(len(times) * 0.99)] * 1e6, 1),
                "max_us": round(times[-1] * 1e6, 1),
            }
    table = engine.compiler.table(content, engine.compile(content).proximity)
    decided = sum(d is not None for d in engine._plans[id(content)].decisions)
    out["classes_decided"] = decided
    out["classes"] = len(table.classes) - 1 if table is not None else None
    return out


def cold_path(responder, count: int) -> dict:
    """bench/coldpath.py's streams against this responder: CPU us per query, best of 3."""
    clients = [f"127.0.0.{1 + i % 4}" for i in range(count)]
    out = {}
    for kind in ("chain4", "chain6", "weighted", "static"):
        coldpath.run(responder, coldpath.hostile(kind, count // 4, seed=99), clients[: count // 4])
        best = min(coldpath.run(responder, coldpath.hostile(kind, count, seed=seed), clients)
                   for seed in range(3))  # fmt: skip
        out[kind] = round(best, 2)
        print(f"  cold path {kind}: {best:.2f} us/query", flush=True)
    return out


# -- a real server -----------------------------------------------------------------------------

TOKEN = "citydb-bench-token"


def proc_status(pid: int) -> dict:
    fields = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def workers(server) -> list[int]:
    return sorted(pid for pid, role in server.roles().items() if role == "worker")


def wait_idle(server, limit: float, quiet: float = 1.0) -> float:
    """Seconds until every worker's CPU stops moving (its tables are built): less than 2 %
    of a core over ``quiet`` seconds."""
    started = time.monotonic()
    before = {pid: bl.cpu_seconds(pid) for pid in workers(server)}
    while time.monotonic() - started < limit:
        time.sleep(quiet)
        now = {pid: bl.cpu_seconds(pid) for pid in workers(server)}
        if before and all(now.get(pid, 0) - cpu < 0.02 * quiet for pid, cpu in before.items()):
            return time.monotonic() - started - quiet
        before = now
    raise RuntimeError(f"workers still busy after {limit:.0f} s")


def admin(port: int, path: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://{bl.LOOPBACK}:{port}{path}", data=b"",
                                     method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def ask(port: int, client: str) -> tuple[str | None, float]:
    """content.example.com A with the client's /24 as ECS, from a fresh socket (a new
    source port, so SO_REUSEPORT spreads the queries over the workers): (target, seconds)."""
    import dns.edns
    import dns.message
    import dns.query

    query = dns.message.make_query(bl.GSLB_NAME, "A", use_edns=0,
                                   options=[dns.edns.ECSOption(client, 24)])  # fmt: skip
    started = time.perf_counter()
    try:
        reply = dns.query.udp(query, bl.LOOPBACK, port=port, timeout=1.0)
    except Exception:  # a lost or late answer counts as "not yet"
        return None, time.perf_counter() - started
    elapsed = time.perf_counter() - started
    for rrset in reply.answer:
        if rrset.rdtype == dns.rdatatype.CNAME:
            return str(rrset[0].target), elapsed
    return None, elapsed


def wait_answer(port: int, client: str, want: str, limit: float = 60.0, run: int = 8) -> float:
    """Seconds until ``run`` answers in a row (each from its own source port) name ``want``."""
    started = time.perf_counter()
    streak = 0
    while time.perf_counter() - started < limit:
        target, _ = ask(port, client)
        streak = streak + 1 if target == want else 0
        if streak >= run:
            return time.perf_counter() - started
    raise RuntimeError(f"{client}: no {want} after {limit:.0f} s")


def europe_client(path: Path) -> str:
    geo = GeoDB.open(path)
    rng = random.Random(8)
    try:
        while True:
            ip = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24) & ~0xFF)
            location = geo.locate(ip)
            if location is not None and location.continent == "EU":
                return str(ip)
    finally:
        geo.close()


class Prober:
    """Queries every few milliseconds in a thread, to see answers wait behind a build."""

    def __init__(self, port: int, client: str, period: float = 0.005) -> None:
        import threading

        self.port, self.client, self.period = port, client, period
        self.samples: list[tuple[float, float, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.is_set():
            target, elapsed = ask(self.port, self.client)
            self.samples.append((time.perf_counter(), elapsed, target))
            self.stop.wait(self.period)

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def summary(self, since: float, until: float) -> dict:
        times = sorted(e for t, e, _ in self.samples if since <= t <= until)
        if not times:
            return {"queries": 0}
        return {"queries": len(times), "median_ms": round(times[len(times) // 2] * 1000, 2),
                "p99_ms": round(times[int(len(times) * 0.99)] * 1000, 2),
                "max_ms": round(times[-1] * 1000, 2)}  # fmt: skip


def served(path: Path, work: Path) -> dict:
    """``gslb serve --geoip <file> --workers 2``: start-up, memory per worker, update latency."""
    zones = zone_dir(work / "zones-serve")
    (work / "token").write_text(TOKEN + "\n")
    (work / "token").chmod(0o600)
    server = bl.Gslb(zones, path, work, workers=2,
                     extra=("--admin-token-file", str(work / "token")))  # fmt: skip
    out: dict = {"workers": 2}
    client = europe_client(path)
    with server:
        out["ready_s"] = round(server.wait_ready(timeout=300), 1)
        out["tables_built_s"] = round(out["ready_s"] + wait_idle(server, 300), 1)
        out["memory_mib"] = {
            "supervisor": proc_status(server.process.pid),
            "workers": [proc_status(pid) for pid in workers(server)],
        }
        print(f"  served: ready after {out['ready_s']} s, tables built after "
              f"{out['tables_built_s']} s, memory {out['memory_mib']}", flush=True)  # fmt: skip
        port = server.dns_port
        first, _ = ask(port, client)
        out["client"] = client
        out["answer_before"] = first
        # A health change: CDN A forced down, EU answers move to CDN B.
        started = time.perf_counter()
        status = admin(server.http_port, "/admin/targets/example.cdn-a.net./down")
        posted = time.perf_counter() - started
        moved = wait_answer(port, client, "example.cdn-b.net.")
        out["health_change"] = {"status": status, "post_ms": round(posted * 1000, 1),
                                "answers_moved_ms": round((posted + moved) * 1000, 1)}  # fmt: skip
        admin(server.http_port, "/admin/targets/example.cdn-a.net./obey")
        wait_answer(port, client, first or "example.cdn-a.net.")
        # A reload that changes content's rules: EU/AF to the partner pool (CDN C).
        zone_dir(zones, swap=True)
        with Prober(port, client) as prober:
            time.sleep(1.0)
            reload_at = time.perf_counter()
            status = admin(server.http_port, "/admin/reload")
            posted = time.perf_counter() - reload_at
            moved = wait_answer(port, client, "example.cdn-c.net.")
            rebuilt = wait_idle(server, 120, quiet=0.5)
            done_at = time.perf_counter()
            time.sleep(1.0)
        out["rules_change"] = {
            "status": status,
            "post_ms": round(posted * 1000, 1),
            "answers_moved_ms": round((posted + moved) * 1000, 1),
            "new_table_serves_s": round(done_at - reload_at, 1),
            "latency_before": prober.summary(reload_at - 1.0, reload_at),
            "latency_while_rebuilding": prober.summary(reload_at, done_at),
            "latency_after": prober.summary(done_at, done_at + 1.0),
            "rebuild_detect_s": round(rebuilt, 1),
        }
        out["memory_after_reload_mib"] = [proc_status(pid) for pid in workers(server)]
        print(f"  served: health change {out['health_change']}, rules change "
              f"{out['rules_change']}", flush=True)  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--networks",
        type=int,
        default=6_000_000,
        help="how finely to cut countries into city blocks, in networks; the count written "
        "differs (6.1 million for the default, 12.3 million for 15000000: DB-IP City Lite's size)",
    )
    parser.add_argument("--cities", type=int, default=120_000)
    parser.add_argument("--v4-share", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument(
        "--parts", nargs="*", default=["inproc", "serve"], choices=["inproc", "serve"]
    )
    parser.add_argument(
        "--databases", nargs="*", default=["shipped", "city"], choices=["shipped", "city", "file"]
    )
    parser.add_argument(
        "--geoip", type=Path, help="measure this MaxMind-format file too (a real City database)"
    )
    parser.add_argument(
        "--cold-count", type=int, default=30_000, help="queries per cold-path stream"
    )
    parser.add_argument("--output", default="citydb.json", help="file name under bench/results/")
    args = parser.parse_args()
    if args.geoip is not None and "file" not in args.databases:
        args.databases.append("file")
    if "file" in args.databases and args.geoip is None:
        parser.error("--databases file needs --geoip FILE")
    path, info = None, None
    if "city" in args.databases or args.generate_only:
        path, info = city_database(args)
    if args.generate_only:
        return 0
    if len(args.databases) > 1:  # one process per database: clean memory figures
        results = {"machine": bl.machine(), "load_before": bl.load_average()}
        for label in args.databases:
            part = f"citydb-{label}.part.json"
            argv = [sys.executable, __file__, "--databases", label, "--output", part,
                    "--parts", *args.parts, "--cold-count", str(args.cold_count),
                    "--networks", str(args.networks), "--cities", str(args.cities),
                    "--seed", str(args.seed)]  # fmt: skip
            if args.geoip is not None:
                argv += ["--geoip", str(args.geoip)]
            subprocess.run(argv, check=True)
            figures = json.loads((bl.RESULTS / part).read_text())
            (bl.RESULTS / part).unlink()
            results["city_database"] = figures.pop("city_database") or results.get("city_database")
            results[label] = figures[label]
        results["load_after"] = bl.load_average()
        out = bl.write_json(args.output, results)
        print(f"figures: {out}")
        return 0
    results: dict = {"machine": bl.machine(), "load_before": bl.load_average(),
                     "city_database": info and dict(info, file=str(path))}  # fmt: skip
    databases = {"shipped": default_db_path(), "city": path, "file": args.geoip}
    with tempfile.TemporaryDirectory(prefix="gslb-citydb-") as tmp:
        for label in args.databases:
            work = Path(tmp) / label
            print(f"{label}: {databases[label]}", flush=True)
            figures: dict = {"file": str(databases[label])}
            if "inproc" in args.parts:
                figures["in_process"] = in_process(databases[label], work, args.cold_count)
                figures["load_after_in_process"] = bl.load_average()
            if "serve" in args.parts:
                figures["served"] = served(databases[label], work)
                figures["load_after_serve"] = bl.load_average()
            results[label] = figures
    out = bl.write_json(args.output, results)
    print(f"figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
