"""Zone loading and validation: every reason reported at once, each naming file, record, field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gslb.config import model
from gslb.config.load import SERIALS, load_config
from gslb.config.names import to_wire
from tests.conftest import write_zone

GOOD = """\
'':
  type: NS
  values: [ns1.example.com.]
www:
  type: A
  value: 192.0.2.1
"""


def errors_for(tmp_path: Path, text: str, name: str = "example.com") -> list[str]:
    write_zone(tmp_path, name, text)
    config, errors = load_config(tmp_path)
    assert config is None
    return errors


def test_octodns_file_loads_with_synthesized_soa(tmp_path):
    write_zone(tmp_path, "example.com", GOOD)
    config, errors = load_config(tmp_path)
    assert errors == []
    zone = config.zones[to_wire("example.com.")]
    soa = zone.soa.rdatas[0]
    assert str(soa.mname) == "ns1.example.com." and str(soa.rname) == "hostmaster.example.com."
    assert soa.times[1:] == (7200, 3600, 1209600, 300)


def test_synthesized_serial_increases_on_every_load(tmp_path):
    write_zone(tmp_path, "example.com", GOOD)
    serials = [next(iter(load_config(tmp_path)[0].zones.values())).serial for _ in range(3)]
    assert serials[0] < serials[1] < serials[2]
    assert SERIALS.last == serials[2]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("'':\n  type: CNAME\n  value: x.example.net.\n", "CNAME is not allowed at the zone apex"),
        (
            "www:\n  - type: CNAME\n    value: x.example.net.\n  - type: TXT\n    value: hi\n",
            'record "www": CNAME must be the only record at its name',
        ),
        ("www:\n  type: A\n  value: 300.1.2.3\n", 'invalid IPv4 address "300.1.2.3"'),
        ("www:\n  type: AAAA\n  value: 192.0.2.1\n", 'invalid IPv6 address "192.0.2.1"'),
        ("www:\n  type: A\n  ttl: -5\n  value: 192.0.2.1\n", 'TTL "-5" out of range'),
        ("www:\n  type: A\n  ttl: 2147483648\n  value: 192.0.2.1\n", "out of range"),
        ("www:\n  type: BOGUS\n  value: x\n", 'unknown type "BOGUS"'),
        (
            "www:\n  - type: A\n    value: 192.0.2.1\n  - type: A\n    value: 192.0.2.2\n",
            "duplicate A record",
        ),
        ("www:\n  type: A\n  values: [192.0.2.1, 192.0.2.1]\n", "duplicate value"),
        ("www:\n  type: CNAME\n  value: no-dot.example.net\n", "must end with a dot"),
        ("www:\n  type: A\n", "missing value"),
        ("www:\n  type: A\n  value: 192.0.2.1\n  tll: 30\n", "unknown key tll"),
        ("mx:\n  type: MX\n  value: {preference: 70000, exchange: m.example.com.}\n", "preference"),
        ("s:\n  type: SRV\n  value: {priority: 1, weight: 1, port: 1}\n", "missing target"),
        ("a.*.b:\n  type: A\n  value: 192.0.2.1\n", "wildcard must be the whole leftmost label"),
        ("www.:\n  type: A\n  value: 192.0.2.1\n", "names are relative to the zone"),
        ("www:\n  type: A\n  value: 192.0.2.1\n  gslb: {answers: 2}\n", "only applies to dynamic"),
    ],
)
def test_each_reason(tmp_path, text, reason):
    errors = errors_for(tmp_path, text)
    assert any(reason in e for e in errors), errors
    assert all(e.startswith(str(tmp_path / "example.com.yaml")) for e in errors)


def test_data_below_a_delegation_loads_with_a_warning(tmp_path):
    """octoDNS loads occluded data (its own unit.tests zone has NS below NS); it is never
    answered, and the warning says so."""
    text = "sub:\n  type: NS\n  value: ns.example.net.\nwww.sub:\n  type: TXT\n  value: hidden\n"
    write_zone(tmp_path, "example.com", text)
    config, errors = load_config(tmp_path)
    assert errors == []
    assert any(
        '"www.sub": below the delegation "sub": never answered' in w for w in config.warnings
    )


def test_every_reason_at_once(tmp_path):
    text = """\
'':
  type: CNAME
  value: x.example.net.
www:
  type: A
  value: 300.1.2.3
mail:
  type: A
  ttl: -1
  value: 192.0.2.1
odd:
  type: BOGUS
  value: 1
"""
    errors = errors_for(tmp_path, text)
    assert len(errors) == 4, errors
    assert '"www": value: invalid IPv4 address "300.1.2.3"' in errors[0] + errors[1] + errors[2]


def test_broken_yaml_names_line(tmp_path):
    errors = errors_for(tmp_path, "www:\n  type: A\n  value: [1, 2\n")
    assert len(errors) == 1 and "invalid YAML: line" in errors[0]


def test_yaml_bomb_refused(tmp_path):
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 9)}]")
    lines.append("www:\n  type: TXT\n  values: *i")  # 9**9 strings if expanded
    errors = errors_for(tmp_path, "\n".join(lines) + "\n")
    assert any("YAML bomb" in e for e in errors), errors


def test_deep_nesting_refused(tmp_path):
    errors = errors_for(tmp_path, "www: " + "[" * 5000 + "]" * 5000 + "\n")
    assert any("nested deeper" in e or "invalid YAML" in e for e in errors), errors


def test_zone_problems_in_several_files_all_reported(tmp_path):
    write_zone(tmp_path, "example.org", "www:\n  type: A\n  value: bad\n")
    errors = errors_for(tmp_path, "www:\n  type: AAAA\n  value: bad\n")
    assert len(errors) == 2 and {Path(e.split(":")[0]).name for e in errors} == {
        "example.com.yaml",
        "example.org.yaml",
    }


def test_empty_non_terminals_and_cuts_computed(tmp_path):
    write_zone(tmp_path, "example.com", GOOD + "a.b.c:\n  type: A\n  value: 192.0.2.2\n")
    zone = next(iter(load_config(tmp_path)[0].zones.values()))
    assert to_wire("b.c.example.com.") in zone.existing
    assert to_wire("c.example.com.") in zone.existing
    assert to_wire("x.example.com.") not in zone.existing
    assert model.A in zone.nodes[to_wire("a.b.c.example.com.")].rrsets


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gslb", *args], capture_output=True, text=True, timeout=60
    )


def test_check_command_passes_and_fails_listing_every_problem(tmp_path):
    good = tmp_path / "good"
    write_zone(good, "example.com", GOOD)
    result = run_cli("check", str(good))
    assert result.returncode == 0 and "ok: 1 zone(s)" in result.stdout
    bad = tmp_path / "bad"
    write_zone(bad, "example.com", "www:\n  type: A\n  value: 1.2.3\nx:\n  type: NOPE\n")
    result = run_cli("check", str(bad))
    assert result.returncode == 1
    assert "invalid IPv4 address" in result.stderr and 'unknown type "NOPE"' in result.stderr
    assert "2 problem(s) found" in result.stderr


def test_shipped_zones_pass_check():
    result = run_cli("check", "zones")
    assert result.returncode == 0, result.stderr


def test_demo_zone_passes_check_and_is_what_the_readme_walks_through():
    """`make demo` serves demo/zones: three CDNs weighted 50/30/20 in front of the origin,
    each probed on its loopback stand-in (ports 9081-9083) every second, down after 2
    failures and up after 2 successes."""
    result = run_cli("check", "demo/zones")
    assert result.returncode == 0, result.stderr
    config, errors = load_config(Path("demo/zones"))
    assert not errors
    (zone,) = config.zones.values()
    (record,) = [d for node in zone.nodes.values() for d in node.dynamic.values()]
    assert record.fqdn == "content.demo.example."
    targets = [t for pool in record.pools.values() for t in pool.targets]
    assert {t.value: t.weight for t in targets} == {
        "cdn-a.demo.test.": 50, "cdn-b.demo.test.": 30, "cdn-c.demo.test.": 20}  # fmt: skip
    specs = [config.checks[t.check] for t in targets]
    assert [(s.address, s.port) for s in specs] == [("127.0.0.1", p) for p in (9081, 9082, 9083)]
    assert all((s.interval, s.rise, s.fall) == (1, 2, 2) for s in specs)


def test_version_names_geoip_attribution():
    result = run_cli("--version")
    assert result.returncode == 0
    assert "gslb 0.1.0" in result.stdout and "DB-IP" in result.stdout


def test_serial_arithmetic_wraps_per_rfc1982():
    from gslb.config.load import serial_after

    assert serial_after(2, 1) and not serial_after(1, 2) and not serial_after(5, 5)
    assert serial_after(1, 2**32 - 1), "the serial may wrap around"
