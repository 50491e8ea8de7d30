"""octoDNS's own files and conventions: its unit.tests zone, split zone directories, the
``octodns:`` record keys, URLFWD and the legacy ``geo`` block."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from gslb.config.load import load_config
from gslb.config.names import to_wire
from tests.conftest import write_zone
from tests.server import ServerThread

DATA = Path(__file__).parent / "data" / "octodns"


def test_octodns_unit_tests_zone_passes_gslb_check(tmp_path):
    shutil.copy(DATA / "unit.tests.yaml", tmp_path)
    done = subprocess.run([sys.executable, "-m", "gslb", "check", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ok: 1 zone(s): unit.tests." in done.stdout
    warned = done.stderr
    assert 'record "urlfwd": URLFWD' in warned and "skipped" in warned
    assert "geo is octoDNS's deprecated GeoDNS block" in warned
    assert 'record "ignored": octodns.ignored' in warned


@pytest.fixture(scope="module")
def unit_tests_server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("unit")
    shutil.copy(DATA / "unit.tests.yaml", zones)
    with ServerThread(zones, geo_db) as running:
        yield running


@pytest.mark.parametrize(
    ("name", "rtype", "expected"),
    [
        ("unit.tests", "A", {"1.2.3.4", "1.2.3.5"}),  # geo ignored: the record's own values
        (
            "unit.tests",
            "SSHFP",
            {
                "1 1 bf6b6825d2977c511a475bbefb88aad54a92ac73",
                "1 1 7491973e5f8b39d5327cd4e08bc81b05f7710b49",
            },
        ),
        ("dname.unit.tests", "DNAME", {"unit.tests."}),
        (
            "loc.unit.tests",
            "LOC",
            {
                "31 58 52.100 S 115 49 11.700 E 20.00m 10.00m 10.00m 2.00m",
                "53 13 10.000 N 2 18 26.000 W 20.00m 10.00m 1000.00m 2.00m",
            },
        ),
        (
            "naptr.unit.tests",
            "NAPTR",
            {
                '100 100 "U" "SIP+D2U" "!^.*$!sip:info@bar.example.com!" .',
                '10 100 "S" "SIP+D2U" "!^.*$!sip:info@bar.example.com!" .',
            },
        ),
        ("spf.unit.tests", "SPF", {'"v=spf1 ip4:192.168.0.1/16-all"'}),
        (
            "txt.unit.tests",
            "TXT",
            {
                '"Bah bah black sheep"',
                '"have you any wool."',
                '"v=DKIM1;k=rsa;s=email;h=sha256;p=A/kinda+of/long/string+with+numb3rs"',
            },
        ),
        ("ignored.unit.tests", "A", {"9.9.9.9"}),
    ],  # fmt: skip
)
def test_unit_tests_zone_is_served(unit_tests_server, name, rtype, expected):
    reply = unit_tests_server.tcp(dns.message.make_query(name, rtype))
    assert reply.rcode() == dns.rcode.NOERROR
    assert {rdata.to_text() for rrset in reply.answer for rdata in rrset} == expected


def test_urlfwd_is_not_served(unit_tests_server):
    reply = unit_tests_server.udp(dns.message.make_query("urlfwd.unit.tests", "TXT"))
    assert reply.rcode() == dns.rcode.NXDOMAIN  # skipped: the name holds nothing else


def test_split_zone_directory_loads_like_octodns(tmp_path):
    """YamlProvider ``split_extension: .``: a ``<zone>.`` directory, one file per record, the
    apex in ``$<zone>.yaml``; merged with a ``<zone>.yaml`` when both exist."""
    split = tmp_path / "example.com."
    split.mkdir()
    (split / "$example.com.yaml").write_text("'':\n  type: NS\n  values: [ns1.example.com.]\n")
    (split / "www.yaml").write_text("www:\n  type: A\n  value: 192.0.2.1\n")
    (split / "notes.txt").write_text("not a record file")
    write_zone(tmp_path, "example.com", "www:\n  type: AAAA\n  value: 2001:db8::1\n")
    config, errors = load_config(tmp_path)
    assert errors == []
    zone = config.zones[to_wire("example.com.")]
    assert set(zone.nodes[to_wire("www.example.com.")].rrsets) == {1, 28}
    assert str(zone.soa.rdatas[0].mname) == "ns1.example.com."


def test_split_zone_duplicate_record_across_files_is_an_error(tmp_path):
    split = tmp_path / "example.com."
    split.mkdir()
    (split / "a.yaml").write_text("www:\n  type: A\n  value: 192.0.2.1\n")
    (split / "b.yaml").write_text("www:\n  type: A\n  value: 192.0.2.2\n")
    config, errors = load_config(tmp_path)
    assert config is None
    assert any(e.startswith(str(split / "b.yaml")) and "duplicate A record" in e for e in errors)


def test_split_zone_edit_is_picked_up_by_the_watcher(tmp_path, geo_db):
    split = tmp_path / "example.com."
    split.mkdir()
    (split / "$example.com.yaml").write_text("'':\n  type: NS\n  values: [ns1.example.com.]\n")
    record = split / "www.yaml"
    record.write_text("www:\n  type: A\n  value: 192.0.2.1\n")
    with ServerThread(tmp_path, geo_db, watch_interval=0.05) as server:
        reloads = server.app.metrics  # noqa: F841  (kept alive with the server)
        record.write_text("www:\n  type: A\n  value: 192.0.2.99\n")
        from tests.server import wait_until

        def answer():
            reply = server.udp(dns.message.make_query("www.example.com", "A"))
            return {r.to_text() for rrset in reply.answer for r in rrset} == {"192.0.2.99"}

        wait_until(answer, timeout=10, what="the edited split record file to be served")


@pytest.mark.parametrize(
    ("octodns", "needle"),
    [
        ("{excluded: [route53]}", "octodns.excluded [route53]"),
        ("{included: [gslb, ns1]}", "octodns.included [gslb, ns1]"),
        ("{ignored: true}", "octodns.ignored"),
        ("{route53: {healthcheck: {measure_latency: false}}}", None),  # another provider's key
        ("{healthcheck: {protocol: HTTPS, path: /x}}", None),
    ],
)
def test_octodns_keys_are_never_unknown(tmp_path, octodns, needle):
    write_zone(tmp_path, "example.com",
               f"www:\n  type: A\n  value: 192.0.2.1\n  octodns: {octodns}\n")  # fmt: skip
    config, errors = load_config(tmp_path)
    assert errors == []
    assert bool(needle) == any(needle in w for w in config.warnings if needle), config.warnings


def test_octodns_lenient_turns_the_records_problems_into_warnings(tmp_path):
    text = """\
sip:
  type: SRV
  octodns: {lenient: true}
  value: {priority: 1, weight: 1, port: 5060, target: sip.example.com.}
strict:
  type: SRV
  value: {priority: 1, weight: 1, port: 5060, target: sip.example.com.}
"""
    write_zone(tmp_path, "example.com", text)
    config, errors = load_config(tmp_path)
    assert config is None and len(errors) == 1 and 'record "strict"' in errors[0]
    text = text.split("strict:")[0]
    write_zone(tmp_path, "example.com", text)
    config, errors = load_config(tmp_path)
    assert errors == []
    assert any("invalid name for SRV" in w and "octodns.lenient" in w for w in config.warnings)
    assert 33 in config.zones[to_wire("example.com.")].nodes[to_wire("sip.example.com.")].rrsets


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "www:\n  type: A\n  value: 192.0.2.1\n  octodns: {ignored: maybe}\n",
            "octodns.ignored must be true or false",
        ),
        (
            "www:\n  type: A\n  value: 192.0.2.1\n  octodns: {excluded: route53}\n",
            "octodns.excluded must be a list",
        ),
        (
            "www:\n  type: A\n  value: 192.0.2.1\n  octodns: {healthcheck: {protocol: FTP}}\n",
            "invalid healthcheck protocol",
        ),
        (
            "www:\n  type: A\n  value: 192.0.2.1\n  geo: {EUROPE: [192.0.2.2]}\n",
            'invalid geo "EUROPE"',
        ),
        (
            "www:\n  type: A\n  value: 192.0.2.1\n  geo: {EU: [300.0.0.1]}\n",
            'geo EU: invalid IPv4 address "300.0.0.1"',
        ),
        (
            "u:\n  type: URLFWD\n  value: {code: 307, masking: 2, query: 0, path: /, target: x}\n",
            'unrecognized code "307"',
        ),
    ],  # fmt: skip
)
def test_octodns_conventions_refuse_what_octodns_refuses(tmp_path, text, reason):
    write_zone(tmp_path, "example.com", text)
    config, errors = load_config(tmp_path)
    assert config is None and any(reason in e for e in errors), errors


def test_unicode_names_are_idna_encoded_as_octodns_does(tmp_path):
    """YamlProvider writes names in UTF-8; octoDNS pushes them IDNA-encoded, and so do we."""
    write_zone(tmp_path, "bücher.test",
               "straße:\n  type: CNAME\n  value: www.bücher.test.\n")  # fmt: skip
    config, errors = load_config(tmp_path)
    assert errors == []
    zone = config.zones[to_wire("xn--bcher-kva.test.")]
    assert zone.fqdn == "xn--bcher-kva.test."
    node = zone.nodes[to_wire("xn--strae-oqa.xn--bcher-kva.test.")]
    assert str(node.rrsets[5].rdatas[0].label) == "www.xn--bcher-kva.test."


def test_warnings_are_counted_in_metrics_and_listed_in_status(unit_tests_server):
    import json
    import urllib.request

    with urllib.request.urlopen(unit_tests_server.url("/metrics"), timeout=5) as response:
        metrics = response.read().decode()
    with urllib.request.urlopen(unit_tests_server.url("/status"), timeout=5) as response:
        status = json.loads(response.read())
    listed = status["config"]["warnings"]
    assert any("URLFWD" in w for w in listed)
    assert f"gslb_config_warnings {float(len(listed))}" in metrics


def test_split_extension_is_configurable(tmp_path):
    """YamlProvider's split_extension is any suffix (octoDNS's own split fixtures use .tst);
    '' reads zone files only, as YamlProvider's default (null) does."""
    split = tmp_path / "example.com.tst"
    split.mkdir()
    (split / "$example.com.yaml").write_text("'':\n  type: NS\n  values: [ns1.example.com.]\n")
    (split / "www.yaml").write_text("www:\n  type: A\n  value: 192.0.2.1\n")
    config, errors = load_config(tmp_path, ".tst")
    assert errors == [] and list(config.zones) == [to_wire("example.com.")]
    check = [sys.executable, "-m", "gslb", "check", str(tmp_path)]
    done = subprocess.run([*check, "--split-extension", ".tst"], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "example.com." in done.stdout
    done = subprocess.run([*check, "--split-extension", ""], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1 and "no zone files" in done.stderr


def test_check_shows_warnings_next_to_problems(tmp_path):
    text = "u:\n  type: URLFWD\n  value: {code: 301, masking: 2, query: 0, path: /, target: x}\n"
    write_zone(tmp_path, "example.com", text + "www:\n  type: A\n  value: 300.0.0.1\n")
    done = subprocess.run([sys.executable, "-m", "gslb", "check", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "warning: " in done.stderr and 'record "u": URLFWD' in done.stderr
    assert "1 problem(s) found" in done.stderr


DYNAMIC = """\
content:
  type: CNAME
  value: origin.example.com.
  dynamic:
    pools:
      a: {values: [{value: a.cdn.example.net.}]}
    rules:
      - pool: a
"""


def test_gslb_block_may_live_under_octodns_where_octodns_sync_keeps_it(tmp_path):
    write_zone(tmp_path, "example.com", DYNAMIC + "  octodns: {gslb: {answers: 1, sticky: true}}\n")
    config, errors = load_config(tmp_path)
    assert errors == []
    record = config.zones[to_wire("example.com.")].nodes[to_wire("content.example.com.")]
    assert record.dynamic[5].options.sticky is True


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("  gslb: {answers: 1}\n  octodns: {gslb: {sticky: true}}\n", "give the gslb block once"),
        ("  octodns: {gslb: {bogus: 1}}\n", "gslb: unknown key"),
    ],
)
def test_gslb_block_under_octodns_is_checked_the_same(tmp_path, extra, reason):
    write_zone(tmp_path, "example.com", DYNAMIC + extra)
    config, errors = load_config(tmp_path)
    assert config is None and any(reason in e for e in errors), errors


def test_gslb_block_under_octodns_on_a_static_record_is_an_error(tmp_path):
    text = "www:\n  type: A\n  value: 192.0.2.1\n  octodns: {gslb: {answers: 2}}\n"
    write_zone(tmp_path, "example.com", text)
    config, errors = load_config(tmp_path)
    assert config is None and any("only applies to dynamic records" in e for e in errors)
