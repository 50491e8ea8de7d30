"""Shared pieces of the bench scripts: a gslb server under control, /proc accounting, dnsperf.

Everything here talks to loopback only and bounds every wait, so a bench run can never hang a
terminal or leave a server behind: servers run in their own process group and are killed as a
group on exit.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # scripts run as files: make gslb and tests importable
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
LOOPBACK = "127.0.0.1"
# Load before measuring: caches fill and the first (long) full garbage collections of a
# growing heap happen here, so the measured window shows the steady state.
WARMUP_SECONDS = 5.0


# -- machine -------------------------------------------------------------------------------


def load_average() -> list[float]:
    """1/5/15-minute load: another job on this box skews every number, so we record it."""
    return [round(x, 2) for x in os.getloadavg()]


def uptime_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average: {load_average()}"


def machine() -> dict:
    return {
        "cores": os.cpu_count(),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
        "uptime": uptime_line(),
    }


def write_json(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


# -- packages ------------------------------------------------------------------------------


def ensure_packages(binaries: dict[str, Sequence[str]], why: str) -> list[str]:
    """Install missing tools with apt-get (root only); return the binaries still missing.

    ``binaries`` maps an executable to the Debian packages providing it.
    """
    missing = {exe: pkgs for exe, pkgs in binaries.items() if not have(exe)}
    if not missing:
        return []
    packages = sorted({p for pkgs in missing.values() for p in pkgs})
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(packages)} ({why})", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
        subprocess.run(cmd, env=env, timeout=600, check=False)
    return [exe for exe in missing if not have(exe)]


def have(exe: str) -> bool:
    return shutil.which(exe) is not None or Path("/usr/sbin", exe).exists()


def exe_path(exe: str) -> str:
    return shutil.which(exe) or str(Path("/usr/sbin", exe))


# -- ports and processes -------------------------------------------------------------------


def free_port() -> int:
    """A port free for both UDP and TCP on loopback (DNS servers need both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise OSError("no free loopback port")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list), from /proc."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(x) for x in (task / "children").read_text().split()]
    return out


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children(current)
    return tree


def cpu_seconds(pid: int) -> float:
    """user + system CPU of one process (not its children), from /proc/<pid>/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def kill_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the server (gslb stops its own workers), then SIGKILL whatever is left of its
    process group, so nothing outlives the bench."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


class Service:
    """A server process (gslb or a peer) in its own process group, with /proc accounting."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, env: dict | None = None):
        self.name, self.argv, self.log_path, self.env = name, list(argv), log, env
        self.process: subprocess.Popen | None = None

    def start(self) -> Service:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=self.env, cwd=ROOT,
        )  # fmt: skip
        log.close()
        return self

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.process else []

    def cpu(self) -> dict[int, float]:
        return {pid: cpu_seconds(pid) for pid in self.pids()}

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@functools.cache
def root_flags() -> tuple[str, ...]:
    """``--allow-root`` when we are root and this gslb refuses root without it.

    The bench reads zones from a private temp dir, so dropping to another user is no option.
    """
    if os.geteuid() != 0:
        return ()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    help_text = subprocess.run([sys.executable, "-m", "gslb", "serve", "--help"], env=env,
                               capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    return ("--allow-root",) if "--allow-root" in help_text else ()


class Gslb(Service):
    """``gslb serve`` on free loopback ports; ``wait_ready`` polls ``/readyz``."""

    def __init__(
        self, zones: Path, geoip: Path, workdir: Path, *, workers: int | None = None,
        extra: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.dns_port, self.http_port = free_port(), free_port()
        argv = [
            sys.executable, "-m", "gslb", "serve", "--zones", str(zones),
            "--dns", f"{LOOPBACK}:{self.dns_port}", "--http", f"{LOOPBACK}:{self.http_port}",
            "--geoip", str(geoip), "--log-level", "warning", *extra,
        ]  # fmt: skip
        if workers is not None:
            argv += ["--workers", str(workers)]
        argv += root_flags()
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        super().__init__("gslb", argv, workdir / f"gslb-{self.dns_port}.log", env)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Seconds from start until /readyz says ready; raises with the log tail otherwise."""
        started = time.monotonic()
        url = f"http://{LOOPBACK}:{self.http_port}/readyz"
        while time.monotonic() - started < timeout:
            if not self.alive():
                raise RuntimeError(f"gslb exited early:\n{self.log_tail()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"gslb not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def roles(self) -> dict[int, str]:
        """pid -> supervisor | worker | helper (multiprocessing's resource tracker)."""
        out = {}
        for pid in self.pids():
            line = cmdline(pid)
            if pid == self.process.pid:
                out[pid] = "supervisor"
            elif "spawn_main" in line and "resource_tracker" not in line:
                out[pid] = "worker"
            else:
                out[pid] = "helper"
        return out

    def memory(self) -> dict:
        roles = self.roles()
        workers = [rss_kb(pid) for pid, role in roles.items() if role == "worker"]
        supervisor = [rss_kb(pid) for pid, role in roles.items() if role == "supervisor"]
        return {
            "supervisor_rss_mib": round(sum(supervisor) / 1024, 1),
            "worker_rss_mib": [round(kb / 1024, 1) for kb in workers],
        }


# -- GeoIP ---------------------------------------------------------------------------------


def geoip_db(workdir: Path) -> tuple[Path, str]:
    """The shipped default DB when present, else a tiny generated one: (path, kind)."""
    from gslb.geo import default_db_path

    default = default_db_path()
    if default.is_file():
        return default, "default"
    from tests.geodb import write_world_db

    return write_world_db(workdir), "test"


@contextlib.contextmanager
def open_mmdb(path: Path) -> Iterator:
    """A maxminddb reader for ``.mmdb`` or ``.mmdb.gz`` (unpacked to a temp file)."""
    import maxminddb

    with open(path, "rb") as f:
        packed = f.read(2) == b"\x1f\x8b"
    if not packed:
        reader = maxminddb.open_database(str(path))
    else:
        with (
            tempfile.NamedTemporaryFile(suffix=".mmdb") as tmp,
            gzip.open(path, "rb") as src,
        ):
            shutil.copyfileobj(src, tmp, 1 << 20)
            tmp.flush()
            reader = maxminddb.open_database(tmp.name)
    try:
        yield reader
    finally:
        reader.close()


# Regional registries' big IPv6 blocks: random addresses in them often land in the DB.
V6_BLOCKS = ("2a00::/12", "2400::/12", "2600::/12", "2800::/12", "2c00::/12")


def client_addresses(db: Path, kind: str, count: int, seed: int = 1) -> list[tuple[str, str]]:
    """(address, country) pairs the DB locates, spread over as many countries as it has.

    The test DB is tiny, so its own networks are sampled; a real DB is probed with random
    public addresses, capping each country's share so small countries are represented.
    """
    import ipaddress

    rng = random.Random(seed)
    if kind == "test":
        from tests.geodb import WORLD

        nets = [(ipaddress.ip_network(n), spec["country"]) for n, spec in WORLD.items()]
        out = []
        for _ in range(count):
            net, country = rng.choice(nets)
            offset = rng.randrange(1, min(net.num_addresses, 1 << 24) - 1)
            out.append((str(net.network_address + offset), country))
        return out
    return _probe_real_db(db, count, rng)


def _probe_real_db(db: Path, count: int, rng: random.Random) -> list[tuple[str, str]]:
    import ipaddress

    by_country: dict[str, list[str]] = {}
    per_country = max(20, count // 100)
    blocks = [ipaddress.ip_network(b) for b in V6_BLOCKS]
    with open_mmdb(db) as reader:
        for attempt in range(count * 40):
            if attempt % 8 == 0:
                block = rng.choice(blocks)
                address = block.network_address + rng.randrange(block.num_addresses)
            else:
                address = ipaddress.IPv4Address(rng.randrange(1 << 24, 224 << 24))
            if not address.is_global:
                continue
            record = reader.get(address)
            country = (record or {}).get("country", {}).get("iso_code")
            if not country:
                continue
            bucket = by_country.setdefault(country, [])
            if len(bucket) < per_country:
                bucket.append(str(address))
            if sum(map(len, by_country.values())) >= count:
                break
    out = [(a, c) for c, addrs in by_country.items() for a in addrs]
    rng.shuffle(out)
    return out


# -- query files ---------------------------------------------------------------------------


def write_binary_queries(path: Path, messages: Sequence[bytes]) -> Path:
    """dnsperf ``-B`` input: each query as a 2-byte length and the wire message."""
    with path.open("wb") as f:
        for wire in messages:
            f.write(len(wire).to_bytes(2, "big") + wire)
    return path


def make_query(name: str, qtype: str, ecs: str | None = None, prefix: int | None = None) -> bytes:
    """A resolver-like query: EDNS0, 1232-byte buffer, optional ECS with a /24 or /56."""
    import dns.edns
    import dns.message

    options = []
    if ecs is not None:
        bits = prefix if prefix is not None else (56 if ":" in ecs else 24)
        options.append(dns.edns.ECSOption(ecs, bits))
    query = dns.message.make_query(name, qtype, use_edns=0, payload=1232, options=options)
    query.flags &= ~0x0100  # RD off: we are the authority, a resolver asks non-recursively
    return query.to_wire()


GSLB_NAME = "content.example.com."
# (name, qtype, weight): the static mix; 'nx-*' names do not exist (NXDOMAIN).
STATIC_MIX = [
    ("example.com.", "A", 8), ("ns1.example.com.", "A", 6), ("mail.example.com.", "A", 6),
    ("origin.example.com.", "A", 10), ("origin.example.com.", "AAAA", 15),
    ("nx", "A", 14), ("nx", "AAAA", 6),
    ("mail.example.com.", "AAAA", 5), ("ns1.example.com.", "TXT", 5),
    ("example.com.", "SOA", 5),
    ("alias.example.com.", "A", 8), ("alias.example.com.", "CNAME", 7),
    ("example.com.", "MX", 3), ("example.com.", "TXT", 1), ("example.com.", "NS", 1),
]  # fmt: skip


def ecs_queries(db: Path, kind: str, count: int) -> tuple[list[bytes], dict[str, int]]:
    """content.example.com A, each with the ECS of a client in some country (5 % no ECS)."""
    clients = client_addresses(db, kind, count)
    countries: dict[str, int] = {}
    messages = []
    for address, country in clients:
        countries[country] = countries.get(country, 0) + 1
        messages.append(make_query(GSLB_NAME, "A", address))
    messages += [make_query(GSLB_NAME, "A") for _ in range(count // 20)]
    random.Random(2).shuffle(messages)
    return messages, countries


def wire_query(name: str, qtype: int, ecs: tuple[int, int, bytes] | None = None) -> bytes:
    """A resolver-like query built with struct (dnspython takes ~30 us a message; cache-hostile
    files hold hundreds of thousands): RD off, EDNS0 1232, optional ECS (family, source,
    address bytes)."""
    qname = b"".join(bytes((len(label),)) + label.encode() for label in name.strip(".").split("."))
    options = b""
    if ecs is not None:
        family, source, address = ecs
        payload = struct.pack("!HBB", family, source, 0) + address
        options = struct.pack("!HH", 8, len(payload)) + payload
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    return (struct.pack("!HHHHHH", random.getrandbits(16), 0, 1, 0, 0, 1) + qname + b"\x00"
            + struct.pack("!HH", qtype, 1) + opt)  # fmt: skip


def random_case(name: str, rng: random.Random) -> str:
    """0x20: each letter upper or lower case at random, as many resolvers send."""
    bits = rng.getrandbits(len(name))
    return "".join(c.upper() if bits >> i & 1 else c.lower() for i, c in enumerate(name))


def public_v4_24(rng: random.Random) -> bytes:
    """The first three bytes of a random public /24 (no private, loopback or test ranges)."""
    while True:
        first = rng.randrange(1, 224)
        if first not in (10, 100, 127, 169, 172, 192, 198, 203):
            return bytes((first, rng.randrange(256), rng.randrange(256)))


def global_v6_56(rng: random.Random) -> bytes:
    """The first seven bytes of a random /56 in 2000::/3."""
    return ((0x2 << 53) | rng.getrandbits(53)).to_bytes(7, "big")


HOSTILE_KINDS = ("geo", "geo6", "weighted", "static")


def hostile_queries(kind: str, count: int, seed: int = 7, name: str = GSLB_NAME) -> list[bytes]:
    """Queries that never repeat, as real resolver traffic and floods look: 0x20 names, each
    GSLB query with its own random public ECS (/24, or /56 with AAAA for ``geo6``), the static
    mix with a new random name for every NXDOMAIN."""
    rng = random.Random(seed)
    names = [(n, t) for n, t, w in STATIC_MIX for _ in range(w)]
    codes = {"A": 1, "AAAA": 28, "SOA": 6, "CNAME": 5, "MX": 15, "TXT": 16, "NS": 2}
    out = []
    for _ in range(count):
        if kind in ("geo", "weighted"):
            out.append(wire_query(random_case(name, rng), 1, (1, 24, public_v4_24(rng))))
        elif kind == "geo6":
            out.append(wire_query(random_case(name, rng), 28, (2, 56, global_v6_56(rng))))
        elif kind == "static":
            qname, qtype = rng.choice(names)
            if qname == "nx":
                qname = f"nx{rng.randrange(10**9)}.example.com."
            out.append(wire_query(random_case(qname, rng), codes[qtype]))
        else:
            raise ValueError(f"unknown cache-hostile kind {kind!r}")
    return out


def static_queries(count: int) -> list[bytes]:
    rng = random.Random(3)
    names = [(n, t) for n, t, w in STATIC_MIX for _ in range(w)]
    messages = []
    for _ in range(count):
        name, qtype = rng.choice(names)
        if name == "nx":
            name = f"nx{rng.randrange(10**6)}.example.com."
        messages.append(make_query(name, qtype))
    return messages


# -- dnsperf -------------------------------------------------------------------------------


@dataclass
class PerfResult:
    sent: int = 0
    completed: int = 0
    lost: int = 0
    qps: float = 0.0
    avg_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    stddev_ms: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    rcodes: dict[str, int] = field(default_factory=dict)
    run_seconds: float = 0.0


STAT_PATTERNS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "run_seconds": r"Run time \(s\):\s+([\d.]+)",
    "stddev_ms": r"Latency StdDev \(s\):\s+([\d.]+)",
}
AVG = re.compile(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)")
VERBOSE_LINE = re.compile(rb"^> (\w+) .* ([\d.]+)$")


def dnsperf(
    port: int, datafile: Path, workdir: Path, *, seconds: float, binary: bool = False,
    mode: str = "udp", clients: int = 4, qps: float | None = None, timeout: float = 2.0,
    verbose: bool = True,
) -> PerfResult:  # fmt: skip
    """Run dnsperf for ``seconds`` and parse its summary; ``verbose`` adds percentiles.

    dnsperf 2.10 has no latency histogram option, so percentiles come from ``-v``: one line
    per answered query with its latency, written to a file and read back.
    """
    out = workdir / f"dnsperf-{port}-{mode}-{int(time.time() * 1000)}.out"
    argv = [
        "dnsperf", "-s", LOOPBACK, "-p", str(port), "-d", str(datafile), "-m", mode,
        "-c", str(clients), "-l", str(seconds), "-t", str(timeout),
    ]  # fmt: skip
    if binary:
        argv.append("-B")
    if qps:
        argv += ["-Q", str(int(qps))]
    if verbose:
        argv.append("-v")
    with out.open("wb") as f:
        subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, timeout=seconds + 60, check=False)
    result = parse_dnsperf(out.read_bytes())
    out.unlink()
    return result


def parse_dnsperf(raw: bytes) -> PerfResult:
    latencies: list[float] = []
    summary: list[str] = []
    for line in raw.splitlines():
        match = VERBOSE_LINE.match(line) if line.startswith(b"> ") else None
        if match and match.group(1) != b"T":  # "T" marks a timed-out query
            latencies.append(float(match.group(2)))
        elif not line.startswith(b"> "):
            summary.append(line.decode(errors="replace"))
    text = "\n".join(summary)
    result = PerfResult()
    for name, pattern in STAT_PATTERNS.items():
        found = re.search(pattern, text)
        if found:
            value = float(found.group(1))
            setattr(result, name, int(value) if name in ("sent", "completed", "lost") else value)
    result.stddev_ms *= 1000
    found = AVG.search(text)
    if found:
        result.avg_ms, result.min_ms, result.max_ms = (float(x) * 1000 for x in found.groups())
    codes = re.search(r"Response codes:\s+(.+)", text)
    if codes:
        for part in codes.group(1).split(","):
            name, count, *_ = part.split()
            result.rcodes[name] = int(count)
    if latencies:
        result.p50_ms, result.p99_ms, result.p999_ms = percentiles(latencies, (50, 99, 99.9))
    if result.sent == 0:
        raise RuntimeError(f"dnsperf produced no summary:\n{text[-2000:]}")
    return result


def percentiles(values: list[float], points: Sequence[float]) -> list[float]:
    """Nearest-rank percentiles, in milliseconds."""
    ordered = sorted(values)
    out = []
    for point in points:
        rank = max(0, min(len(ordered) - 1, int(round(point / 100 * len(ordered))) - 1))
        out.append(round(ordered[rank] * 1000, 3))
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
