"""``make demo``: gslb in front of three fake CDNs and an origin, all on this machine.

Starts four small HTTP servers on 127.0.0.1 (cdn-a 9081, cdn-b 9082, cdn-c 9083, origin 9080)
and ``gslb serve`` on 127.0.0.1:5300 (DNS) and 127.0.0.1:9053 (HTTP) with demo/zones, then
prints what to try. ``--dns-port``, ``--http-port`` and ``--edge-port`` (the origin's; the
CDNs take the next three) move it beside another gslb; demo/zones is then served from a
copy with the stand-ins' ports. Each fake CDN answers ``GET /health`` with 200, or 503 after
``POST /down`` (``POST /up`` heals it), so the health checks see a CDN fail without anything
being killed. Nothing leaves loopback; Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
ZONES = ROOT / "demo" / "zones"
EDGES = {"origin": 9080, "cdn-a": 9081, "cdn-b": 9082, "cdn-c": 9083}
DNS, HTTP = ("127.0.0.1", 5300), ("127.0.0.1", 9053)
EDGE_PORT = EDGES["origin"]  # the CDNs' stand-ins take the next three ports
TOKEN = "demo"
NAME = "content.demo.example"
USERS = 20.0  # queries a second from stand-in users, so the status page has traffic to show


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--geoip", help="GeoIP DB (default: the shipped one, else a tiny test DB)")
    parser.add_argument("--users", type=float, default=USERS, metavar="QPS",
                        help=f"stand-in users' queries per second (default {USERS:g}; 0: none)")
    parser.add_argument("--dns-port", type=int, default=DNS[1], metavar="PORT")
    parser.add_argument("--http-port", type=int, default=HTTP[1], metavar="PORT")
    parser.add_argument("--edge-port", type=int, default=EDGE_PORT, metavar="PORT",
                        help=f"the origin's stand-in (default {EDGE_PORT}); cdn-a, cdn-b and "
                        "cdn-c take the next three")  # fmt: skip
    args = parser.parse_args()
    if (args.dns_port, args.http_port, args.edge_port) != (DNS[1], HTTP[1], EDGE_PORT):
        move(args.dns_port, args.http_port, args.edge_port)
    return args


def move(dns_port: int, http_port: int, edge_port: int) -> None:
    """Run the demo on other ports (the constants every part of this script reads)."""
    global DNS, HTTP
    DNS, HTTP = (DNS[0], dns_port), (HTTP[0], http_port)
    for offset, name in enumerate(EDGES):
        EDGES[name] = edge_port + offset


def zones_dir(workdir: Path) -> Path:
    """demo/zones, or a copy in ``workdir`` whose checks probe the moved stand-ins."""
    if EDGES["origin"] == EDGE_PORT:
        return ZONES
    text = (ZONES / "demo.example.yaml").read_text()
    moved = {EDGE_PORT + offset: port for offset, port in enumerate(EDGES.values())}
    text = re.sub(r"port: (\d+)", lambda m: f"port: {moved.get(int(m[1]), int(m[1]))}", text)
    copy = workdir / "zones"
    copy.mkdir()
    (copy / "demo.example.yaml").write_text(text)
    return copy


class FakeEdge:
    """One stand-in CDN (or origin): /health is 200 or 503; POST /down and /up switch it."""

    def __init__(self, name: str, port: int) -> None:
        self.name, self.port, self.up = name, port, True
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/", self.index)
        app.router.add_post("/down", self.switch)
        app.router.add_post("/up", self.switch)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def health(self, request: web.Request) -> web.Response:
        if self.up:
            return web.Response(text=f"ok {self.name}\n")
        return web.Response(status=503, text=f"{self.name} is down\n")

    async def index(self, request: web.Request) -> web.Response:
        host = request.headers.get("Host", "")
        return web.Response(text=f"hello from {self.name} (Host: {host})\n")

    async def switch(self, request: web.Request) -> web.Response:
        self.up = request.path == "/up"
        state = "up" if self.up else "DOWN (503 on /health)"
        print(f"[demo] {self.name} is now {state}", flush=True)
        return web.Response(text=f"{self.name} {'up' if self.up else 'down'}\n")


def geoip_path(given: str | None, workdir: Path) -> Path:
    """The shipped DB when present; else a tiny generated one (geo rules are not in the demo)."""
    if given:
        return Path(given)
    sys.path.insert(0, str(ROOT))
    from gslb.geo import default_db_path

    default = default_db_path()
    if default.is_file():
        return default
    from tests.geodb import write_world_db

    return write_world_db(workdir)


def gslb_argv(geoip: Path, token_file: Path, zones: Path) -> list[str]:
    argv = [
        sys.executable, "-m", "gslb", "serve", "--zones", str(zones),
        "--dns", f"{DNS[0]}:{DNS[1]}", "--http", f"{HTTP[0]}:{HTTP[1]}",
        "--geoip", str(geoip), "--admin-token-file", str(token_file),
    ]  # fmt: skip
    if os.geteuid() == 0 and allows_root():
        argv.append("--allow-root")  # a demo on loopback; a real server takes --user
    return argv


def allows_root() -> bool:
    help_text = subprocess.run([sys.executable, "-m", "gslb", "serve", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    return "--allow-root" in help_text


def wait_ready(process: subprocess.Popen, timeout: float = 60.0) -> None:
    url = f"http://{HTTP[0]}:{HTTP[1]}/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gslb stopped during start-up (see its messages above)")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"gslb not ready after {timeout:.0f} s")


def instructions() -> str:
    admin = f"curl -X POST -H 'Authorization: Bearer {TOKEN}' {HTTP[0]}:{HTTP[1]}/admin/targets"
    ctl = "python demo/ctl.py"
    if (DNS[1], HTTP[1], EDGES["origin"]) != (5300, 9053, EDGE_PORT):
        ctl += f" --dns-port {DNS[1]} --http-port {HTTP[1]} --edge-port {EDGES['origin']}"
    a, b, c = EDGES["cdn-a"], EDGES["cdn-b"], EDGES["cdn-c"]
    return f"""
gslb answers for {NAME} on {DNS[0]} port {DNS[1]} (HTTP on port {HTTP[1]}). In another terminal:

  dig @{DNS[0]} -p {DNS[1]} {NAME} +short   # repeat: cdn-a 50 %, cdn-b 30 %, cdn-c 20 %
  {ctl} watch       # the same twice a second, if dig is not installed

  {ctl} down cdn-a            # cdn-a fails its checks: gone within ~2 s
  {ctl} down cdn-b cdn-c      # every CDN down: origin.demo.example.
  {ctl} up cdn-a cdn-b cdn-c  # all back within ~2 s
  (or curl -X POST 127.0.0.1:{a}/down and /up; cdn-b is port {b}, cdn-c {c})

  open http://{HTTP[0]}:{HTTP[1]}/  # the status page: shares per CDN, health, transitions

  {ctl} status      # every check's state (JSON: curl -s {HTTP[0]}:{HTTP[1]}/status)
  {admin}/http://127.0.0.1:{b}/health/drain
  {admin}/http://127.0.0.1:{b}/health/obey
                                 # an operator drains cdn-b, then hands it back to the probes

Ctrl-C here stops everything.
"""


async def serve(args: argparse.Namespace) -> None:
    edges = [FakeEdge(name, port) for name, port in EDGES.items()]
    process, traffic = None, None
    with tempfile.TemporaryDirectory(prefix="gslb-demo-") as tmp:
        token = Path(tmp) / "admin-token"
        token.write_text(TOKEN + "\n")
        token.chmod(0o600)
        try:
            for edge in edges:
                await edge.start()
            argv = gslb_argv(geoip_path(args.geoip, Path(tmp)), token, zones_dir(Path(tmp)))
            process = subprocess.Popen(argv, cwd=ROOT, start_new_session=True)
            await asyncio.to_thread(wait_ready, process)
            if args.users > 0:
                traffic = asyncio.create_task(users(args.users), name="demo-users")
            print(instructions(), flush=True)
            while process.poll() is None:
                await asyncio.sleep(0.5)
            print("[demo] gslb exited", flush=True)
        finally:
            if traffic is not None:
                traffic.cancel()
                await asyncio.gather(traffic, return_exceptions=True)
            if process is not None:
                stop_group(process)
            for edge in edges:
                await edge.stop()


async def users(rate: float) -> None:
    """Stand-in users asking for NAME ``rate`` times a second over UDP (replies ignored), so
    the status page shows the CDNs sharing traffic. Loopback only; stops with the demo."""
    from dnslib import DNSRecord

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=DNS)
    try:
        while True:
            transport.sendto(DNSRecord.question(NAME).pack())
            await asyncio.sleep(1 / rate)
    finally:
        transport.close()


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM gslb, which stops its workers; SIGKILL the group if anything lingers."""
    process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def check_ports_free() -> None:
    """Refuse to start beside another gslb: its /readyz would answer for ours."""
    for kind, (host, port) in ((socket.SOCK_DGRAM, DNS), (socket.SOCK_STREAM, DNS),
                               (socket.SOCK_STREAM, HTTP)):  # fmt: skip
        with socket.socket(socket.AF_INET, kind) as sock:
            if kind == socket.SOCK_STREAM:  # a listener refuses it; TIME_WAIT leftovers do not
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))  # OSError when taken: main() says which ports


def interrupt(signum: int, frame: object) -> None:
    """SIGTERM (``timeout``, ``kill``) stops the demo like Ctrl-C: gslb and the edges too."""
    raise KeyboardInterrupt


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, interrupt)
    try:
        check_ports_free()
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        print("\n[demo] stopped", flush=True)
    except OSError as exc:
        print(f"[demo] cannot start: {exc} (ports {sorted(EDGES.values())}, {DNS[1]} and "
              f"{HTTP[1]} must be free on 127.0.0.1)", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
