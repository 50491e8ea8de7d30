"""``make bench-scale``: does gslb stay quick and small with a big zone directory?

Generates ZONE_COUNT zones holding 100,000 static records and 1,000 GSLB names between them
(geo rules, weights, PoPs for proximity, like the example's content record), then times
``gslb check`` on it and ``gslb serve`` from start until ``/readyz``, and reports the resident
memory of the supervisor and of every worker. A short dnsperf run over random names of the big
zones checks that answering does not slow down with size. Results: bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import benchlib as bl

CDNS = ("cdn-a", "cdn-b", "cdn-c")
POPS = {  # name: (lat, lon)
    "fra": (50.11, 8.68), "iad": (38.95, -77.45), "sin": (1.35, 103.82),
    "ams": (52.37, 4.90), "lax": (33.94, -118.41), "bom": (19.09, 72.87),
    "nrt": (35.77, 140.39), "syd": (-33.94, 151.18),
}  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--static", type=int, default=100_000, help="static records in total")
    parser.add_argument("--gslb", type=int, default=1_000, help="GSLB names in total")
    parser.add_argument("--zones", type=int, default=10, help="spread over this many zones")
    parser.add_argument("--workers", type=int, help="gslb --workers (default: its own, cores)")
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("BENCH_SECONDS", "15")) / 3,
                        help="dnsperf sanity run (default BENCH_SECONDS / 3)")  # fmt: skip
    parser.add_argument("--out", default="scale.json")
    return parser.parse_args()


def static_record(rng: random.Random, index: int, zone: str) -> str:
    """One static record in octoDNS YAML: mostly A, some AAAA, CNAME, TXT, MX."""
    kind = rng.random()
    name = f"host{index}"
    if kind < 0.5:
        address = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"
        return f"{name}:\n  type: A\n  value: {address}\n"
    if kind < 0.7:
        return f"{name}:\n  type: AAAA\n  value: 2001:db8::{index:x}\n"
    if kind < 0.85:
        return f"{name}:\n  type: CNAME\n  value: host{max(0, index - 1)}.{zone}.\n"
    if kind < 0.95:
        return f"{name}:\n  type: TXT\n  value: record {index} of {zone}\n"
    return (f"{name}:\n  type: MX\n  values:\n    - preference: 10\n"
            f"      exchange: mail.{zone}.\n")  # fmt: skip


def gslb_record(rng: random.Random, index: int) -> str:
    """A dynamic CNAME like the example's content record, with its own weights."""
    weights = [rng.randint(1, 100) for _ in CDNS]
    lines = [
        f"svc{index}:", "  type: CNAME", "  ttl: 30", "  value: origin.example.net.",
        "  dynamic:", "    pools:",
    ]  # fmt: skip
    for pool in ("europe", "asia", "americas"):
        lines += [f"      {pool}:", "        fallback: global", "        values:"]
        lines += [f"          - {{value: svc{index}.{c}.net., weight: {rng.randint(1, 100)}}}"
                  for c in CDNS[:2]]  # fmt: skip
    lines += ["      global:", "        values:"]
    lines += [f"          - {{value: svc{index}.{c}.net., weight: {w}}}"
              for c, w in zip(CDNS, weights, strict=True)]  # fmt: skip
    lines += [
        "    rules:",
        "      - {geos: [EU, AF], pool: europe}",
        "      - {geos: [AS, OC], pool: asia}",
        "      - {geos: [NA, SA], pool: americas}",
        "      - {pool: global}",
        "  gslb:", "    degraded_ttl: 10", "    proximity: {ratio: 2.0}", "    targets:",
    ]  # fmt: skip
    pops = list(POPS.items())
    for cdn in CDNS:
        chosen = rng.sample(pops, 3)
        pop_text = ", ".join(f"{{name: {n}, lat: {lat}, lon: {lon}}}" for n, (lat, lon) in chosen)
        lines.append(f"      svc{index}.{cdn}.net.: {{cost: {rng.choice((0.8, 1.0, 1.2))}, "
                     f"pops: [{pop_text}]}}")  # fmt: skip
    return "\n".join(lines) + "\n"


def write_zones(directory: Path, args: argparse.Namespace) -> list[str]:
    """Zone files named <zone>.yaml; returns a sample of names for queries."""
    rng = random.Random(7)
    sample = []
    static_each, gslb_each = args.static // args.zones, args.gslb // args.zones
    for z in range(args.zones):
        zone = f"scale{z}.example"
        parts = [
            "'':\n  - type: NS\n    values: [ns1.example.net., ns2.example.net.]\n",
            "mail:\n  type: A\n  value: 192.0.2.25\n",
        ]
        parts += [static_record(rng, i, zone) for i in range(static_each)]
        parts += [gslb_record(rng, i) for i in range(gslb_each)]
        (directory / f"{zone}.yaml").write_text("".join(parts))
        sample += [f"host{rng.randrange(static_each)}.{zone}." for _ in range(200)]
        sample += [f"svc{rng.randrange(gslb_each)}.{zone}." for _ in range(50)]
    return sample


def timed_check(zones: Path) -> dict:
    """Wall time and peak RSS of ``gslb check`` (a child process, so RUSAGE_CHILDREN works)."""
    env = dict(os.environ, PYTHONPATH=str(bl.ROOT))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gslb", "check", str(zones)], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    elapsed = time.monotonic() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": round(elapsed, 2), "exit": done.returncode,
            "output": (done.stdout + done.stderr).strip()[-500:],
            "peak_rss_mib_upper_bound": round(peak_kb / 1024, 1)}  # fmt: skip


def main() -> int:
    args = parse_args()
    print(f"machine: {bl.uptime_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gslb-scale-") as tmp:
        workdir = Path(tmp)
        zones = workdir / "zones"
        zones.mkdir()
        started = time.monotonic()
        names = write_zones(zones, args)
        print(f"generated {args.static} static records, {args.gslb} GSLB names in "
              f"{time.monotonic() - started:.1f} s", flush=True)  # fmt: skip
        check = timed_check(zones)
        print(f"gslb check: {check['seconds']} s, exit {check['exit']}", flush=True)
        db, kind = bl.geoip_db(workdir)
        serves = [serve(zones, db, workdir, names, args.workers, args.seconds)]
        if "error" in serves[0] and args.workers != 1:
            print(f"serve with workers={args.workers or 'default'} failed; "
                  "retrying with --workers 1 (no worker processes)", flush=True)  # fmt: skip
            serves.append(serve(zones, db, workdir, names, 1, args.seconds))
    report = {
        "machine": bl.machine(),
        "settings": {**vars(args), "geoip": kind},
        "check": check,
        "serve": serves,
    }
    for run in serves:
        if "error" in run:
            print(f"serve (workers {run['workers']}): FAILED: {run['error'][-600:]}")
            continue
        memory, perf = run["memory_after_queries"], run["dnsperf"]
        print(f"serve (workers {run['workers']}): ready in {run['ready_seconds']} s; "
              f"RSS workers {memory['worker_rss_mib']} MiB, "
              f"supervisor {memory['supervisor_rss_mib']} MiB")  # fmt: skip
        print(f"  dnsperf over the big zones: {perf['qps']:.0f} QPS, p99 {perf['p99_ms']} ms, "
              f"lost {perf['lost']}, rcodes {perf['rcodes']}")  # fmt: skip
    print(f"wrote {bl.write_json(args.out, report)}")
    return 0 if check["exit"] == 0 and "error" not in serves[-1] else 1


def serve(zones: Path, db: Path, workdir: Path, names: list[str], workers: int | None,
          seconds: float) -> dict:  # fmt: skip
    """Start gslb on the big zones, time it until ready, measure memory and a short load."""
    server = bl.Gslb(zones, db, workdir, workers=workers, extra=["--watch-interval", "0"])
    label = workers or os.cpu_count()
    with server:
        try:
            ready = server.wait_ready(timeout=600)
        except RuntimeError as exc:
            return {"workers": label, "error": str(exc)}
        memory = server.memory()
        perf = sanity_run(server, names, workdir, seconds)
        return {
            "workers": label,
            "ready_seconds": round(ready, 2),
            "memory_ready": memory,
            "memory_after_queries": server.memory(),
            "dnsperf": asdict(perf),
            "load": bl.load_average(),
        }


def sanity_run(server: bl.Gslb, names: list[str], workdir: Path, seconds: float):
    rng = random.Random(9)
    messages = [bl.make_query(name, rng.choice(("A", "AAAA"))) for name in names]
    datafile = bl.write_binary_queries(workdir / "scale.bin", messages)
    return bl.dnsperf(server.dns_port, datafile, workdir, seconds=seconds, binary=True)


if __name__ == "__main__":
    raise SystemExit(main())
