"""A small MaxMind DB (format 2.0) writer for millions of networks, for the benchmarks.

Why not ``mmdb-writer`` (in the test lock): it builds the tree from ``netaddr`` sets in pure
Python, about 106 s and 2-3 GB for 564k ranges (docs: /work/shared/reference/geoip.md §5), so a
City-size database (millions of networks) would take hours. Here the networks arrive sorted
and disjoint, so the tree is built in one pass with a path stack (each node created once, no
lookups), kept in two integer arrays, and packed into 24/28/32-bit records by byte slicing.

Layout (https://maxmind.github.io/MaxMind-DB/): the search tree (``node_count`` nodes of two
records each), 16 zero bytes, the data section, ``\\xab\\xcd\\xefMaxMind.com`` and the metadata
map. A record value below ``node_count`` is a node, ``node_count`` means "no data", larger
values point into the data section (``value - node_count - 16``). IPv4 lives under ``::/96``
of an IPv6 tree and, as MaxMind's own writer does, ``::ffff:0:0/96`` (IPv4-mapped),
``2001::/32`` (Teredo) and ``2002::/16`` (6to4) point back at that IPv4 subtree.

Data section values are deduplicated: a string, map or array already written is replaced by a
pointer to it, as real databases do for their repeated keys, names and country maps.
"""

from __future__ import annotations

import struct
import sys
import time
from array import array
from collections.abc import Iterable
from typing import Any

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"
# IPv6-tree prefixes that alias the IPv4 subtree (::/96), as MaxMind's writer adds them.
IPV4_ALIASES = ((0xFFFF << 32, 96), (0x2001 << 112, 32), (0x2002 << 112, 16))
_EMPTY = -1  # placeholder child: no data
_ALIAS = -1  # record index of an alias network (points at the IPv4 subtree)

T_POINTER, T_UTF8, T_DOUBLE, T_UINT16, T_UINT32, T_MAP = 1, 2, 3, 5, 6, 7
T_UINT64, T_ARRAY, T_BOOLEAN = 9, 11, 14


class DataWriter:
    """The data section: each record appended once; an inner value (string, map, array) that
    is already in the section becomes a pointer to it, as in real databases."""

    def __init__(self, dedupe: bool = True) -> None:
        self.out = bytearray()
        self.seen: dict[Any, int] = {}  # frozen value -> offset where it was written
        self.dedupe = dedupe

    def commit(self, value: Any) -> int:
        """Append a record; returns its offset in the section (what tree records point to)."""
        offset = len(self.out)
        self.out += self.encode(value, offset)
        return offset

    def encode(self, value: Any, at: int) -> bytes:
        """The bytes of ``value`` written at offset ``at`` (inner values new to the section
        are remembered at the offsets they will occupy)."""
        if isinstance(value, dict):
            chunks = bytearray(control(T_MAP, len(value)))
            for key, item in value.items():
                chunks += self.inner(str(key), at + len(chunks))
                chunks += self.inner(item, at + len(chunks))
            return bytes(chunks)
        if isinstance(value, list | tuple):
            chunks = bytearray(control(T_ARRAY, len(value)))
            for item in value:
                chunks += self.inner(item, at + len(chunks))
            return bytes(chunks)
        return scalar(value)

    def inner(self, value: Any, at: int) -> bytes:
        if not self.dedupe:
            return self.encode(value, at)
        key = freeze(value)
        offset = self.seen.get(key)
        if offset is not None:
            ptr = pointer(offset)
            if isinstance(value, dict | list | tuple) or len(ptr) < len(scalar(value)):
                return ptr
        encoded = self.encode(value, at)
        if offset is None:
            self.seen[key] = at
        return encoded


class UInt64(int):
    """An integer written as uint64 whatever its size (the metadata's ``build_epoch``: the C
    reader checks the type)."""


class UInt32(int):
    """An integer written as uint32 whatever its size (the metadata's ``node_count``)."""


def freeze(value: Any) -> Any:
    """A hashable key for a value, distinguishing types the format distinguishes."""
    if isinstance(value, dict):
        return ("m", tuple((str(k), freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("a", tuple(freeze(v) for v in value))
    return (type(value).__name__, value)


def scalar(value: Any) -> bytes:
    if isinstance(value, bool):
        return control(T_BOOLEAN, int(value))
    if isinstance(value, str):
        raw = value.encode()
        return control(T_UTF8, len(raw)) + raw
    if isinstance(value, float):
        return control(T_DOUBLE, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative integers are not written here: {value}")
        kind = T_UINT16 if value < 1 << 16 else T_UINT32 if value < 1 << 32 else T_UINT64
        if isinstance(value, UInt64 | UInt32):
            kind = T_UINT64 if isinstance(value, UInt64) else T_UINT32
        if value >= 1 << 64:
            raise ValueError(f"integer too large: {value}")
        return control(kind, (value.bit_length() + 7) // 8) + value.to_bytes(
            (value.bit_length() + 7) // 8, "big"
        )
    raise TypeError(f"cannot write {type(value).__name__} to a MaxMind DB")


def control(kind: int, size: int) -> bytes:
    """Control byte(s): type in the top 3 bits (extended types in a second byte), then the
    size, with 29/30/31 meaning one, two or three more size bytes."""
    if size < 29:
        head, extra = size, b""
    elif size < 29 + 256:
        head, extra = 29, (size - 29).to_bytes(1, "big")
    elif size < 285 + 65536:
        head, extra = 30, (size - 285).to_bytes(2, "big")
    else:
        head, extra = 31, (size - 65821).to_bytes(3, "big")
    if kind <= 7:
        return bytes([(kind << 5) | head]) + extra
    return bytes([head, kind - 7]) + extra


def pointer(offset: int) -> bytes:
    """A pointer (type 1) to ``offset`` in the data section, in its shortest form."""
    if offset < 1 << 11:
        return bytes([0x20 | (offset >> 8), offset & 0xFF])
    if offset < 2048 + (1 << 19):
        value = offset - 2048
        return bytes([0x28 | (value >> 16)]) + (value & 0xFFFF).to_bytes(2, "big")
    if offset < 526336 + (1 << 27):
        value = offset - 526336
        return bytes([0x30 | (value >> 24)]) + (value & 0xFFFFFF).to_bytes(3, "big")
    return bytes([0x38]) + offset.to_bytes(4, "big")


class TreeBuilder:
    """The search tree of an IPv6 database from networks in address order."""

    def __init__(self) -> None:
        self.left = array("q", [_EMPTY])
        self.right = array("q", [_EMPTY])
        self.path = [0] * 129  # node at each depth of the last inserted network
        self.last: int | None = None
        self.last_end = -1
        self.v4_root: int | None = None

    def insert(self, address: int, prefix: int, record: int) -> None:
        """Add ``address/prefix`` (128-bit space) -> record index; networks must come sorted
        and disjoint (checked), so only the nodes below the fork from the previous one are
        new."""
        if not 0 < prefix <= 128:
            raise ValueError(f"prefix length {prefix} out of 1..128")
        if address & ((1 << (128 - prefix)) - 1):
            raise ValueError(f"{address:#x}/{prefix} has host bits set")
        if address <= self.last_end:
            raise ValueError(f"{address:#x}/{prefix} overlaps or precedes the previous network")
        self.last_end = address | ((1 << (128 - prefix)) - 1)
        depth = 0 if self.last is None else 128 - (self.last ^ address).bit_length()
        self.last = address
        left, right, path = self.left, self.right, self.path
        node = path[depth]
        while depth < prefix - 1:
            new = len(left)
            left.append(_EMPTY)
            right.append(_EMPTY)
            if (address >> (127 - depth)) & 1:
                right[node] = new
            else:
                left[node] = new
            depth += 1
            path[depth] = node = new
        value = -2 - record if record != _ALIAS else self.ipv4_root()
        if (address >> (128 - prefix)) & 1:
            right[node] = value
        else:
            left[node] = value

    def ipv4_root(self) -> int:
        """The node of ::/96, created when IPv4 networks were inserted (they sort first)."""
        if self.v4_root is None:
            node = 0
            for _ in range(96):
                node = self.left[node]
                if node < 0:
                    raise ValueError("IPv4 aliases need IPv4 networks under ::/96 first")
            self.v4_root = node
        return self.v4_root

    def __len__(self) -> int:
        return len(self.left)


def pack_tree(left: array, right: array, record_size: int) -> bytes:
    """Both record arrays (already resolved to final values) as the file's node bytes."""
    limit = 1 << record_size
    if max(left) >= limit or max(right) >= limit:
        raise ValueError(f"record values do not fit {record_size} bits")
    lb, rb = array("I", left), array("I", right)
    if sys.byteorder == "little":
        lb.byteswap()
        rb.byteswap()
    lbytes, rbytes = lb.tobytes(), rb.tobytes()  # big-endian, 4 bytes per record
    n = len(left)
    if record_size == 32:
        out = bytearray(n * 8)
        for i in range(4):
            out[i::8], out[4 + i :: 8] = lbytes[i::4], rbytes[i::4]
        return bytes(out)
    if record_size == 24:
        out = bytearray(n * 6)
        for i in range(3):
            out[i::6], out[3 + i :: 6] = lbytes[1 + i :: 4], rbytes[1 + i :: 4]
        return bytes(out)
    if record_size != 28:
        raise ValueError(f"record size {record_size} is not 24, 28 or 32")
    out = bytearray(n * 7)
    for i in range(3):
        out[i::7], out[4 + i :: 7] = lbytes[1 + i :: 4], rbytes[1 + i :: 4]
    # Middle byte: the left record's top nibble, then the right record's.
    high_left = int.from_bytes(lbytes[0::4].translate(_SHIFT4), "big")
    high_right = int.from_bytes(rbytes[0::4], "big")
    out[3::7] = (high_left | high_right).to_bytes(n, "big")
    return bytes(out)


_SHIFT4 = bytes(((b << 4) & 0xF0) for b in range(256))


def write_database(
    path: str,
    networks: Iterable[tuple[int, int, int]],
    records: list[Any],
    *,
    database_type: str,
    description: str,
    languages: tuple[str, ...] = ("en",),
    record_size: int = 28,
    ipv4_aliases: bool = True,
    build_epoch: int | None = None,
) -> dict[str, Any]:
    """Write an IPv6 MaxMind DB: ``networks`` are (address, prefix, record index) in the
    128-bit space (IPv4 as ``::a.b.c.d/96+n``), sorted and disjoint. Returns figures."""
    started = time.perf_counter()
    data = DataWriter()
    offsets = [data.commit(record) for record in records]
    tree = TreeBuilder()
    count = 0
    aliases = sorted(IPV4_ALIASES) if ipv4_aliases else []
    for address, prefix, record in networks:
        while aliases and aliases[0][0] < address:
            tree.insert(*aliases.pop(0), _ALIAS)
        tree.insert(address, prefix, record)
        count += 1
    for alias in aliases:
        tree.insert(*alias, _ALIAS)
    node_count = len(tree)
    tree_seconds = time.perf_counter() - started
    # Placeholders -> final values: -1 no data, -(2 + r) the data of record r.
    final = [node_count] + [node_count + 16 + offset for offset in offsets]
    left = array("q", [v if v >= 0 else final[-v - 1] for v in tree.left])
    right = array("q", [v if v >= 0 else final[-v - 1] for v in tree.right])
    del tree
    meta = DataWriter(dedupe=False).encode(
        {
            "binary_format_major_version": 2,
            "binary_format_minor_version": 0,
            "build_epoch": UInt64(int(time.time()) if build_epoch is None else build_epoch),
            "database_type": database_type,
            "description": {"en": description},
            "ip_version": 6,
            "languages": list(languages),
            "node_count": UInt32(node_count),
            "record_size": record_size,
        },
        0,
    )
    with open(path, "wb") as f:
        f.write(pack_tree(left, right, record_size))
        f.write(b"\0" * 16)
        f.write(data.out)
        f.write(METADATA_MARKER)
        f.write(meta)
    return {
        "networks": count,
        "records": len(records),
        "node_count": UInt32(node_count),
        "record_size": record_size,
        "data_bytes": len(data.out),
        "tree_seconds": round(tree_seconds, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
