"""Shared fixtures: zone directories written per test, and a real server on loopback."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.edges import EdgeThread
from tests.geodb import WORLD, write_test_db
from tests.server import ServerThread

# The apex every small test zone starts with: one NS and its address.
ZONE_HEAD = """\
'':
  type: NS
  value: ns1.example.com.
ns1:
  type: A
  value: 192.0.2.53
"""

CORE_ZONE = """\
'':
  - type: SOA
    ttl: 3600
    value:
      mname: ns1.example.com.
      rname: hostmaster.example.com.
      serial: 2026112101
      refresh: 7200
      retry: 3600
      expire: 1209600
      minimum: 300
  - type: NS
    ttl: 86400
    values: [ns1.example.com., ns2.example.com.]
  - type: MX
    values:
      - {preference: 10, exchange: mail.example.com.}
  - type: TXT
    values:
      - v=spf1 -all
      - "key=value\\\\; second part"
  - type: CAA
    value: {flags: 0, tag: issue, value: letsencrypt.org}
ns1:
  type: A
  value: 192.0.2.53
ns2:
  type: AAAA
  value: 2001:db8::53
www:
  type: A
  ttl: 300
  values: [192.0.2.1, 192.0.2.2]
alias:
  type: CNAME
  value: www.example.com.
external:
  type: CNAME
  value: cdn.example.net.
a.b.c:
  type: A
  value: 192.0.2.3
'*.wild':
  - type: A
    value: 192.0.2.4
  - type: TXT
    value: wildcard
exists.wild:
  type: AAAA
  value: 2001:db8::4
_sip._tcp:
  type: SRV
  value: {priority: 10, weight: 5, port: 5060, target: sip.example.com.}
long:
  type: TXT
  value: LONGTEXT
many:
  type: A
  values: MANY
sub:
  type: NS
  values: [ns1.sub.example.com., ns.elsewhere.net.]
ns1.sub:
  type: A
  value: 192.0.2.99
ptr:
  type: PTR
  value: host.example.com.
"""


def core_zone_text() -> str:
    many = "[" + ", ".join(f"198.51.100.{i}" for i in range(1, 101)) + "]"
    return CORE_ZONE.replace("LONGTEXT", "x" * 600).replace("MANY", many)


def write_zone(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="session")
def geo_db(tmp_path_factory) -> Path:
    return write_test_db(tmp_path_factory.mktemp("geo") / "world.mmdb", WORLD)


@pytest.fixture(scope="module")
def core_server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", core_zone_text())
    write_zone(zones, "sub2.example.com", "'':\n  type: NS\n  value: ns1.example.com.\n")
    with ServerThread(zones, geo_db) as server:
        yield server


@pytest.fixture(scope="module")
def edge_thread():
    """A controllable local HTTP edge on its own loop thread (tests.edges.EdgeThread)."""
    edge = EdgeThread()
    yield edge
    edge.stop()
