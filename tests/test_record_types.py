"""Every record type: octoDNS value form in the zone file, exact rdata bytes out on the wire.

The expected bytes come from dnspython (an independent implementation) reading the RFC
presentation form of the same record; the received bytes are cut straight out of the reply
message, so nothing on the client side re-encodes them. Queried over UDP and TCP.
"""

from __future__ import annotations

import base64
import socket
import struct

import dns.message
import dns.rcode
import dns.rdata
import dns.rdatatype
import pytest

from gslb.config.load import load_config
from tests.conftest import write_zone
from tests.server import ServerThread, read_message

# A long ECHConfigList: its length, then one config (version fe0d, its length, contents).
_CONFIG = bytes.fromhex("fe0d") + (316).to_bytes(2, "big") + bytes(range(256)) + bytes(60)
ECH = base64.b64encode(len(_CONFIG).to_bytes(2, "big") + _CONFIG).decode()
FP256 = "9a" * 32
KEY = base64.b64encode(bytes(range(60))).decode()
# (owner, type, octoDNS value(s) as YAML, RFC presentation form of each value)
CASES = [
    ("a", "A", "value: 192.0.2.1", ["192.0.2.1"]),
    ("aaaa", "AAAA", "values: [2001:db8::1, '2001:db8::2']", ["2001:db8::1", "2001:db8::2"]),
    ("caa", "CAA", "values: [{flags: 0, tag: issue, value: letsencrypt.org},"
     " {flags: 128, tag: iodef, value: 'mailto:sec@example.com'}]",
     ['0 issue "letsencrypt.org"', '128 iodef "mailto:sec@example.com"']),
    ("cname", "CNAME", "value: www.example.net.", ["www.example.net."]),
    ("dname", "DNAME", "value: example.net.", ["example.net."]),
    ("ds", "DS", "values: [{key_tag: 60485, algorithm: 13, digest_type: 2, digest: "
     f"{FP256.upper()}}}, {{flags: 2371, protocol: 13, algorithm: 2, public_key: {FP256}}}]",
     [f"60485 13 2 {FP256}", f"2371 13 2 {FP256}"]),
    ("https", "HTTPS", "values: [{svcpriority: 1, targetname: ., svcparams: {alpn: [h3, h2], "
     "port: 8443, ipv4hint: [192.0.2.1, 192.0.2.2], ipv6hint: ['2001:db8::1'], "
     f"ech: '{ECH}', mandatory: [alpn, ipv4hint]}}}},"
     " {svcpriority: 2, targetname: edge.cdn.example.net., svcparams: {alpn: [h2]}}]",
     [f"1 . mandatory=alpn,ipv4hint alpn=h3,h2 port=8443 ipv4hint=192.0.2.1,192.0.2.2 "
      f"ech={ECH} ipv6hint=2001:db8::1", "2 edge.cdn.example.net. alpn=h2"]),
    ("alias-mode", "HTTPS", "value: {svcpriority: 0, targetname: cdn.example.net.}",
     ["0 cdn.example.net."]),
    ("svcb", "SVCB", "value: {svcpriority: 16, targetname: svc.example.net., svcparams: "
     "{alpn: [dot], no-default-alpn: null, key65000: hello, key667: null}}",
     ["16 svc.example.net. alpn=dot no-default-alpn key667 key65000=hello"]),
    ("loc", "LOC", "values: [{lat_degrees: 31, lat_minutes: 58, lat_seconds: 52.1, "
     "lat_direction: S, long_degrees: 115, long_minutes: 49, long_seconds: 11.7, "
     "long_direction: E, altitude: 20, size: 10, precision_horz: 10, precision_vert: 2}, "
     "{lat_degrees: 53, lat_minutes: 13, lat_seconds: 10, lat_direction: N, long_degrees: 2, "
     "long_minutes: 18, long_seconds: 26, long_direction: W, altitude: -42.5, size: 0.5, "
     "precision_horz: 1000, precision_vert: 90000000}]",
     ["31 58 52.1 S 115 49 11.7 E 20m 10m 10m 2m",
      "53 13 10.000 N 2 18 26.000 W -42.5m 0.5m 1000m 90000000m"]),
    ("mx", "MX", "values: [{preference: 10, exchange: mx1.example.com.}, "
     "{priority: 20, value: mx2.example.com.}]",
     ["10 mx1.example.com.", "20 mx2.example.com."]),
    ("naptr", "NAPTR", "value: {order: 100, preference: 10, flags: u, service: SIP+D2U, "
     "regexp: '!^.*$!sip:info@example.com!', replacement: .}",
     ['100 10 "U" "SIP+D2U" "!^.*$!sip:info@example.com!" .']),
    ("openpgpkey", "OPENPGPKEY", f"value: '{KEY[:40]} {KEY[40:80]}'", [KEY[:80]]),
    ("ptr", "PTR", "values: [host1.example.com., host2.example.com.]",
     ["host1.example.com.", "host2.example.com."]),
    ("spf", "SPF", "value: v=spf1 -all", ['"v=spf1 -all"']),
    ("_sip._tcp", "SRV", "values: [{priority: 10, weight: 5, port: 5060, target: sip.example.com.},"
     " {priority: 0, weight: 0, port: 0, target: .}]",
     ["10 5 5060 sip.example.com.", "0 0 0 ."]),
    ("sshfp", "SSHFP", "values: [{algorithm: 1, fingerprint_type: 1, "
     "fingerprint: BF6B6825D2977C511A475BBEFB88AAD54A92AC73}, "
     f"{{algorithm: 4, fingerprint_type: 2, fingerprint: {FP256}}}]",
     ["1 1 bf6b6825d2977c511a475bbefb88aad54a92ac73", f"4 2 {FP256}"]),
    ("_25._tcp.mail", "TLSA", "value: {certificate_usage: 3, selector: 1, matching_type: 1, "
     f"certificate_association_data: {FP256}}}", [f"3 1 1 {FP256}"]),
    ("txt", "TXT",
     "values: ['v=DKIM1\\;k=rsa\\;p=abc', '\"quoted\" \"pieces\"', " + "x" * 300 + "]",
     ['"v=DKIM1;k=rsa;p=abc"', '"quotedpieces"', '"' + "x" * 255 + '" "' + "x" * 45 + '"']),
    ("_http._tcp", "URI", "value: {priority: 10, weight: 1, target: 'https://www.example.com/'}",
     ['10 1 "https://www.example.com/"']),
]  # fmt: skip


COMPRESSIBLE = {"CNAME", "MX", "NS", "PTR", "SOA"}  # RFC 3597 section 4: only these


def zone_text() -> str:
    lines = ["'':", "  type: NS", "  values: [ns1.example.com.]"]
    for owner, rtype, value, _ in CASES:
        lines += [f"{owner}:", f"  type: {rtype}", f"  {value}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("types")
    write_zone(zones, "example.com", zone_text())
    with ServerThread(zones, geo_db) as running:
        yield running


def answer_rdatas(wire: bytes) -> list[tuple[int, bytes]]:
    """(type, raw rdata bytes) of every answer record, cut out of the reply message."""
    _, _, qd, an, _, _ = struct.unpack_from("!6H", wire)
    pos = 12
    for _ in range(qd):
        pos = skip_name(wire, pos) + 4
    out = []
    for _ in range(an):
        pos = skip_name(wire, pos)
        rtype, _, _, length = struct.unpack_from("!HHIH", wire, pos)
        pos += 10
        out.append((rtype, wire[pos : pos + length]))
        pos += length
    return out


def skip_name(wire: bytes, pos: int) -> int:
    while wire[pos]:
        if wire[pos] & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + wire[pos]
    return pos + 1


def expected(rtype: str, texts: list[str]) -> list[bytes]:
    return sorted(dns.rdata.from_text("IN", rtype, text).to_wire() for text in texts)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize(("owner", "rtype", "value", "texts"), CASES, ids=[c[1] for c in CASES])
def test_wire_form_of_every_type(server, transport, owner, rtype, value, texts):
    query = dns.message.make_query(f"{owner}.example.com", rtype, use_edns=0, payload=1232)
    data = raw_exchange(server, query.to_wire(), transport)
    reply = dns.message.from_wire(data)
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    code = dns.rdatatype.from_text(rtype)
    got = sorted(rdata for t, rdata in answer_rdatas(data) if t == code)
    if rtype in COMPRESSIBLE:  # RFC 1035 names in rdata may point back into the message
        got = sorted(rdata.to_wire() for rdata in reply.answer[0])
    assert got == expected(rtype, texts)


def raw_exchange(server: ServerThread, payload: bytes, transport: str) -> bytes:
    """The server's reply bytes exactly as sent (no client-side re-encoding)."""
    if transport == "udp":
        data = server.raw_udp(payload, timeout=3.0)
        assert data is not None
        return data
    with socket.create_connection(("127.0.0.1", server.dns_port), timeout=3.0) as sock:
        sock.sendall(len(payload).to_bytes(2, "big") + payload)
        data = read_message(sock)
    assert data is not None
    return data


def test_every_type_is_parsed_by_an_independent_client(server):
    """dnspython parses every answer into the same rdata as the presentation form."""
    for owner, rtype, _, texts in CASES:
        reply = server.tcp(dns.message.make_query(f"{owner}.example.com", rtype))
        rrset = reply.find_rrset(reply.answer, dns.name.from_text(f"{owner}.example.com"),
                                 dns.rdataclass.IN, dns.rdatatype.from_text(rtype))  # fmt: skip
        want = {dns.rdata.from_text("IN", rtype, text) for text in texts}
        assert set(rrset) == want, rtype


@pytest.mark.parametrize(
    ("rtype", "value", "reasons"),
    [
        (
            "SSHFP",
            "{algorithm: 9, fingerprint_type: 3, fingerprint: xyz}",
            [
                'unrecognized algorithm "9"',
                'unrecognized fingerprint_type "3"',
                'invalid fingerprint "xyz"',
            ],
        ),
        (
            "SSHFP",
            "{algorithm: 1, fingerprint_type: 1, fingerprint: abcd}",
            ["fingerprint length 4 does not match type 1 (40)"],
        ),
        (
            "TLSA",
            "{certificate_usage: 4, selector: 2, matching_type: 3}",
            [
                'unrecognized certificate_usage "4"',
                'unrecognized selector "2"',
                'unrecognized matching_type "3"',
                "missing certificate_association_data",
            ],
        ),
        (
            "DS",
            "{key_tag: 70000, algorithm: x, digest_type: 2}",
            ['invalid key_tag "70000"', 'invalid algorithm "x"', "missing digest"],
        ),
        (
            "HTTPS",
            "{svcpriority: 0, targetname: a.example., svcparams: {alpn: [h2]}}",
            ["svcparams set on an AliasMode"],
        ),
        (
            "HTTPS",
            "{svcpriority: 1, targetname: ., svcparams: {bogus: 1, ipv4hint: [300.0.0.1],"
            " ech: '***', port: 70000, mandatory: [port]}}",
            [
                "unknown SvcParam bogus",
                'ipv4hint "300.0.0.1" is not a valid IPv4 address',
                "ech SvcParam is invalid Base64",
                'port "70000" is not a valid number',
            ],
        ),
        (
            "SVCB",
            "{svcpriority: 1, targetname: ., svcparams: {mandatory: [alpn], port: 1}}",
            ['mandatory lists "alpn" which is not set'],
        ),
        (
            "SVCB",
            "{svcpriority: 1, targetname: ., svcparams: {no-default-alpn: null}}",
            ["no-default-alpn requires alpn"],
        ),
        (
            "LOC",
            "{lat_degrees: 91, lat_minutes: 60, lat_seconds: 1.5, lat_direction: X, "
            "long_degrees: 1, long_minutes: 1, long_seconds: 1, long_direction: E, altitude: 0, "
            "size: 0, precision_horz: 0}",
            [
                'invalid value for lat_degrees "91"',
                'invalid value for lat_minutes "60"',
                'invalid direction for lat_direction "X"',
                "missing precision_vert",
            ],
        ),
        (
            "NAPTR",
            "{order: 1, preference: 1, flags: X, service: s, regexp: r}",
            ['unrecognized flags "X"', "missing replacement"],
        ),
        ("URI", "{priority: 1, weight: 1, target: ''}", ["missing target"]),
        ("OPENPGPKEY", "'not base64!'", ["not valid base64"]),
        ("TXT", "'v=spf1; bad'", ["unescaped ; in"]),
        ("TXT", '"caf\\u00e9"', ["non ASCII character"]),
        (
            "CAA",
            "{flags: 256, tag: 'is sue', value: x}",
            ['invalid flags "256"', "invalid CAA tag"],
        ),
    ],  # fmt: skip
)
def test_every_reason_of_a_bad_value_at_once(tmp_path, rtype, value, reasons):
    owner = {"URI": "_http._tcp", "SRV": "_sip._tcp"}.get(rtype, "bad")
    write_zone(tmp_path, "example.com", f"{owner}:\n  type: {rtype}\n  value: {value}\n")
    config, errors = load_config(tmp_path)
    assert config is None
    for reason in reasons:
        assert any(reason in e and f'record "{owner}"' in e for e in errors), (reason, errors)


@pytest.mark.parametrize(("rtype", "owner"), [("SRV", "sip"), ("URI", "www")])
def test_srv_and_uri_need_service_names_as_in_octodns(tmp_path, rtype, owner):
    value = "{priority: 1, weight: 1, port: 1, target: a.example.com.}" if rtype == "SRV" else (
        "{priority: 1, weight: 1, target: 'https://a/'}")  # fmt: skip
    write_zone(tmp_path, "example.com", f"{owner}:\n  type: {rtype}\n  value: {value}\n")
    config, errors = load_config(tmp_path)
    assert config is None and any(f"invalid name for {rtype} record" in e for e in errors)


@pytest.fixture(scope="module")
def signed(tmp_path_factory, geo_db):
    from gslb.dnssec.tools import keygen

    zones = tmp_path_factory.mktemp("signed-types")
    extra = (
        "old:\n  type: DNAME\n  value: new.example.com.\nwww.new:\n  type: A\n  value: 192.0.2.7\n"
    )
    write_zone(zones, "example.com", zone_text() + extra)
    keygen(zones, "example.com.", 13)
    with ServerThread(zones, geo_db) as running:
        yield running


@pytest.mark.parametrize("tcp", [False, True])
def test_every_type_validates_when_signed(signed, tcp):
    """DNSSEC (gslb.dnssec) signs the new types' rdata as packed here: every answer, and the
    DNAME with its synthesized CNAME, validates with dnspython against the served DNSKEY."""
    from tests.test_dnssec import ask, served_keys, validate_reply

    keys = served_keys(signed)
    for owner, rtype, _, texts in CASES:
        reply = ask(signed, f"{owner}.example.com", rtype, tcp=tcp)
        assert reply.rcode() == dns.rcode.NOERROR and validate_reply(reply, keys) >= 1, rtype
        code = dns.rdatatype.from_text(rtype)
        (answer,) = [r for r in reply.answer if r.rdtype == code]
        assert set(answer) == {dns.rdata.from_text("IN", rtype, t) for t in texts}
    reply = ask(signed, "www.old.example.com", "A", tcp=tcp)
    assert validate_reply(reply, keys) >= 2
    assert {r.rdtype for r in reply.answer} >= {dns.rdatatype.DNAME, dns.rdatatype.A}
