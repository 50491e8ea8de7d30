"""Property test against octoDNS: random values of the record types with the most encoding
rules (LOC, TXT, SVCB/HTTPS, NAPTR, CAA, URI, TLSA, SSHFP, DS).

For every generated value: when octoDNS refuses it, gslb refuses it; when octoDNS accepts it
and its presentation form (``Record.to_rrset()``) is valid DNS (dnspython reads it), gslb
accepts it and packs exactly the bytes dnspython derives from that presentation form.
"""

from __future__ import annotations

import logging
import string

import dns.exception
import dns.rdata
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from octodns.record import Record, ValidationError
from octodns.zone import Zone

from gslb.config.records import TYPES

ZONE = Zone("prop.test.", [])
# Where gslb is deliberately stricter than octoDNS's default (legacy) checks, and why:
STRICTER = (
    "beyond 90 degrees",  # RFC 1876: latitude within +-90 (octoDNS checks each field alone)
    "beyond 180 degrees",  # ... and longitude within +-180
    # octoDNS writes these fields between quotes without escaping; a lone backslash or quote
    # then changes how every reader splits the record (dnspython finds other fields)
    "ends in a lone backslash",
    'unescaped "',
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
PRINTABLE = st.text(alphabet=string.ascii_letters + string.digits + " =:-_./+@!^$*\\;\"'",
                    max_size=300)  # fmt: skip
LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=12)
HOST = st.lists(LABEL, min_size=1, max_size=3).map(lambda parts: ".".join(parts) + ".")


def check(rtype: str, name: str, value) -> None:
    logging.getLogger("Record").setLevel(logging.ERROR)
    parse = TYPES[rtype].parse
    try:
        record = Record.new(ZONE, name, {"type": rtype, "ttl": 60, "value": value})
    except ValidationError:
        with pytest.raises(ValueError):
            parse(value)  # octoDNS refuses: gslb refuses too
        return
    except (TypeError, ValueError, KeyError, AttributeError):
        return  # octoDNS itself fails on the value (not a validation verdict): nothing to hold
    (text,) = record.to_rrset().rdatas
    try:
        expected = dns.rdata.from_text("IN", rtype, text).to_wire()
    except (dns.exception.DNSException, ValueError):
        return  # octoDNS holds something no DNS presentation form can carry
    try:
        got = packed(parse(value))
    except ValueError as exc:
        # gslb refuses a few values octoDNS lets through; each such reason is deliberate
        assert any(reason in str(exc) for reason in STRICTER), (value, text, exc)
        return
    assert got == expected, (value, text)


def packed(rdata) -> bytes:
    from dnslib import DNSBuffer

    buffer = DNSBuffer()
    rdata.pack(buffer)
    return bytes(buffer.data)


seconds = st.integers(0, 59_999).map(lambda ms: ms / 1000)
metres = st.integers(0, 9_000_000_000).map(lambda cm: cm / 100)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {
            "lat_degrees": st.integers(0, 90),
            "lat_minutes": st.integers(0, 59),
            "lat_seconds": seconds,
            "lat_direction": st.sampled_from("NS"),
            "long_degrees": st.integers(0, 180),
            "long_minutes": st.integers(0, 59),
            "long_seconds": seconds,
            "long_direction": st.sampled_from("EW"),
            "altitude": st.integers(-10_000_000, 4_284_967_295).map(lambda cm: cm / 100),
            "size": metres,
            "precision_horz": metres,
            "precision_vert": metres,
        }
    )  # fmt: skip
)
def test_loc(value):
    check("LOC", "loc", value)


@SETTINGS
@given(PRINTABLE)
def test_txt(value):
    check("TXT", "txt", value)


SVC_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "alpn": st.lists(st.sampled_from(["h3", "h2", "http/1.1", "dot", "doq"]), min_size=1,
                         max_size=4, unique=True),
        "port": st.integers(0, 65535),
        "ipv4hint": st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=4,
                             unique=True),
        "ipv6hint": st.lists(st.ip_addresses(v=6).map(str), min_size=1, max_size=3,
                             unique=True),
        "key65000": st.text(alphabet=string.ascii_letters + string.digits, max_size=20),
    },
)  # fmt: skip


@SETTINGS
@given(st.integers(0, 3), st.one_of(st.just("."), HOST), SVC_PARAMS)
def test_https(priority, target, params):
    check("HTTPS", "https", {"svcpriority": priority, "targetname": target, "svcparams": params})


@SETTINGS
@given(
    st.integers(0, 70_000), st.integers(0, 70_000), st.sampled_from(["S", "a", "U", "p", "X", ""]),
    PRINTABLE.map(lambda s: s[:40]), PRINTABLE.map(lambda s: s[:80]),
    st.one_of(st.just("."), HOST),
)  # fmt: skip
def test_naptr(order, preference, flags, service, regexp, replacement):
    value = {"order": order, "preference": preference, "flags": flags, "service": service,
             "regexp": regexp, "replacement": replacement}  # fmt: skip
    check("NAPTR", "naptr", value)


@SETTINGS
@given(st.integers(0, 300), st.sampled_from(["issue", "issuewild", "iodef", "tbs"]), PRINTABLE)
def test_caa(flags, tag, text):
    check("CAA", "caa", {"flags": flags, "tag": tag, "value": text})


@SETTINGS
@given(st.integers(0, 70_000), st.integers(0, 70_000), PRINTABLE)
def test_uri(priority, weight, target):
    check("URI", "_http._tcp", {"priority": priority, "weight": weight, "target": target})


HEX = st.binary(min_size=1, max_size=64).map(bytes.hex)


@SETTINGS
@given(st.integers(0, 5), st.integers(0, 3), st.integers(0, 3), HEX)
def test_tlsa(usage, selector, matching, data):
    value = {"certificate_usage": usage, "selector": selector, "matching_type": matching,
             "certificate_association_data": data}  # fmt: skip
    check("TLSA", "_443._tcp", value)


@SETTINGS
@given(st.integers(0, 5), st.integers(0, 3), st.one_of(HEX, st.just("ab" * 20), st.just("cd" * 32)))
def test_sshfp(algorithm, kind, fingerprint):
    value = {"algorithm": algorithm, "fingerprint_type": kind, "fingerprint": fingerprint}
    check("SSHFP", "sshfp", value)


@SETTINGS
@given(st.integers(0, 70_000), st.integers(0, 300), st.integers(0, 300), HEX)
def test_ds(key_tag, algorithm, digest_type, digest):
    value = {"key_tag": key_tag, "algorithm": algorithm, "digest_type": digest_type,
             "digest": digest}  # fmt: skip
    check("DS", "ds", value)
