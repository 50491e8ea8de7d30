"""DNSSEC online signing: every answer kind validated with dnspython against the served
DNSKEY, in lower and mixed case (0x20), through the real server on loopback."""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import sys
import time

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from gslb.config.load import load_config
from gslb.dns.responder import Responder
from gslb.dnssec.keys import ED25519, generate
from gslb.dnssec.tools import ds_lines, keygen
from gslb.dnssec.window import DAY, clock_problem
from tests.conftest import core_zone_text, write_zone
from tests.geodb import CLIENTS, CLIENTS6
from tests.server import ServerThread

ZONE = "example.com."
RRSIG, NSEC, NXNAME = 46, 47, 128
DYNAMIC = """\
content:
  type: CNAME
  ttl: 30
  value: origin.example.com.
  dynamic:
    pools:
      europe:
        fallback: global
        values:
          - {value: eu.cdn-a.net., weight: 70}
          - {value: eu.cdn-b.net., weight: 30}
      asia:
        values: [{value: asia.cdn-c.net.}]
      global:
        values: [{value: global.cdn-a.net.}]
    rules:
      - geos: [EU]
        pool: europe
      - geos: [AS]
        pool: asia
      - pool: global
origin:
  type: A
  ttl: 60
  values: [192.0.2.10, 192.0.2.11]
images:
  - type: A
    ttl: 30
    values: [192.0.2.20]
    dynamic:
      pools:
        eu: {values: [{value: 203.0.113.10}, {value: 203.0.113.11}]}
        rest: {values: [{value: 203.0.113.20}]}
      rules:
        - geos: [EU]
          pool: eu
        - pool: rest
  - type: AAAA
    ttl: 30
    values: ['2001:db8::20']
    dynamic:
      pools:
        eu: {values: [{value: '2001:db8::10'}]}
        rest: {values: [{value: '2001:db8::30'}]}
      rules:
        - geos: [EU]
          pool: eu
        - pool: rest
chain:
  type: CNAME
  value: alias.example.com.
to-gslb:
  type: CNAME
  value: content.example.com.
dangling:
  type: CNAME
  value: nothere.example.com.
longttl:
  type: TXT
  ttl: 604800
  value: a week
"""

# (name, type, ECS client or None, what the answer is)
CASES = [
    ("www.example.com", "A", None, "positive"),
    ("example.com", "SOA", None, "positive"),
    ("example.com", "NS", None, "positive"),
    ("example.com", "MX", None, "positive"),
    ("example.com", "TXT", None, "positive"),
    ("example.com", "CAA", None, "positive"),
    ("_sip._tcp.example.com", "SRV", None, "positive"),
    ("ptr.example.com", "PTR", None, "positive"),
    ("alias.example.com", "A", None, "positive"),
    ("chain.example.com", "A", None, "positive"),
    ("to-gslb.example.com", "A", None, "positive"),
    ("external.example.com", "A", None, "positive"),
    ("content.example.com", "A", CLIENTS["DE"], "positive"),
    ("content.example.com", "A", CLIENTS["JP"], "positive"),
    ("content.example.com", "A", CLIENTS["US-CA"], "positive"),
    ("content.example.com", "AAAA", CLIENTS6["DE"], "positive"),
    ("images.example.com", "A", CLIENTS["DE"], "positive"),
    ("images.example.com", "A", CLIENTS["US-CA"], "positive"),
    ("images.example.com", "AAAA", CLIENTS["FR"], "positive"),
    ("images.example.com", "AAAA", CLIENTS6["JP"], "positive"),
    ("anything.wild.example.com", "A", None, "positive"),
    ("deeper.name.wild.example.com", "TXT", None, "positive"),
    ("example.com", "DNSKEY", None, "positive"),
    ("example.com", "CDS", None, "positive"),
    ("example.com", "CDNSKEY", None, "positive"),
    ("www.example.com", "ANY", None, "positive"),
    ("www.example.com", "AAAA", None, "nodata"),
    ("images.example.com", "TXT", None, "nodata"),
    ("anything.wild.example.com", "MX", None, "nodata"),
    ("example.com", "DS", None, "nodata"),
    ("b.c.example.com", "A", None, "ent"),
    ("nothere.example.com", "A", None, "nxdomain"),
    ("a.b.nothere.example.com", "AAAA", None, "nxdomain"),
    ("dangling.example.com", "A", None, "nxdomain"),
    ("sub.example.com", "A", None, "referral"),
    ("deep.in.sub.example.com", "AAAA", None, "referral"),
    ("sub.example.com", "DS", None, "nodata"),
]


def mixed_case(name: str) -> str:
    rng = random.Random(name)
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


@pytest.fixture(scope="module")
def signed_zones(tmp_path_factory):
    zones = tmp_path_factory.mktemp("signed")
    write_zone(zones, "example.com", core_zone_text() + DYNAMIC)
    keygen(zones, ZONE, 13)
    return zones


@pytest.fixture(scope="module")
def signed_server(signed_zones, geo_db):
    with ServerThread(signed_zones, geo_db) as server:
        yield server


def ask(server, name, rdtype, ecs=None, dnssec=True, tcp=False):
    options = [dns.edns.ECSOption(ecs, 24 if ":" not in ecs else 48)] if ecs else []
    query = dns.message.make_query(name, rdtype, use_edns=0, options=options, payload=1232,
                                   want_dnssec=dnssec)  # fmt: skip
    return server.tcp(query) if tcp else server.udp(query)


def served_keys(server) -> dict:
    reply = ask(server, ZONE, "DNSKEY")
    (dnskey,) = [r for r in reply.answer if r.rdtype == dns.rdatatype.DNSKEY]
    return {dns.name.from_text(ZONE): dnskey}


def validate_reply(reply, keys) -> int:
    """Every RRset of ours in answer and authority has an RRSIG that validates; returns how
    many RRsets were validated. Delegation NS (not ours to sign) must carry none."""
    count = 0
    zone = dns.name.from_text(ZONE)
    for section in (reply.answer, reply.authority):
        signatures = {(r.name, r.covers): r for r in section if r.rdtype == RRSIG}
        for rrset in section:
            if rrset.rdtype == RRSIG or not rrset.name.is_subdomain(zone):
                continue
            if rrset.rdtype == dns.rdatatype.NS and rrset.name != zone:
                assert (rrset.name, rrset.rdtype) not in signatures, "delegation NS signed"
                continue
            signature = signatures.get((rrset.name, rrset.rdtype))
            assert signature is not None, f"no RRSIG for {rrset.name} {rrset.rdtype!r}"
            dns.dnssec.validate(rrset, signature, keys)
            count += 1
    assert not reply.flags & dns.flags.AD, "an authoritative server never sets AD"
    return count


def the_nsec(reply):
    (nsec,) = [r for r in reply.authority if r.rdtype == NSEC]
    return nsec


def bitmap_types(nsec) -> set[int]:
    types = set()
    for window, bits in nsec[0].windows:
        for index, byte in enumerate(bits):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    types.add(window * 256 + index * 8 + bit)
    return types


@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize(("name", "rdtype", "ecs", "kind"), CASES)
def test_every_answer_kind_validates(signed_server, name, rdtype, ecs, kind, case):
    keys = served_keys(signed_server)
    qname = mixed_case(name) if case == "mixed" else name
    reply = ask(signed_server, qname, rdtype, ecs)
    assert reply.rcode() == dns.rcode.NOERROR, "compact denial: NOERROR even for NXDOMAIN"
    validated = validate_reply(reply, keys)
    assert validated >= 1 or kind == "referral"
    owner = dns.name.from_text(name)
    if kind == "positive":
        assert reply.answer and not [r for r in reply.authority if r.rdtype == NSEC]
        return
    if kind == "referral":
        assert not reply.flags & dns.flags.AA
        nsec = the_nsec(reply)
        assert nsec.name == dns.name.from_text("sub.example.com")
        assert bitmap_types(nsec) == {dns.rdatatype.NS, RRSIG, NSEC}, "NS, no DS: insecure"
        validate_reply(reply, keys)
        signature = [r for r in reply.authority if r.rdtype == RRSIG and r.covers == NSEC]
        assert signature, "the delegation's NSEC is signed"
        return
    nsec = the_nsec(reply)
    denied = owner
    if name == "dangling.example.com":
        denied = dns.name.from_text("nothere.example.com")
    assert nsec.name == denied
    assert nsec[0].next == dns.name.Name([b"\x00", *denied.labels]), "next = \\000.name"
    types = bitmap_types(nsec)
    if kind == "nxdomain":
        assert types == {NXNAME, RRSIG, NSEC}
    elif kind == "ent":
        assert types == {RRSIG, NSEC}
    else:
        assert dns.rdatatype.from_text(rdtype) not in types
        assert {RRSIG, NSEC} < types


def test_nodata_bitmaps_list_what_the_name_can_answer(signed_server):
    assert bitmap_types(the_nsec(ask(signed_server, "images.example.com", "MX"))) == {
        dns.rdatatype.A, dns.rdatatype.AAAA, RRSIG, NSEC}  # fmt: skip
    apex = bitmap_types(the_nsec(ask(signed_server, "example.com", "DS")))
    assert {dns.rdatatype.SOA, dns.rdatatype.NS, dns.rdatatype.DNSKEY, dns.rdatatype.CDS,
            dns.rdatatype.CDNSKEY} < apex  # fmt: skip
    wild = bitmap_types(the_nsec(ask(signed_server, "x.wild.example.com", "MX")))
    assert wild == {dns.rdatatype.A, dns.rdatatype.TXT, RRSIG, NSEC}


def test_without_do_answers_are_unchanged(signed_server):
    reply = ask(signed_server, "nothere.example.com", "A", dnssec=False)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not [r for r in reply.answer + reply.authority if r.rdtype in (RRSIG, NSEC)]
    reply = ask(signed_server, "longttl.example.com", "TXT", dnssec=False)
    assert reply.answer[0].ttl == 604800
    plain = dns.message.make_query("www.example.com", "A")  # no EDNS at all
    reply = signed_server.udp(plain)
    assert [r.rdtype for r in reply.answer] == [dns.rdatatype.A]


def test_signed_ttls_are_capped_below_the_validity(signed_server):
    reply = ask(signed_server, "longttl.example.com", "TXT")
    validate_reply(reply, served_keys(signed_server))
    (txt,) = [r for r in reply.answer if r.rdtype == dns.rdatatype.TXT]
    (sig,) = [r for r in reply.answer if r.rdtype == RRSIG]
    assert txt.ttl == sig.ttl == sig[0].original_ttl == DAY
    assert sig[0].expiration - time.time() > 3 * DAY - 60


def test_rrsig_windows_are_whole_days(signed_server):
    reply = ask(signed_server, "www.example.com", "A")
    (sig,) = [r for r in reply.answer if r.rdtype == RRSIG]
    assert sig[0].inception % DAY == 0 and sig[0].expiration % DAY == 0
    assert sig[0].inception < time.time() < sig[0].expiration


def test_nxname_query_is_formerr(signed_server):
    assert ask(signed_server, "www.example.com", NXNAME).rcode() == dns.rcode.FORMERR


def test_tcp_answers_validate(signed_server):
    reply = ask(signed_server, "content.example.com", "A", CLIENTS["DE"], tcp=True)
    assert validate_reply(reply, served_keys(signed_server)) >= 1


def test_corrupted_signature_fails_validation(signed_server):
    """The validation above can fail: flip one bit of a served signature."""
    reply = ask(signed_server, "www.example.com", "A")
    (a,) = [r for r in reply.answer if r.rdtype == dns.rdatatype.A]
    (sig,) = [r for r in reply.answer if r.rdtype == RRSIG]
    rdata = sig[0]
    broken = bytearray(rdata.signature)
    broken[10] ^= 0x01
    bad = dns.rrset.from_rdata(sig.name, sig.ttl, rdata.replace(signature=bytes(broken)))
    with pytest.raises(dns.dnssec.ValidationFailure):
        dns.dnssec.validate(a, bad, served_keys(signed_server))


def test_ds_matches_the_served_dnskey(signed_server, signed_zones):
    keys = served_keys(signed_server)
    (dnskey,) = keys.values()
    assert len(dnskey) == 1 and dnskey[0].flags == 257
    expected = dns.dnssec.make_ds(ZONE, dnskey[0], "SHA256")
    config, _ = load_config(signed_zones)
    (line,) = ds_lines(next(iter(config.signing.values())))
    assert line.split(" IN DS ")[1] == expected.to_text().upper()
    cds = ask(signed_server, ZONE, "CDS")
    assert [r for r in cds.answer if r.rdtype == dns.rdatatype.CDS][0][0].digest == (
        expected.digest
    )


def test_cli_keygen_and_ds(tmp_path):
    write_zone(tmp_path, "example.org", "'':\n  type: NS\n  value: ns1.example.org.\n")
    run = [sys.executable, "-m", "gslb", "dnssec"]
    made = subprocess.run([*run, "keygen", "example.org", "--zones", str(tmp_path),
                           "--algorithm", "ED25519"], capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    ds = subprocess.run([*run, "ds", "example.org", "--zones", str(tmp_path)],
                        capture_output=True, text=True)  # fmt: skip
    assert ds.returncode == 0, ds.stderr
    dnskey_line = [line for line in made.stdout.splitlines() if " DNSKEY " in line][0]
    rdata = dns.rdata.from_text("IN", "DNSKEY", dnskey_line.split(" DNSKEY ")[1])
    expected = dns.dnssec.make_ds("example.org.", rdata, "SHA256")
    assert ds.stdout.split(" IN DS ")[1].strip() == expected.to_text().upper()
    assert rdata.algorithm == ED25519
    key_file = next((tmp_path / "keys").iterdir())
    assert key_file.stat().st_mode & 0o077 == 0, "the private key is readable by its owner only"


def test_identical_signatures_from_two_instances(signed_zones):
    """Deterministic ECDSA and day-aligned windows: every instance, every restart, the same
    bytes for the same answer."""
    replies = []
    for _ in range(2):
        config, errors = load_config(signed_zones)
        assert not errors
        responder = Responder(config)
        query = dns.message.make_query("www.example.com", "A", want_dnssec=True, id=7)
        replies.append(responder.handle(query.to_wire(), "127.0.0.1"))
    assert replies[0] == replies[1]
    assert len(dns.message.from_wire(replies[0]).answer) == 2


def test_window_roll_rebuilds_signed_replies(signed_zones):
    config, _ = load_config(signed_zones)
    responder = Responder(config)
    query = dns.message.make_query("www.example.com", "A", want_dnssec=True, id=7).to_wire()
    before = dns.message.from_wire(responder.handle(query, "127.0.0.1"))
    responder.roll_window(time.time() + DAY)
    after = dns.message.from_wire(responder.handle(query, "127.0.0.1"))
    inception = [r for r in before.answer if r.rdtype == RRSIG][0][0].inception
    assert [r for r in after.answer if r.rdtype == RRSIG][0][0].inception == inception + DAY


def test_random_names_are_rationed(tmp_path):
    write_zone(tmp_path, "example.com", core_zone_text())
    keygen(tmp_path, ZONE, 13)
    sidecar = tmp_path / "example.com.dnssec.yaml"
    sidecar.write_text(sidecar.read_text() + "  negative_signatures_per_second: 3\n")
    config, errors = load_config(tmp_path)
    assert not errors
    responder = Responder(config)
    signer = responder.signing.signers[b"\x07example\x03com\x00"]
    signer.clock = lambda: 1000.0  # one second, frozen

    def rcode(name):
        query = dns.message.make_query(name, "A", want_dnssec=True)
        return dns.message.from_wire(responder.handle(query.to_wire(), "127.0.0.1")).rcode()

    codes = [rcode(f"r{i}.example.com") for i in range(6)]
    assert codes == [dns.rcode.NOERROR] * 3 + [dns.rcode.SERVFAIL] * 3
    assert responder.stats.dnssec_budget_drops["example.com."] == 3
    assert rcode("www.example.com") == dns.rcode.NOERROR, "positive answers are not rationed"
    signer.clock = lambda: 1001.0  # the next second: the refused name was not cached
    assert rcode("r5.example.com") == dns.rcode.NOERROR


def test_a_full_signature_cache_evicts_its_oldest_entry_and_outlives_a_reload(tmp_path):
    """Never a wholesale clear (pdns#12899): a full cache drops its oldest signature for each
    new one, and a reload keeps what it holds, so unchanged RRsets are not signed again."""
    names = [f"n{i}" for i in range(6)]
    write_zone(tmp_path, "example.com", "'':\n  type: NS\n  value: ns1.example.com.\n"
               + "".join(f"{n}:\n  type: A\n  value: 192.0.2.{i + 1}\n"
                         for i, n in enumerate(names)))  # fmt: skip
    keygen(tmp_path, ZONE, 13)
    config, errors = load_config(tmp_path)
    assert not errors
    responder = Responder(config)
    cache = responder.signing.cache
    cache.limit = 4
    made = responder.stats.dnssec_signatures
    hits = responder.stats.dnssec_cache_hits

    def ask(name: str) -> None:
        query = dns.message.make_query(f"{name}.example.com", "A", want_dnssec=True)
        reply = dns.message.from_wire(responder.handle(query.to_wire(), "127.0.0.1"))
        assert any(r.rdtype == RRSIG for r in reply.answer), name

    sizes = []
    for name in names:
        ask(name)
        sizes.append(len(cache.entries))
    assert sizes == [1, 2, 3, 4, 4, 4], "filled up to the limit, then one out per one in"
    signed = made["example.com."]
    responder.set_config(load_config(tmp_path)[0])  # a reload: the reply caches start afresh
    ask(names[-1])  # signed after the cache filled up: still there
    assert made["example.com."] == signed and hits["example.com."] >= 1
    ask(names[0])  # the oldest: evicted, signed again
    assert made["example.com."] == signed + 1 and len(cache.entries) == 4


# -- bad input -------------------------------------------------------------------------


def check(zones) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gslb", "check", str(zones)],
                          capture_output=True, text=True)  # fmt: skip


def signed_dir(tmp_path, sidecar: str):
    write_zone(tmp_path, "example.com", core_zone_text())
    (tmp_path / "example.com.dnssec.yaml").write_text(sidecar)
    return tmp_path


def test_missing_key_file_is_a_check_error(tmp_path):
    zones = signed_dir(tmp_path, "dnssec:\n  key: keys/gone.pem\n")
    result = check(zones)
    assert result.returncode == 1
    assert "example.com." in result.stderr and "keys/gone.pem" in result.stderr


def test_unreadable_key_file_is_a_check_error(tmp_path):
    (tmp_path / "keys").mkdir(parents=True)
    (tmp_path / "keys" / "k.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    zones = signed_dir(tmp_path, "dnssec:\n  key: keys/k.pem\n")
    result = check(zones)
    assert result.returncode == 1
    assert "example.com." in result.stderr and "keys/k.pem" in result.stderr


def test_wrong_algorithm_is_a_check_error(tmp_path):
    (tmp_path / "keys").mkdir(parents=True)
    (tmp_path / "keys" / "k.pem").write_bytes(generate(13))
    zones = signed_dir(tmp_path, "dnssec:\n  algorithm: ED25519\n  key: keys/k.pem\n")
    result = check(zones)
    assert result.returncode == 1
    assert "example.com." in result.stderr and "keys/k.pem" in result.stderr
    assert "algorithm" in result.stderr


def test_broken_reload_keeps_the_last_good_key_set(tmp_path, geo_db):
    write_zone(tmp_path, "example.com", core_zone_text())
    keygen(tmp_path, ZONE, 13)
    with ServerThread(tmp_path, geo_db) as server:
        before = served_keys(server)
        sidecar = tmp_path / "example.com.dnssec.yaml"
        sidecar.write_text("dnssec:\n  key: keys/missing.pem\n")
        result = server.call(server.app.reload())
        assert not result.ok and any("missing.pem" in e for e in result.errors)
        after = served_keys(server)
        assert after == before
        validate_reply(ask(server, "www.example.com", "A"), after)


def test_rollover_every_stage_validates_from_either_ds(tmp_path, geo_db):
    """RFC 7583: pre-publish the new key, change the DS, switch signing, retire the old key.
    Whichever DS the parent holds during the change, the chain holds."""
    write_zone(tmp_path, "example.com", core_zone_text())
    keygen(tmp_path, ZONE, 13)
    old = next((tmp_path / "keys").iterdir()).name
    keygen(tmp_path, ZONE, 13)
    new = next(p.name for p in (tmp_path / "keys").iterdir() if p.name != old)
    sidecar = tmp_path / "example.com.dnssec.yaml"
    stages = [
        ("pre-publish", old, [new], [old], [old]),
        ("ds change", old, [new], [new], [old, new]),
        ("switch", new, [old], [new], [old, new]),
        ("retire", new, [], [new], [new]),
    ]
    with ServerThread(tmp_path, geo_db, watch_interval=0) as server:
        for stage, active, publish, cds, parent_ds in stages:
            sidecar.write_text(
                f"dnssec:\n  key: keys/{active}\n  publish: {[f'keys/{p}' for p in publish]}\n"
                f"  cds: {[f'keys/{c}' for c in cds]}\n"
            )
            assert server.call(server.app.reload()).ok, stage
            reply = ask(server, ZONE, "DNSKEY")
            (dnskey,) = [r for r in reply.answer if r.rdtype == dns.rdatatype.DNSKEY]
            (sigs,) = [r for r in reply.answer if r.rdtype == RRSIG]
            assert len(dnskey) == 1 + len(publish)
            tags = {p.split("+")[-1].split(".")[0] for p in parent_ds}
            for tag in tags:  # a resolver trusting only this DS still validates DNSKEY
                trusted = [k for k in dnskey if dns.dnssec.key_id(k) == int(tag)]
                anchor = dns.rrset.from_rdata_list(dnskey.name, dnskey.ttl, trusted)
                only = [s for s in sigs if s.key_tag == int(tag)]
                signature = dns.rrset.from_rdata_list(sigs.name, sigs.ttl, only)
                dns.dnssec.validate(dnskey, signature, {dnskey.name: anchor})
            keys = {dnskey.name: dnskey}
            reply = ask(server, "www.example.com", "A")
            validate_reply(reply, keys)
            (sig,) = [r for r in reply.answer if r.rdtype == RRSIG]
            assert sig[0].key_tag == int(active.split("+")[-1].split(".")[0]), stage
            cds_reply = ask(server, ZONE, "CDS")
            (cds_set,) = [r for r in cds_reply.answer if r.rdtype == dns.rdatatype.CDS]
            served = {rdata.key_tag for rdata in cds_set}
            assert served == {int(c.split("+")[-1].split(".")[0]) for c in cds}


def test_unsigned_zones_are_untouched_by_do(core_server):
    reply = ask(core_server, "nothere.example.com", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert not [r for r in reply.answer + reply.authority if r.rdtype in (RRSIG, NSEC)]


def test_keygen_refuses_nothing_silently(tmp_path):
    """A second keygen for a signed zone leaves the sidecar alone (rollover is explicit)."""
    write_zone(tmp_path, "example.com", core_zone_text())
    keygen(tmp_path, ZONE, 13)
    sidecar = (tmp_path / "example.com.dnssec.yaml").read_text()
    lines = keygen(tmp_path, ZONE, 13)
    assert (tmp_path / "example.com.dnssec.yaml").read_text() == sidecar
    assert any("publish" in line for line in lines)
    shutil.rmtree(tmp_path / "keys")


# -- observability and worker processes ----------------------------------------------------


def http_get(server, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(server.url(path), timeout=10) as response:
        return response.read().decode()


def test_status_explain_and_metrics_show_signing(signed_server):
    import json

    ask(signed_server, "nothere-for-metrics.example.com", "A")
    tag = served_keys(signed_server)[dns.name.from_text(ZONE)][0]
    key_tag = dns.dnssec.key_id(tag)
    status = json.loads(http_get(signed_server, "/status"))
    (zone,) = [z for z in status["config"]["zones"] if z["zone"] == ZONE]
    assert zone["dnssec"]["signed"] and zone["dnssec"]["key_tag"] == key_tag
    assert zone["dnssec"]["days_until_expiry"] > 3
    assert f" DS {key_tag} 13 2 " in zone["dnssec"]["ds_expected_at_parent"][0]
    trace = json.loads(http_get(signed_server, "/explain?name=content.example.com&client=1.2.3.4"))
    assert trace["dnssec"]["key_tag"] == key_tag
    metrics = http_get(signed_server, "/metrics")
    made = [line for line in metrics.splitlines()
            if line.startswith('gslb_dnssec_signatures_total{zone="example.com."}')]  # fmt: skip
    assert made and float(made[0].split()[-1]) > 0
    assert f'gslb_dnssec_zone_signed{{algorithm="ECDSAP256SHA256",key_tag="{key_tag}"' in metrics


def test_workers_sign_with_the_same_key(signed_zones, geo_db):
    with ServerThread(signed_zones, geo_db, workers=2) as server:
        keys = served_keys(server)
        for name, rdtype in (("www.example.com", "A"), ("nothere.example.com", "A")):
            assert validate_reply(ask(server, name, rdtype), keys) >= 1
        reply = ask(server, "content.example.com", "A", CLIENTS["DE"])
        assert validate_reply(reply, keys) == 1


def test_cli_explain_names_the_signing_key(signed_zones, geo_db):
    config, _ = load_config(signed_zones)
    tag = next(iter(config.signing.values())).active.tag
    result = subprocess.run(
        [sys.executable, "-m", "gslb", "explain", "content.example.com", "--client", "1.2.3.4",
         "--zones", str(signed_zones), "--geoip", str(geo_db)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"key {tag} (ECDSAP256SHA256)" in result.stdout


@pytest.fixture(scope="module")
def all_types_server(tmp_path_factory, geo_db):
    from tests.test_record_types import zone_text

    zones = tmp_path_factory.mktemp("signed-types")
    write_zone(zones, "example.com", zone_text())
    keygen(zones, ZONE, 13)
    with ServerThread(zones, geo_db) as server:
        yield server


def record_type_cases():
    from tests.test_record_types import CASES as TYPE_CASES

    return [(f"{owner}.example.com", rtype) for owner, rtype, _, _ in TYPE_CASES]


@pytest.mark.parametrize("case", ["lower", "mixed"])
@pytest.mark.parametrize(("name", "rdtype"), record_type_cases())
def test_every_record_type_validates(all_types_server, name, rdtype, case):
    """The canonical form of every type gslb serves (names lowercased only where RFC 4034
    says so, never compressed) matches what a validator computes."""
    keys = served_keys(all_types_server)
    qname = mixed_case(name) if case == "mixed" else name
    reply = ask(all_types_server, qname, rdtype)
    assert [r for r in reply.answer if r.rdtype == dns.rdatatype.from_text(rdtype)]
    assert validate_reply(reply, keys) >= 1


def test_dname_synthesis_validates(all_types_server):
    reply = ask(all_types_server, "www.DName.example.com", "A")
    assert [r for r in reply.answer if r.rdtype == dns.rdatatype.DNAME]
    assert validate_reply(reply, served_keys(all_types_server)) >= 1


SECURE_DELEGATION = """\
secure:
  - type: NS
    value: ns1.secure.example.com.
  - type: DS
    value: {key_tag: 60485, algorithm: 13, digest_type: 2, digest: %s}
ns1.secure:
  type: A
  value: 192.0.2.54
""" % ("9A" * 32)


def test_secure_delegation_carries_the_signed_ds(tmp_path, geo_db):
    write_zone(tmp_path, "example.com", core_zone_text() + SECURE_DELEGATION)
    keygen(tmp_path, ZONE, 13)
    with ServerThread(tmp_path, geo_db) as server:
        keys = served_keys(server)
        reply = ask(server, "www.secure.example.com", "A")
        assert not reply.flags & dns.flags.AA
        kinds = {r.rdtype for r in reply.authority}
        assert kinds == {dns.rdatatype.NS, dns.rdatatype.DS, RRSIG}, "DS, not an NSEC"
        assert validate_reply(reply, keys) == 1
        assert [r for r in reply.additional if r.rdtype == dns.rdatatype.A], "glue kept"


def test_a_clock_behind_the_signing_files_is_reported_at_start(tmp_path, geo_db, caplog):
    """The key file was written three days after what the clock says: the clock is behind,
    and resolvers with a right clock would see signatures expire early."""
    write_zone(tmp_path, "example.com", core_zone_text())
    keygen(tmp_path, ZONE, 13)
    future = time.time() + 3 * DAY
    key_file = next((tmp_path / "keys").iterdir())
    os.utime(key_file, (future, future))
    caplog.set_level(logging.WARNING, logger="gslb.app")
    with ServerThread(tmp_path, geo_db) as server:
        assert ask(server, "www.example.com", "A").rcode() == dns.rcode.NOERROR, "still serves"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("clock is behind" in w for w in warnings), warnings
    assert clock_problem(time.time(), time.time()) is None, "a right clock is not reported"


def test_a_clock_before_2026_is_reported():
    """README: "At start a clock before 2026 is reported" (a board without a real-time clock
    booting in 1970 would sign with a window no resolver accepts)."""
    problem = clock_problem(0.0)
    assert problem is not None and "1970-01-01" in problem and "will not validate" in problem
    assert clock_problem(time.mktime((2025, 12, 31, 12, 0, 0, 0, 0, 0))) is not None
    assert clock_problem(time.mktime((2026, 1, 2, 12, 0, 0, 0, 0, 0))) is None
