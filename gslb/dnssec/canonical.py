"""Canonical forms for signing (RFC 4034 section 6): names, RDATA, RRsets, type bitmaps.

dnslib compresses names inside RDATA (CNAME, NS, MX, SOA) even in a fresh buffer and keeps the
letter case it was given, so the signing input is written here by hand: uncompressed, with the
embedded names of the RFC 3597 section 7 types lowercased. The NSEC next name is never
lowercased (RFC 6840 section 5.1): it is built from the already lowercase query key.
"""

from __future__ import annotations

import struct

from dnslib import RD, DNSBuffer, DNSLabel

RR_HEAD = struct.Struct("!HHIH")
# Types whose RDATA names are lowercased in the canonical form (RFC 4034 6.2, RFC 3597 7).
LOWERCASE_NAMES = frozenset({2, 3, 4, 5, 6, 7, 8, 9, 12, 14, 15, 17, 18, 21, 26, 33, 35, 36, 39})


class CanonicalBuffer(DNSBuffer):
    """A dnslib buffer that never compresses and, when asked, lowercases names."""

    def __init__(self, lowercase: bool) -> None:
        super().__init__()
        self.lowercase = lowercase

    def encode_name(self, name) -> None:
        if not isinstance(name, DNSLabel):
            name = DNSLabel(name)
        for label in name.label:
            self.pack("!B", len(label))
            self.append(label.lower() if self.lowercase else label)
        self.append(b"\x00")

    encode_name_nocompress = encode_name  # types that never compress still get lowercased


def rdata_wire(rtype: int, rdata) -> bytes:
    """One RDATA in canonical form."""
    if rdata.__class__ is RD:  # raw bytes we built ourselves (NSEC, DNSKEY, DS): as they are
        return rdata.data
    buffer = CanonicalBuffer(rtype in LOWERCASE_NAMES)
    rdata.pack(buffer)
    return bytes(buffer.data)


def count_labels(name: bytes) -> int:
    """The RRSIG labels field: labels of the owner, not counting the root or a leading ``*``."""
    count, pos = 0, 0
    while name[pos]:
        count += 1
        pos += 1 + name[pos]
    return count - 1 if name.startswith(b"\x01*") else count


def rrset_wire(owner: bytes, rtype: int, rclass: int, ttl: int, rdatas: list[bytes]) -> bytes:
    """The RRset part of the signing input: sorted, duplicates removed (RFC 4034 6.3)."""
    return b"".join(
        owner + RR_HEAD.pack(rtype, rclass, ttl, len(rd)) + rd for rd in sorted(set(rdatas))
    )


def type_bitmap(types) -> bytes:
    """NSEC type bit maps (RFC 4034 4.1.2): windows of up to 32 octets."""
    windows: dict[int, bytearray] = {}
    for rtype in sorted(set(types)):
        window = windows.setdefault(rtype >> 8, bytearray(32))
        low = rtype & 0xFF
        window[low >> 3] |= 0x80 >> (low & 7)
    out = bytearray()
    for number, bits in sorted(windows.items()):
        used = bytes(bits).rstrip(b"\x00")
        out += bytes((number, len(used))) + used
    return bytes(out)


MAX_NAME = 255  # octets of a wire name, root included (RFC 1035 2.3.4)
MAX_LABEL = 63


def successor(name: bytes) -> bytes | None:
    """The NSEC next name for compact denial: the immediate successor of the lowercase wire
    ``name`` in canonical order (RFC 4034 6.1), ``\\000.name`` as RFC 9824 3.1 writes it.
    A name too long for one more label (254 or 255 octets) gets the next one the way RFC 4471
    3.1.2 does it instead: ``\\000`` appended to its first label when that fits, else the
    first label's last octet incremented (an 0xFF dropped and the one before incremented).
    Every name in between would be longer than 255 octets, so the NSEC still denies this
    name alone; uppercase octets are skipped, since validators compare lowercased names.
    None when no such name exists (a first label of 0xFF octets only): whatever comes next
    may be a real name."""
    if len(name) + 2 <= MAX_NAME:
        return b"\x01\x00" + name
    size = name[0]
    first, rest = name[1 : 1 + size], name[1 + size :]
    if size < MAX_LABEL and len(name) < MAX_NAME:
        return bytes((size + 1,)) + first + b"\x00" + rest
    label = bytearray(first)
    while label and label[-1] == 0xFF:
        label.pop()
    if not label:
        return None
    label[-1] += 1
    if 0x41 <= label[-1] <= 0x5A:  # "A".."Z" would compare as "a".."z": skip past them
        label[-1] = 0x5B
    return bytes((len(label),)) + bytes(label) + rest
