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
  with a ration of 500 fresh signatures per second: the SERVFAIL count shows it at work.

Then, in process (no sockets): the cost of a cold outcome, i.e. the first query of a client
or a name, with and without DO.

Last, the peer that also signs GSLB answers live: PowerDNS 4 (bind backend, ``pdnsutil
secure-zone``: its default ECDSA P-256 CSK and NSEC; ``LUA CNAME pickwrandom``,
``enable-lua-records=shared``), unsigned and signed, next to gslb unsigned and signed on the
same zone (bench/peers.py's), with the same query files: the weighted name and the static mix
(20 % random names), without and with DO. gslb's ration is lifted there, so both sign every
random name. Results: bench/results/dnssec.json.
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
RATION_DEMO = 500  # fresh denial signatures per second: low enough for this box to exceed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("BENCH_SECONDS", "15")))  # fmt: skip
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--queries", type=int, default=20000, help="distinct queries per file")
    parser.add_argument("--rounds", type=int, default=2, help="alternations per comparison")
    parser.add_argument("--part", choices=("all", "self", "peers"), default="all")
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
        header = (
            rng.randrange(65536).to_bytes(2, "big") + b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01"
        )
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


def compare(name: str, runs_of: list[tuple[str, bl.Gslb, Path]], workdir: Path, args) -> dict:
    """Run every (label, server, file) ``args.rounds`` times, the order reversed every other
    round so drifting load hits each alike; report median QPS and QPS per core, and the ratio
    of the last label (signed, with DO) to the first (unsigned)."""
    warm = argparse.Namespace(**{**vars(args), "seconds": bl.WARMUP_SECONDS})
    for _, server, datafile in runs_of:
        measure(server, datafile, workdir, warm, verbose=False)
    runs: dict[str, list] = {label: [] for label, _, _ in runs_of}
    for round_number in range(args.rounds):
        order = runs_of if round_number % 2 == 0 else runs_of[::-1]
        for label, server, datafile in order:
            print(f"running {name} {label} for {args.seconds:g} s ...", flush=True)
            runs[label].append(summary(measure(server, datafile, workdir, args)))
            time.sleep(1)
    qps = {label: statistics.median(r["qps"] for r in rs) for label, rs in runs.items()}
    per_core = {label: statistics.median(r["qps_per_core"] or 0 for r in rs)
                for label, rs in runs.items()}  # fmt: skip
    first, last = runs_of[0][0], runs_of[-1][0]
    return {
        "runs": runs,
        "qps": qps,
        "qps_per_core": per_core,
        "signed_vs_unsigned": round(qps[last] / qps[first], 3),
        "signed_vs_unsigned_per_core": round(per_core[last] / per_core[first], 3),
    }


def cold_costs(db: Path, signed_zones: Path, ecs: list[bytes], count: int) -> dict:
    """CPU microseconds per query of a fresh responder (no cached replies, no signatures);
    CPU time, not wall time, so other jobs on a shared box do not inflate it."""
    from gslb.config.load import load_config
    from gslb.dns.responder import Responder
    from gslb.geo import GeoDB
    from gslb.policy.chain import Engine

    config, errors = load_config(signed_zones)
    assert not errors, errors
    out = {}
    cases = {
        "gslb-ecs-first-pass": (ecs, with_do(ecs)),
        "nx-random": (random_names(count, False, 7), random_names(count, True, 7)),
    }
    for name, (plain, signed) in cases.items():
        for label, messages in (("no-do", plain), ("do", signed)):
            geo = GeoDB.open(db)  # its own, so no run finds locations a previous one looked up
            responder = Responder(config, Engine(geo))
            started = time.process_time()
            for wire in messages:
                responder.handle(wire, "192.0.2.1")
            elapsed = time.process_time() - started
            out[f"{name}/{label}"] = round(elapsed / len(messages) * 1e6, 1)
            geo.close()
        signatures = sum(responder.stats.dnssec_signatures.values())
        out[f"{name}/signatures_made"] = signatures
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
        repeatable = static_is_repeatable(args.queries)
        static = [q for q, keep in zip(bl.static_queries(args.queries), repeatable, strict=True)
                  if keep]  # fmt: skip
        files = {
            "static": bl.write_binary_queries(workdir / "static.bin", static),
            "static-do": bl.write_binary_queries(workdir / "static-do.bin", with_do(static)),
            "ecs": bl.write_binary_queries(workdir / "ecs.bin", ecs),
            "ecs-do": bl.write_binary_queries(workdir / "ecs-do.bin", with_do(ecs)),
        }
        if args.part != "peers":
            nx_count = int(max(args.seconds, 1) * 40000)  # more than a run can send: all new
            for name, do, seed in (("nx", False, 1), ("nx-do", True, 2)):
                names = random_names(nx_count, do, seed)
                files[name] = bl.write_binary_queries(workdir / f"{name}.bin", names)
        results = {}
        if args.part in ("all", "self"):
            results.update(run_self(workdir, db, files, ecs, args))
        if args.part in ("all", "peers"):
            mix = bl.static_queries(args.queries)
            files["mix"] = bl.write_binary_queries(workdir / "mix.bin", mix)
            files["mix-do"] = bl.write_binary_queries(workdir / "mix-do.bin", with_do(mix))
            results["peers"] = run_peers(workdir, db, files, args)
    report = {"machine": bl.machine(), "settings": {"seconds": args.seconds,
              "clients": args.clients, "workers": 1, "rounds": args.rounds}, **results}  # fmt: skip
    print_report(results)
    print(f"wrote {bl.write_json(args.out, report)}")
    return 0


def run_self(workdir: Path, db: Path, files: dict, ecs: list[bytes], args) -> dict:
    """gslb unsigned vs signed (one worker each), the ration at work, cold costs."""
    unlimited = signed_copy(workdir, 10**9)
    rationed = signed_copy(workdir, RATION_DEMO)
    results = {}
    with bl.Gslb(ZONES, db, workdir, workers=1) as plain, \
            bl.Gslb(unlimited, db, workdir, workers=1) as signed:  # fmt: skip
        plain.wait_ready()
        signed.wait_ready()
        for name, plain_file, do_file in (("static-repeat", "static", "static-do"),
                                          ("gslb-ecs", "ecs", "ecs-do"),
                                          ("nx-random", "nx", "nx-do")):  # fmt: skip
            rounds = args.rounds if name != "nx-random" else 1
            results[name] = compare(name, [
                ("unsigned zone", plain, files[plain_file]),
                ("signed zone, no DO", signed, files[plain_file]),
                ("signed zone, DO", signed, files[do_file]),
            ], workdir, argparse.Namespace(**{**vars(args), "rounds": rounds}))  # fmt: skip
    with bl.Gslb(rationed, db, workdir, workers=1) as limited:
        limited.wait_ready()
        print(f"running nx-random rationed to {RATION_DEMO}/s for {args.seconds:g} s ...")
        results["nx-random-rationed"] = summary(measure(limited, files["nx-do"], workdir, args))
    results["in_process_us_per_query"] = cold_costs(db, unlimited, ecs, args.queries)
    return results


def run_peers(workdir: Path, db: Path, files: dict, args) -> dict:
    """gslb and PowerDNS, each unsigned and signed, one after the other, same query files."""
    if bl.ensure_packages({"pdns_server": ["pdns-server", "pdns-backend-bind"]}, "peer"):
        return {"skipped": "PowerDNS could not be installed"}
    from peers import measure as measure_peer
    from peers import wait_dns

    out = {}
    for label, service in peer_servers(workdir, db):
        with service:
            wait_dns(service)
            warm = argparse.Namespace(**{**vars(args), "seconds": bl.WARMUP_SECONDS})
            for name in ("ecs", "mix"):  # caches filled, as in production
                measure_peer(service, files[name], workdir, warm)
            row = {}
            for name in ("ecs", "ecs-do", "mix", "mix-do"):
                print(f"running {label} {name} for {args.seconds:g} s ...", flush=True)
                row[name] = summary(measure_peer(service, files[name], workdir, args))
                time.sleep(1)
            out[label] = row
    return out


def peer_servers(workdir: Path, db: Path) -> list[tuple[str, bl.Service]]:
    import subprocess

    import yaml
    from peers import gslb_zone, pdns_config, peer, pickwrandom, zone_file

    servers = []
    for signed in (False, True):
        zones = workdir / f"peer-gslb-{signed}"
        zones.mkdir()
        (zones / "example.com.yaml").write_text(yaml.safe_dump(gslb_zone(), sort_keys=False))
        if signed:
            from gslb.dnssec.tools import keygen

            keygen(zones, ORIGIN, 13)
            sidecar = zones / "example.com.dnssec.yaml"
            sidecar.write_text(
                sidecar.read_text() + "  negative_signatures_per_second: 1000000000\n"
            )
        servers.append((f"gslb {'signed' if signed else 'unsigned'}", bl.Gslb(zones, db, workdir)))
    for signed in (False, True):
        root = workdir / f"peer-pdns-{signed}"
        root.mkdir()
        port = bl.free_port()
        (root / "example.com.zone").write_text(zone_file(pickwrandom()))
        (root / "named.conf").write_text(
            f'zone "example.com" {{ type master; file "{root}/example.com.zone"; }};\n'
        )
        config = pdns_config(port, root, "shared")
        if signed:
            config += f"bind-dnssec-db={root}/dnssec.sqlite3\n"
        (root / "pdns.conf").write_text(config)
        if signed:
            pdnsutil = [bl.exe_path("pdnsutil"), f"--config-dir={root}"]
            subprocess.run([*pdnsutil, "create-bind-db", f"{root}/dnssec.sqlite3"], check=True,
                           capture_output=True)  # fmt: skip
            subprocess.run([*pdnsutil, "secure-zone", "example.com"], check=True,
                           capture_output=True)  # fmt: skip
        argv = [bl.exe_path("pdns_server"), f"--config-dir={root}"]
        label = f"pdns {'signed' if signed else 'unsigned'}"
        servers.append((label, peer(label, argv, root, port)))
    return servers


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
    labels = ("unsigned zone", "signed zone, no DO", "signed zone, DO")
    print(f"\n{'scenario':<14} {'unsigned':>9} {'signed/noDO':>12} {'signed/DO':>10} "
          f"{'ratio':>6} {'QPS/core: unsigned':>19} {'DO':>8} {'ratio':>6}")  # fmt: skip
    for name in ("static-repeat", "gslb-ecs", "nx-random"):
        if name not in results:
            continue
        r = results[name]
        qps, core = r["qps"], r["qps_per_core"]
        print(f"{name:<14} {qps[labels[0]]:>9.0f} {qps[labels[1]]:>12.0f} {qps[labels[2]]:>10.0f} "
              f"{r['signed_vs_unsigned']:>6.2f} {core[labels[0]]:>19.0f} {core[labels[2]]:>8.0f} "
              f"{r['signed_vs_unsigned_per_core']:>6.2f}")  # fmt: skip
    if "nx-random-rationed" in results:
        rationed = results["nx-random-rationed"]
        print(f"nx-random rationed to {RATION_DEMO}/s: {rationed['qps']:.0f} QPS, "
              f"rcodes {rationed['rcodes']}")  # fmt: skip
        for key, value in results["in_process_us_per_query"].items():
            print(f"in process {key}: {value}")
    peers = results.get("peers", {})
    if "skipped" in peers or not peers:
        print(f"peers: {peers.get('skipped', 'none')}")
        return
    print(f"\n{'server':<15} {'weighted':>9} {'+DO':>8} {'/core':>8} {'+DO':>8} "
          f"{'static mix':>11} {'+DO':>8} {'/core':>8} {'+DO':>8}")  # fmt: skip
    for label, row in peers.items():
        cells = []
        for kind in ("ecs", "mix"):
            plain, signed = row[kind], row[f"{kind}-do"]
            cells += [plain["qps"], signed["qps"], plain["qps_per_core"] or 0,
                      signed["qps_per_core"] or 0]  # fmt: skip
        print(f"{label:<15} {cells[0]:>9.0f} {cells[1]:>8.0f} {cells[2]:>8.0f} {cells[3]:>8.0f} "
              f"{cells[4]:>11.0f} {cells[5]:>8.0f} {cells[6]:>8.0f} {cells[7]:>8.0f}")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
