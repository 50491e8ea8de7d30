"""A MaxMind-format database flattened into sorted integer address ranges, one table per family.

The policy compiler (``gslb.policy.compile``) turns these into per-record tables of address
ranges -> prepared decision, so a client never seen before costs one bisect instead of a
database lookup, a record decode and rule matching. The flattening walks the database's
search tree directly (the file's bytes, no decoding per network), asks the C reader only once
per distinct data record, and is written as a generator that yields between slices of work, so
a caller can build it off the answer path (see ``gslb.policy.compile.Compiler``).

Places are indices into ``locations``; two special places:

- ``UNKNOWN`` (-1): no data, or never routed (our reserved table, as ``GeoDB`` answers None);
- ``ASK`` (-2): the answer needs the database's own logic (IPv4-mapped and alias ranges such as
  6to4 and Teredo, which the tree points back into the IPv4 tree): callers take the
  step-by-step path there.
"""

from __future__ import annotations

import gzip
import ipaddress
import mmap
import sys
from array import array
from bisect import bisect_right
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gslb.geo import _RESERVED_TABLES, GeoDB, Location, _parse

UNKNOWN, ASK = -1, -2
SLICE_NODES = 2048  # tree nodes walked between two yields (about a millisecond of work)
# Every other pass over millions of items yields too (a City database has 5-8 million leaves:
# one pass in one piece held answers for half a second to two seconds, measured): items per
# slice for plain passes, leaves per slice while records get decoded, nodes per unpacked chunk.
SLICE_ITEMS = 8192
SLICE_DECODES = 2048
SLICE_UNPACK = 1 << 18
V6_SHIFT = 64  # IPv6 tables key on the top 64 bits
# ::/64 holds ::/96 (IPv4-compatible) and ::ffff:0:0/96 (IPv4-mapped): the database answers
# them through its IPv4 tree, so they take the step-by-step path (and IPv6 keys stay 64-bit).
LOW_V6 = (0, (1 << 64) - 1)


@dataclass(frozen=True, slots=True)
class GeoRanges:
    """One family: ``starts[i]`` is the first address of range i (ranges are disjoint, sorted
    and cover the whole family), ``places[i]`` its place; neighbours with equal places merged.

    IPv6 tables hold ``address >> 64``: the rare /64 with a finer boundary is ASK, so starts
    fit a compact 64-bit array.
    """

    version: int
    bits: int  # width of the stored keys: 32, or 64 for IPv6 (shifted)
    shift: int  # stored key = address >> shift
    starts: array  # array('I') for IPv4, array('Q') for IPv6
    places: array  # array('i')
    locations: tuple[Location, ...]

    def place_of(self, address: int) -> int:
        return self.places[bisect_right(self.starts, address >> self.shift) - 1]

    def __len__(self) -> int:
        return len(self.places)


class Flattener:
    """Builds both families' tables from one database; ``build()`` yields between slices."""

    def __init__(self, geo: GeoDB) -> None:
        self.geo = geo
        self.tables: dict[int, GeoRanges] = {}

    def build(self) -> Iterator[None]:
        reader = self.geo._reader
        meta = reader.metadata()
        data = yield from reading(self.geo.path)
        records = yield from unpacking(data, meta.node_count, meta.record_size)
        tree = TreeReader(data, meta.node_count, meta.record_size, records)
        v4_root = 0
        if meta.ip_version == 6:
            for _ in range(96):
                v4_root = tree.left(v4_root)
                if v4_root >= tree.node_count:
                    break
        starts, pointers = array("I"), array("q")
        yield from tree.walk(v4_root, 32, starts, pointers, stop=None)
        self.tables[4] = yield from self.finish(4, starts, pointers)
        yield
        starts, pointers = array("Q"), array("q")
        if meta.ip_version == 6:  # the top 64 bits only: a finer subtree is ASK
            yield from tree.walk(0, V6_SHIFT, starts, pointers, stop=v4_root)
        else:  # an IPv4-only database: IPv6 is unknown
            starts.append(0)
            pointers.append(tree.node_count)
        self.tables[6] = yield from self.finish(6, starts, pointers)
        yield
        del tree, data, records

    def finish(self, version: int, starts: array,
               pointers: array) -> Generator[None, None, GeoRanges]:  # fmt: skip
        """Leaves -> places (one decode per distinct data record), reserved space overlaid,
        equal neighbours merged. Everything stays in arrays: lists of millions of ints cost
        five times the memory and stall the garbage collector's full passes."""
        shift = 0 if version == 4 else V6_SHIFT
        bits = 32 if version == 4 else 128 - V6_SHIFT
        places, locations = yield from self.places(version, shift, starts, pointers)
        end = 1 << bits
        firsts, lasts = _RESERVED_TABLES[version]
        for first, last in zip(firsts, lasts, strict=True):
            for low, high, place in reserved_keys(first, last, shift):
                overlay_span(starts, places, low, high, place, end)
        yield
        if version == 6:
            overlay_span(starts, places, LOW_V6[0] >> shift, LOW_V6[1] >> shift, ASK, end)
        starts, places = yield from merging(starts, places)
        return GeoRanges(version, bits, shift, starts, places, locations)

    def places(self, version: int, shift: int, starts: array,
               pointers: array) -> Generator[None, None, tuple[array, tuple]]:  # fmt: skip
        node_count = self.geo._reader.metadata().node_count
        network_class = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
        address_class = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
        by_pointer: dict[int, int] = {node_count: UNKNOWN, ASK: ASK}
        locations: list[Location] = []
        places = array("i")
        add = places.append
        for i in range(0, len(starts), SLICE_DECODES):
            for start, pointer in zip(
                starts[i : i + SLICE_DECODES], pointers[i : i + SLICE_DECODES], strict=True
            ):
                place = by_pointer.get(pointer)
                if place is None:
                    place = by_pointer[pointer] = self.locate(
                        address_class(start << shift), network_class, locations
                    )
                add(place)
            yield
        return places, tuple(locations)

    def locate(self, address, network_class, locations: list[Location]) -> int:
        try:
            record, prefix = self.geo._reader.get_with_prefix_len(address)
        except ValueError:
            return UNKNOWN
        if record is None:
            return UNKNOWN
        location = _parse(record, network_class((int(address), prefix)))
        if location is None:
            return UNKNOWN
        locations.append(location)
        return len(locations) - 1


class TreeReader:
    """The MaxMind search tree read straight from the file's bytes (24, 28 or 32-bit records)."""

    def __init__(self, data: bytes, node_count: int, record_size: int,
                 records: array | None | bool = True) -> None:  # fmt: skip
        """``records``: both records of every node, already unpacked (``unpacking``); True
        unpacks them here, None reads node by node."""
        if record_size not in (24, 28, 32):
            raise ValueError(f"unsupported MaxMind record size {record_size}")
        self.data, self.node_count, self.record_size = data, node_count, record_size
        self.node_bytes = record_size // 4
        if records is True:
            records = unpack_records(data, node_count, record_size)
        self.records = records

    def children(self, node: int) -> tuple[int, int]:
        data, size = self.data, self.node_bytes
        offset = node * size
        if size == 6:
            return (int.from_bytes(data[offset : offset + 3], "big"),
                    int.from_bytes(data[offset + 3 : offset + 6], "big"))  # fmt: skip
        if size == 8:
            return (int.from_bytes(data[offset : offset + 4], "big"),
                    int.from_bytes(data[offset + 4 : offset + 8], "big"))  # fmt: skip
        middle = data[offset + 3]
        left = ((middle & 0xF0) << 20) | int.from_bytes(data[offset : offset + 3], "big")
        right = ((middle & 0x0F) << 24) | int.from_bytes(data[offset + 4 : offset + 7], "big")
        return left, right

    def left(self, node: int) -> int:
        return self.children(node)[0]

    def walk(self, root: int, bits: int, starts: array, pointers: array,
             stop: int | None) -> Iterator[None]:  # fmt: skip
        """Every leaf under ``root`` down to depth ``bits`` in address order as (first address
        >> (width - bits), record value), equal neighbours merged; a pointer back to ``stop``
        (the IPv4 subtree inside an IPv6 tree: ::/96 and the aliases) is ASK, and so is a
        subtree below depth ``bits`` (IPv6 networks finer than /64)."""
        node_count, records = self.node_count, self.records
        children = self.children
        stack = [(root, 0, 0)]
        pop, push = stack.pop, stack.append
        add_start, add_pointer = starts.append, pointers.append
        last = None
        budget = SLICE_NODES
        while stack:
            node, depth, start = pop()
            if node >= node_count or (node == stop and depth) or depth == bits:
                pointer = node if node >= node_count else ASK
                if pointer != last:
                    add_start(start)
                    add_pointer(pointer)
                    last = pointer
                continue
            budget -= 1
            if not budget:
                budget = SLICE_NODES
                yield
            if records is not None:  # both records decoded up front
                left, right = records[2 * node], records[2 * node + 1]
            else:
                left, right = children(node)
            depth += 1
            push((right, depth, start | (1 << (bits - depth))))
            push((left, depth, start))  # popped first: leaves come out in address order


def unpack_records(data: bytes, node_count: int, record_size: int) -> array | None:
    """Every node's two records as one array of ints (see ``unpacking``)."""
    return drain(unpacking(data, node_count, record_size))


def unpacking(data: bytes, node_count: int,
              record_size: int) -> Generator[None, None, array | None]:  # fmt: skip
    """Every node's two records as one array of ints, converted in C by slice assignment
    (walking then costs two indexings per node instead of two slices and two int parses),
    SLICE_UNPACK nodes at a time; None where the array would not be 4-byte little-endian (the
    walk then reads node by node)."""
    records = array("I")
    if record_size not in (24, 28, 32):
        raise ValueError(f"unsupported MaxMind record size {record_size}")
    if records.itemsize != 4 or (record_size != 32 and sys.byteorder != "little"):
        return None
    size = record_size // 4
    for first in range(0, node_count, SLICE_UNPACK):
        count = min(SLICE_UNPACK, node_count - first)
        tree = data[first * size : (first + count) * size]
        if len(tree) != count * size:
            raise ValueError("MaxMind search tree truncated")
        if record_size == 32:
            chunk = array("I", tree)
            if sys.byteorder == "little":
                chunk.byteswap()
            records.extend(chunk)
            yield
            continue
        wide = bytearray(count * 8)  # each record as 4 little-endian bytes
        if record_size == 24:
            wide[0::4], wide[1::4], wide[2::4] = tree[2::3], tree[1::3], tree[0::3]
        else:  # 28: 3 bytes of the left record, a byte of both top nibbles, 3 of the right
            middle = tree[3::7]
            wide[0::8], wide[1::8], wide[2::8] = tree[2::7], tree[1::7], tree[0::7]
            wide[3::8] = middle.translate(_HIGH_NIBBLE)
            wide[4::8], wide[5::8], wide[6::8] = tree[6::7], tree[5::7], tree[4::7]
            wide[7::8] = middle.translate(_LOW_NIBBLE)
        records.frombytes(wide)
        yield
    return records


_HIGH_NIBBLE = bytes(b >> 4 for b in range(256))
_LOW_NIBBLE = bytes(b & 0x0F for b in range(256))


def reading(path: str) -> Generator[None, None, bytes | mmap.mmap]:
    """The whole database: a plain file mapped read-only (its pages are the ones the reader
    maps and every worker shares, where a read made a private copy: 89 MB for a City database
    of 12 million networks), a gzip-compressed one unpacked in 4 MiB pieces (a second for a
    City database). Dropped after the build."""
    with open(path, "rb") as f:
        if f.read(2) != b"\x1f\x8b":
            try:
                return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # an empty file, or no mmap here: read it
                f.seek(0)
                return f.read()
    chunks = []
    with gzip.open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            chunks.append(chunk)
            yield
    return b"".join(chunks)


def reserved_keys(first: int, last: int, shift: int) -> list[tuple[int, int, int]]:
    """A reserved span [first, last] as key spans: UNKNOWN where it covers whole keys, ASK
    for a key it covers only in part (the database answers the rest of that /64)."""
    low, high = first >> shift, last >> shift
    mask = (1 << shift) - 1
    out = []
    if first & mask:
        out.append((low, low, ASK))
        low += 1
    if (last + 1) & mask and high >= low:
        out.append((high, high, ASK))
        high -= 1
    if low <= high:
        out.append((low, high, UNKNOWN))
    return out


def overlay_span(starts: array, places: array, first: int, last: int, place: int,
                 end: int) -> None:  # fmt: skip
    """Set [first, last] to ``place`` in a covering range table, in place."""
    i = bisect_right(starts, first) - 1  # the range holding ``first``
    j = bisect_right(starts, last) - 1  # the range holding ``last``
    new_starts, new_places = [first], [place]
    if last + 1 < end and (j + 1 == len(starts) or starts[j + 1] != last + 1):
        new_starts.append(last + 1)  # the tail of range j continues after the span
        new_places.append(places[j])
    low = i if starts[i] == first else i + 1
    starts[low : j + 1] = array(starts.typecode, new_starts)
    places[low : j + 1] = array(places.typecode, new_places)


def merging(starts: array, values: array, mapping: Sequence[int] | None = None,
            typecode: str | None = None) -> Generator[None, None, tuple[array, array]]:  # fmt: skip
    """Neighbours with equal values merged (values read through ``mapping`` when given, kept
    as ``typecode``, default the input's), SLICE_ITEMS at a time."""
    out_starts = array(starts.typecode)
    out_values = array(typecode or values.typecode)
    add_start, add_value = out_starts.append, out_values.append
    last = None
    for i in range(0, len(starts), SLICE_ITEMS):
        chunk = values[i : i + SLICE_ITEMS]
        if mapping is not None:
            chunk = [mapping[v] for v in chunk]
        for start, value in zip(starts[i : i + SLICE_ITEMS], chunk, strict=True):
            if value != last:
                add_start(start)
                add_value(value)
                last = value
        yield
    return out_starts, out_values


def drain(job: Generator[None, None, Any]) -> Any:
    """Run a sliced job to the end at once and return its result (tests, tools)."""
    while True:
        try:
            next(job)
        except StopIteration as done:
            return done.value


def build_now(geo: GeoDB) -> dict[int, GeoRanges]:
    """Both tables at once (tests, tools): the same work as the sliced build."""
    flattener = Flattener(geo)
    for _ in flattener.build():
        pass
    return flattener.tables
