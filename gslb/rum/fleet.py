"""RUM aggregates shared through the fleet engine: each node publishes its own, every node
decides on the sum.

Each node publishes, per record, a compact copy of its own table on the ``rum`` channel
(``gslb.fleet.shared``): per (level, key) the parents, the recent client networks and per
target the window's time buckets (fetch counts and the latency histogram bins of
``gslb.rum.sketch``). Buckets travel by *age* (0 = current), never by clock value: two
machines' monotonic clocks are unrelated. Everything merges by addition, so the decisions are
built off the DNS path from local + peers' aggregates, as one immutable snapshot like before.
A peer's value is validated as a whole: a malformed, oversized or unknown-target value is
refused with a reason, counted, and the peer's previous value stays. A peer that stops ages
out with its keys' TTL (and its buckets age out of the window anyway).
"""

from __future__ import annotations

import json
import math
from typing import Any

from gslb.rum import sketch
from gslb.rum.store import MAX_SOURCES, PARENTS, SLOTS, Entry, Series, Store, Table

CHANNEL = "rum"
TTL = 60  # seconds a stopped node's aggregates outlive it
BUDGET = 48 * 1024  # bytes of one record's published value (the channel refuses 64 KiB)
MAX_ENTRIES = 2_000  # (level, key) entries accepted from one peer for one record
SHARED_LEVELS = ("prefix", "asn", "country", "continent", "global")  # resolver links are local
FLEET_REASONS = ("malformed", "oversized", "other-options", "unknown-target", "unknown-record")


class Refused(ValueError):
    """A peer's value that is not used; the message is the counted reason."""


def encode_table(record: tuple[str, int], table: Table, now: float) -> dict[str, Any]:
    """This node's own aggregates of one record, newest keys first, within ``BUDGET``."""
    current = int(now // table.width)
    entries: list[list[Any]] = []
    size = 0
    for level in SHARED_LEVELS:
        for key, entry in reversed(table.levels[level].items()):
            item = _entry(level, key, entry, current)
            if item is None:
                continue
            size += len(json.dumps(item, separators=(",", ":")))
            if size > BUDGET or len(entries) >= MAX_ENTRIES:
                break
            entries.append(item)
    return {"record": record[0], "type": record[1], "window": table.window,
            "metric": table.metric, "entries": entries}  # fmt: skip


def _entry(level: str, key: Any, entry: Entry, current: int) -> list[Any] | None:
    series = {}
    for target, one in entry.series.items():
        slots = [[current - index, *slot[:4], {str(b): c for b, c in slot[4].items()}]
                 for index, slot in one.slots.items() if 0 <= current - index < SLOTS]  # fmt: skip
        if slots:
            series[target] = slots
    if not series:
        return None
    sources = [[s, current - b] for s, b in entry.sources.items() if 0 <= current - b < SLOTS]
    return [level, key, list(entry.parents), sources, series]


def decode(data: Any, targets: frozenset[str], table: Table) -> list[list[Any]]:
    """A peer's value checked as a whole (``Refused`` with the reason)."""
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise Refused("malformed")
    if data.get("window") != table.window or data.get("metric") != table.metric:
        raise Refused("other-options")
    if len(data["entries"]) > MAX_ENTRIES:
        raise Refused("oversized")
    return [_check_entry(item, targets) for item in data["entries"]]


def _check_entry(item: Any, targets: frozenset[str]) -> list[Any]:
    if not isinstance(item, list) or len(item) != 5:
        raise Refused("malformed")
    level, key, parents, sources, series = item
    if level not in SHARED_LEVELS or not _name(key):
        raise Refused("malformed")
    if not isinstance(parents, list) or len(parents) != len(PARENTS[level]):
        raise Refused("malformed")
    if not all(p is None or _name(p) for p in parents):
        raise Refused("malformed")
    if not isinstance(sources, list) or len(sources) > MAX_SOURCES:
        raise Refused("malformed")
    if not isinstance(series, dict) or len(series) > len(targets):
        raise Refused("malformed")
    if not set(series) <= targets:
        raise Refused("unknown-target")
    for slots in series.values():
        if not isinstance(slots, list) or len(slots) > SLOTS:
            raise Refused("malformed")
        for slot in slots:
            _check_slot(slot)
    for source in sources:
        if not isinstance(source, list) or len(source) != 2 or not _name(source[0]):
            raise Refused("malformed")
        if not _age(source[1]):
            raise Refused("malformed")
    return item


def _check_slot(slot: Any) -> None:
    if not isinstance(slot, list) or len(slot) != 6 or not _age(slot[0]):
        raise Refused("malformed")
    if not all(_count(x) for x in slot[1:5]) or not isinstance(slot[5], dict):
        raise Refused("malformed")
    if len(slot[5]) > sketch.MAX_BINS:
        raise Refused("oversized")
    for index, count in slot[5].items():
        if (
            not (index.isascii() and index.isdigit())
            or int(index) >= sketch.MAX_BINS
            or not _count(count)
        ):
            raise Refused("malformed")


def _name(value: Any) -> bool:
    """A level key, parent or source: an int (a /24 or /48) or a short string."""
    if isinstance(value, str):
        return len(value) <= 64
    return isinstance(value, int) and not isinstance(value, bool)


def _age(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SLOTS


def _count(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and 0 <= value <= 1e12)  # fmt: skip


def merged(store: Store, peers: dict[tuple[str, int], dict[str, tuple[int, list]]],
           now: float) -> Store:  # fmt: skip
    """A throwaway store: local tables plus every peer's entries (by addition). Every key of
    a record with peer data is marked dirty so the decider recomputes it."""
    out = Store(store.max_networks)
    for record, table in store.tables.items():
        table.expire(now)
        copy = Table(table.window, table.metric, table.max_networks)
        copy.dirty = set(table.dirty)
        table.dirty.clear()
        for level, entries in table.levels.items():
            for key, entry in entries.items():
                _add_local(copy.levels[level], key, entry)
        current = int(now // table.width)
        for arrived, items in peers.get(record, {}).values():
            for item in items:
                _add_peer(copy, item, current, current - arrived)
        out.tables[record] = copy
    return out


def _add_local(entries: dict, key: Any, entry: Entry) -> None:
    clone = entries[key] = Entry()
    clone.parents, clone.sources = entry.parents, dict(entry.sources)
    for target, series in entry.series.items():
        copy = clone.series[target] = Series()
        copy.slots = {i: [*s[:4], dict(s[4])] for i, s in series.slots.items()}


def _add_peer(table: Table, item: list, current: int, delay: int) -> None:
    level, key, parents, sources, series = item
    entry = table.levels[level].get(key)
    if entry is None:
        entry = table.levels[level][key] = Entry()
        entry.parents = tuple(parents)
    for source, age in sources:
        bucket = current - age - delay
        if entry.sources.get(source, bucket - 1) < bucket:
            entry.saw(source, bucket)
    for target, slots in series.items():
        mine = entry.series.setdefault(target, Series())
        for age, n, ok, ranked, latency, bins in slots:
            bucket = current - age - delay
            slot = mine.slots.setdefault(bucket, [0.0, 0.0, 0.0, 0.0, {}])
            slot[0] += n
            slot[1] += ok
            slot[2] += ranked
            slot[3] += latency
            sketch.merge(slot[4], {int(b): c for b, c in bins.items()})
    table.dirty.add((level, key))
