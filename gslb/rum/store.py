"""Aggregates of real-user measurements per (record, level, key, target), bounded in memory.

Each series is a ring of ``SLOTS`` time buckets covering the record's window; a bucket holds
fetch counts (all fetches, for availability) and a latency histogram (successful fetches of
the ranking kind, ``gslb.rum.sketch``). Everything merges by addition, so buckets, levels and
nodes combine exactly. Memory stays bounded whatever the traffic: at most ``max_networks``
client-network keys per record (least recently measured evicted first), ASN keys likewise, and
coarser levels are bounded by the world (about 250 countries, 7 continents, one global).
Times are ``time.monotonic()`` seconds: a wall-clock jump moves nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gslb.rum import sketch
from gslb.rum.network import NetInfo

SLOTS = 5
PARENTS = {  # the coarser levels a key falls back to, finest first
    "resolver": (),  # a resolver's users: asked only without ECS, never pruned
    "prefix": ("asn", "country", "continent", "global"),
    "asn": ("country", "continent", "global"),
    "country": ("continent", "global"),
    "continent": ("global",),
    "global": (),
}
BOUNDED_LEVELS = ("resolver", "prefix", "asn")
MAX_SOURCES = 16  # distinct networks remembered per key: enough to tell "several" from "one"


@dataclass(frozen=True, slots=True)
class Summary:
    """One target at one level key over the window."""

    n: float  # fetches (all kinds)
    ok: float  # successful fetches
    latency: float  # successful fetches of the ranking kind
    p50: float | None  # ms
    p90: float | None
    ranked: float | None = None  # fetches of the ranking kind, ok or not (None: all are)

    @property
    def availability(self) -> float:
        return self.ok / self.n if self.n else 0.0

    @property
    def samples(self) -> float:
        """What ``min_samples`` counts: fetches of the kind that ranks the targets."""
        return self.n if self.ranked is None else self.ranked


class Series:
    """One target's measurements at one level key: ``SLOTS`` buckets of ``width`` seconds."""

    __slots__ = ("slots",)

    def __init__(self) -> None:
        # bucket index -> [fetches, ok, ranking-kind fetches, ranking-kind ok, bins]
        self.slots: dict[int, list[Any]] = {}

    def add(self, bucket: int, ok: bool, ms: float | None, ranked: bool, weight: float) -> None:
        slot = self.slots.get(bucket)
        if slot is None:
            if len(self.slots) >= SLOTS:
                del self.slots[min(self.slots)]
            slot = self.slots[bucket] = [0.0, 0.0, 0.0, 0.0, {}]
        slot[0] += weight
        if ranked:
            slot[2] += weight
        if ok:
            slot[1] += weight
            if ranked and ms is not None:
                slot[3] += weight
                sketch.add(slot[4], ms, weight)

    def summary(self, oldest: int) -> Summary | None:
        """Merged over the buckets from ``oldest`` on; expired buckets are dropped here."""
        for index in [i for i in self.slots if i < oldest]:
            del self.slots[index]
        if not self.slots:
            return None
        n = ok = ranked = latency = 0.0
        bins: dict[int, float] = {}
        for slot in self.slots.values():
            n, ok, ranked, latency = n + slot[0], ok + slot[1], ranked + slot[2], latency + slot[3]
            sketch.merge(bins, slot[4])
        p50, p90 = sketch.quantiles(bins, (0.5, 0.9))
        return Summary(n, ok, latency, p50, p90, ranked)


class Entry:
    """One level key of one record: a series per target, the key's coarser parents (latest
    seen, so the snapshot can answer with the widest level that decides the same), and the
    client networks that measured it lately (a coarse key needs several: one network alone,
    honest or forging, cannot move the answers of others)."""

    __slots__ = ("series", "parents", "sources")

    def __init__(self) -> None:
        self.series: dict[str, Series] = {}
        self.parents: tuple[Any, ...] = ()
        self.sources: dict[Any, int] = {}  # network -> last bucket, at most MAX_SOURCES

    def saw(self, source: Any, bucket: int) -> None:
        sources = self.sources
        if source not in sources and len(sources) >= MAX_SOURCES:
            del sources[min(sources, key=sources.__getitem__)]
        sources[source] = bucket

    def networks(self, oldest: int) -> int:
        return sum(1 for bucket in self.sources.values() if bucket >= oldest)


class Table:
    """All measurements of one record."""

    def __init__(self, window: float, metric: str, max_networks: int) -> None:
        self.window, self.metric, self.max_networks = window, metric, max_networks
        self.width = window / SLOTS
        self.levels: dict[str, OrderedDict[Any, Entry]] = {
            level: OrderedDict() for level in PARENTS
        }
        self.evicted = 0
        self.dirty: set[tuple[str, Any]] = set()

    def add(
        self, net: NetInfo, target: str, kind: str, ok: bool, ms: float | None, weight: float,
        now: float,
    ) -> None:  # fmt: skip
        bucket = int(now // self.width)
        ranked = kind == self.metric
        for level, parents in PARENTS.items():
            key = net.key(level)
            if key is None:
                continue
            entries = self.levels[level]
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = Entry()
                if level in BOUNDED_LEVELS and len(entries) > self.max_networks:
                    old, _ = entries.popitem(last=False)
                    self.dirty.discard((level, old))
                    self.evicted += 1
            elif level in BOUNDED_LEVELS:
                entries.move_to_end(key)
            entry.parents = tuple(net.key(p) for p in parents)
            entry.saw(net.source, bucket)
            series = entry.series.get(target)
            if series is None:
                series = entry.series[target] = Series()
            series.add(bucket, ok, ms, ranked, weight)
            self.dirty.add((level, key))

    def oldest(self, now: float) -> int:
        return int(now // self.width) - SLOTS + 1

    def summaries(self, entry: Entry, now: float) -> dict[str, Summary]:
        oldest = self.oldest(now)
        out = {}
        for target, series in list(entry.series.items()):
            summary = series.summary(oldest)
            if summary is None:
                del entry.series[target]
            else:
                out[target] = summary
        return out

    def expire(self, now: float) -> None:
        """Forget keys with nothing left in the window (bounded levels first, by age)."""
        oldest = self.oldest(now)
        for entries in self.levels.values():
            stale = [
                key
                for key, entry in entries.items()
                if all(max(s.slots, default=-1) < oldest for s in entry.series.values())
            ]
            for key in stale:
                del entries[key]

    def keys(self) -> int:
        return sum(len(entries) for entries in self.levels.values())


class Store:
    """Tables per record key ``(fqdn, rtype)``; reconfigured on every reload."""

    def __init__(self, max_networks: int = 20_000) -> None:
        self.max_networks = max_networks
        self.tables: dict[tuple[str, int], Table] = {}

    def configure(self, records: dict[tuple[str, int], Any]) -> None:
        """Keep tables of records still steered by RUM with the same window and metric."""
        tables: dict[tuple[str, int], Table] = {}
        for key, options in records.items():
            table = self.tables.get(key)
            if table is None or (table.window, table.metric) != (options.window, options.metric):
                table = Table(options.window, options.metric, self.max_networks)
            tables[key] = table
        self.tables = tables

    def add(
        self, record: tuple[str, int], net: NetInfo, target: str, kind: str, ok: bool,
        ms: float | None, now: float, weight: float = 1.0,
    ) -> bool:  # fmt: skip
        table = self.tables.get(record)
        if table is None:
            return False
        table.add(net, target, kind, ok, ms, weight, now)
        return True

    def keys(self) -> dict[str, int]:
        out = dict.fromkeys(PARENTS, 0)
        for table in self.tables.values():
            for level, entries in table.levels.items():
                out[level] += len(entries)
        return out
