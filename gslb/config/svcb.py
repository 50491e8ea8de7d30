"""SVCB and HTTPS values (RFC 9460) in octoDNS form -> rdata bytes.

octoDNS writes ``{svcpriority, targetname, svcparams}`` with ``svcparams`` a mapping of key
name to value: lists for ``mandatory``, ``alpn``, ``ipv4hint``, ``ipv6hint``; a number for
``port``; base64 text for ``ech``; nothing for ``no-default-alpn``; text (or nothing) for a
generic ``keyNNNNN``. These are the records CDNs publish HTTP/3 (``alpn: [h3, h2]``) and ECH
through, so every check RFC 9460 makes of a zone's data is made here, beyond octoDNS's own
(which refuses unknown keys, bad hints, bad base64 and parameters on an AliasMode record).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import struct
from collections.abc import Mapping
from typing import Any

from gslb.config.values import Fields, as_int, quoted, txt_text

KEYS = {
    "mandatory": 0,
    "alpn": 1,
    "no-default-alpn": 2,
    "port": 3,
    "ipv4hint": 4,
    "ech": 5,
    "ipv6hint": 6,
}
GENERIC = re.compile(r"key(\d{1,5})")
MAX_KEY = 65534  # 65535 is the "invalid key" of RFC 9460 section 14.3.2


def parse_svcb_value(value: Any) -> bytes:
    f = Fields("SVCB", value, ("svcpriority", "targetname"), ("svcparams",))
    priority = f.uint("svcpriority", 16)
    target = f.name("targetname", root=True)  # "." = the owner name itself (service mode)
    params = f.data.get("svcparams") or {}
    if not isinstance(params, Mapping):
        f.fail("svcparams must be a mapping of key to value")
        params = {}
    if priority == 0 and params and f.has("svcpriority"):
        f.fail("svcparams set on an AliasMode (svcpriority 0) record")
    encoded = {}
    for key, raw in params.items():
        number = key_number(str(key), f)
        if number is None:
            continue
        if number in encoded:
            f.fail(f'SvcParam "{key}" given twice (as key{number})')
            continue
        encoded[number] = param_value(number, str(key), raw, f)
    check_mandatory(params, encoded, f)
    f.done()
    body = b"".join(
        struct.pack("!HH", number, len(data)) + data for number, data in sorted(encoded.items())
    )
    return struct.pack("!H", priority) + target + body


def key_number(key: str, f: Fields) -> int | None:
    if key in KEYS:
        return KEYS[key]
    match = GENERIC.fullmatch(key)
    if match is None:
        f.fail(f"unknown SvcParam {key}")
        return None
    number = int(match.group(1))
    if number > MAX_KEY:
        f.fail(f'SvcParam key "{key}" has a wrong key number')
        return None
    return number


def param_value(number: int, key: str, raw: Any, f: Fields) -> bytes:
    """The wire form of one parameter's value; problems go to ``f``."""
    try:
        return ENCODERS.get(number, generic)(key, raw)
    except ValueError as exc:
        f.fail(str(exc))
        return b""


def names_list(key: str, raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{key} is not a list")
    return [str(item) for item in raw]


def mandatory(key: str, raw: Any) -> bytes:
    numbers = []
    for item in names_list(key, raw):
        scratch = Fields("SVCB", {}, ())
        number = key_number(item, scratch)
        if number is None:
            raise ValueError(f'unsupported SvcParam "{item}" in mandatory')
        if number == 0:
            raise ValueError("mandatory must not list itself")
        if number in numbers:
            raise ValueError(f'"{item}" listed twice in mandatory')
        numbers.append(number)
    return b"".join(struct.pack("!H", n) for n in sorted(numbers))


def alpn(key: str, raw: Any) -> bytes:
    out = b""
    for item in names_list(key, raw):
        try:
            text = txt_text(item)
        except ValueError as exc:
            raise ValueError(f"alpn {exc}") from None
        data = text.encode("ascii")
        if not 0 < len(data) < 256:
            raise ValueError(f'alpn id "{item}" must be 1 to 255 bytes')
        out += bytes((len(data),)) + data
    return out


def no_default_alpn(key: str, raw: Any) -> bytes:
    if raw is not None:
        raise ValueError(f"SvcParam {key} has a value when it should not")
    return b""


def port(key: str, raw: Any) -> bytes:
    number = as_int(raw)
    if number is None or not 0 <= number <= 65535:
        raise ValueError(f'port "{raw}" is not a valid number')
    return struct.pack("!H", number)


def hints(version: int):
    kind = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address

    def encode(key: str, raw: Any) -> bytes:
        out = b""
        for item in names_list(key, raw):
            try:
                out += kind(item).packed
            except ValueError:
                raise ValueError(f'{key} "{item}" is not a valid IPv{version} address') from None
        return out

    return encode


def ech(key: str, raw: Any) -> bytes:
    """An ECHConfigList (RFC 9849 section 4): its own length, then at least one 4-byte
    config header. Clients refuse a reply whose list is malformed, so the zone is checked."""
    try:
        data = base64.b64decode(str(raw if raw is not None else ""), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("ech SvcParam is invalid Base64") from None
    if len(data) < 6 or int.from_bytes(data[:2], "big") != len(data) - 2:
        raise ValueError("ech SvcParam is not an ECHConfigList (length prefix, then configs)")
    return data


def generic(key: str, raw: Any) -> bytes:
    """``keyNNNNN``: no value, or presentation text (``\\DDD`` and ``\\X`` escapes)."""
    if raw is None:
        return b""
    if isinstance(raw, Mapping | list):
        raise ValueError(f"SvcParam {key} takes text, not {type(raw).__name__}")
    text = str(raw)
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1]
    return quoted(text, key)


ENCODERS = {
    0: mandatory,
    1: alpn,
    2: no_default_alpn,
    3: port,
    4: hints(4),
    5: ech,
    6: hints(6),
}


def check_mandatory(params: Mapping, encoded: dict[int, bytes], f: Fields) -> None:
    """RFC 9460 section 8: every key listed in mandatory is present; no-default-alpn needs
    alpn (section 7.1.1)."""
    if 2 in encoded and 1 not in encoded:
        f.fail("no-default-alpn requires alpn")
    if 0 not in encoded or not encoded[0]:
        return
    listed = struct.unpack(f"!{len(encoded[0]) // 2}H", encoded[0])
    missing = [number for number in listed if number not in encoded]
    names = {v: k for k, v in KEYS.items()}
    for number in missing:
        f.fail(f'mandatory lists "{names.get(number, f"key{number}")}" which is not set')
