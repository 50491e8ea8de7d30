"""Both sides of a delegation on one gslb: the parent publishes a signed child's DS and
answers DS queries for the child's apex (RFC 4035 3.1.4.1); a child announcing CDS delete
(RFC 8078) gets no DS and a provably insecure delegation. Live server, dnspython."""

from __future__ import annotations

import subprocess
import sys

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest

from gslb.config.load import load_config
from gslb.dnssec.status import describe
from gslb.dnssec.tools import keygen
from tests.conftest import write_zone
from tests.server import ServerThread
from tests.test_dnssec import RRSIG, ask, bitmap_types, http_get, mixed_case, validate_reply

NSEC, DS = dns.rdatatype.NSEC, dns.rdatatype.DS
PARENT = """\
'':
  type: NS
  value: ns1.example.com.
ns1:
  type: A
  value: 192.0.2.53
sub:
  type: NS
  value: ns1.example.com.
"""
CHILD = """\
'':
  type: NS
  value: ns1.example.com.
www:
  type: A
  value: 192.0.2.7
"""
OWN_DS = """\
sub:
  - type: NS
    value: ns1.example.com.
  - type: DS
    value: {key_tag: 60485, algorithm: 13, digest_type: 2, digest: %s}
""" % ("9A" * 32)


def zones_dir(tmp_path, *, parent_signed=True, child_sidecar_extra="", parent=PARENT):
    write_zone(tmp_path, "example.com", parent)
    write_zone(tmp_path, "sub.example.com", CHILD)
    if parent_signed:
        keygen(tmp_path, "example.com.", 13)
    keygen(tmp_path, "sub.example.com.", 13)
    sidecar = tmp_path / "sub.example.com.dnssec.yaml"
    sidecar.write_text(sidecar.read_text() + child_sidecar_extra)
    return tmp_path


def keys_of(server, zone: str) -> dict:
    reply = ask(server, zone, "DNSKEY")
    (dnskey,) = [r for r in reply.answer if r.rdtype == dns.rdatatype.DNSKEY]
    return {dns.name.from_text(zone): dnskey}


def validate_as(reply, keys) -> int:
    """``validate_reply`` for a zone other than example.com: every RRset with its RRSIG."""
    count = 0
    for section in (reply.answer, reply.authority):
        signatures = {(r.name, r.covers): r for r in section if r.rdtype == RRSIG}
        for rrset in section:
            if rrset.rdtype != RRSIG:
                dns.dnssec.validate(rrset, signatures[(rrset.name, rrset.rdtype)], keys)
                count += 1
    return count


@pytest.mark.parametrize("case", ["lower", "mixed"])
def test_ds_query_is_answered_by_the_parent(tmp_path, geo_db, case):
    with ServerThread(zones_dir(tmp_path), geo_db) as server:
        parent_keys, child_keys = (
            keys_of(server, "example.com."),
            keys_of(server, "sub.example.com."),
        )
        reply = ask(server, mixed_case("sub.example.com") if case == "mixed" else "sub.example.com",
                    "DS")  # fmt: skip
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        (ds,) = [r for r in reply.answer if r.rdtype == DS]
        (child_dnskey,) = child_keys.values()
        assert ds[0] == dns.dnssec.make_ds("sub.example.com.", child_dnskey[0], "SHA256")
        (signature,) = [r for r in reply.answer if r.rdtype == RRSIG]
        assert signature[0].signer == dns.name.from_text("example.com."), "the parent signs it"
        assert validate_reply(reply, parent_keys) == 1
        plain = ask(server, "sub.example.com", "DS", dnssec=False)
        assert [r.rdtype for r in plain.answer] == [DS], "without DO: the DS, no RRSIG"
        child = ask(server, "www.sub.example.com", "A")  # the child answers its own names
        assert child.flags & dns.flags.AA and validate_as(child, child_keys) == 1


def test_a_ds_in_the_parent_file_wins(tmp_path, geo_db):
    zones = zones_dir(tmp_path, parent=PARENT.split("sub:")[0] + OWN_DS)
    with ServerThread(zones, geo_db) as server:
        (ds,) = [r for r in ask(server, "sub.example.com", "DS").answer if r.rdtype == DS]
        assert ds[0].key_tag == 60485, "the operator's DS is served as written"


def test_an_unsigned_parent_serves_the_ds_unsigned(tmp_path, geo_db):
    with ServerThread(zones_dir(tmp_path, parent_signed=False), geo_db) as server:
        reply = ask(server, "sub.example.com", "DS")
        assert [r.rdtype for r in reply.answer] == [DS] and reply.flags & dns.flags.AA
        metrics = http_get(server, "/metrics")  # signing on/off per zone
    assert 'gslb_dnssec_zone_signed{algorithm="",key_tag="",zone="example.com."} 0.0' in metrics
    assert 'zone="sub.example.com."} 1.0' in metrics


def test_cds_delete_withdraws_the_ds(tmp_path, geo_db):
    zones = zones_dir(tmp_path, child_sidecar_extra="  cds: delete\n")
    with ServerThread(zones, geo_db) as server:
        child_keys = keys_of(server, "sub.example.com.")
        cds = ask(server, "sub.example.com", "CDS")
        (record,) = [r for r in cds.answer if r.rdtype == dns.rdatatype.CDS]
        assert (record[0].key_tag, record[0].algorithm, record[0].digest_type,
                record[0].digest) == (0, 0, 0, b"\x00"), "RFC 8078: CDS 0 0 0 00"  # fmt: skip
        assert validate_as(cds, child_keys) == 1
        cdnskey = ask(server, "sub.example.com", "CDNSKEY")
        (record,) = [r for r in cdnskey.answer if r.rdtype == dns.rdatatype.CDNSKEY]
        assert (record[0].flags, record[0].protocol, record[0].algorithm,
                record[0].key) == (0, 3, 0, b"\x00"), "RFC 8078: CDNSKEY 0 3 0 AA=="  # fmt: skip
        assert validate_as(cdnskey, child_keys) == 1
        denial = ask(server, "sub.example.com", "DS")
        assert not denial.answer and denial.flags & dns.flags.AA
        (nsec,) = [r for r in denial.authority if r.rdtype == NSEC]
        assert bitmap_types(nsec) == {dns.rdatatype.NS, RRSIG, NSEC}, "NS, no DS: insecure"
        assert validate_reply(denial, keys_of(server, "example.com.")) == 2
    config, errors = load_config(zones)
    assert not errors
    info = describe(config.signing[b"\x03sub\x07example\x03com\x00"])
    assert info["cds_delete"] and info["ds_expected_at_parent"] == []
    shown = subprocess.run([sys.executable, "-m", "gslb", "dnssec", "ds", "sub.example.com",
                            "--zones", str(zones)], capture_output=True, text=True)  # fmt: skip
    assert shown.returncode == 0 and " IN DS " not in shown.stdout
    assert "delete" in shown.stdout


def test_cds_must_be_key_files_or_delete(tmp_path):
    zones = zones_dir(tmp_path, child_sidecar_extra="  cds: remove\n")
    config, errors = load_config(zones)
    assert config is None
    assert any("sub.example.com" in e and "cds must be" in e for e in errors), errors
