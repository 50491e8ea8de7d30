"""``make bench-peers``: gslb next to gdnsd and PowerDNS, same answers, same queries, same box.

Every server serves the same example.com: the static records of the bench zone, and
content.example.com as a weighted CNAME (cdn-a 40, cdn-b 40, cdn-c 20):

* gslb: a one-pool dynamic record (``weighted``); the bench zone with geo rules, proximity
  and cost (``geo``); and the same with the chain cut to rules, health, weighted
  (``geo rules``: what gdnsd's geoip map does, the basis of that ratio);
* gdnsd 3: ``DYNC weighted!content``; and ``DYNC geoip!content``, a geoip map (continents to
  pools, the partner subnet, ECS honoured) over weighted resources, mirroring the bench zone;
* PowerDNS 4 (bind backend): ``LUA CNAME "pickwrandom(...)"``, once with
  ``enable-lua-records=yes`` and once with ``=shared`` (one Lua state per thread, reused).

Peers are installed from Debian when missing, configured in a temp dir, run in the foreground
under this script on free loopback ports and stopped at the end; ``security-poll-suffix=`` is
empty so PowerDNS sends nothing off the box. All servers use two threads or processes (the box
has two cores). One dnsperf file per query set goes to every server in turn, so ratios compare
like with like. Results: bench/results/peers.json.

Query sets: the friendly ones repeat (``dynamic``, ``geo``: 20,000 ECS queries; ``static``),
so after the first pass nearly every gslb answer comes from its replay cache. The
cache-hostile ones never repeat within a pass (``--hostile-queries`` distinct messages, more
than gslb's replay cache holds): ``hostile-geo`` (content A, 0x20 name, its own random public
/24 ECS per query), ``hostile-geo6`` (AAAA with a random /56), ``hostile-weighted`` (the
weighted name the same way) and ``hostile-static`` (the static mix in 0x20, a new random name
per NXDOMAIN). ``hostile-geo-half`` replays hostile-geo at half the rate gslb's full chain
reached: its p99 is the latency of a server that is not saturated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import benchlib as bl
import yaml

WEIGHTS = {"example.cdn-a.net.": 40, "example.cdn-b.net.": 40, "example.cdn-c.net.": 20}
# The bench zone's content record, for gdnsd's geoip map: pool -> {target: weight}.
GEO_POOLS = {
    "europe": {"example.cdn-a.net.": 70, "example.cdn-b.net.": 30},
    "asia": {"example.cdn-c.net.": 60, "example.cdn-a.net.": 40},
    "americas": {"example.cdn-b.net.": 50, "example.cdn-a.net.": 50},
    "partner": {"example.cdn-c.net.": 100},
    "global": WEIGHTS,
}
GEO_MAP = {"EU": "europe", "AF": "europe", "AS": "asia", "OC": "asia", "NA": "americas",
           "SA": "americas"}  # fmt: skip
PARTNER_NET = "198.51.100.0/24"
# (owner, type, [rdata]) in zone-file syntax; rendered for every server.
STATIC = [
    ("@", "NS", ["ns1.example.com.", "ns2.example.com."]),
    ("@", "A", ["192.0.2.80"]),
    ("@", "MX", ["10 mail.example.com."]),
    ("@", "TXT", ['"v=spf1 mx -all"']),
    ("ns1", "A", ["192.0.2.53"]),
    ("ns2", "A", ["198.51.100.53"]),
    ("mail", "A", ["192.0.2.25"]),
    ("origin", "A", ["192.0.2.10", "192.0.2.11"]),
    ("origin", "AAAA", ["2001:db8::10"]),
    ("alias", "CNAME", ["origin.example.com."]),
]
SOA = "ns1.example.com. hostmaster.example.com. 1 7200 1800 259200 300"
PACKAGES = {"gdnsd": ["gdnsd"], "pdns_server": ["pdns-server", "pdns-backend-bind"]}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float,
                        default=float(os.environ.get("BENCH_SECONDS", "15")))  # fmt: skip
    parser.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    parser.add_argument("--queries", type=int, default=20000)
    parser.add_argument("--hostile-queries", type=int, default=400_000,
                        help="distinct messages per cache-hostile file")  # fmt: skip
    parser.add_argument("--no-friendly", action="store_true",
                        help="only the cache-hostile sets (quicker)")  # fmt: skip
    parser.add_argument("--only", nargs="*", help="run only these servers (by label)")
    parser.add_argument("--out", default="peers.json")
    return parser.parse_args()


# -- zone renderings -----------------------------------------------------------------------


def zone_file(dynamic_line: str) -> str:
    """RFC 1035 zone text shared by gdnsd and PowerDNS; ``dynamic_line`` is the content RR."""
    lines = ["$TTL 3600", f"@ 3600 IN SOA {SOA}"]
    lines += [f"{owner} 3600 IN {rtype} {rdata}" for owner, rtype, datas in STATIC
              for rdata in datas]  # fmt: skip
    return "\n".join([*lines, dynamic_line, ""])


def gslb_zone() -> dict:
    """The same zone in gslb's YAML, content as a one-pool weighted dynamic CNAME."""
    zone: dict[str, list] = {}
    for owner, rtype, datas in STATIC:
        key = "" if owner == "@" else owner
        if rtype == "MX":
            values = [{"preference": int(d.split()[0]), "exchange": d.split()[1]} for d in datas]
        elif rtype == "TXT":
            values = [d.strip('"') for d in datas]
        else:
            values = datas
        zone.setdefault(key, []).append({"type": rtype, "ttl": 3600, "values": values})
    pool = [{"value": target, "weight": weight} for target, weight in WEIGHTS.items()]
    zone["content"] = [{
        "type": "CNAME", "ttl": 30, "value": "origin.example.com.",
        "dynamic": {"pools": {"cdns": {"values": pool}}, "rules": [{"pool": "cdns"}]},
    }]  # fmt: skip
    return zone


def rules_only_zone(work: Path) -> Path:
    """The bench zone with content's chain cut to what gdnsd's geoip map does: rules, health,
    weighted (no proximity, cost or performance step), for a like-for-like geo row."""
    zones = work / "gslb-geo-rules"
    zones.mkdir()
    text = (bl.ROOT / "bench" / "zones" / "example.com.yaml").read_text()
    chain = "    chain: [rules, health, performance, proximity, cost, weighted]"
    if chain not in text:
        raise RuntimeError("bench/zones/example.com.yaml: content's chain line changed")
    text = text.replace(chain, "    chain: [rules, health, weighted]")
    (zones / "example.com.yaml").write_text(text)
    return zones


def gdnsd_config(port: int, root: Path, geoip: Path | None) -> str:
    """gdnsd 3 config: two UDP and two TCP threads, weighted (and geoip) plugins."""
    weighted = [f"    content => {{ {weighted_items(WEIGHTS)} }}"]
    weighted += [f"    geo_{pool} => {{ {weighted_items(w)} }}" for pool, w in GEO_POOLS.items()]
    geo = ""
    if geoip is not None:
        dcs = list(GEO_POOLS)
        continents = "\n".join(
            f"          {code} => [ {pool}, global ]" for code, pool in GEO_MAP.items()
        )
        dcmap = "\n".join(f"          {pool} => %weighted!geo_{pool}" for pool in dcs)
        geo = f"""
  geoip => {{
    maps => {{
      content_map => {{
        geoip2_db => {geoip}
        datacenters => [ {", ".join(dcs)} ]
        map => {{
          default => [ global ]
{continents}
        }}
        nets => {{ {PARTNER_NET} => [ partner, global ] }}
      }}
    }}
    resources => {{
      content => {{
        map => content_map
        dcmap => {{
{dcmap}
        }}
      }}
    }}
  }}"""
    return f"""options => {{
  listen => [ {bl.LOOPBACK}:{port} ]
  run_dir => {root}/run
  state_dir => {root}/state
  udp_threads => 2
  tcp_threads => 2
}}
plugins => {{
  weighted => {{
{chr(10).join(weighted)}
  }}{geo}
}}
"""


def weighted_items(weights: dict[str, int]) -> str:
    return " ".join(f"t{i} = [ {t}, {w} ]" for i, (t, w) in enumerate(weights.items()))


def pdns_config(port: int, root: Path, lua: str) -> str:
    return f"""launch=bind
bind-config={root}/named.conf
local-address={bl.LOOPBACK}
local-port={port}
socket-dir={root}
daemon=no
guardian=no
disable-syslog=yes
setuid=
setgid=
security-poll-suffix=
enable-lua-records={lua}
receiver-threads=2
reuseport=yes
webserver=no
api=no
"""


def pickwrandom() -> str:
    items = ",".join(f"{{{w},'{t}'}}" for t, w in WEIGHTS.items())
    return f'content 30 IN LUA CNAME "pickwrandom({{{items}}})"'


# -- servers -------------------------------------------------------------------------------


def make_servers(work: Path, db: Path) -> list[tuple[str, str, bl.Service]]:
    """(label, query sets, service) for every server; configs written under ``work``."""
    servers: list[tuple[str, str, bl.Service]] = []
    zones = work / "gslb-zones"
    zones.mkdir()
    (zones / "example.com.yaml").write_text(yaml.safe_dump(gslb_zone(), sort_keys=False))
    weighted_sets = "dynamic static hostile-weighted hostile-static"
    servers.append(("gslb weighted", weighted_sets, bl.Gslb(zones, db, work)))
    servers.append(("gslb geo", "geo hostile-geo hostile-geo-half hostile-geo6",
                    bl.Gslb(bl.ROOT / "bench" / "zones", db, work)))  # fmt: skip
    servers.append(("gslb geo rules", "geo hostile-geo", bl.Gslb(rules_only_zone(work), db, work)))
    if bl.have("gdnsd"):
        mmdb = plain_mmdb(db, work)
        for label, plugin, sets, geo in (
            ("gdnsd weighted", "weighted", weighted_sets, None),
            ("gdnsd geoip", "geoip", "geo hostile-geo hostile-geo6", mmdb),
        ):
            root = work / label.replace(" ", "-")
            (root / "zones").mkdir(parents=True)
            (root / "run").mkdir()
            (root / "state").mkdir()
            port = bl.free_port()
            (root / "config").write_text(gdnsd_config(port, root, geo))
            (root / "zones" / "example.com").write_text(
                zone_file(f"content 30 DYNC {plugin}!content")
            )
            argv = [bl.exe_path("gdnsd"), "-c", str(root), "start"]
            servers.append((label, sets, peer(label, argv, root, port)))
    if bl.have("pdns_server"):
        for lua in ("yes", "shared"):
            label = f"pdns lua={lua}"
            root = work / f"pdns-{lua}"
            root.mkdir()
            port = bl.free_port()
            (root / "example.com.zone").write_text(zone_file(pickwrandom()))
            (root / "named.conf").write_text(
                f'zone "example.com" {{ type master; file "{root}/example.com.zone"; }};\n'
            )
            (root / "pdns.conf").write_text(pdns_config(port, root, lua))
            argv = [bl.exe_path("pdns_server"), f"--config-dir={root}"]
            servers.append((label, "dynamic static", peer(label, argv, root, port)))
    return servers


def peer(label: str, argv: list[str], root: Path, port: int) -> bl.Service:
    service = bl.Service(label, argv, root / "server.log")
    service.dns_port = port  # type: ignore[attr-defined]
    return service


def plain_mmdb(db: Path, work: Path) -> Path:
    """gdnsd reads a plain .mmdb; unpack the shipped .mmdb.gz when that is what we have."""
    with open(db, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            return db
    import gzip

    target = work / "geoip.mmdb"
    with gzip.open(db, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return target


def wait_dns(service: bl.Service, timeout: float = 60.0) -> float:
    """Seconds until the server answers the zone's SOA; raises with its log otherwise."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    if isinstance(service, bl.Gslb):
        return service.wait_ready(timeout)
    started = time.monotonic()
    query = dns.message.make_query("example.com.", "SOA")
    while time.monotonic() - started < timeout:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited:\n{service.log_tail()}")
        with contextlib.suppress(OSError, dns.exception.Timeout):
            reply = dns.query.udp(query, bl.LOOPBACK, port=service.dns_port, timeout=0.5)
            if reply.rcode() == dns.rcode.NOERROR and reply.answer:
                return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"{service.name} not answering after {timeout:.0f} s:\n"
                       f"{service.log_tail()}")  # fmt: skip


def sample_answers(port: int, ecs: str | None = None, count: int = 200) -> dict[str, int]:
    """Share of CNAME targets for content.example.com: proves the weights (and the geo map)."""
    import dns.message
    import dns.query

    seen: dict[str, int] = {}
    query = dns.message.from_wire(bl.make_query(bl.GSLB_NAME, "CNAME", ecs))
    for _ in range(count):
        reply = dns.query.udp(query, bl.LOOPBACK, port=port, timeout=2)
        targets = [str(rr.target) for rrset in reply.answer for rr in rrset if rr.rdtype == 5]
        for target in targets[:1] or ["(none)"]:
            seen[target] = seen.get(target, 0) + 1
    return dict(sorted(seen.items()))


# ECS probes for the geo rows: a client in each region of the map, and the partner subnet.
GEO_PROBES = {"DE": "46.4.1.10", "JP": "126.0.1.10", "US": "13.52.1.10",
              "partner": "198.51.100.7"}  # fmt: skip


def sample_geo(port: int) -> dict[str, dict[str, int]]:
    return {where: sample_answers(port, ecs, 50) for where, ecs in GEO_PROBES.items()}


# -- measuring -----------------------------------------------------------------------------


def measure(service: bl.Service, datafile: Path, work: Path, args,
            rate: float | None = None) -> dict:  # fmt: skip
    load = bl.load_average()
    before = service.cpu()
    client_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    perf = bl.dnsperf(service.dns_port, datafile, work, seconds=args.seconds,
                      clients=args.clients, binary=True, qps=rate)  # fmt: skip
    client_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = service.cpu()
    cpu = sum(after.get(pid, 0.0) - before.get(pid, 0.0) for pid in after)
    client_cpu = (client_after.ru_utime - client_before.ru_utime) + (
        client_after.ru_stime - client_before.ru_stime
    )
    return {**asdict(perf), "server_cpu_s": round(cpu, 2), "dnsperf_cpu_s": round(client_cpu, 2),
            "qps_per_core": round(perf.completed / cpu) if cpu > 0 else None,
            "load_before": load, "load_after": bl.load_average()}  # fmt: skip


def run_server(label: str, sets: str, service: bl.Service, files: dict, work: Path, args) -> dict:
    names = [n for n in sets.split() if n in files or n.endswith("-half")]
    if not any(n in files for n in names):  # e.g. --no-friendly and a peer with no hostile set
        print(f"{label}: skipped (none of its query sets selected)", flush=True)
        return {"skipped": "none of its query sets selected"}
    print(f"{label}: starting", flush=True)
    with service:
        try:
            ready = wait_dns(service)
        except RuntimeError as exc:
            print(f"{label}: FAILED to start: {exc}", flush=True)
            return {"error": str(exc)}
        out: dict = {"ready_seconds": round(ready, 2)}
        if "dynamic" in sets:
            out["answer_shares"] = sample_answers(service.dns_port)
        if "geo" in sets:
            out["answer_shares_by_client"] = sample_geo(service.dns_port)
        warm = argparse.Namespace(**{**vars(args), "seconds": bl.WARMUP_SECONDS})
        measure(service, files[names[0]], work, warm)
        for name in names:
            rate = None
            if name.endswith("-half"):
                full = out.get(name.removesuffix("-half"))
                if not full or not full["qps"]:
                    continue
                rate = full["qps"] / 2
            print(f"{label}: {name} for {args.seconds:g} s"
                  + (f" at {rate:.0f} QPS" if rate else ""), flush=True)  # fmt: skip
            out[name] = measure(service, files[name.removesuffix("-half")], work, args, rate)
            time.sleep(1)
        if isinstance(service, bl.Gslb):
            out["memory"] = service.memory()
        else:
            out["rss_mib"] = round(sum(bl.rss_kb(p) for p in service.pids()) / 1024, 1)
        return out


SETS = ("hostile-geo", "hostile-geo6", "hostile-weighted", "hostile-static", "hostile-geo-half",
        "dynamic", "static", "geo")  # fmt: skip


def ratios(results: dict) -> dict:
    """gslb's QPS and QPS per core as a fraction of each peer's, per query set. Against the
    geoip map: the friendly geo set compares gslb cut to rules (what gdnsd's map does); the
    cache-hostile sets compare gslb's full chain (and the rules-only cut as well)."""
    out = {}
    for label, result in results.items():
        if label.startswith("gslb") or "error" in result:
            continue
        for name in SETS:
            bases = [("", "gslb weighted")]
            if "geoip" in label:
                bases = [("", "gslb geo rules")]
                if name.startswith("hostile"):
                    bases = [(" (full chain)", "gslb geo"), (" (rules only)", "gslb geo rules")]
            for suffix, base_label in bases:
                base = results.get(base_label, {})
                if name not in result or name not in base or "error" in base:
                    continue
                peer, ours = result[name], base[name]
                out[f"{label} / {name}{suffix}"] = {
                    "qps": round(ours["qps"] / peer["qps"], 3) if peer["qps"] else None,
                    "qps_per_core": round(ours["qps_per_core"] / peer["qps_per_core"], 3)
                    if peer["qps_per_core"] and ours["qps_per_core"] else None,
                }  # fmt: skip
    return out


def print_table(results: dict, fractions: dict) -> None:
    header = (f"{'server':<16} {'queries':<16} {'QPS':>8} {'p99 ms':>7} {'lost':>6} "
              f"{'srv CPU s':>9} {'QPS/core':>9} {'dnsperf CPU s':>13} {'load1':>6}")  # fmt: skip
    print("\n" + header + "\n" + "-" * len(header))
    for label, result in results.items():
        if "error" in result:
            print(f"{label:<16} FAILED: {result['error'].splitlines()[0]}")
            continue
        for name in SETS:
            if name not in result:
                continue
            r = result[name]
            print(f"{label:<16} {name:<16} {r['qps']:>8.0f} {r['p99_ms'] or 0:>7.2f} "
                  f"{r['lost']:>6} {r['server_cpu_s']:>9.2f} {r['qps_per_core'] or 0:>9} "
                  f"{r['dnsperf_cpu_s']:>13.2f} {r['load_before'][0]:>6}")  # fmt: skip
    print("\ngslb as a fraction of each peer (same query file, same box):")
    for key, value in fractions.items():
        print(f"  {key:<52} QPS {value['qps']}   QPS per core {value['qps_per_core']}")


def main() -> int:
    args = parse_args()
    missing = bl.ensure_packages({"dnsperf": ["dnsperf"], **PACKAGES}, "peer DNS servers")
    if "dnsperf" in missing:
        print("dnsperf is missing: see bench/README.md", flush=True)
        return 2
    print(f"machine: {bl.uptime_line()}", flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="gslb-peers-") as tmp:
        work = Path(tmp)
        db, kind = bl.geoip_db(work)
        ecs, _ = bl.ecs_queries(db, kind, args.queries)
        files = {
            "dynamic": bl.write_binary_queries(work / "dynamic.bin", ecs),
            "geo": work / "dynamic.bin",
            "static": bl.write_binary_queries(work / "static.bin", bl.static_queries(args.queries)),
        }
        if args.no_friendly:
            files = {}
        print(f"writing cache-hostile files ({args.hostile_queries:,} queries each)", flush=True)
        for kind in bl.HOSTILE_KINDS:
            messages = bl.hostile_queries(kind, args.hostile_queries, seed=len(files))
            files[f"hostile-{kind}"] = bl.write_binary_queries(work / f"hostile-{kind}.bin",
                                                               messages)  # fmt: skip
        for label, sets, service in make_servers(work, db):
            if args.only and label not in args.only:
                continue
            results[label] = run_server(label, sets, service, files, work, args)
    for exe in missing:
        results[exe] = {"error": f"{exe} not installed and could not be installed here"}
    fractions = ratios(results)
    versions = peer_versions()
    print_table(results, fractions)
    report = {"machine": bl.machine(), "geoip": kind, "versions": versions,
              "settings": vars(args), "results": results, "gslb_fraction": fractions}  # fmt: skip
    print(f"wrote {bl.write_json(args.out, report)}")
    return 0


def peer_versions() -> dict:
    import subprocess

    out = {}
    for exe, flag, marker in (
        ("gdnsd", "-V", "gdnsd version"),
        ("pdns_server", "--version", "Authoritative Server"),
    ):
        if bl.have(exe):
            done = subprocess.run([bl.exe_path(exe), flag], capture_output=True, text=True,
                                  timeout=10, check=False)  # fmt: skip
            text = (done.stdout + done.stderr).strip().splitlines()
            found = next((line for line in text if marker in line), "unknown")
            out[exe] = found.split(" ", 3)[-1] if exe == "pdns_server" else found
    return out


if __name__ == "__main__":
    raise SystemExit(main())
