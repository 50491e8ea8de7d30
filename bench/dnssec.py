"""``make bench-dnssec`` (part of ``make bench``): what online signing costs.

The same bench zone served twice, side by side in one run on the same box: unsigned, and
signed (``gslb dnssec keygen``, ECDSA P-256). Each server runs one worker so the two compare
core for core. Scenarios, BENCH_SECONDS each, dnsperf ``-c 4``, unsigned and signed runs
alternated twice to even out the load of a shared machine:

* ``static-repeat``: the static mix without random names, repeated queries (replay cache);
  unsigned without DO vs signed with DO. Goal: signed within 10 % of unsigned.
* ``gslb-ecs``: content.example.com with its own ECS per query (20,000 clients), after a
  warm-up; the same comparison.
* ``nx-random``: every query a new random name (NXDOMAIN; with DO a compact-denial NOERROR
  that needs one fresh signature), unsigned vs signed with the ration lifted, then signed
  with the default ration (2,000 fresh signatures per second): SERVFAIL counts show it.

Then, in process (no sockets): the cost of a cold outcome, i.e. the first query of a client
or a name, with and without DO. Results: bench/results/dnssec.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl
from run import measure

ZONES = bl.ROOT / "bench" / "zones"
ORIGIN = "example.com."


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("BENCH_SECONDS", "15")))  # fmt: skip
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--queries", type=int, default=20000, help="distinct queries per file")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per comparison")
    parser.add_argument("--out", default="dnssec.json")
    return parser.parse_args()


def with_do(messages: list[bytes]) -> list[bytes]:
    import dns.message

    out = []
    for wire in messages:
        message = dns.message.from_wire(wire)
        message.want_dnssec(True)
        out.append(message.to_wire())
    return out


def random_names(count: int, dnssec: bool, seed: int) -> list[bytes]:
    """Unique names that do not exist, built by hand (hundreds of thousands, fast)."""
    rng = random.Random(seed)
    opt = b"\x00\x00\x29\x04\xd0\x00\x00" + (b"\x80\x00" if dnssec else b"\x00\x00") + b"\x00\x00"
    out = []
    for index in range(count):
        label = f"nx{index}-{rng.randrange(16**8):08x}".encode()
        name = bytes((len(label),)) + label + b"\x07example\x03com\x00"
        header = rng.randrange(65536).to_bytes(2, "big") + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01"
        out.append(header + name + b"\x00\x01\x00\x01" + opt)
    return out


def signed_copy(workdir: Path, budget: int | None) -> Path:
    from gslb.dnssec.tools import keygen

    zones = workdir / f"signed-{budget or 'default'}"
    zones.mkdir()
    for path in ZONES.glob("*.yaml"):
        shutil.copy(path, zones / path.name)
    keygen(zones, ORIGIN, 13)
    if budget is not None:
        sidecar = zones / "example.com.dnssec.yaml"
        sidecar.write_text(sidecar.read_text() + f"  negative_signatures_per_second: {budget}\n")
    return zones


def summary(run: dict) -> dict:
    keep = ("qps", "avg_ms", "p99_ms", "lost", "server_cpu_s", "qps_per_core", "rcodes",
            "load_before")  # fmt: skip
    return {key: run[key] for key in keep}


def compare(name, plain, signed, plain_file, signed_file, workdir, args) -> dict:
    """Alternate unsigned and signed runs; report the median QPS of each and the ratio."""
    warm = argparse.Namespace(**{**vars(args), "seconds": bl.WARMUP_SECONDS})
    measure(plain, plain_file, workdir, warm, verbose=False)
    measure(signed, signed_file, workdir, warm, verbose=False)
    runs = {"unsigned": [], "signed": []}
    for _ in range(args.rounds):
        for label, server, datafile in (("unsigned", plain, plain_file),
                                        ("signed", signed, signed_file)):  # fmt: skip
            print(f"running {name} {label} for {args.seconds:g} s ...", flush=True)
            runs[label].append(summary(measure(server, datafile, workdir, args)))
            time.sleep(1)
    qps = {label: statistics.median(r["qps"] for r in rs) for label, rs in runs.items()}
    per_core = {label: statistics.median(r["qps_per_core"] or 0 for r in rs)
                for label, rs in runs.items()}  # fmt: skip
    return {"runs": runs, "qps": qps, "qps_per_core": per_core,
            "signed_vs_unsigned": round(qps["signed"] / qps["unsigned"], 3),
            "signed_vs_unsigned_per_core": round(per_core["signed"] / per_core["unsigned"], 3)}


def cold_costs(db: Path, signed_zones: Path, ecs: list[bytes], count: int) -> dict:
    """CPU microseconds per query of a fresh responder (no cached replies, no signatures);
    CPU time, not wall time, so other jobs on a shared box do not inflate it."""
    from gslb.config.load import load_config
    from gslb.dns.responder import Responder
    from gslb.geo import GeoDB
    from gslb.policy.chain import Engine

    config, errors = load_config(signed_zones)
    assert not errors, errors
    geo = GeoDB.open(db)
    out = {}
    cases = {
        "gslb-ecs-first-pass": (ecs, with_do(ecs)),
        "nx-random": (random_names(count, False, 7), random_names(count, True, 7)),
    }
    for name, (plain, signed) in cases.items():
        for label, messages in (("no-do", plain), ("do", signed)):
            responder = Responder(config, Engine(geo))
            started = time.process_time()
            for wire in messages:
                responder.handle(wire, "192.0.2.1")
            elapsed = time.process_time() - started
            out[f"{name}/{label}"] = round(elapsed / len(messages) * 1e6, 1)
        signatures = sum(responder.stats.dnssec_signatures.values())
        out[f"{name}/signatures_made"] = signatures
    geo.close()
    return out


def main() -> int:
    args = parse_args()
    if bl.ensure_packages({"dnsperf": ["dnsperf"]}, "DNS load generator"):
        print("dnsperf is missing: see bench/README.md for how to install it", file=sys.stderr)
        return 2
    print(f"machine: {bl.uptime_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gslb-bench-dnssec-") as tmp:
        workdir = Path(tmp)
        db, kind = bl.geoip_db(workdir)
        ecs, _ = bl.ecs_queries(db, kind, args.queries)
        static = [q for q, keep in zip(bl.static_queries(args.queries),
                                       static_is_repeatable(args.queries), strict=True) if keep]  # fmt: skip
        files = {
            "static": bl.write_binary_queries(workdir / "static.bin", static),
            "static-do": bl.write_binary_queries(workdir / "static-do.bin", with_do(static)),
            "ecs": bl.write_binary_queries(workdir / "ecs.bin", ecs),
            "ecs-do": bl.write_binary_queries(workdir / "ecs-do.bin", with_do(ecs)),
        }
        nx_count = int(max(args.seconds, 1) * 40000)  # more than a run can send: all new
        files["nx"] = bl.write_binary_queries(workdir / "nx.bin", random_names(nx_count, False, 1))
        files["nx-do"] = bl.write_binary_queries(workdir / "nx-do.bin",
                                                 random_names(nx_count, True, 2))  # fmt: skip
        unlimited = signed_copy(workdir, 10**9)
        rationed = signed_copy(workdir, None)
        results = {}
        with bl.Gslb(ZONES, db, workdir, workers=1) as plain, \
                bl.Gslb(unlimited, db, workdir, workers=1) as signed:  # fmt: skip
            plain.wait_ready()
            signed.wait_ready()
            results["static-repeat"] = compare("static-repeat", plain, signed, files["static"],
                                               files["static-do"], workdir, args)  # fmt: skip
            results["gslb-ecs"] = compare("gslb-ecs", plain, signed, files["ecs"],
                                          files["ecs-do"], workdir, args)  # fmt: skip
            nx_args = argparse.Namespace(**{**vars(args), "rounds": 1})
            results["nx-random"] = compare("nx-random", plain, signed, files["nx"],
                                           files["nx-do"], workdir, nx_args)  # fmt: skip
        with bl.Gslb(rationed, db, workdir, workers=1) as limited:
            limited.wait_ready()
            print(f"running nx-random with the default ration for {args.seconds:g} s ...")
            results["nx-random-rationed"] = summary(measure(limited, files["nx-do"], workdir,
                                                            args))  # fmt: skip
        results["in_process_us_per_query"] = cold_costs(db, unlimited, ecs, args.queries)
    report = {"machine": bl.machine(), "settings": {"seconds": args.seconds,
              "clients": args.clients, "workers": 1, "rounds": args.rounds}, **results}  # fmt: skip
    print_report(results)
    print(f"wrote {bl.write_json(args.out, report)}")
    return 0


def static_is_repeatable(count: int) -> list[bool]:
    """Which queries of ``bl.static_queries(count)`` are not random names (same seed)."""
    rng = random.Random(3)
    names = [(n, t) for n, t, w in bl.STATIC_MIX for _ in range(w)]
    keep = []
    for _ in range(count):
        name, _ = rng.choice(names)
        if name == "nx":
            rng.randrange(10**6)
        keep.append(name != "nx")
    return keep


def print_report(results: dict) -> None:
    print(f"\n{'scenario':<16} {'unsigned QPS':>12} {'signed QPS':>11} {'ratio':>6} "
          f"{'ratio/core':>10}")  # fmt: skip
    for name in ("static-repeat", "gslb-ecs", "nx-random"):
        r = results[name]
        print(f"{name:<16} {r['qps']['unsigned']:>12.0f} {r['qps']['signed']:>11.0f} "
              f"{r['signed_vs_unsigned']:>6.2f} {r['signed_vs_unsigned_per_core']:>10.2f}")
    rationed = results["nx-random-rationed"]
    print(f"nx-random, default ration: {rationed['qps']:.0f} QPS, rcodes {rationed['rcodes']}")
    for key, value in results["in_process_us_per_query"].items():
        print(f"in process {key}: {value}")


if __name__ == "__main__":
    raise SystemExit(main())
