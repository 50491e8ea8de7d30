"""What the ``rum`` step costs on the answer path, in process: ``Engine.answer`` for the same
record with and without ``rum`` in its chain, cold (every query from a /24 never seen before
by the decision cache) and repeated (the same 2,000 /24s over and over). And what ingestion
costs: beacons per CPU-second through ``Ingest.beacon`` (token check, parse, GeoIP, store;
HTTP excluded), and memory per client network (tracemalloc, spent tokens included).

The RUM snapshot is filled as a busy deployment would have it: 20,000 client /24s with their
own decisions, ASN-level and country-level decisions above them. Run: ``make bench-rum``.
Figures go to ``bench/results/rum.json`` with the machine's load average.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gslb.config.dynamic import parse_dynamic  # noqa: E402
from gslb.config.model import CNAME  # noqa: E402
from gslb.geo import GeoDB, default_db_path  # noqa: E402
from gslb.health.view import HealthView  # noqa: E402
from gslb.policy.chain import Engine  # noqa: E402
from gslb.rum.config import RumOptions  # noqa: E402
from gslb.rum.decide import Decider  # noqa: E402
from gslb.rum.ingest import Ingest, Limits  # noqa: E402
from gslb.rum.network import NetInfo, prefix_key  # noqa: E402
from gslb.rum.store import Store  # noqa: E402

CDNS = ("a.cdn.net.", "b.cdn.net.", "c.cdn.net.")
NAME = "content.example.com."
NETWORKS = 20_000
QUERIES = 100_000


def record(with_rum: bool):
    gslb = {"chain": ["rules", "health", *(["rum"] if with_rum else []), "weighted"]}
    if with_rum:
        gslb["rum"] = {"min_samples": 4, "hold": 0, "min_networks": 1}
    data = {
        "type": "CNAME", "ttl": 20, "value": "origin.example.com.",
        "dynamic": {"pools": {"p": {"values": [{"value": c} for c in CDNS]}},
                    "rules": [{"pool": "p"}]},
        "gslb": gslb,
    }  # fmt: skip
    errors: list[str] = []
    rec, _ = parse_dynamic(NAME, b"\x07content\x07example\x03com\x00", CNAME, 20, data, "b", errors)
    assert rec is not None, errors
    return rec


def addresses(count: int, seed: int) -> list[ipaddress.IPv4Address]:
    rng = random.Random(seed)
    out = []
    while len(out) < count:
        first = rng.randint(1, 223)
        if first in (10, 127):
            continue
        out.append(ipaddress.IPv4Address((first << 24) | (rng.getrandbits(16) << 8) | 1))
    return out


def snapshot(rec, geo: GeoDB, networks: list[ipaddress.IPv4Address]):
    store = Store(max_networks=NETWORKS)
    store.configure({(NAME, CNAME): rec.rum})
    rng = random.Random(2)
    for address in networks:
        loc = geo.locate(address)
        key = prefix_key(address)
        net = NetInfo(key, None, getattr(loc, "country", None), getattr(loc, "continent", None),
                      source=key)  # fmt: skip
        fast = rng.randrange(3)
        for index, cdn in enumerate(CDNS):
            for _ in range(4):
                store.add((NAME, CNAME), net, cdn, "warm", True, 20 if index == fast else 90, 1.0)
    started = time.perf_counter()
    snap = Decider().build(store, {(NAME, CNAME): (rec.rum, 3)}, 1.0, 0.0)
    return snap, time.perf_counter() - started


def run(engine: Engine, rec, view: HealthView, clients: list) -> float:
    resolver = ipaddress.IPv4Address("192.0.2.53")
    started = time.process_time()
    for address in clients:
        engine.answer(rec, resolver, (address, 24), view)
    return (time.process_time() - started) / len(clients) * 1e6


def beacons(ingest: Ingest, networks: list[ipaddress.IPv4Address], wall: float) -> list:
    """One page view per network: its recipe's token and the six measurements a browser
    posts (three CDNs, cold and warm)."""
    rng = random.Random(3)
    out = []
    for address in networks:
        token = ingest.recipe((NAME, CNAME), address, wall)["tok"]
        m = [{"t": cdn, "k": kind, "ok": 1, "ms": round(rng.uniform(10, 200), 1)}
             for cdn in CDNS for kind in ("cold", "warm")]  # fmt: skip
        body = json.dumps({"v": 1, "r": NAME, "y": CNAME, "tok": token, "m": m}).encode()
        out.append((body, address))
    return out


def ingestion(geo: GeoDB, networks: list[ipaddress.IPv4Address]) -> dict:
    """Beacons per CPU-second, and bytes per network that ingesting them leaves held (the
    store's histograms and keys, the spent-token table, rate-limit buckets)."""
    options = RumOptions(probes=tuple((cdn, f"https://{cdn}r.gif") for cdn in CDNS))
    limits = Limits(global_rate=1e9, global_burst=1e9, max_networks=NETWORKS * 2)
    wall = time.time()

    def fresh() -> tuple[Ingest, list]:
        store = Store(max_networks=NETWORKS)
        store.configure({(NAME, CNAME): options})
        ingest = Ingest(store, b"k" * 32, limits, geo)
        ingest.configure({(NAME, CNAME): (options, frozenset(CDNS))})
        return ingest, beacons(ingest, networks, wall)

    ingest, posts = fresh()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for body, address in posts:
        ingest.beacon(body, address, None, 1.0, wall)
    held = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    ingest, posts = fresh()
    started = time.process_time()
    for body, address in posts:
        ingest.beacon(body, address, None, 1.0, wall)
    seconds = time.process_time() - started
    assert ingest.beacons["accepted"] == len(posts), ingest.beacons
    return {"beacons": len(posts), "measurements_each": 2 * len(CDNS),
            "beacons_per_cpu_second": round(len(posts) / seconds),
            "bytes_per_network": round(held / len(networks))}  # fmt: skip


def main() -> int:
    geo = GeoDB.open(default_db_path())
    measured = addresses(NETWORKS, 1)
    with_rum, without = record(True), record(False)
    snap, build_s = snapshot(with_rum, geo, measured)
    view = HealthView(1, rum=snap)
    cold_clients = measured * (QUERIES // NETWORKS)  # each /24 once per pass: cold caches
    repeat = measured[:2000] * (QUERIES // 2000)
    results = {}
    for label, clients in (("cold", cold_clients), ("repeated", repeat)):
        plain = run(Engine(geo, random.Random(1), cache_size=4096), without, view, clients)
        steered = run(Engine(geo, random.Random(1), cache_size=4096), with_rum, view, clients)
        results[label] = {"without_rum_us": round(plain, 2), "with_rum_us": round(steered, 2),
                          "ratio": round(plain / steered, 3)}  # fmt: skip
    report = {
        "networks_with_own_decision": sum(
            len(v) for v in snap.records[(NAME, CNAME)].by_level.values()
        ),
        "snapshot_build_s": round(build_s, 3),
        "answers_per_query_set": QUERIES,
        "per_answer": results,
        "ingestion": ingestion(geo, measured),
        "load_average": os.getloadavg(),
    }
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "rum.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
