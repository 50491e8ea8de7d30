"""Differential test with the real octoDNS as the oracle.

Records of every type are built through octoDNS's own API (``Record.new``, its validation),
written by octoDNS's own YamlProvider (one zone file, and the split layout), loaded by a live
gslb, and every record is asked for over UDP and TCP with dnspython. Each answer must carry
exactly the rdata octoDNS holds (``Record.to_rrset()``, read by dnspython) with its TTL. Values
octoDNS refuses must be refused by gslb too, with a reason naming the record.
"""

from __future__ import annotations

import base64
import logging

import dns.message
import dns.rdata
import dns.rdatatype
import pytest
import yaml
from octodns.provider.yaml import YamlProvider
from octodns.record import Record, ValidationError
from octodns.zone import Zone

from gslb.config.load import load_config
from tests.conftest import write_zone
from tests.server import ServerThread

ZONE = "oracle.test."
HEX64 = "0123456789abcdef" * 4
# No "ech" here: octoDNS 1.22's ech check returns None for a valid value and Record.new then
# fails with a TypeError, so octoDNS cannot hold one; tests/test_record_types.py covers ech.

# name -> list of octoDNS record data, covering every type and its value forms
RECORDS: dict[str, list[dict]] = {
    "": [
        {"type": "ALIAS", "ttl": 300, "value": "www.oracle.test."},
        {"type": "NS", "ttl": 3600, "values": ["ns1.oracle.test.", "ns2.example.net."]},
        {"type": "MX", "values": [{"preference": 10, "exchange": "mx1.oracle.test."},
                                  {"priority": 20, "value": "mx2.example.net."}]},
        {"type": "CAA", "values": [{"flags": 0, "tag": "issue", "value": "ca.example.net"},
                                   {"flags": 128, "tag": "iodef",
                                    "value": "mailto:security@oracle.test"}]},
        {"type": "TXT", "values": ["v=spf1 include:_spf.example.net -all",
                                   "google-site-verification=abc\\;def", "x" * 400]},
        {"type": "SSHFP", "values": [
            {"algorithm": 1, "fingerprint_type": 1,
             "fingerprint": "bf6b6825d2977c511a475bbefb88aad54a92ac73"},
            {"algorithm": 4, "fingerprint_type": 2, "fingerprint": HEX64.upper()}]},
        {"type": "LOC", "values": [
            {"lat_degrees": 31, "lat_minutes": 58, "lat_seconds": 52.1, "lat_direction": "S",
             "long_degrees": 115, "long_minutes": 49, "long_seconds": 11.7,
             "long_direction": "E", "altitude": 20, "size": 10, "precision_horz": 10,
             "precision_vert": 2},
            {"lat_degrees": 0, "lat_minutes": 0, "lat_seconds": 0.001, "lat_direction": "N",
             "long_degrees": 180, "long_minutes": 0, "long_seconds": 0, "long_direction": "W",
             "altitude": -100000, "size": 0, "precision_horz": 90000000,
             "precision_vert": 0.01}]},
        {"type": "HTTPS", "values": [
            {"svcpriority": 1, "targetname": ".", "svcparams": {
                "alpn": ["h3", "h2", "http/1.1"], "port": 443,
                "ipv4hint": ["192.0.2.1", "192.0.2.2", "192.0.2.3"],
                "ipv6hint": ["2001:db8::1", "2001:db8::2"],
                "mandatory": ["alpn", "ipv4hint"]}},
            {"svcpriority": 2, "targetname": "edge.cdn.example.net.",
             "svcparams": {"alpn": ["h2"], "no-default-alpn": None}}]},
    ],
    "www": [{"type": "A", "ttl": 120, "values": ["192.0.2.10", "192.0.2.11"]},
            {"type": "AAAA", "values": ["2001:db8::10"]}],
    "cname": [{"type": "CNAME", "ttl": 60, "value": "www.oracle.test."}],
    "bücher": [{"type": "CNAME", "value": "straße.oracle.test."}],  # written in UTF-8
    "old": [{"type": "DNAME", "value": "new.example.net."}],
    "ptr": [{"type": "PTR", "values": ["host-a.oracle.test.", "host-b.oracle.test."]}],
    "spf": [{"type": "SPF", "value": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "_sip._tcp": [{"type": "SRV", "values": [
        {"priority": 10, "weight": 60, "port": 5060, "target": "sip1.oracle.test."},
        {"priority": 20, "weight": 0, "port": 5061, "target": "sip2.example.net."}]}],
    "_imap._tcp": [{"type": "SRV", "value": {"priority": 0, "weight": 0, "port": 0,
                                             "target": "."}}],
    "_443._tcp.www": [{"type": "TLSA", "values": [
        {"certificate_usage": 3, "selector": 1, "matching_type": 1,
         "certificate_association_data": HEX64},
        {"certificate_usage": 2, "selector": 0, "matching_type": 2,
         "certificate_association_data": HEX64 * 2}]}],
    "sub": [{"type": "DS", "values": [
        {"key_tag": 60485, "algorithm": 13, "digest_type": 2, "digest": HEX64},
        {"key_tag": 12345, "algorithm": 8, "digest_type": 1, "digest": HEX64[:40]}]},
        {"type": "NS", "values": ["ns.sub.example.net."]}],
    "naptr": [{"type": "NAPTR", "values": [
        {"order": 100, "preference": 10, "flags": "U", "service": "E2U+sip",
         "regexp": "!^.*$!sip:info@oracle.test!", "replacement": "."},
        {"order": 102, "preference": 10, "flags": "s", "service": "SIP+D2T", "regexp": "",
         "replacement": "_sip._tcp.oracle.test."}]}],
    "_http._tcp": [{"type": "URI", "values": [
        {"priority": 10, "weight": 1, "target": "https://www.oracle.test/path"},
        {"priority": 20, "weight": 5, "target": "ftp://files.oracle.test/"}]}],
    "mail": [{"type": "OPENPGPKEY", "value": base64.b64encode(bytes(range(200))).decode()}],
    "svc": [{"type": "SVCB", "values": [
        {"svcpriority": 0, "targetname": "pool.svc.example.net."},
        ]}],
    "dot": [{"type": "SVCB", "values": [
        {"svcpriority": 1, "targetname": "dot.example.net.",
         "svcparams": {"alpn": ["dot"], "port": 853, "key65000": "opaque", "key7": None}}]}],
    "redirect": [{"type": "URLFWD", "value": {"code": 301, "masking": 2, "query": 0,
                                              "path": "/", "target": "https://oracle.test/"}}],
}  # fmt: skip


def octodns_zone() -> Zone:
    zone = Zone(ZONE, [])
    for name, datas in RECORDS.items():
        for data in datas:
            zone.add_record(Record.new(zone, name, {"ttl": 3600, **data}))
    return zone


@pytest.fixture(scope="module", params=["zone-file", "split"])
def served(request, tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp(request.param)
    zone = octodns_zone()
    split = {"split_extension": "."} if request.param == "split" else {}
    provider = YamlProvider("gslb", str(zones), escaped_semicolons=True, **split)
    provider.apply(provider.plan(zone))
    with ServerThread(zones, geo_db) as server:
        yield zone, server


def rrsets(zone: Zone):
    for record in sorted(zone.records, key=lambda r: (r.name, r._type)):
        if record._type not in ("URLFWD", "ALIAS"):
            yield record.to_rrset()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_every_record_answers_exactly_as_octodns_holds_it(served, transport):
    zone, server = served
    checked = set()
    for rrset in rrsets(zone):
        query = dns.message.make_query(rrset.name, rrset._type, use_edns=0, payload=1232)
        reply = getattr(server, transport)(query)
        code = dns.rdatatype.from_text(rrset._type)
        # NS below the apex is a delegation: a referral carries it in authority (RFC 1034)
        section = reply.authority if code == dns.rdatatype.NS and rrset.name != ZONE else (
            reply.answer)  # fmt: skip
        answer = [r for r in section if r.rdtype == code and r.name.to_text() == rrset.name]
        assert len(answer) == 1, (rrset, reply)
        want = sorted(dns.rdata.from_text("IN", rrset._type, text).to_wire()
                      for text in rrset.rdatas)  # fmt: skip
        assert sorted(rdata.to_wire() for rdata in answer[0]) == want, rrset
        assert answer[0].ttl == rrset.ttl
        checked.add(rrset._type)
    every = {"A", "AAAA", "CAA", "CNAME", "DNAME", "DS", "HTTPS", "LOC", "MX", "NAPTR", "NS",
             "OPENPGPKEY", "PTR", "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT", "URI"}  # fmt: skip
    assert checked == every


def test_alias_apex_answers_with_its_targets_addresses(served):
    zone, server = served
    alias = next(r for r in zone.records if r._type == "ALIAS")
    target = next(r for r in zone.records if r.fqdn == alias.value and r._type == "A")
    reply = server.udp(dns.message.make_query(ZONE, "A"))
    assert {r.to_text() for rrset in reply.answer for r in rrset} == set(target.values)
    assert reply.answer[0].ttl == alias.ttl


def test_urlfwd_written_by_octodns_is_skipped_with_a_warning(served):
    _, server = served
    assert any('"redirect": URLFWD' in w for w in server.app.config.warnings)


REFUSED = [
    ("a", {"type": "A", "value": "192.0.2.300"}),
    ("aaaa", {"type": "AAAA", "values": ["2001:db8::1", "not-an-address"]}),
    ("cname", {"type": "CNAME", "value": "bad..name.example."}),
    ("mx", {"type": "MX", "value": {"preference": "ten", "exchange": "mx.example."}}),
    ("mx2", {"type": "MX", "value": {"preference": 10}}),
    ("sip", {"type": "SRV", "value": {"priority": 1, "weight": 1, "port": 1,
                                      "target": "a.example."}}),
    ("_sip._tcp", {"type": "SRV", "value": {"priority": 1, "weight": 1, "target": "a.example."}}),
    ("caa", {"type": "CAA", "value": {"flags": 300, "tag": "issue", "value": "x"}}),
    ("sshfp", {"type": "SSHFP", "value": {"algorithm": 9, "fingerprint_type": 1,
                                          "fingerprint": HEX64[:40]}}),
    ("sshfp2", {"type": "SSHFP", "value": {"algorithm": 1, "fingerprint_type": 2,
                                           "fingerprint": "abcd"}}),
    ("tlsa", {"type": "TLSA", "value": {"certificate_usage": 5, "selector": 0,
                                        "matching_type": 1,
                                        "certificate_association_data": HEX64}}),
    ("ds", {"type": "DS", "value": {"key_tag": 1, "algorithm": 13, "digest_type": 2}}),
    ("naptr", {"type": "NAPTR", "value": {"order": 1, "preference": 1, "flags": "X",
                                          "service": "s", "regexp": "r", "replacement": "."}}),
    ("loc", {"type": "LOC", "value": {"lat_degrees": 100, "lat_minutes": 0, "lat_seconds": 0,
                                      "lat_direction": "N", "long_degrees": 0,
                                      "long_minutes": 0, "long_seconds": 0,
                                      "long_direction": "E", "altitude": 0, "size": 0,
                                      "precision_horz": 0, "precision_vert": 0}}),
    ("www", {"type": "URI", "value": {"priority": 1, "weight": 1, "target": "https://x/"}}),
    ("https", {"type": "HTTPS", "value": {"svcpriority": 0, "targetname": "t.example.",
                                          "svcparams": {"alpn": ["h2"]}}}),
    ("https2", {"type": "HTTPS", "value": {"svcpriority": 1, "targetname": ".",
                                           "svcparams": {"dohpath": "/q{?dns}"}}}),
    ("https3", {"type": "HTTPS", "value": {"svcpriority": 1, "targetname": ".",
                                           "svcparams": {"ipv6hint": ["192.0.2.1"]}}}),
    ("svcb", {"type": "SVCB", "value": {"svcpriority": 1, "targetname": ".",
                                        "svcparams": {"ech": "%%%"}}}),
    ("txt", {"type": "TXT", "value": "v=spf1; -all"}),
    ("txt2", {"type": "TXT", "value": "caf\u00e9"}),
    ("spf", {"type": "SPF", "value": "a\\\\;b"}),
    ("alias", {"type": "ALIAS", "value": "www.oracle.test."}),
    ("redirect", {"type": "URLFWD", "value": {"code": 307, "masking": 2, "query": 0,
                                              "path": "/", "target": "https://x/"}}),
    ("geo", {"type": "A", "value": "192.0.2.1", "geo": {"EUROPE": ["192.0.2.2"]}}),
    ("@", {"type": "A", "value": "192.0.2.1"}),
    ("w w", {"type": "A", "value": "192.0.2.1"}),
    ("ttl", {"type": "A", "value": "192.0.2.1", "ttl": -1}),
]  # fmt: skip


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # octoDNS on its own geo block
@pytest.mark.parametrize(("name", "data"), REFUSED, ids=[n for n, _ in REFUSED])
def test_what_octodns_refuses_gslb_refuses(tmp_path, name, data):
    logging.getLogger("octodns").setLevel(logging.ERROR)
    with pytest.raises(ValidationError):
        Record.new(Zone(ZONE, []), name, {"ttl": 60, **data})
    write_zone(tmp_path, ZONE.rstrip("."), yaml.safe_dump({name: {"ttl": 60, **data}}))
    config, errors = load_config(tmp_path)
    assert config is None
    assert errors and all(f'record "{name}"' in e for e in errors), errors


def test_the_zone_octodns_wrote_passes_gslb_check(served):
    import subprocess
    import sys

    _, server = served
    done = subprocess.run([sys.executable, "-m", "gslb", "check", str(server.settings.zones)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ok: 1 zone(s): oracle.test." in done.stdout
    assert 'record "redirect": URLFWD' in done.stderr  # the one record no DNS server serves


def test_octodns_anchors_for_shared_values_load(tmp_path):
    """Records sharing one value object (as after an anchor in octoDNS's source YAML) are
    written with YAML anchors and aliases; a big zone has thousands of them."""
    zone = Zone(ZONE, [])
    params = {"alpn": ["h3", "h2"], "ipv4hint": ["192.0.2.1"]}  # one object, 1,500 records
    for index in range(1500):
        value = {"svcpriority": 1, "targetname": ".", "svcparams": params}
        zone.add_record(Record.new(zone, f"h{index}", {"type": "HTTPS", "ttl": 60,
                                                         "value": value}))  # fmt: skip
    provider = YamlProvider("gslb", str(tmp_path), escaped_semicolons=True)
    provider.apply(provider.plan(zone))
    assert (tmp_path / "oracle.test.yaml").read_text().count("*id") >= 1000
    config, errors = load_config(tmp_path)
    assert errors == [] and len(config.zones[b"\x06oracle\x04test\x00"].nodes) == 1501


def test_what_octodns_accepts_in_odd_spellings_loads(tmp_path):
    """Numbers as strings (octoDNS reads them with int()) and the older MX spelling."""
    data = {"ttl": "300", "type": "MX", "value": {"priority": "10", "value": "mx.oracle.test."}}
    Record.new(Zone(ZONE, []), "mx", data)  # octoDNS accepts it
    write_zone(tmp_path, ZONE.rstrip("."), yaml.safe_dump({"mx": data}))
    config, errors = load_config(tmp_path)
    assert errors == []
    (rrset,) = (
        config.zones[b"\x06oracle\x04test\x00"]
        .nodes[b"\x02mx\x06oracle\x04test\x00"]
        .rrsets.values()
    )
    assert rrset.ttl == 300 and rrset.rdatas[0].preference == 10
