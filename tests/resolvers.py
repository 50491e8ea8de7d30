"""Real validating resolvers on loopback for DNSSEC tests: Unbound and Knot Resolver from
Debian (installed by ``make test-dnssec``), each with a trust anchor for the test zone and
configured to query nothing but the gslb server on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import pytest


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now (the daemon binds it next)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


UNBOUND_CONF = """\
server:
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  val-log-level: 2
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  outgoing-interface: 127.0.0.1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "validator iterator"
  use-caps-for-id: yes
  qname-minimisation: no
  trust-anchor: "{ds}"
stub-zone:
  name: "{zone}"
  stub-addr: 127.0.0.1@{upstream}
"""

KRESD_CONF = """\
net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})
net.ipv6 = false
trust_anchors.remove('.')
trust_anchors.add('{ds}')
modules.load('policy')
policy.add(policy.suffix(policy.FORWARD({{'127.0.0.1@{upstream}'}}), {{todname('{zone}')}}))
policy.add(policy.all(policy.REFUSE))
"""


class Resolver:
    """One resolver daemon in the foreground, its log kept for failure messages."""

    def __init__(self, kind: str, directory: Path, zone: str, ds: str, upstream: int) -> None:
        self.kind = kind
        self.directory = directory
        self.port = free_port()
        values = {"dir": directory, "port": self.port, "zone": zone, "ds": ds,
                  "upstream": upstream}  # fmt: skip
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / f"{kind}.log"
        if kind == "unbound":
            conf = directory / "unbound.conf"
            conf.write_text(UNBOUND_CONF.format(**values))
            command = ["unbound", "-d", "-c", str(conf)]
        else:
            conf = directory / "kresd.conf"
            conf.write_text(KRESD_CONF.format(**values))
            command = ["kresd", "-n", "-c", str(conf), str(directory)]
        self.process = subprocess.Popen(
            command, stdout=self.log.open("wb"), stderr=subprocess.STDOUT
        )
        self.wait_ready(zone)

    def wait_ready(self, zone: str, timeout: float = 20.0) -> None:
        """The daemon answers once it has bound its port (polled: no event to await)."""
        deadline = time.monotonic() + timeout
        probe = dns.message.make_query("ready.invalid.", "A")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
            try:
                dns.query.udp(probe, "127.0.0.1", port=self.port, timeout=0.2)
                return
            except (dns.exception.Timeout, OSError):
                continue
        pytest.fail(f"{self.kind} did not answer within {timeout} s: {self.log.read_text()}")

    def ask(self, name: str, rdtype: str, ednsflags: int = 0) -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, want_dnssec=True, payload=1232,
                                       ednsflags=ednsflags)  # fmt: skip
        return dns.query.udp(query, "127.0.0.1", port=self.port, timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
