"""ALIAS at the apex (answered from the target's A/AAAA, static or dynamic) and DNAME
(RFC 6672: a CNAME synthesized for every name below the owner), against a live server."""

from __future__ import annotations

import subprocess
import sys

import dns.edns
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from gslb.config.load import load_config
from tests.conftest import write_zone
from tests.server import ServerThread

ZONE = """\
'':
  - type: NS
    values: [ns1.example.com.]
  - type: ALIAS
    ttl: 120
    value: web.example.com.
  - type: MX
    value: {preference: 10, exchange: mail.example.com.}
web:
  type: CNAME
  value: www.example.com.
www:
  - type: A
    values: [192.0.2.1, 192.0.2.2]
  - type: AAAA
    value: 2001:db8::1
old:
  type: DNAME
  ttl: 600
  value: new.example.com.
www.new:
  type: A
  value: 192.0.2.7
ext:
  type: DNAME
  value: example.net.
deep:
  type: DNAME
  value: LONG.example.net.
"""
LONG = ".".join(["a" * 60] * 3)  # 183 bytes: names below "deep" can outgrow 255 bytes

STEERED = """\
'':
  - type: NS
    values: [ns1.steered.test.]
  - type: ALIAS
    value: edge.steered.test.
edge:
  type: A
  ttl: 30
  value: 192.0.2.100
  dynamic:
    pools:
      eu:
        values: [{value: 192.0.2.10}]
      rest:
        values: [{value: 192.0.2.20}]
    rules:
      - subnets: [198.51.100.0/24]
        pool: eu
      - pool: rest
"""

OUTSIDE = """\
'':
  - type: NS
    values: [ns1.outside.test.]
  - type: ALIAS
    value: lb.cloud.example.net.
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("alias")
    write_zone(zones, "example.com", ZONE.replace("LONG", LONG))
    write_zone(zones, "steered.test", STEERED)
    write_zone(zones, "outside.test", OUTSIDE)
    with ServerThread(zones, geo_db) as running:
        yield running


def ask(server, name, rtype, *, ecs: str | None = None, tcp: bool = False):
    options = [dns.edns.ECSOption.from_text(ecs)] if ecs else []
    query = dns.message.make_query(name, rtype, use_edns=0, options=options)
    return server.tcp(query) if tcp else server.udp(query)


def values(reply, rtype: str, owner: str | None = None) -> set[str]:
    return {
        rdata.to_text()
        for rrset in reply.answer
        if rrset.rdtype == dns.rdatatype.from_text(rtype)
        and (owner is None or rrset.name == dns.name.from_text(owner))
        for rdata in rrset
    }


@pytest.mark.parametrize("tcp", [False, True])
def test_alias_answers_with_the_targets_addresses_through_its_cname(server, tcp):
    a = ask(server, "Example.com", "A", tcp=tcp)
    assert a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.AA
    assert values(a, "A", "example.com.") == {"192.0.2.1", "192.0.2.2"}
    assert a.answer[0].ttl == 120  # the ALIAS record's TTL
    aaaa = ask(server, "example.com", "AAAA", tcp=tcp)
    assert values(aaaa, "AAAA", "example.com.") == {"2001:db8::1"}
    mx = ask(server, "example.com", "MX", tcp=tcp)  # the rest of the apex is untouched
    assert values(mx, "MX") == {"10 mail.example.com."}


def test_alias_to_a_dynamic_record_steers_the_apex(server):
    eu = ask(server, "steered.test", "A", ecs="198.51.100.0/24")
    rest = ask(server, "steered.test", "A", ecs="203.0.113.0/24")
    assert values(eu, "A", "steered.test.") == {"192.0.2.10"}
    assert values(rest, "A", "steered.test.") == {"192.0.2.20"}
    assert eu.answer[0].ttl == 30  # the policy's TTL, as for the target itself
    scope = [o for o in eu.options if isinstance(o, dns.edns.ECSOption)][0].scopelen
    assert scope == 24  # the answer depended on the subnet rule, and says so


def test_alias_outside_our_zones_loads_with_nodata_at_the_apex(server):
    reply = ask(server, "outside.test", "A")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert reply.authority and reply.authority[0].rdtype == dns.rdatatype.SOA
    warnings = server.app.config.warnings
    assert any("lb.cloud.example.net. is outside gslb's zones" in w for w in warnings)


def test_gslb_check_says_what_happens_to_an_outside_alias(tmp_path):
    write_zone(tmp_path, "outside.test", OUTSIDE)
    done = subprocess.run([sys.executable, "-m", "gslb", "check", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0
    assert "warning:" in done.stderr and "outside gslb's zones" in done.stderr
    assert "NODATA" in done.stderr and "1 warning(s)" in done.stdout


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("www:\n  type: ALIAS\n  value: a.example.com.\n", "only allowed at the zone apex"),
        (
            "'':\n  - type: ALIAS\n    value: a.example.com.\n  - type: A\n    value: 192.0.2.1\n",
            "remove the apex A",
        ),
        (
            "'':\n  type: ALIAS\n  values: [a.example.com., b.example.com.]\n",
            "ALIAS takes exactly one value",
        ),
    ],  # fmt: skip
)
def test_alias_errors(tmp_path, text, reason):
    write_zone(tmp_path, "example.com", text)
    config, errors = load_config(tmp_path)
    assert config is None and any(reason in e for e in errors), errors


@pytest.mark.parametrize("tcp", [False, True])
def test_dname_synthesizes_a_cname_and_the_data_behind_it(server, tcp):
    reply = ask(server, "WWW.old.example.com", "A", tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    dname = reply.find_rrset(reply.answer, dns.name.from_text("old.example.com."),
                             dns.rdataclass.IN, dns.rdatatype.DNAME)  # fmt: skip
    assert dname[0].target == dns.name.from_text("new.example.com.") and dname.ttl == 600
    cname = reply.find_rrset(reply.answer, dns.name.from_text("www.old.example.com."),
                             dns.rdataclass.IN, dns.rdatatype.CNAME)  # fmt: skip
    assert cname[0].target == dns.name.from_text("www.new.example.com.") and cname.ttl == 600
    assert values(reply, "A", "www.new.example.com.") == {"192.0.2.7"}
    assert [r.rdtype for r in reply.answer] == [
        dns.rdatatype.DNAME, dns.rdatatype.CNAME, dns.rdatatype.A]  # fmt: skip


def test_dname_owner_itself_is_not_redirected(server):
    assert values(ask(server, "old.example.com", "DNAME"), "DNAME") == {"new.example.com."}
    nodata = ask(server, "old.example.com", "A")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer


def test_dname_out_of_zone_target_is_left_to_the_resolver(server):
    reply = ask(server, "a.b.ext.example.com", "AAAA")
    assert values(reply, "CNAME") == {"a.b.example.net."}
    assert not values(reply, "AAAA")


def test_dname_result_too_long_is_yxdomain(server):
    long_label = "b" * 63
    qname = f"{long_label}.{long_label}.deep.example.com"
    reply = ask(server, qname, "A")
    assert reply.rcode() == dns.rcode.YXDOMAIN
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.DNAME]


def test_data_below_a_dname_loads_with_a_warning(tmp_path):
    text = "old:\n  type: DNAME\n  value: new.example.com.\nx.old:\n  type: A\n  value: 192.0.2.1\n"
    write_zone(tmp_path, "example.com", text)
    config, errors = load_config(tmp_path)
    assert errors == [] and any('"x.old": below the DNAME' in w for w in config.warnings)


def test_explain_shows_the_steered_apex(tmp_path, geo_db):
    import json

    write_zone(tmp_path, "steered.test", STEERED)
    command = [
        sys.executable,
        "-m",
        "gslb",
        "explain",
        "steered.test",
        "--client",
        "198.51.100.7",
        "--zones",
        str(tmp_path),
        "--geoip",
        str(geo_db),
        "--json",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    trace = json.loads(done.stdout)
    assert trace["record"] == "steered.test." and trace["answer"]["values"] == ["192.0.2.10"]
