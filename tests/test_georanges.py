"""The MaxMind search tree as gslb.georanges reads it: records unpacked in bulk."""

from __future__ import annotations

import random

import pytest

from gslb.georanges import TreeReader, unpack_records


def node_bytes(left: int, right: int, record_size: int) -> bytes:
    """One node in the file layout of the MaxMind DB spec, written independently of the
    reader: 28-bit nodes put both records' top nibbles in the middle byte."""
    if record_size == 28:
        middle = ((left >> 24) << 4) | (right >> 24)
        return (
            (left & 0xFFFFFF).to_bytes(3, "big")
            + bytes([middle])
            + (right & 0xFFFFFF).to_bytes(3, "big")
        )
    width = record_size // 8
    return left.to_bytes(width, "big") + right.to_bytes(width, "big")


@pytest.mark.parametrize("record_size", [24, 28, 32])
def test_bulk_unpacked_records_match_the_node_layout(record_size) -> None:
    rng = random.Random(record_size)
    top = (1 << record_size) - 1
    # Edge values (0, all ones, one nibble set) and random ones, left and right different.
    values = [0, top, 1 << (record_size - 1), 0x0F << (record_size - 4) if record_size > 8 else 1]
    values += [rng.randrange(top + 1) for _ in range(2000)]
    nodes = [(values[i], values[-1 - i]) for i in range(len(values))]
    data = b"".join(node_bytes(left, right, record_size) for left, right in nodes)
    data += b"\0" * 16  # the data section follows the tree in a file
    records = unpack_records(data, len(nodes), record_size)
    assert records is not None
    assert [(records[2 * i], records[2 * i + 1]) for i in range(len(nodes))] == nodes
    tree = TreeReader(data, len(nodes), record_size)
    assert [tree.children(i) for i in range(len(nodes))] == nodes
