"""Reading one octoDNS value: the scalar checks every record type shares.

``Fields`` reads a mapping value (MX, SRV, SVCB, ...) field by field and collects every
problem instead of stopping at the first, so ``gslb check`` shows an operator all of them in
one run, as octoDNS does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from dnslib import DNSLabel

from gslb.config.names import NameError_, labels, to_wire


class Invalid(ValueError):
    """One value with every problem found in it."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def hostname(value: Any) -> DNSLabel:
    """An absolute hostname: octoDNS insists on the trailing dot, and so do we."""
    return DNSLabel(labels(name_wire(value)))


HOST_LABEL = re.compile(rb"(?!-)[-_a-z0-9]{1,63}(?<!-)")


def name_wire(value: Any, *, root: bool = False, syntax: bool = True) -> bytes:
    """An absolute hostname -> lowercase uncompressed wire bytes.

    ``root``: ``.`` is accepted (MX, SRV, SVCB/HTTPS: "no service"). ``syntax``: the name must
    be a host name as octoDNS checks targets (letters, digits, hyphens, underscores, no hyphen
    at either end of a label, at least two labels), else octoDNS refuses the file, and so do
    we; SOA names and NAPTR replacements, which octoDNS does not check, skip it."""
    if not isinstance(value, str) or not value:
        raise ValueError(f'invalid hostname "{value}"')
    if not value.endswith("."):
        raise ValueError(f'hostname "{value}" must end with a dot')
    if value == ".":
        if root:
            return b"\x00"
        raise ValueError('"." is not a valid target here')
    try:
        wire = to_wire(value)
    except NameError_ as exc:
        raise ValueError(str(exc)) from None
    parts = labels(wire)
    if syntax and (len(parts) < 2 or not all(HOST_LABEL.fullmatch(p) for p in parts)):
        raise ValueError(
            f'"{value}" is not a valid FQDN (letters, digits, hyphens and underscores, at '
            "least two labels)"
        )
    return wire


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


def as_int(value: Any) -> int | None:
    """octoDNS reads numbers with ``int()``: an int or a decimal string. Floats and booleans
    are refused here (``int(2.5)`` would silently be 2)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return None


def char_string(text: str, what: str) -> bytes:
    """RFC 1035 <character-string> of a quoted field: a length byte, then at most 255 bytes."""
    raw = quoted(text, what)
    if len(raw) > 255:
        raise ValueError(f"{what} longer than 255 bytes")
    return bytes((len(raw),)) + raw


def quoted(text: str, what: str = "value") -> bytes:
    """The bytes of a field octoDNS renders between double quotes (CAA value, URI target,
    NAPTR fields, SVCB generic values): every DNS tool and provider reading that form takes
    ``\\X`` as X and ``\\DDD`` as the byte DDD (RFC 1035 section 5.1), so gslb does too."""
    raw = text.encode("utf-8")
    if b"\\" not in raw and b'"' not in raw:
        return raw
    out, i = bytearray(), 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x22:
            raise ValueError(f'unescaped " in {what} "{text}" (write \\" for a quote)')
        if byte != 0x5C:
            out.append(byte)
            i += 1
        elif raw[i + 1 : i + 2].isdigit():
            digits = raw[i + 1 : i + 4]
            if len(digits) != 3 or not digits.isdigit() or int(digits) > 255:
                raise ValueError(f'bad escape in {what} "{text}": \\DDD takes three digits')
            out.append(int(digits))
            i += 4
        elif i + 1 < len(raw):
            out.append(raw[i + 1])
            i += 2
        else:
            raise ValueError(f'{what} "{text}" ends in a lone backslash')
    return bytes(out)


class Fields:
    """Reads one mapping value field by field, collecting every problem instead of stopping at
    the first. A getter whose field is missing or wrong records the reason and returns a
    placeholder; ``done()`` raises ``Invalid`` with all of them."""

    def __init__(
        self,
        kind: str,
        value: Any,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(value, Mapping):
            keys = ", ".join(required)
            raise Invalid([f"{kind} value must be a mapping with {keys}"])
        data = {str(k): v for k, v in value.items()}
        for old, new in (aliases or {}).items():  # octoDNS's older spellings
            if old in data and new not in data:
                data[new] = data.pop(old)
        self.kind, self.data, self.problems = kind, data, []
        self.problems += [f"missing {key}" for key in required if key not in data]
        known = set(required) | set(optional) | set(aliases or {})
        unknown = sorted(set(data) - known)
        if unknown:
            self.problems.append(f"{kind} value has unknown key {', '.join(unknown)}")

    def has(self, key: str) -> bool:
        return key in self.data

    def fail(self, reason: str) -> None:
        self.problems.append(reason)

    def uint(self, key: str, bits: int, allowed: tuple[int, ...] = ()) -> int:
        if key not in self.data:
            return 0
        raw = self.data[key]
        number = as_int(raw)
        if number is None or not 0 <= number < 2**bits:
            self.fail(f'invalid {key} "{raw}"')
            return 0
        if allowed and number not in allowed:
            self.fail(f'unrecognized {key} "{raw}" (one of {", ".join(map(str, allowed))})')
            return 0
        return number

    def text(self, key: str) -> str:
        raw = self.data.get(key, "")
        if raw is None or isinstance(raw, Mapping | list):
            self.fail(f'invalid {key} "{raw}"')
            return ""
        return str(raw)

    def name(self, key: str, *, root: bool = False, syntax: bool = True) -> bytes:
        if key not in self.data:
            return b"\x00"
        try:
            return name_wire(self.data[key], root=root, syntax=syntax)
        except ValueError as exc:
            self.fail(f"{key}: {exc}")
            return b"\x00"

    def hex(self, key: str, lengths: Mapping[int, int] | None = None, selector: int = -1) -> bytes:
        if key not in self.data:
            return b""
        raw = str(self.data[key]).strip()
        try:
            data = bytes.fromhex(raw) if re.fullmatch(r"[0-9a-fA-F]+", raw) else None
        except ValueError:
            data = None
        if data is None:
            self.fail(f'invalid {key} "{raw}": hexadecimal digits, an even number of them')
            return b""
        expected = (lengths or {}).get(selector)
        if expected is not None and len(raw) != expected:
            self.fail(f"{key} length {len(raw)} does not match type {selector} ({expected})")
        return data

    def char_string(self, key: str) -> bytes:
        try:
            return char_string(self.text(key), key)
        except ValueError as exc:
            self.fail(str(exc))
            return b"\x00"

    def done(self) -> None:
        if self.problems:
            raise Invalid(self.problems)


TXT_UNESCAPED = re.compile(r"\w;")
TXT_DOUBLE_ESCAPED = re.compile(r"\\\\;")


def txt_text(value: Any) -> str:
    r"""octoDNS's TXT/SPF value: ``\;`` stands for ``;`` (a bare ``;`` after a word is refused,
    as octoDNS does, since it usually means a forgotten escape); ASCII only; a value wrapped in
    double quotes loses them and ``" "`` joins its pieces, as octoDNS's own processing does."""
    if value is None or isinstance(value, Mapping | list):
        raise ValueError(f'invalid TXT value "{value}"')
    value = str(value)
    reasons = []
    if TXT_UNESCAPED.search(value):
        reasons.append(f'unescaped ; in "{value}"')
    if TXT_DOUBLE_ESCAPED.search(value):
        reasons.append(f'double escaped ; in "{value}"')
    if not value.isascii():
        reasons.append(f'non ASCII character in "{value}"')
    if reasons:
        raise Invalid(reasons)
    if value.startswith('"'):
        value = value[1:-1]
    return value.replace('" "', "")
