"""In-process cost per query of the responder for cache-friendly and cache-hostile streams.

``python bench/coldpath.py`` builds the bench zone, the shipped GeoIP database, an Engine and a
Responder exactly as a worker does, then feeds ``Responder.handle`` query streams and reports
microseconds per query (no sockets: this is the Python part only). ``--profile NAME`` runs one
workload under cProfile and prints the top functions.

Workloads (each query a distinct message unless said otherwise):

* ``chain4``  content.example.com A, 0x20 letter case, its own random public /24 ECS
* ``chain6``  content.example.com AAAA, 0x20, its own random global /56 ECS
* ``weighted`` a one-pool weighted name, 0x20, own /24 ECS
* ``static``  the static mix of bench/benchlib.py, 0x20
* ``friendly`` the ``make bench`` ECS file: 20,000 queries repeated (cache hits)
* ``regional`` as ``chain4``, for a copy of ``content`` with health checks, under a fleet view
  with verdicts per region (EU: CDN A down, AS: CDN C down, NA: all up; continents as regions)
* ``rum``     as ``chain4``, for a copy of ``content`` with the ``rum`` step, under a RUM
  snapshot of 20,000 client /24s, every country and continent and a global decision: random
  /24s, so the country level decides (its location from the flattened database)
* ``rum24``   the same record, each query from one of the 20,000 /24s (its own /24 decides)

``--step-by-step`` answers every query through ``Engine.answer`` instead of the compiled
tables: the before figure of each workload, in the same run. ``--engine`` times
``Engine.decide`` alone for ``chain4``, ``regional``, ``rum`` and ``rum24`` clients (no
parsing, no reply), every class already decided: what the region and the RUM lookup add.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import gc
import ipaddress
import pstats
import random
import resource
import time
from pathlib import Path
from types import MappingProxyType

import benchlib as bl
import yaml

from gslb.config.load import find_record, load_config
from gslb.config.model import CNAME
from gslb.dns.responder import Responder
from gslb.fleet.regions import RegionMap
from gslb.geo import GeoDB, default_db_path
from gslb.health.view import CheckState, HealthView
from gslb.policy.chain import Engine
from gslb.rum.network import GLOBAL, prefix_key_of
from gslb.rum.snapshot import Decision, RecordDecisions, Snapshot

ROOT = bl.ROOT
WEIGHTED = {
    "weighted": {
        "type": "CNAME", "ttl": 30, "value": "origin.example.com.",
        "dynamic": {"pools": {"cdns": {"values": [
            {"value": "example.cdn-a.net.", "weight": 40},
            {"value": "example.cdn-b.net.", "weight": 40},
            {"value": "example.cdn-c.net.", "weight": 20}]}},
            "rules": [{"pool": "cdns"}]},
    }
}  # fmt: skip


REGIONAL_NAME, MEASURED_NAME = "regional.example.com.", "measured.example.com."
CDNS = ("example.cdn-a.net.", "example.cdn-b.net.", "example.cdn-c.net.")
MEASURED_NETWORKS = 20_000


def copies(text: str) -> dict:
    """``content`` twice more: with health checks (for the fleet view), with ``rum``."""
    content = yaml.safe_load(text)["content"]
    regional = copy.deepcopy(content)
    regional["gslb"]["check"] = {"type": "tcp", "port": 443}
    measured = copy.deepcopy(content)
    chain = measured["gslb"]["chain"]
    measured["gslb"]["chain"] = [*chain[:2], "rum", *chain[2:]]
    return {"regional": regional, "measured": measured}


def zones(work: Path) -> Path:
    """The bench zone plus ``weighted.example.com`` (one pool, no client input) and the two
    copies of ``content`` the regional and RUM workloads ask for."""
    text = (ROOT / "bench" / "zones" / "example.com.yaml").read_text()
    text += "\n" + yaml.safe_dump(WEIGHTED, sort_keys=False)
    text += "\n" + yaml.safe_dump(copies(text), sort_keys=False)
    work.mkdir(parents=True, exist_ok=True)
    (work / "example.com.yaml").write_text(text)
    return work


KINDS = {
    "chain4": ("geo", bl.GSLB_NAME),
    "chain6": ("geo6", bl.GSLB_NAME),
    "weighted": ("weighted", "weighted.example.com."),
    "static": ("static", ""),
    "regional": ("geo", REGIONAL_NAME),
    "rum": ("geo", MEASURED_NAME),
}


def hostile(kind: str, count: int, seed: int = 7) -> list[bytes]:
    """Cache-hostile queries (bench/benchlib.py): 0x20 names, own random /24 (/56) ECS."""
    if kind == "rum24":
        return measured_queries(count, seed)
    what, name = KINDS[kind]
    return bl.hostile_queries(what, count, seed, name or bl.GSLB_NAME)


def measured_networks() -> list[bytes]:
    """The first three bytes of each /24 the RUM snapshot has a decision for."""
    rng = random.Random(11)
    return [bl.public_v4_24(rng) for _ in range(MEASURED_NETWORKS)]


def measured_queries(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    networks = measured_networks()
    return [bl.wire_query(bl.random_case(MEASURED_NAME, rng), 1, (1, 24, rng.choice(networks)))
            for _ in range(count)]  # fmt: skip


def rum_snapshot(geo: GeoDB) -> Snapshot:
    """Decisions as a busy deployment has them: 20,000 /24s (each dropping one CDN), every
    country and continent of the database, a global one; each distinct dropped set once."""
    sets = [frozenset({cdn}) for cdn in CDNS]

    def decision(level: str, key: object, n: int) -> Decision:
        dropped = sets[n % len(sets)]
        return Decision(level, str(key), {c: "slow" for c in dropped}, (), 100.0, 0.0, dropped)

    prefixes = {
        prefix_key_of(4, int.from_bytes(net) << 8): decision("prefix", net.hex(), n)
        for n, net in enumerate(measured_networks())
    }
    countries = sorted({loc.country for loc in geo_locations(geo) if loc.country})
    continents = sorted({loc.continent for loc in geo_locations(geo) if loc.continent})
    by_level = {
        "prefix": prefixes,
        "country": {c: decision("country", c, n) for n, c in enumerate(countries)},
        "continent": {c: decision("continent", c, n) for n, c in enumerate(continents)},
        "global": {GLOBAL: decision("global", GLOBAL, 0)},
    }
    levels = ("resolver", "prefix", "asn", "country", "continent", "global")
    return Snapshot({(MEASURED_NAME, CNAME): RecordDecisions(levels, by_level)}, 0.0, 1)


def geo_locations(geo: GeoDB) -> list:
    """Locations of a sample of addresses (the snapshot needs country and continent codes)."""
    rng = random.Random(5)
    found = (geo.locate(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(20_000))
    return [loc for loc in found if loc is not None]


def fleet_view(responder: Responder) -> HealthView:
    """Verdicts per region for ``regional``: EU has CDN A down, AS CDN C, NA none."""
    record = find_record(responder.config, REGIONAL_NAME, "CNAME")
    checks = {t.value: t.check for pool in record.pools.values() for t in pool.targets}

    def states(down: set[str]) -> MappingProxyType:
        return MappingProxyType({checks[c]: CheckState(up=c not in down) for c in CDNS})

    by_region = {"EU": {CDNS[0]}, "AS": {CDNS[2]}, "NA": set()}
    varies = frozenset(checks[c] for c in (CDNS[0], CDNS[2]))
    regional = {region: HealthView(2, states(down), varies=varies)
                for region, down in by_region.items()}  # fmt: skip
    return HealthView(2, states(set()), regional=MappingProxyType(regional), varies=varies,
                      region_of=RegionMap())  # fmt: skip


def views(responder: Responder, geo: GeoDB) -> dict[str, HealthView]:
    """The health view each workload runs under (the responder's own for the others)."""
    rum = HealthView(3).with_rum(rum_snapshot(geo))
    return {"regional": fleet_view(responder), "rum": rum, "rum24": rum}


def friendly(db: Path, count: int) -> list[bytes]:
    messages, _ = bl.ecs_queries(db, "dbip-hub", count)
    return messages


def build(work: Path, geoip: Path | None = None) -> Responder:
    config, errors = load_config(zones(work))
    if config is None:
        raise SystemExit("\n".join(errors))
    geo = GeoDB.open(geoip or default_db_path())
    responder = Responder(config, Engine(geo))
    compiler = getattr(responder.engine, "compiler", None)
    if compiler is None:  # a gslb without compiled tables (for before/after figures)
        return responder
    started = time.perf_counter()
    compiler.finish()
    tables = ", ".join(f"{t.ranges():,} ranges in {t.build_seconds:.1f} s"
                       for t in compiler.tables.values())  # fmt: skip
    print(
        f"address tables: GeoIP flattened in {compiler.geo_seconds:.1f} s; per record: "
        f"{tables}; total {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    return responder


def run(responder: Responder, messages: list[bytes], clients: list[str]) -> float:
    """CPU microseconds per query over the whole list: process time, not wall time, so other
    jobs on a shared box do not count (their cache pollution still does)."""
    handle = responder.handle
    started = time.process_time()
    for data, client in zip(messages, clients, strict=True):
        handle(data, client)
    return (time.process_time() - started) * 1e6 / len(messages)


def engine_only(responder: Responder, special: dict[str, HealthView], count: int) -> int:
    """``Engine.decide`` per client address, decisions warm (a first pass makes them)."""
    rng = random.Random(1)
    randoms = [int.from_bytes(bl.public_v4_24(rng)) << 8 for _ in range(count)]
    networks = measured_networks()
    measured = [int.from_bytes(rng.choice(networks)) << 8 for _ in range(count)]
    runs = {
        "chain4": (bl.GSLB_NAME, responder.health, randoms),
        "regional": (REGIONAL_NAME, special["regional"], randoms),
        "rum": (MEASURED_NAME, special["rum"], randoms),
        "rum24": (MEASURED_NAME, special["rum24"], measured),
    }
    decide = responder.engine.decide
    for kind, (name, view, ips) in runs.items():
        record = find_record(responder.config, name, "CNAME")
        for ip in ips:
            decide(record, 4, ip, 24, view)
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for ip in ips:
                decide(record, 4, ip, 24, view)
            best = min(best, (time.process_time() - started) * 1e6 / len(ips))
        print(f"{kind:<9} {best:6.2f} us per Engine.decide (decisions warm, best of 3)")
    return 0


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * bl.PAGE_KB / 1024


def flood(responder: Responder, total: int, chunk: int = 10_000) -> int:
    """A random-subnet and random-name flood: every query new (60 % geo IPv4, 20 % IPv6,
    20 % static with random names). Prints resident memory as it goes and the worst chunk,
    so a wholesale cache clear (a stall) or unbounded growth would show."""
    sizes = {"geo": 0.6, "geo6": 0.2, "static": 0.2}
    clients = ["127.0.0.1"] * chunk
    times: list[float] = []
    start_rss = resident_mib()
    print(f"resident before: {start_rss:.0f} MiB", flush=True)
    done = 0
    seed = 1000
    while done < total:
        for kind, share in sizes.items():
            seed += 1
            messages = bl.hostile_queries(kind, int(chunk * share), seed=seed)
            started = time.process_time()
            run(responder, messages, clients[: len(messages)])
            times.append((time.process_time() - started) * 1e6 / len(messages))
            done += len(messages)
        if done % 1_000_000 < chunk:
            caches = {"replay": len(responder.replays["udp"]), "names": len(responder.cache),
                      "outcomes": len(responder.outcomes),
                      "shapes": len(responder.shapes["udp"])}  # fmt: skip
            print(f"{done:>11,} queries: resident {resident_mib():.0f} MiB, caches {caches}, "
                  f"median {sorted(times)[len(times) // 2]:.1f} us/query, "
                  f"worst chunk {max(times):.1f} us/query", flush=True)  # fmt: skip
    print(f"resident after {done:,}: {resident_mib():.0f} MiB (+{resident_mib() - start_rss:.0f})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument(
        "--kinds",
        nargs="*",
        default=["chain4", "chain6", "weighted", "static", "friendly", "regional", "rum", "rum24"],
    )
    parser.add_argument("--engine", action="store_true",
                        help="time Engine.decide alone: regional, RUM, plain")  # fmt: skip
    parser.add_argument("--step-by-step", action="store_true",
                        help="answer through Engine.answer, not the compiled tables")  # fmt: skip
    parser.add_argument("--profile", help="workload to run under cProfile")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--geoip",
        type=Path,
        help="GeoIP database (default: the shipped one; bench/citydb.py makes a City-size one)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="fresh streams; best is shown")
    parser.add_argument(
        "--flood",
        type=int,
        default=0,
        metavar="N",
        help="instead: N distinct queries (geo, IPv6, random names) in one "
        "stream; resident memory and the slowest 10,000 along the way",
    )
    args = parser.parse_args()
    work = Path("/tmp") / f"gslb-coldpath-{time.time_ns()}"
    responder = build(work, args.geoip)
    if args.step_by_step:
        responder.engine.decide = lambda *_: None  # the caller then asks Engine.answer
    own = responder.health
    special = views(responder, responder.engine.geo)
    db = args.geoip or default_db_path()
    clients = [f"127.0.0.{1 + i % 4}" for i in range(args.count)]
    gc.collect()
    gc.freeze()
    if args.flood:
        return flood(responder, args.flood)
    if args.engine:
        return engine_only(responder, special, args.count)
    if args.profile:
        responder.set_health(special.get(args.profile, own))
        messages = (
            friendly(db, args.count)
            if args.profile == "friendly"
            else hostile(args.profile, args.count)
        )
        messages = messages[: args.count]
        run(responder, messages[: args.count // 10], clients[: args.count // 10])
        prof = cProfile.Profile()
        prof.enable()
        run(responder, messages, clients)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
        return 0
    for kind in args.kinds:
        responder.set_health(special.get(kind, own))
        if kind == "friendly":
            messages = friendly(db, 20_000)
            messages = (messages * (args.count // len(messages) + 1))[: args.count]
            run(responder, messages, clients)  # first and second sightings: remembered
            best = min(run(responder, messages, clients) for _ in range(args.rounds))
            print(f"{kind:<9} {best:6.2f} us/query (repeated queries, best of {args.rounds})",
                  flush=True)  # fmt: skip
            continue
        run(responder, hostile(kind, args.count // 4, seed=99), clients[: args.count // 4])
        best = min(run(responder, hostile(kind, args.count, seed=seed), clients)
                   for seed in range(args.rounds))  # fmt: skip
        print(f"{kind:<9} {best:6.2f} us/query (every query new, best of {args.rounds})",
              flush=True)  # fmt: skip
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"max RSS {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
