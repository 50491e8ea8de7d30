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
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import resource
import time
from pathlib import Path

import benchlib as bl
import yaml

from gslb.config.load import load_config
from gslb.dns.responder import Responder
from gslb.geo import GeoDB, default_db_path
from gslb.policy.chain import Engine

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


def zones(work: Path) -> Path:
    """The bench zone plus ``weighted.example.com`` (one pool, no client input)."""
    text = (ROOT / "bench" / "zones" / "example.com.yaml").read_text()
    text += "\n" + yaml.safe_dump(WEIGHTED, sort_keys=False)
    work.mkdir(parents=True, exist_ok=True)
    (work / "example.com.yaml").write_text(text)
    return work


KINDS = {
    "chain4": ("geo", bl.GSLB_NAME),
    "chain6": ("geo6", bl.GSLB_NAME),
    "weighted": ("weighted", "weighted.example.com."),
    "static": ("static", ""),
}


def hostile(kind: str, count: int, seed: int = 7) -> list[bytes]:
    """Cache-hostile queries (bench/benchlib.py): 0x20 names, own random /24 (/56) ECS."""
    what, name = KINDS[kind]
    return bl.hostile_queries(what, count, seed, name or bl.GSLB_NAME)


def friendly(db: Path, count: int) -> list[bytes]:
    messages, _ = bl.ecs_queries(db, "dbip-hub", count)
    return messages


def build(work: Path) -> Responder:
    config, errors = load_config(zones(work))
    if config is None:
        raise SystemExit("\n".join(errors))
    geo = GeoDB.open(default_db_path())
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
                      "outcomes": len(responder.outcomes)}  # fmt: skip
            print(f"{done:>11,} queries: resident {resident_mib():.0f} MiB, caches {caches}, "
                  f"median {sorted(times)[len(times) // 2]:.1f} us/query, "
                  f"worst chunk {max(times):.1f} us/query", flush=True)  # fmt: skip
    print(f"resident after {done:,}: {resident_mib():.0f} MiB (+{resident_mib() - start_rss:.0f})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument(
        "--kinds", nargs="*", default=["chain4", "chain6", "weighted", "static", "friendly"]
    )
    parser.add_argument("--profile", help="workload to run under cProfile")
    parser.add_argument("--top", type=int, default=30)
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
    responder = build(work)
    db = default_db_path()
    clients = [f"127.0.0.{1 + i % 4}" for i in range(args.count)]
    gc.collect()
    gc.freeze()
    if args.flood:
        return flood(responder, args.flood)
    if args.profile:
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
