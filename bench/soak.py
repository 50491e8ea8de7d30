"""``make soak``: gslb under steady load while everything around it churns, bounded in time.

For ``SOAK_SECONDS`` (default 180) a real ``gslb serve`` (default worker count) answers dnsperf
at about half of the capacity measured first (``-Q``), while at the same time:

* three local HTTP edges behind one GSLB record fail and recover in turn (503, then refused
  connections), and the DNS answers must follow each change within a few seconds;
* the zone file is edited every few seconds, alternating valid edits (a version stamp moves)
  and broken ones (bad YAML, then a bad record), each followed by SIGHUP: valid ones must be
  served, broken ones refused while the last good config keeps serving;
* a fuzzer sends mutated queries and garbage over UDP and TCP on the side;
* a checker asks with dnspython several times a second and validates every answer against the
  configuration in force (stamp = the latest valid edit or the one before while a reload is in
  flight; GSLB answers only ever configured edges; never SERVFAIL).

Pass: zero queries lost by dnsperf and by the checker, no invalid answer, every reload counted
with the right result, every failover seen within ``FAILOVER_LIMIT`` seconds, and resident
memory of the server processes growing less than 10 % from the end of warm-up to the end.
Figures are printed and written to bench/results/soak.json; the exit status is 1 on failure.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import benchlib as bl
import dns.exception
import dns.message
import dns.query
from fuzz import corpus, mutate
from prometheus_client.parser import text_string_to_metric_families

from tests.edges import EdgeThread

EDGES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
EDIT_EVERY = 3.0  # seconds between zone edits
EDGE_EVERY = 7.0  # seconds between edge state changes
FAILOVER_LIMIT = 5.0  # seconds for DNS answers to follow an edge change
MEMORY_GROWTH_LIMIT = 0.10
TTL, DEGRADED_TTL = 30, 5

ZONE = """\
'':
  - type: NS
    values: [ns1.example.com., ns2.example.com.]
  - type: A
    value: 192.0.2.80
ns1: {{type: A, value: 192.0.2.53}}
ns2: {{type: A, value: 198.51.100.53}}
www: {{type: A, ttl: 300, values: [192.0.2.1, 192.0.2.2]}}
mail: {{type: A, value: 192.0.2.25}}
alias: {{type: CNAME, value: www.example.com.}}
stamp: {{type: TXT, ttl: 5, value: v{version}}}
extra{version}: {{type: A, value: 192.0.2.{last_octet}}}
edge:
  type: A
  ttl: {ttl}
  value: 192.0.2.10
  dynamic:
    pools:
      cdns:
        values:
{values}
    rules:
      - pool: cdns
  gslb:
    answers: 3
    degraded_ttl: {degraded_ttl}
    fail_open: true
    check: {{type: http, path: /health, interval: 0.3, timeout: 0.25, rise: 2, fall: 2}}
    targets:
{targets}
"""
BROKEN = ("stamp: [unclosed\n", "broken:\n  type: A\n  value: not-an-address\n")


@dataclass
class Figures:
    checks: int = 0
    check_timeouts: int = 0
    invalid: list[str] = field(default_factory=list)
    valid_edits: int = 0
    broken_edits: int = 0
    reload_mismatches: list[str] = field(default_factory=list)
    failovers: list[float] = field(default_factory=list)
    failover_misses: list[str] = field(default_factory=list)
    fuzz_udp: int = 0
    fuzz_tcp: int = 0
    rss_mib: list[tuple[float, float]] = field(default_factory=list)  # (t, total MiB)


class Zones:
    """The zone file and the versions written so far (the checker's idea of what is valid)."""

    def __init__(self, directory: Path, edges: dict[str, EdgeThread]) -> None:
        self.path = directory / "example.com.yaml"
        directory.mkdir(parents=True, exist_ok=True)
        self.edges = edges
        self.versions: list[int] = []
        self.lock = threading.Lock()

    def text(self, version: int) -> str:
        values = "\n".join(f"          - {{value: {address}}}" for address in EDGES)
        targets = "\n".join(
            f"      {address}:\n        check: {{address: 127.0.0.1, port: {edge.edge.port}}}"
            for address, edge in self.edges.items()
        )
        return ZONE.format(version=version, last_octet=100 + version % 100, ttl=TTL,
                           degraded_ttl=DEGRADED_TTL, values=values, targets=targets)  # fmt: skip

    def write_valid(self) -> int:
        with self.lock:
            version = (self.versions[-1] + 1) if self.versions else 1
            self.versions.append(version)
        self.path.write_text(self.text(version))
        return version

    def write_broken(self, kind: int) -> None:
        self.path.write_text(self.text(self.versions[-1]) + BROKEN[kind % 2])

    def acceptable(self) -> set[str]:
        with self.lock:
            return {f"v{v}" for v in self.versions[-2:]}


# -- side activities -------------------------------------------------------------------------


class Checker(threading.Thread):
    """Asks stamp TXT and edge A over UDP (every fifth over TCP) and validates every answer."""

    def __init__(self, port: int, zones: Zones, figures: Figures, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.zones, self.figures, self.stop = port, zones, figures, stop

    def run(self) -> None:
        count = 0
        while not self.stop.wait(0.1):
            count += 1
            ask = dns.query.tcp if count % 5 == 0 else dns.query.udp
            for name, rdtype in (("stamp.example.com", "TXT"), ("edge.example.com", "A")):
                acceptable = self.zones.acceptable()  # before asking: a reload may land
                try:
                    reply = ask(dns.message.make_query(name, rdtype), "127.0.0.1",
                                port=self.port, timeout=2)  # fmt: skip
                except (dns.exception.Timeout, OSError):
                    self.figures.check_timeouts += 1
                    continue
                self.figures.checks += 1
                problem = validate(reply, name, acceptable | self.zones.acceptable())
                if problem:
                    self.figures.invalid.append(f"{time.strftime('%X')} {name}: {problem}")


def validate(reply: dns.message.Message, name: str, stamps: set[str]) -> str | None:
    if reply.rcode() != 0 or not reply.answer:
        return f"rcode {reply.rcode()}, {len(reply.answer)} answer rrsets"
    rrset = reply.answer[0]
    if name.startswith("stamp"):
        value = b"".join(rrset[0].strings).decode()
        return None if value in stamps else f"stamp {value}, expected one of {sorted(stamps)}"
    addresses = {rr.address for rr in rrset}
    if not addresses <= set(EDGES):
        return f"answered {sorted(addresses)}: not configured edges"
    if rrset.ttl not in (TTL, DEGRADED_TTL):
        return f"TTL {rrset.ttl}"
    return None


class SideFuzzer(threading.Thread):
    """Mutated queries over UDP (~200/s) and garbage TCP connections (~4/s), replies ignored."""

    def __init__(self, port: int, figures: Figures, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.figures, self.stop = port, figures, stop
        self.rng = random.Random(7)
        self.corpus = corpus()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            tick = 0
            while not self.stop.wait(0.005):
                tick += 1
                data = mutate(self.rng.choice(self.corpus), self.rng)
                try:
                    udp.sendto(data, ("127.0.0.1", self.port))
                    self.figures.fuzz_udp += 1
                    while udp.recv(65535):
                        pass
                except (BlockingIOError, OSError):
                    pass
                if tick % 50 == 0:
                    self.tcp_garbage()

    def tcp_garbage(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                data = mutate(self.rng.choice(self.corpus), self.rng)
                sock.sendall(len(data).to_bytes(2, "big") + data + self.rng.randbytes(64))
            self.figures.fuzz_tcp += 1
        except OSError:
            pass


class Memory(threading.Thread):
    def __init__(self, server: bl.Gslb, figures: Figures, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.server, self.figures, self.stop = server, figures, stop
        self.started = time.monotonic()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            memory = self.server.memory()
            total = memory["supervisor_rss_mib"] + sum(memory["worker_rss_mib"])
            self.figures.rss_mib.append((round(time.monotonic() - self.started, 1), total))


# -- the run ---------------------------------------------------------------------------------


def reloads(server: bl.Gslb) -> dict[str, float]:
    url = f"http://127.0.0.1:{server.http_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    out = {"success": 0.0, "failure": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gslb_config_reloads_total":
                out[sample.labels["result"]] = sample.value
    return out


def edit(server: bl.Gslb, zones: Zones, step: int, figures: Figures) -> None:
    """One zone edit + SIGHUP, then wait for the reload to be counted with the right result."""
    before = reloads(server)
    valid = step % 2 == 0
    if valid:
        zones.write_valid()
        figures.valid_edits += 1
    else:
        zones.write_broken(step // 2)
        figures.broken_edits += 1
    os.kill(server.process.pid, signal.SIGHUP)
    expected = "success" if valid else "failure"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = reloads(server)
        if sum(after.values()) > sum(before.values()):
            if after[expected] != before[expected] + 1:
                figures.reload_mismatches.append(f"edit {step}: {before} -> {after}")
            return
        time.sleep(0.05)
    figures.reload_mismatches.append(f"edit {step}: no reload counted within 5 s")


def answered(port: int) -> set[str]:
    try:
        reply = dns.query.udp(dns.message.make_query("edge.example.com", "A"), "127.0.0.1",
                              port=port, timeout=1)  # fmt: skip
    except dns.exception.Timeout:
        return set()
    return {rr.address for rrset in reply.answer for rr in rrset}


def toggle_edge(port: int, edges: dict[str, EdgeThread], step: int, figures: Figures) -> None:
    """Take one edge down (503 or refused) or bring it back; time until DNS follows."""
    address = EDGES[(step // 2) % len(EDGES)]
    down = step % 2 == 0
    if not down:
        edges[address].switch("healthy")
    elif step % 4 == 0:
        edges[address].switch("status", 503)
    else:
        edges[address].switch("refuse")
    expected = set(EDGES) - {address} if down else set(EDGES)
    started = time.monotonic()
    while time.monotonic() - started < FAILOVER_LIMIT:
        if answered(port) == expected:
            figures.failovers.append(round(time.monotonic() - started, 2))
            return
        time.sleep(0.05)
    state = "down" if down else "up"
    figures.failover_misses.append(f"{address} {state}: answers {sorted(answered(port))}")


def capacity(server: bl.Gslb, datafile: Path, workdir: Path) -> float:
    bl.dnsperf(server.dns_port, datafile, workdir, seconds=2, binary=True, verbose=False)
    perf = bl.dnsperf(server.dns_port, datafile, workdir, seconds=6, binary=True, verbose=False)
    return perf.qps


def queries(count: int = 5000) -> list[bytes]:
    rng = random.Random(11)
    mix = [("edge.example.com.", "A")] * 5 + [("stamp.example.com.", "TXT")] * 2 + [
        ("www.example.com.", "A"), ("alias.example.com.", "A"), ("mail.example.com.", "AAAA"),
        ("example.com.", "NS"), ("example.com.", "SOA"), ("nx", "A"),
    ]  # fmt: skip
    out = []
    for _ in range(count):
        name, qtype = rng.choice(mix)
        if name == "nx":
            name = f"nx{rng.randrange(10**6)}.example.com."
        out.append(bl.make_query(name, qtype))
    return out


def soak(server: bl.Gslb, zones: Zones, edges: dict, datafile: Path, workdir: Path,
         seconds: float, rate: float) -> tuple[Figures, bl.PerfResult]:  # fmt: skip
    figures = Figures()
    stop = threading.Event()
    result: dict[str, bl.PerfResult] = {}

    def load() -> None:
        result["perf"] = bl.dnsperf(server.dns_port, datafile, workdir, seconds=seconds,
                                    binary=True, qps=rate, timeout=2.0)  # fmt: skip

    threads = [
        threading.Thread(target=load, daemon=True),
        Checker(server.dns_port, zones, figures, stop),
        SideFuzzer(server.dns_port, figures, stop),
        Memory(server, figures, stop),
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    next_edit, next_edge, edit_step, edge_step = EDIT_EVERY, EDGE_EVERY, 0, 0
    while threads[0].is_alive():
        elapsed = time.monotonic() - started
        if elapsed >= next_edit and elapsed < seconds - 2:
            edit(server, zones, edit_step, figures)
            edit_step, next_edit = edit_step + 1, next_edit + EDIT_EVERY
        elif elapsed >= next_edge and elapsed < seconds - FAILOVER_LIMIT - 1:
            toggle_edge(server.dns_port, edges, edge_step, figures)
            edge_step, next_edge = edge_step + 1, next_edge + EDGE_EVERY
        else:
            threads[0].join(0.1)
    stop.set()
    for thread in threads[1:]:
        thread.join(5)
    return figures, result["perf"]


def memory_growth(samples: list[tuple[float, float]], seconds: float) -> dict:
    """Median RSS over 5 s right after warm-up (a quarter of the run, at least 10 s) against
    the median over the last 5 s."""
    warm = max(10.0, seconds / 4)
    after_warm = [mib for t, mib in samples if warm <= t < warm + 5]
    last = [mib for t, mib in samples if t >= samples[-1][0] - 5] if samples else []
    if not after_warm or not last:
        return {"growth": None}
    base, end = statistics.median(after_warm), statistics.median(last)
    return {"warmup_s": warm, "after_warmup_mib": round(base, 1), "end_mib": round(end, 1),
            "peak_mib": round(max(m for _, m in samples), 1),
            "growth": round((end - base) / base, 4)}  # fmt: skip


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "180"))
    if bl.ensure_packages({"dnsperf": ["dnsperf"]}, "DNS load generator"):
        print("dnsperf is missing and could not be installed (apt-get)", file=sys.stderr)
        return 2
    print(f"machine: {bl.uptime_line()}", flush=True)
    edges = {address: EdgeThread() for address in EDGES}
    try:
        with tempfile.TemporaryDirectory(prefix="gslb-soak-") as tmp:
            return run(Path(tmp), edges, seconds)
    finally:
        for edge in edges.values():
            edge.stop()


def run(workdir: Path, edges: dict, seconds: float) -> int:
    db, kind = bl.geoip_db(workdir)
    zones = Zones(workdir / "zones", edges)
    zones.write_valid()
    datafile = bl.write_binary_queries(workdir / "queries.bin", queries())
    server = bl.Gslb(workdir / "zones", db, workdir, extra=("--watch-interval", "0"))
    with server:
        ready_s = server.wait_ready()
        workers = sorted(p for p, role in server.roles().items() if role == "worker")
        rate = capacity(server, datafile, workdir) / 2
        print(f"capacity measured, soaking at {rate:.0f} QPS for {seconds:.0f} s", flush=True)
        figures, perf = soak(server, zones, edges, datafile, workdir, seconds, rate)
        alive = server.alive()
        workers_after = sorted(p for p, role in server.roles().items() if role == "worker")
    memory = memory_growth(figures.rss_mib, seconds)
    verdicts = {
        "no_query_lost": perf.lost == 0 and figures.check_timeouts == 0,
        "answers_valid": not figures.invalid,
        "reloads_counted": not figures.reload_mismatches,
        "failover_within_limit": not figures.failover_misses,
        "memory_stable": memory["growth"] is not None
        and memory["growth"] < MEMORY_GROWTH_LIMIT,
        "processes_alive": alive and workers == workers_after,
    }  # fmt: skip
    report = {
        "machine": bl.machine(), "seconds": seconds, "geoip": kind, "ready_s": round(ready_s, 2),
        "workers": len(workers), "target_qps": round(rate), "dnsperf": asdict(perf),
        "checker": {"checks": figures.checks, "timeouts": figures.check_timeouts,
                    "invalid": figures.invalid[:20]},
        "edits": {"valid": figures.valid_edits, "broken": figures.broken_edits,
                  "mismatches": figures.reload_mismatches},
        "failover_s": figures.failovers, "failover_misses": figures.failover_misses,
        "fuzz_sent": {"udp": figures.fuzz_udp, "tcp_connections": figures.fuzz_tcp},
        "memory": memory, "rss_samples_mib": figures.rss_mib, "verdicts": verdicts,
        "pass": all(verdicts.values()),
    }  # fmt: skip
    print_summary(report)
    print(f"wrote {bl.write_json('soak.json', report)}")
    return 0 if report["pass"] else 1


def print_summary(report: dict) -> None:
    perf = report["dnsperf"]
    print(f"dnsperf: {perf['completed']}/{perf['sent']} answered at {perf['qps']:.0f} QPS "
          f"(target {report['target_qps']}), lost {perf['lost']}, avg {perf['avg_ms']:.2f} ms, "
          f"p99 {perf['p99_ms']} ms, rcodes {perf['rcodes']}")  # fmt: skip
    checker = report["checker"]
    print(f"checker: {checker['checks']} answers checked, {checker['timeouts']} timeouts, "
          f"{len(checker['invalid'])} invalid")  # fmt: skip
    print(f"zone edits: {report['edits']['valid']} valid, {report['edits']['broken']} broken, "
          f"{len(report['edits']['mismatches'])} reload mismatches")  # fmt: skip
    failovers = report["failover_s"]
    print(f"edge changes followed: {len(failovers)} (max {max(failovers, default=0)} s), "
          f"missed {len(report['failover_misses'])}")  # fmt: skip
    print(f"fuzz on the side: {report['fuzz_sent']}")
    print(f"memory: {report['memory']}")
    print(f"verdicts: {report['verdicts']} -> {'PASS' if report['pass'] else 'FAIL'}")


if __name__ == "__main__":
    raise SystemExit(main())
