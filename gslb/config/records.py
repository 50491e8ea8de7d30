"""Record values in octoDNS form -> rdata, one parser per type: the record-type registry.

Every octoDNS type is here with octoDNS's own value forms (the mappings its YamlProvider reads
and writes) and at least octoDNS's own checks (its ``legacy`` validator set, the default).
Encoding happens once, at load time: the answer path only copies bytes.

A parser takes the YAML value and returns rdata, or raises ``Invalid`` carrying *every*
problem of that value (octoDNS reports them all at once, and so do we); the loader prefixes
each with file, record and field. Types dnslib packs the way the RFCs want keep dnslib's rdata
classes; every other type is packed here into plain bytes (``RD(data)``), names uncompressed
and lowercase, as RFC 3597 section 4 requires for types newer than RFC 1035.

``TYPES`` is the registry the loader, the responder's metric labels and DNSSEC (type bitmaps,
canonical rdata) all read: one place that knows every type gslb serves.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import AAAA as AAAARD
from dnslib import CNAME as CNAMERD
from dnslib import MX as MXRD
from dnslib import NS as NSRD
from dnslib import PTR as PTRRD
from dnslib import RD, DNSLabel
from dnslib import SOA as SOARD
from dnslib import SRV as SRVRD
from dnslib import TXT as TXTRD
from dnslib import A as ARD

from gslb.config import model
from gslb.config.loc import parse_loc_value
from gslb.config.names import labels
from gslb.config.svcb import parse_svcb_value
from gslb.config.values import (
    Fields,
    Invalid,
    char_string,
    hostname,
    ipv4,
    ipv6,
    name_wire,
    quoted,
    txt_text,
)

MAX_TTL = 2**31 - 1  # RFC 2181 section 8
TXT_CHUNK = 255


# -- the RFC 1035 family (dnslib packs them) --------------------------------------------------


def parse_a(value: Any) -> RD:
    return ARD(ipv4(value))


def parse_aaaa(value: Any) -> RD:
    return AAAARD(ipv6(value))


def parse_cname(value: Any) -> RD:
    return CNAMERD(hostname(value))


def parse_ns(value: Any) -> RD:
    return NSRD(hostname(value))


def parse_ptr(value: Any) -> RD:
    return PTRRD(hostname(value))


def parse_mx(value: Any) -> RD:
    """``{preference, exchange}``; octoDNS's older ``priority``/``value`` still read. An
    exchange of ``.`` is the null MX of RFC 7505."""
    f = Fields("MX", value, ("preference", "exchange"),
               aliases={"priority": "preference", "value": "exchange"})  # fmt: skip
    preference, exchange = f.uint("preference", 16), f.name("exchange", root=True)
    f.done()
    return MXRD(DNSLabel(labels(exchange)), preference)


def parse_srv(value: Any) -> RD:
    f = Fields("SRV", value, ("priority", "weight", "port", "target"))
    numbers = [f.uint(key, 16) for key in ("priority", "weight", "port")]
    target = f.name("target", root=True)  # "." = the service is not available (RFC 2782)
    f.done()
    return SRVRD(*numbers, DNSLabel(labels(target)))


def parse_caa(value: Any) -> RD:
    f = Fields("CAA", value, ("tag", "value"), ("flags",))
    flags = f.uint("flags", 8)
    tag = f.text("tag")
    if f.has("tag") and (not tag.isascii() or not tag.isalnum() or len(tag) > 255):
        f.fail(f'invalid CAA tag "{tag}"')
    try:
        data = quoted(f.text("value"), "value")
    except ValueError as exc:
        f.fail(str(exc))
        data = b""
    f.done()
    return RD(bytes((flags, len(tag))) + tag.encode("ascii") + data)


def txt_chunks(value: Any) -> list[bytes]:
    """Long strings go out as 255-byte character-strings, as octoDNS renders them."""
    raw = txt_text(value).replace("\\;", ";").encode("ascii")
    if not raw:
        return [b""]
    return [raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)]


def parse_txt(value: Any) -> RD:
    return TXTRD(txt_chunks(value))


def parse_soa(value: Any) -> RD:
    keys = ("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")
    f = Fields("SOA", value, keys)
    times = tuple(f.uint(key, 32) for key in keys[2:])
    mname, rname = f.name("mname", syntax=False), f.name("rname", syntax=False)
    f.done()
    return SOARD(DNSLabel(labels(mname)), DNSLabel(labels(rname)), times)


# -- the newer types, packed here ------------------------------------------------------------


def parse_dname(value: Any) -> RD:
    """RFC 6672: the target is never compressed."""
    return RD(name_wire(value))


def parse_ds(value: Any) -> RD:
    """RFC 4034 section 5.1. octoDNS's deprecated spelling (flags, protocol, algorithm,
    public_key) means key_tag, algorithm, digest_type, digest in that order, and is read so."""
    if isinstance(value, Mapping) and ("public_key" in value or "flags" in value):
        keys = ("flags", "protocol", "algorithm", "public_key")
        f = Fields("DS", value, keys)
        head = (f.uint("flags", 16), f.uint("protocol", 8), f.uint("algorithm", 8))
        digest = f.hex("public_key")
    else:
        f = Fields("DS", value, ("key_tag", "algorithm", "digest_type", "digest"))
        head = (f.uint("key_tag", 16), f.uint("algorithm", 8), f.uint("digest_type", 8))
        digest = f.hex("digest")
    f.done()
    return RD(struct.pack("!HBB", *head) + digest)


def parse_sshfp(value: Any) -> RD:
    """RFC 4255/6594/7479/8709 with octoDNS's checks: algorithm 1-4, fingerprint type 1 or 2,
    SHA-1 fingerprints 40 hex digits, SHA-256 64."""
    f = Fields("SSHFP", value, ("algorithm", "fingerprint_type", "fingerprint"))
    algorithm = f.uint("algorithm", 8, allowed=(1, 2, 3, 4))
    kind = f.uint("fingerprint_type", 8, allowed=(1, 2))
    fingerprint = f.hex("fingerprint", {1: 40, 2: 64}, kind)
    f.done()
    return RD(struct.pack("!BB", algorithm, kind) + fingerprint)


def parse_tlsa(value: Any) -> RD:
    """RFC 6698 with octoDNS's ranges: usage 0-3, selector 0-1, matching type 0-2."""
    keys = ("certificate_usage", "selector", "matching_type", "certificate_association_data")
    f = Fields("TLSA", value, keys)
    usage = f.uint("certificate_usage", 8, allowed=(0, 1, 2, 3))
    selector = f.uint("selector", 8, allowed=(0, 1))
    matching = f.uint("matching_type", 8, allowed=(0, 1, 2))
    data = f.hex("certificate_association_data", {1: 64, 2: 128}, matching)
    f.done()
    return RD(struct.pack("!BBB", usage, selector, matching) + data)


def parse_uri(value: Any) -> RD:
    """RFC 7553: the target is the rest of the rdata, no length byte. octoDNS lowercases it
    (it runs every target through its IDNA encoder), so the answer is what octoDNS holds."""
    f = Fields("URI", value, ("priority", "weight", "target"))
    priority, weight = f.uint("priority", 16), f.uint("weight", 16)
    target = f.text("target")
    if f.has("target") and not target:
        f.fail("missing target")
    try:
        data = quoted(target.lower(), "target")
    except ValueError as exc:
        f.fail(str(exc))
        data = b""
    f.done()
    return RD(struct.pack("!HH", priority, weight) + data)


def parse_openpgpkey(value: Any) -> RD:
    """RFC 7929: the key in base64 (spaces and line breaks allowed), sent as bytes."""
    text = "".join(str(value or "").split())
    if not text:
        raise ValueError("missing value")
    try:
        return RD(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("OPENPGPKEY value is not valid base64") from None


NAPTR_FLAGS = ("S", "A", "U", "P")


def parse_naptr(value: Any) -> RD:
    """RFC 3403. Flags as octoDNS accepts them (one of S, A, U, P; either case; sent upper)."""
    keys = ("order", "preference", "flags", "service", "regexp", "replacement")
    f = Fields("NAPTR", value, keys)
    head = struct.pack("!HH", f.uint("order", 16), f.uint("preference", 16))
    flags = f.text("flags")
    if f.has("flags") and flags.upper() not in NAPTR_FLAGS:
        f.fail(f'unrecognized flags "{flags}"')
    flags_cs = char_string(flags.upper(), "flags") if flags.isascii() else b"\x00"
    service, regexp = f.char_string("service"), f.char_string("regexp")
    replacement = f.name("replacement", root=True, syntax=False)
    f.done()
    return RD(head + flags_cs + service + regexp + replacement)


def parse_svcb(value: Any) -> RD:
    return RD(parse_svcb_value(value))


def parse_loc(value: Any) -> RD:
    return RD(parse_loc_value(value))


# -- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordType:
    """One type gslb serves: its code, how a value is read, and whether it takes one value."""

    name: str
    code: int
    parse: Callable[[Any], RD]
    single: bool = False  # octoDNS's ValueMixin types: exactly one value


def _registry(*types: RecordType) -> dict[str, RecordType]:
    return {t.name: t for t in types}


TYPES: dict[str, RecordType] = _registry(
    RecordType("A", model.A, parse_a),
    RecordType("AAAA", model.AAAA, parse_aaaa),
    RecordType("CAA", model.CAA, parse_caa),
    RecordType("CNAME", model.CNAME, parse_cname, single=True),
    RecordType("DNAME", model.DNAME, parse_dname, single=True),
    RecordType("DS", model.DS, parse_ds),
    RecordType("HTTPS", model.HTTPS, parse_svcb),
    RecordType("LOC", model.LOC, parse_loc),
    RecordType("MX", model.MX, parse_mx),
    RecordType("NAPTR", model.NAPTR, parse_naptr),
    RecordType("NS", model.NS, parse_ns),
    RecordType("OPENPGPKEY", model.OPENPGPKEY, parse_openpgpkey),
    RecordType("PTR", model.PTR, parse_ptr),
    RecordType("SOA", model.SOA, parse_soa, single=True),
    RecordType("SPF", model.SPF, parse_txt),
    RecordType("SRV", model.SRV, parse_srv),
    RecordType("SSHFP", model.SSHFP, parse_sshfp),
    RecordType("SVCB", model.SVCB, parse_svcb),
    RecordType("TLSA", model.TLSA, parse_tlsa),
    RecordType("TXT", model.TXT, parse_txt),
    RecordType("URI", model.URI, parse_uri),
)

# octoDNS's two types that are not DNS types are handled by the loader: ALIAS is resolved at
# load time into the apex's A/AAAA (gslb.config.alias); URLFWD, a provider's HTTP redirect
# service, is checked and skipped (gslb.config.octodns).

TYPE_NAMES: dict[int, str] = {t.code: t.name for t in TYPES.values()} | {
    model.HINFO: "HINFO", model.OPT: "OPT", model.RRSIG: "RRSIG", model.NSEC: "NSEC",
    model.DNSKEY: "DNSKEY", model.NSEC3: "NSEC3", model.NSEC3PARAM: "NSEC3PARAM",
    model.CDS: "CDS", model.CDNSKEY: "CDNSKEY", model.NXNAME: "NXNAME",
    model.IXFR: "IXFR", model.AXFR: "AXFR", model.ANY: "ANY",
}  # fmt: skip
"""Every type code gslb knows by name: the ones it serves plus the protocol's own."""

__all__ = ["TYPES", "TYPE_NAMES", "RecordType", "Invalid", "MAX_TTL"]
