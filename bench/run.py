"""``make bench``: gslb's DNS throughput and latency on loopback, measured with dnsperf.

Scenarios, each run for BENCH_SECONDS (default 15) with ``dnsperf -c 4``:

* ``gslb-ecs``: the example's content.example.com (geo rules, proximity, cost, weights), every
  query carrying its own ECS address from one of many countries (dnsperf ``-B`` input), so the
  GeoIP lookup and the policy chain run for real rather than hitting one cached client;
* ``static``: A, AAAA, NXDOMAIN, NODATA, SOA, CNAME, MX, TXT, NS from the same zone;
* ``gslb-ecs-tcp``: the first scenario over TCP (pipelined, 4 connections);
* ``gslb-ecs-half``: the first scenario again at half its measured rate (``-Q``): the latency a
  server sees when it is not saturated. Target: p99 < 2 ms, no loss.

QPS per core divides answered queries by the CPU time all server processes used during the
run (from /proc), so it stays meaningful when dnsperf and other jobs share the cores.
Results go to bench/results/bench.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import benchlib as bl

ZONES = bl.ROOT / "bench" / "zones"
TARGET_P99_MS = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("BENCH_SECONDS", "15")))  # fmt: skip
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--workers", type=int, help="gslb --workers (default: its own, cores)")
    parser.add_argument("--queries", type=int, default=20000, help="distinct queries per file")
    parser.add_argument("--out", default="bench.json")
    return parser.parse_args()


def measure(server: bl.Gslb, datafile: Path, workdir: Path, args, **kw) -> dict:
    """One dnsperf run with the server's CPU time, dnsperf's own CPU time and the load."""
    load_before = bl.load_average()
    cpu_before = server.cpu()
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    perf = bl.dnsperf(server.dns_port, datafile, workdir, seconds=args.seconds,
                      clients=args.clients, binary=True, **kw)  # fmt: skip
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = server.cpu()
    roles = server.roles()
    used = {pid: cpu_after.get(pid, 0.0) - cpu_before.get(pid, 0.0) for pid in cpu_after}
    server_cpu = sum(used.values())
    client_cpu = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    return {
        **asdict(perf),
        "server_cpu_s": round(server_cpu, 2),
        "worker_cpu_s": sorted(
            (round(v, 2) for p, v in used.items() if roles.get(p) == "worker"), reverse=True
        ),
        "supervisor_cpu_s": round(sum(v for p, v in used.items() if roles.get(p) != "worker"), 2),
        "qps_per_core": round(perf.completed / server_cpu) if server_cpu > 0 else None,
        "dnsperf_cpu_s": round(client_cpu, 2),
        "load_before": load_before,
        "load_after": bl.load_average(),
    }


def print_table(results: dict[str, dict], memory: dict) -> None:
    header = (f"{'scenario':<15} {'QPS':>8} {'avg ms':>7} {'p99 ms':>7} {'lost':>6} "
              f"{'srv CPU s':>9} {'QPS/core':>8} {'worker CPU s':>13} {'load1':>6}")  # fmt: skip
    print("\n" + header)
    print("-" * len(header))
    for name, r in results.items():
        workers = "/".join(f"{x:g}" for x in r["worker_cpu_s"])
        p99 = f"{r['p99_ms']:.2f}" if r["p99_ms"] is not None else "-"
        print(f"{name:<15} {r['qps']:>8.0f} {r['avg_ms']:>7.2f} {p99:>7} {r['lost']:>6} "
              f"{r['server_cpu_s']:>9.2f} {r['qps_per_core'] or 0:>8} {workers:>13} "
              f"{r['load_before'][0]:>6}")  # fmt: skip
    print(f"RSS: workers {memory['worker_rss_mib']} MiB, "
          f"supervisor {memory['supervisor_rss_mib']} MiB")  # fmt: skip


def main() -> int:
    args = parse_args()
    missing = bl.ensure_packages({"dnsperf": ["dnsperf"]}, "DNS load generator")
    if missing:
        print("dnsperf is missing: see bench/README.md for how to install it", file=sys.stderr)
        return 2
    print(f"machine: {bl.uptime_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gslb-bench-") as tmp:
        workdir = Path(tmp)
        db, kind = bl.geoip_db(workdir)
        ecs, countries = bl.ecs_queries(db, kind, args.queries)
        ecs_file = bl.write_binary_queries(workdir / "ecs.bin", ecs)
        static = bl.static_queries(args.queries)
        static_file = bl.write_binary_queries(workdir / "static.bin", static)
        server = bl.Gslb(ZONES, db, workdir, workers=args.workers)
        with server:
            ready_s = server.wait_ready()
            results = run_scenarios(server, ecs_file, static_file, workdir, args)
            memory = server.memory()
    half = results["gslb-ecs-half"]
    report = {
        "machine": bl.machine(),
        "geoip": {"path": str(db), "kind": kind, "countries_in_queries": countries},
        "settings": {"seconds": args.seconds, "clients": args.clients,
                     "workers": args.workers or os.cpu_count(), "queries_per_file": len(ecs)},
        "ready_seconds": round(ready_s, 2),
        "memory": memory,
        "scenarios": results,
        "target": {"p99_ms_at_half_rate": TARGET_P99_MS, "p99_ms": half["p99_ms"],
                   "lost": half["lost"],
                   "met": half["p99_ms"] is not None and half["p99_ms"] < TARGET_P99_MS
                   and half["lost"] == 0},
    }  # fmt: skip
    print_table(results, memory)
    verdict = "met" if report["target"]["met"] else "NOT met"
    print(f"target p99 < {TARGET_P99_MS} ms with no loss at half rate: {verdict}")
    print(f"wrote {bl.write_json(args.out, report)}")
    return 0


def run_scenarios(server: bl.Gslb, ecs_file: Path, static_file: Path, workdir: Path, args):
    warm = argparse.Namespace(**{**vars(args), "seconds": bl.WARMUP_SECONDS})
    measure(server, ecs_file, workdir, warm, verbose=False)  # steady state, as in production
    results = {}
    for name, datafile, extra in (
        ("gslb-ecs", ecs_file, {}),
        ("static", static_file, {}),
        ("gslb-ecs-tcp", ecs_file, {"mode": "tcp"}),
    ):
        print(f"running {name} for {args.seconds:g} s ...", flush=True)
        results[name] = measure(server, datafile, workdir, args, **extra)
        time.sleep(1)  # let the last timeouts drain and the load settle a little
    rate = results["gslb-ecs"]["qps"] / 2
    print(f"running gslb-ecs-half at {rate:.0f} QPS for {args.seconds:g} s ...", flush=True)
    results["gslb-ecs-half"] = measure(server, ecs_file, workdir, args, qps=rate)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
