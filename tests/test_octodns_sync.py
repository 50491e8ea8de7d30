"""octoDNS as the deployment tool: ``octodns-sync`` with octoDNS's own YamlProvider as the
target writes into gslb's zones directory, and a running gslb serves the change without a
restart (its zone watcher reloads). Both YamlProvider layouts: one file per zone, and split
directories. The README's "Deploying with octoDNS" section describes this same setup."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import dns.message
import dns.rdatatype

from tests.server import ServerThread, wait_until

CONFIG = """\
providers:
  config:
    class: octodns.provider.yaml.YamlProvider
    directory: {source}
    escaped_semicolons: true
  gslb:
    class: octodns.provider.yaml.YamlProvider
    directory: {zones}
    escaped_semicolons: true
    {split}
zones:
  example.com.:
    sources: [config]
    targets: [gslb]
"""

SOURCE = """\
'':
  - type: NS
    values: [ns1.example.com., ns2.example.com.]
  - type: ALIAS
    value: www.example.com.
pool:
  dynamic:
    pools:
      all:
        values:
        - value: 192.0.2.31
        - value: 192.0.2.32
        - value: 192.0.2.33
    rules:
    - pool: all
  octodns:
    gslb:
      answers: 2
  type: A
  value: 192.0.2.30
www:
  type: A
  values: [{www}]
"""

HTTPS = """\
www-https:
  type: HTTPS
  value:
    svcparams: {alpn: [h3, h2], ipv4hint: [192.0.2.20]}
    svcpriority: 1
    targetname: www.example.com.
"""


NORTH_OF_THE_POLE = """\
zpole:
  type: LOC
  value:
    altitude: 0
    lat_degrees: 90
    lat_direction: N
    lat_minutes: 0
    lat_seconds: 1
    long_degrees: 0
    long_direction: E
    long_minutes: 0
    long_seconds: 0
    precision_horz: 0
    precision_vert: 0
    size: 0
"""


def sync(config: Path) -> None:
    """One ``octodns-sync --doit`` run, as an operator (or CI) would run it."""
    command = [str(Path(sys.executable).with_name("octodns-sync")),
               f"--config-file={config}", "--doit"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def addresses(server: ServerThread, name: str, rtype: str = "A") -> set[str]:
    reply = server.udp(dns.message.make_query(name, rtype))
    code = dns.rdatatype.from_text(rtype)
    return {r.to_text() for rrset in reply.answer if rrset.rdtype == code for r in rrset}


def setup(tmp_path: Path, split: bool) -> tuple[Path, Path, Path]:
    source, zones = tmp_path / "config", tmp_path / "zones"
    source.mkdir()
    zones.mkdir()
    (source / "example.com.yaml").write_text(SOURCE.format(www="192.0.2.10"))
    config = tmp_path / "octodns.yaml"
    extension = "split_extension: ." if split else ""
    config.write_text(CONFIG.format(source=source, zones=zones, split=extension))
    return source, zones, config


def test_octodns_sync_into_gslb_zones_is_served_without_restart(tmp_path, geo_db):
    run_workflow(tmp_path, geo_db, split=False)
    assert (tmp_path / "zones" / "example.com.yaml").is_file()


def test_octodns_sync_with_split_directories(tmp_path, geo_db):
    run_workflow(tmp_path, geo_db, split=True)
    assert (tmp_path / "zones" / "example.com." / "www.yaml").is_file()


def run_workflow(tmp_path: Path, geo_db: Path, split: bool) -> None:
    source, zones, config = setup(tmp_path, split)
    sync(config)  # the first deployment writes the zone gslb starts from
    with ServerThread(zones, geo_db, watch_interval=0.05) as server:
        assert addresses(server, "www.example.com") == {"192.0.2.10"}
        assert addresses(server, "example.com") == {"192.0.2.10"}  # ALIAS at the apex
        # a dynamic record's gslb block survives octodns-sync as octodns.gslb
        pool = addresses(server, "pool.example.com")
        assert len(pool) == 2 and pool < {"192.0.2.31", "192.0.2.32", "192.0.2.33"}
        serial = server.app.config.zones[b"\x07example\x03com\x00"].serial

        text = SOURCE.format(www="192.0.2.11, 192.0.2.12") + HTTPS
        (source / "example.com.yaml").write_text(textwrap.dedent(text))
        sync(config)

        want = {"192.0.2.11", "192.0.2.12"}
        wait_until(lambda: addresses(server, "www.example.com") == want, timeout=15,
                   what="the synced change to be served")  # fmt: skip
        assert addresses(server, "example.com") == want
        assert addresses(server, "www-https.example.com", "HTTPS") == {
            '1 www.example.com. alpn="h3,h2" ipv4hint="192.0.2.20"'
        }
        zone = server.app.config.zones[b"\x07example\x03com\x00"]
        assert zone.serial > serial  # secondaries and caches see a new serial
        assert server.app.last_reload is not None and server.app.last_reload.ok

        # octoDNS accepts a location north of the pole (it checks each field alone); gslb
        # refuses the synced zone, says why, and keeps serving the last good one
        (source / "example.com.yaml").write_text(textwrap.dedent(text) + NORTH_OF_THE_POLE)
        sync(config)
        wait_until(lambda: not server.app.last_reload.ok, timeout=15,
                   what="the refused sync to be reported")  # fmt: skip
        assert any('record "zpole"' in e and "beyond 90" in e
                   for e in server.app.last_reload.errors)  # fmt: skip
        assert addresses(server, "www.example.com") == want
