"""``make demo`` end to end: demo/run.py with its stand-in CDNs and gslb, on free ports, driven
by demo/ctl.py as the walk-through in demo/README.md drives it (a CDN fails its checks and
leaves the answers, comes back), then stopped the way a terminal stops it."""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.query
import pytest

from tests.server import wait_until

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
NAME = "content.demo.example."


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports free for TCP and UDP on 127.0.0.1."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    sock = socket.socket(socket.AF_INET, kind)
                    sockets.append(sock)
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no free ports")


def cdns(dns_port: int, count: int = 20) -> set[str]:
    """The CDN names the answers' CNAMEs point at, over ``count`` queries."""
    seen = set()
    for _ in range(count):
        reply = dns.query.udp(dns.message.make_query(NAME, "A"), "127.0.0.1", port=dns_port,
                              timeout=2)  # fmt: skip
        seen.update(rr.to_text() for rrset in reply.answer for rr in rrset if rrset.rdtype == 5)
    return seen


def test_the_demo_walk_through_runs_on_any_ports(tmp_path):
    base = free_ports(6)  # DNS, HTTP, origin, cdn-a, cdn-b, cdn-c
    dns_port, http_port, edge_port = base, base + 1, base + 2
    ports = ["--dns-port", str(dns_port), "--http-port", str(http_port),
             "--edge-port", str(edge_port)]  # fmt: skip
    log = (tmp_path / "demo.log").open("w+")
    argv = [sys.executable, "demo/run.py", "--users", "0", *ports]
    demo = subprocess.Popen(
        argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )

    def ctl(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "demo/ctl.py", *ports, *command], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    try:
        wait_until(lambda: "Ctrl-C here stops everything" in (tmp_path / "demo.log").read_text(),
                   timeout=60, what="the demo's instructions")  # fmt: skip
        text = (tmp_path / "demo.log").read_text()
        assert f"--edge-port {edge_port}" in text and f"127.0.0.1:{edge_port + 1}/down" in text
        assert "cdn-a.demo.test." in cdns(dns_port, 40)
        assert ctl("down", "cdn-a").returncode == 0
        wait_until(lambda: "cdn-a.demo.test." not in cdns(dns_port), timeout=20,
                   what="cdn-a leaving the answers")  # fmt: skip
        status = ctl("status")
        assert status.returncode == 0 and f"127.0.0.1:{edge_port + 1}" in status.stdout
        assert ctl("up", "cdn-a").returncode == 0
        wait_until(lambda: "cdn-a.demo.test." in cdns(dns_port, 40), timeout=20,
                   what="cdn-a back")  # fmt: skip
    finally:
        demo.send_signal(signal.SIGTERM)  # as `timeout` or `kill` would; Ctrl-C likewise
        rc = demo.wait(30)
        log.close()
    assert rc == 0
    assert "[demo] stopped" in (tmp_path / "demo.log").read_text()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", dns_port))  # gslb is gone with the demo


def test_moved_stand_ins_are_probed_where_they_listen(tmp_path):
    """Ports are mapped in one pass: moving the stand-ins by one (9081..9084) must not chain
    9080 -> 9081 -> 9082 ..."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_run", ROOT / "demo" / "run.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.move(5301, 9054, 9081)
    text = (demo.zones_dir(tmp_path) / "demo.example.yaml").read_text()
    ports = [int(p) for p in re.findall(r"port: (\d+)", text)]
    assert sorted(ports) == [9081, 9082, 9083, 9084]
