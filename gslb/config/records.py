"""Record values in octoDNS form -> dnslib rdata, one parser per type.

Every parser takes the YAML value and returns rdata or raises ``ValueError`` with a reason that
the loader prefixes with file, record and field. Encoding is done once, at load time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from dnslib import AAAA as AAAARD
from dnslib import CAA as CAARD
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
from gslb.config.names import NameError_, labels, to_wire

MAX_TTL = 2**31 - 1  # RFC 2181 section 8
TXT_CHUNK = 255


def hostname(value: Any) -> DNSLabel:
    """An absolute hostname: octoDNS insists on the trailing dot, and so do we."""
    if not isinstance(value, str) or not value:
        raise ValueError(f'invalid hostname "{value}"')
    if not value.endswith("."):
        raise ValueError(f'hostname "{value}" must end with a dot')
    try:
        return DNSLabel(labels(to_wire(value)))
    except NameError_ as exc:
        raise ValueError(str(exc)) from None


def ipv4(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        raise ValueError(f'invalid IPv4 address "{value}"') from None


def ipv6(value: Any) -> str:
    try:
        return str(ipaddress.IPv6Address(str(value)))
    except ValueError:
        raise ValueError(f'invalid IPv6 address "{value}"') from None


def uint(data: Mapping, key: str, bits: int) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise ValueError(f'invalid {key} "{value}"')
    return value


def fields(value: Any, required: tuple[str, ...], kind: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"{kind} value must be a mapping with {', '.join(required)}")
    missing = [key for key in required if key not in value]
    if missing:
        raise ValueError(f"{kind} value missing {', '.join(missing)}")
    unknown = sorted(set(value) - set(required))
    if unknown:
        raise ValueError(f"{kind} value has unknown key {', '.join(map(str, unknown))}")
    return value


def txt_chunks(value: Any) -> list[bytes]:
    r"""octoDNS TXT: ``\;`` stands for ``;``; long strings are split in 255-byte chunks."""
    if not isinstance(value, str):
        raise ValueError(f'invalid TXT value "{value}"')
    raw = value.replace("\\;", ";").encode("utf-8")
    if not raw:
        return [b""]
    return [raw[i : i + TXT_CHUNK] for i in range(0, len(raw), TXT_CHUNK)]


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
    data = dict(value) if isinstance(value, Mapping) else value
    if isinstance(data, dict) and "priority" in data and "preference" not in data:
        data["preference"] = data.pop("priority")  # octoDNS legacy spelling
    if isinstance(data, dict) and "value" in data and "exchange" not in data:
        data["exchange"] = data.pop("value")
    data = fields(data, ("preference", "exchange"), "MX")
    return MXRD(hostname(data["exchange"]), uint(data, "preference", 16))


def parse_srv(value: Any) -> RD:
    data = fields(value, ("priority", "weight", "port", "target"), "SRV")
    return SRVRD(
        uint(data, "priority", 16),
        uint(data, "weight", 16),
        uint(data, "port", 16),
        hostname(data["target"]),
    )


def parse_caa(value: Any) -> RD:
    data = dict(value) if isinstance(value, Mapping) else value
    if isinstance(data, dict):
        data.setdefault("flags", 0)
    data = fields(data, ("flags", "tag", "value"), "CAA")
    tag = data["tag"]
    if not isinstance(tag, str) or not tag.isalnum() or not 0 < len(tag) < 256:
        raise ValueError(f'invalid CAA tag "{tag}"')
    return CAARD(uint(data, "flags", 8), tag, str(data["value"]))


def parse_txt(value: Any) -> RD:
    return TXTRD(txt_chunks(value))


def parse_soa(value: Any) -> RD:
    keys = ("mname", "rname", "serial", "refresh", "retry", "expire", "minimum")
    data = fields(value, keys, "SOA")
    times = tuple(uint(data, key, 32) for key in keys[2:])
    return SOARD(hostname(data["mname"]), hostname(data["rname"]), times)


PARSERS: dict[str, tuple[int, Callable[[Any], RD]]] = {
    "A": (model.A, parse_a),
    "AAAA": (model.AAAA, parse_aaaa),
    "CNAME": (model.CNAME, parse_cname),
    "NS": (model.NS, parse_ns),
    "PTR": (model.PTR, parse_ptr),
    "MX": (model.MX, parse_mx),
    "SRV": (model.SRV, parse_srv),
    "CAA": (model.CAA, parse_caa),
    "TXT": (model.TXT, parse_txt),
    "SOA": (model.SOA, parse_soa),
}

SINGLE_VALUE = {"CNAME", "SOA"}  # types whose record holds exactly one value

TYPE_NAMES = {code: name for name, (code, _) in PARSERS.items()}
