"""Domain names in the two forms gslb uses: text (``www.example.com.``) and lowercase wire bytes.

The answer path works on wire bytes only; text is for YAML, messages and metrics.
"""

from __future__ import annotations

import idna

MAX_NAME = 255
MAX_LABEL = 63


class NameError_(ValueError):
    """A name that cannot exist in DNS (label too long, empty label, name too long)."""


def to_wire(text: str) -> bytes:
    """``"WWW.Example.com."`` -> lowercase wire bytes. Raises NameError_ with the reason.

    A label with non-ASCII characters is IDNA-encoded (``bücher`` -> ``xn--bcher-kva``), label
    by label as octoDNS encodes names, so a file octoDNS wrote with Unicode names is served
    under the names octoDNS pushes to every other provider."""
    text = text.strip()
    if text in (".", ""):
        return b"\x00"
    labels = text.rstrip(".").split(".")
    out = bytearray()
    for label in labels:
        raw = label.encode("utf-8").lower() if label.isascii() else idna_label(label)
        if not raw:
            raise NameError_(f'empty label in "{text}"')
        if len(raw) > MAX_LABEL:
            raise NameError_(f'label "{label[:20]}..." longer than {MAX_LABEL} bytes')
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > MAX_NAME:
        raise NameError_(f'name "{text[:40]}..." longer than {MAX_NAME} bytes')
    return bytes(out)


def idna_label(label: str) -> bytes:
    try:
        return idna.encode(label.lower())
    except idna.IDNAError as exc:
        raise NameError_(f'label "{label}" is not a valid internationalized name: {exc}') from None


def to_text(wire: bytes) -> str:
    """Wire bytes (uncompressed) -> ``"www.example.com."``; non-printable bytes escaped."""
    labels = []
    pos = 0
    while wire[pos]:
        length = wire[pos]
        raw = wire[pos + 1 : pos + 1 + length]
        labels.append("".join(_escape(b) for b in raw))
        pos += 1 + length
    return ".".join(labels) + "."


def _escape(byte: int) -> str:
    char = chr(byte)
    if char in ".\\":
        return "\\" + char
    if 0x21 <= byte <= 0x7E:
        return char
    return f"\\{byte:03d}"


def parent(wire: bytes) -> bytes:
    """The name one label up; the root's parent is the root."""
    return wire[1 + wire[0] :] if wire[0] else wire


def labels(wire: bytes) -> tuple[bytes, ...]:
    """Wire bytes -> tuple of label bytes, as dnslib.DNSLabel accepts."""
    out = []
    pos = 0
    while wire[pos]:
        out.append(wire[pos + 1 : pos + 1 + wire[pos]])
        pos += 1 + wire[pos]
    return tuple(out)


def is_below(name: bytes, ancestor: bytes) -> bool:
    """True when ``name`` equals ``ancestor`` or lies below it (label-aligned suffix)."""
    while True:
        if name == ancestor:
            return True
        if name == b"\x00":
            return False
        name = parent(name)


def relative_to_fqdn(relative: str, zone_fqdn: str) -> str:
    """octoDNS record key (``''`` for the apex) -> absolute name with trailing dot."""
    return zone_fqdn if relative == "" else f"{relative}.{zone_fqdn}"
