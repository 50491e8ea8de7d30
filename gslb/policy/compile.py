"""Dynamic records compiled ahead into address tables: the cold path costs one bisect.

A GSLB decision depends on the client's address only through the rule it matches (subnets,
then geos) and, when the chain has ``proximity``, the client's coordinates. Both are fixed per
range of addresses once the GeoIP database and the record's rules are known, so each record
gets, per address family, a sorted table of integer ranges -> *class*, where a class is exactly
the engine's decision key (matched rule, coordinates when proximity reads them). Neighbouring
ranges of the same class are merged, so a client's ECS scope is the widest aligned block
around it that stays inside its range (gdnsd merges its networks the same way). With
proximity and no subnet rule in the family, the class follows the place alone, so the table
is the GeoIP ranges themselves, shared, plus a class per place (``PlaceTable``): a City
database's 2.7 million ranges are held once per process, not once per record.

Two levels keep a health flip from ever stalling an answer:

- the **table** (ranges -> class) depends on the configuration and the database only; it is
  built off the answer path by ``Compiler`` in slices, and swapped in whole when done. Until a
  record's table is ready (start-up, a reload), that record takes the step-by-step path.
- the **decision** per class (``Prepared``: pool, candidates, weights, TTL) depends on the
  health view; ``RecordPlan.decisions`` holds one slot per class and a new health view starts
  a fresh list, so a flip costs nothing up front and each class is decided once, by the
  same chain ``explain`` runs, on its first query. A flood of new clients cannot make more
  decisions than there are classes.

Two inputs vary per client beyond its class, and change at run time, so they key the
decision rather than split the table (``Engine._decide_keyed``):

- the client's **fleet region**, when the health view has verdicts per region: a function of
  its location, which is the class's own when every address of the class is in one place
  (``Klass.single``: a class per location, as proximity makes), else read by
  ``Compiler.place`` from the flattened database (one more bisect); regions are memoised per
  interned location; the decision is made under that region's view;
- its **RUM decision**, when the record has a ``rum`` step and the view a RUM snapshot: the
  snapshot is keyed per network, so ``Snapshot.find`` costs one dict lookup for the client's
  /24 (or /48) and needs the location (as above) only when a coarser level (ASN, country,
  continent) must decide; the decision keys on the *set* it drops.

A decision is then made once per (class, region, dropped set) and health view, by the same
chain as ``explain`` (at most one per class plus ``Engine.cache_size``, the oldest making
room: a City database's hundred thousand classes each keep their regional decision); the ECS
scope is the class's, widened as ``Engine.answer`` widens it: to the client's location block
when the decision read the location (a verdict that differs by region), and to the deciding
RUM level's prefix. A location block of the flattened database holds the database network
``GeoDB.locate`` reports, so the scope is never narrower than the step-by-step one for a
located client.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import time
from array import array
from bisect import bisect_right
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from gslb.config.model import DynamicRecord
from gslb.georanges import ASK, UNKNOWN, Flattener, GeoRanges, drain, merging, overlay_span
from gslb.policy.rules import Match, RuleIndex

log = logging.getLogger(__name__)

ASK_CLASS = 0  # class 0 of every table: take the step-by-step path
SLICE_RANGES = 4096  # ranges classified between two yields (about a microsecond each)
SLICE_CLASSES = 256  # locations classified between two yields (5-10 microseconds each)
SLICE_BLOCKS = 8192  # blocks of a table's bucket index filled between two yields
# Ranges kept over all tables of a process (8-12 bytes each), counting what each table holds of
# its own: a proximity table shares the GeoIP ranges (PlaceTable) and holds its rule ranges and
# a class per place, 0.3 million on a City database (bench/citydb.py), a table without
# proximity its ranges merged by rule. Records past the cap answer step by step (logged).
MAX_RANGES = 12_000_000
# Seconds a process spends building before it answers its first query (the GeoIP flattening
# and the first tables fit on the shipped database); the rest is built between answers.
COMPILE_AT_START = 20.0
BUCKET_BITS = 20  # blocks of the key space indexed per family table (256 KiB)


class Unplaced(Exception):
    """The flattened database cannot place this client (not built yet, or an alias range the
    database answers through its own logic): the caller answers it step by step."""


@dataclass(frozen=True, slots=True)
class Klass:
    """What the chain needs to decide for every address of a class."""

    index: int  # matched rule
    by: str  # subnet | geo | catch-all
    matched: Any  # the subnet or geo that matched, for metrics and explain
    location: Any  # a Location of the class (only its coordinates and geos matter)
    located: bool
    # Where every address of the class is, when that is one place (locations with equal
    # ``place_data``, or all unknown): its fleet region and RUM country then need no lookup
    # of the client's own location.
    place: Any = None
    single: bool = True

    def match(self) -> Match:
        return Match(self.index, self.by, 0, self.location, self.located, self.matched)


@dataclass(frozen=True, slots=True)
class FamilyTable:
    """Ranges -> class for one family: ``starts`` as in ``GeoRanges`` (same shift).

    ``buckets`` narrows the bisect: for each of the 2**BUCKET_BITS blocks of the key space,
    the range holding the block's first key, so a lookup bisects only the handful of ranges
    that start inside the client's block (about 5 comparisons instead of 21 on 1.5 million
    ranges; each comparison on an ``array`` makes an int, so this is most of the cost)."""

    bits: int
    shift: int
    starts: array
    classes: array  # array('I'), one per range
    # With proximity, the same ranges merged by matched rule only: the scope of a decision
    # that did not read the client's coordinates (every value with PoPs down, say).
    rules: FamilyTable | None = None
    # Built in slices by the compiler (``bucket_index``), else here at once (tests, tools).
    buckets: array | None = field(default=None, repr=False, compare=False)
    bucket_shift: int = field(default=0, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.buckets is None:
            buckets, shift = drain(bucket_index(self.starts, self.bits))
            object.__setattr__(self, "buckets", buckets)
            object.__setattr__(self, "bucket_shift", shift)

    def find(self, key: int) -> tuple[int, int]:
        """(class, scope) for a client address already shifted by ``shift``: the scope is the
        widest aligned block around the address that stays inside its range."""
        starts = self.starts
        block = key >> self.bucket_shift
        buckets = self.buckets
        i = bisect_right(starts, key, buckets[block], buckets[block + 1] + 1) - 1
        return self.classes[i], block_scope(starts, i, key, self.bits)

    def size(self) -> int:
        """What the table holds of its own, in ranges."""
        return len(self.starts) + (self.rules.size() if self.rules is not None else 0)


@dataclass(frozen=True, slots=True)
class PlaceTable:
    """Ranges -> class for one family where the class follows the client's place (a proximity
    record: a class per location). The ranges are the GeoIP ranges themselves, shared by every
    such table with their bucket index, so a table is the class of each place (``by_place``, a
    few hundred KiB) instead of a copy of millions of ranges (25-35 MiB per record on a City
    database, bench/citydb.py).

    Neighbouring ranges whose places have one class (two database records, one point) form a
    run, kept in ``runs`` for its ranges only; the scope spans the run, as merged ranges would.
    Where subnet rules cut the family, the merged ranges around each subnet (those that touch
    it) are kept as ``exceptions`` (first keys, last keys, classes) and answer first: every
    other address's merged range is a run of places, so the two give the table's own answer.
    """

    bits: int
    shift: int
    starts: array  # the GeoIP ranges' starts and places (shared)
    places: array
    by_place: array  # class per place; [-1]: UNKNOWN's, [-2]: ASK's (negative indices)
    runs: dict[int, int]  # range -> last range of its run (runs of two or more only)
    first_of: dict[int, int]  # range -> first range of its run
    rules: FamilyTable | None
    buckets: array = field(repr=False, compare=False)
    bucket_shift: int = field(repr=False, compare=False)
    exceptions: tuple[array, array, array] | None = None

    def find(self, key: int) -> tuple[int, int]:
        """(class, scope), as ``FamilyTable.find``."""
        if self.exceptions is not None:
            firsts, lasts, classes = self.exceptions
            j = bisect_right(firsts, key) - 1
            if j >= 0 and key <= lasts[j]:
                return classes[j], span_scope(firsts[j], lasts[j] + 1, key, self.bits)
        starts = self.starts
        block = key >> self.bucket_shift
        buckets = self.buckets
        i = bisect_right(starts, key, buckets[block], buckets[block + 1] + 1) - 1
        klass = self.by_place[self.places[i]]
        if self.runs:
            last = self.runs.get(i)
            if last is not None:
                return klass, block_scope(starts, self.first_of[i], key, self.bits, last)
        return klass, block_scope(starts, i, key, self.bits)

    def size(self) -> int:
        """What the table holds of its own, in ranges (about 12 bytes each)."""
        own = len(self.by_place) // 3 + 8 * len(self.runs)
        if self.exceptions is not None:
            own += len(self.exceptions[0])
        return own + (self.rules.size() if self.rules is not None else 0)


def span_scope(first: int, end: int, key: int, width: int) -> int:
    """The prefix length of the widest aligned block around ``key`` inside [first, end)."""
    below = ((first - 1) ^ key).bit_length() - 1 if first else width
    above = (end ^ key).bit_length() - 1
    return width - (below if below < above else above)


def bucket_index(starts: array, bits: int) -> Generator[None, None, tuple[array, int]]:
    """``FamilyTable.buckets`` and its shift: for each block of the key space, the range
    holding its first key; SLICE_BLOCKS blocks at a time (a million blocks: 0.3-0.5 s).
    About as many blocks as ranges, at most 2**BUCKET_BITS: a table merged by rule (a few
    thousand ranges) needs no 4 MiB index."""
    bucket_bits = min(BUCKET_BITS, bits, len(starts).bit_length())
    shift = bits - bucket_bits
    blocks = 1 << bucket_bits
    buckets = array("I", bytes(4 * (blocks + 1)))
    i, last = 0, len(starts) - 1
    for low in range(0, blocks, SLICE_BLOCKS):
        for block in range(low, min(low + SLICE_BLOCKS, blocks)):
            first = block << shift
            while i < last and starts[i + 1] <= first:
                i += 1
            buckets[block] = i
        yield
    buckets[blocks] = len(starts) - 1
    return buckets, shift


def block_scope(starts: array, i: int, key: int, width: int, last: int | None = None) -> int:
    """The prefix length of the widest aligned block around ``key`` that stays inside range
    ``i`` of ``starts`` (keys ``width`` bits wide), or inside ranges ``i`` to ``last``."""
    first = starts[i]
    below = ((first - 1) ^ key).bit_length() - 1 if first else width
    if last is not None:
        i = last
    end = starts[i + 1] if i + 1 < len(starts) else 1 << width
    above = (end ^ key).bit_length() - 1
    free = below if below < above else above
    return width - free


@dataclass(frozen=True, slots=True)
class RecordTable:
    """A record's compiled tables; shared by every record with the same rules signature."""

    families: dict[int, FamilyTable | PlaceTable]
    classes: tuple[Klass | None, ...]  # index 0 is ASK_CLASS (None)
    build_seconds: float

    def ranges(self) -> int:
        """What the tables hold of their own, in ranges (shared GeoIP ranges not counted)."""
        return sum(t.size() for t in self.families.values())


@dataclass(slots=True, eq=False)
class RecordPlan:
    """A record's table plus the decisions made for its classes under one health view."""

    record: DynamicRecord
    table: RecordTable | None  # None: the record reads nothing of the client (scope 0)
    rum: tuple[str, int] | None = None  # the RUM snapshot's key when the chain has a rum step
    health: Any = None
    version: int = -1
    decisions: list = field(default_factory=list)
    # (class, fleet region, RUM outcome) -> decision, for views with regional verdicts or
    # RUM data: bounded by classes x regions x distinct dropped sets.
    keyed: dict = field(default_factory=dict)


def place_data(location: Any) -> tuple | None:
    """What a region function, the RUM levels and proximity read of a location: its data,
    not the database network that holds it."""
    if location is None:
        return None
    return (location.continent, location.country, location.subdivision, location.lat,
            location.lon)  # fmt: skip


def signature(record: DynamicRecord, proximity: bool) -> tuple:
    """Everything of a record the address table depends on."""
    rules = tuple((r.geos, r.subnets) for r in record.rules)
    return (rules, proximity, "rules" not in record.options.chain)


class Classifier:
    """Turns a family's geo ranges into class ranges for one rules signature."""

    def __init__(self, rules: RuleIndex, proximity: bool, seed_rules: bool) -> None:
        self.rules = rules
        self.proximity = proximity
        self.seed_rules = seed_rules
        self.keys: dict[Any, int] = {ASK: ASK_CLASS}
        self.classes: list[Klass | None] = [None]

    def classify(self, location: Any, subnet_rule: int | None) -> int:
        """The class of every address with this location and first matching subnet rule:
        the same decisions as ``RuleIndex.match`` and ``Engine.answer`` make per query."""
        rules = self.rules
        if self.seed_rules:
            best, by, matched, need_geo = rules.catch_all, "catch-all", None, False
        elif subnet_rule is not None:
            best, by, matched = subnet_rule, "subnet", self.subnet_of(subnet_rule)
            need_geo = rules.first_geo < best
        else:
            best, by, matched = rules.catch_all, "catch-all", None
            need_geo = rules.first_geo < best
        located = need_geo or self.proximity
        if need_geo and location is not None:
            index, geo = rules.geo_rule(location)
            if index is not None and index < best:
                best, by, matched = index, "geo", geo
        where = 0
        if self.proximity and location is not None:
            where = (location.lat, location.lon)
        key = (best, where)
        known = self.keys.get(key)
        if known is None:
            known = self.keys[key] = len(self.classes)
            self.classes.append(Klass(best, by, matched, location if located else None, located,
                                      location))  # fmt: skip
        else:
            klass = self.classes[known]
            if klass.single and place_data(klass.place) != place_data(location):  # type: ignore
                self.classes[known] = replace(klass, single=False)  # type: ignore[arg-type]
        return known

    def subnet_of(self, index: int) -> Any:
        for family in (4, 6):
            for _net, _mask, _prefix, rule, network in self.rules.subnets[family]:
                if rule == index:
                    return network
        return None

    def cuts(self, geo: GeoRanges) -> bool:
        """Whether subnet rules cut this family's ranges (then the class is not the place's)."""
        return not self.seed_rules and bool(self.rules.subnets[4 if geo.shift == 0 else 6])

    def family(
        self, geo: GeoRanges, index: tuple[array, int] | None = None
    ) -> Iterator[FamilyTable | PlaceTable | None]:
        """Yields None between slices, then the table. Every pass over the ranges is sliced:
        a City database has millions, and a reload rebuilds tables while answering. With
        proximity and no subnet rule in the family, and the GeoIP ranges' bucket ``index``
        given, the table shares the GeoIP ranges (``PlaceTable``)."""
        if self.proximity and index is not None:
            if not self.cuts(geo):
                yield from self.place_family(geo, index)
                return
            own = None
            for own in self.family(geo):  # the table with ranges of its own, then the patch
                if own is not None:
                    break
                yield None
            yield from self.place_family(geo, index, own)
            return
        starts, places = geo.starts, geo.places
        locations = geo.locations
        distinct: set[int] = set()
        for i in range(0, len(places), SLICE_RANGES):
            distinct.update(places[i : i + SLICE_RANGES])
            yield None
        by_place: dict[int, int] = {ASK: ASK_CLASS}
        for n, place in enumerate(distinct):
            if place != ASK:
                location = locations[place] if place != UNKNOWN else None
                by_place[place] = self.classify(location, None)
            if n % SLICE_CLASSES == SLICE_CLASSES - 1:
                yield None
        out_starts, out_classes = array(starts.typecode), array("I")
        last = -1
        for i in range(0, len(places), SLICE_RANGES):
            for start, place in zip(
                starts[i : i + SLICE_RANGES], places[i : i + SLICE_RANGES], strict=True
            ):
                klass = by_place[place]
                if klass != last:
                    out_starts.append(start)
                    out_classes.append(klass)
                    last = klass
            yield None
        yield from self.overlay_subnets(geo, out_starts, out_classes)
        merged_starts, merged_classes = yield from merging(out_starts, out_classes)
        rules = None
        if self.proximity:
            rule_of = [-1 if k is None else k.index for k in self.classes]
            rule_starts, rule_indices = yield from merging(merged_starts, merged_classes,
                                                           rule_of, "i")  # fmt: skip
            if self.seed_rules:  # no rules step: the rule never depends on the client
                rule_starts = array(starts.typecode, [0])
                rule_indices = array("i", [self.rules.catch_all])
            index, shift = yield from bucket_index(rule_starts, geo.bits)
            rules = FamilyTable(geo.bits, geo.shift, rule_starts, rule_indices, None, index, shift)
        index, shift = yield from bucket_index(merged_starts, geo.bits)
        yield FamilyTable(geo.bits, geo.shift, merged_starts, merged_classes, rules, index, shift)

    def place_family(self, geo: GeoRanges, index: tuple[array, int],
                     own: FamilyTable | None = None) -> Iterator[PlaceTable | None]:  # fmt: skip
        """A ``PlaceTable``: each place classified once, then one pass over the ranges for the
        runs of one class and the ranges merged by rule (the scope of a decision that did not
        read the coordinates). ``own``: the family's table with ranges of its own, where subnet
        rules cut it; its ranges around each subnet become the exceptions, its rule ranges the
        rules table."""
        locations = geo.locations
        by_place = array("I", bytes(4 * (len(locations) + 2)))
        by_place[-2] = ASK_CLASS
        by_place[-1] = self.classify(None, None)
        for place, location in enumerate(locations):
            by_place[place] = self.classify(location, None)
            if place % SLICE_CLASSES == SLICE_CLASSES - 1:
                yield None
        rule_of = [-1 if k is None else k.index for k in self.classes]
        starts, places = geo.starts, geo.places
        runs: dict[int, int] = {}
        first_of: dict[int, int] = {}
        rule_starts, rule_indices = array(starts.typecode), array("i")
        run_first, last_class, last_rule = 0, -1, None
        count = len(places)
        for low in range(0, count, SLICE_RANGES):
            for i in range(low, min(low + SLICE_RANGES, count)):
                klass = by_place[places[i]]
                if klass != last_class:
                    if i - 1 > run_first:
                        for j in range(run_first, i):
                            runs[j], first_of[j] = i - 1, run_first
                    run_first, last_class = i, klass
                    rule = rule_of[klass]
                    if rule != last_rule:
                        rule_starts.append(starts[i])
                        rule_indices.append(rule)
                        last_rule = rule
            yield None
        if count - 1 > run_first:
            for j in range(run_first, count):
                runs[j], first_of[j] = count - 1, run_first
        if self.seed_rules:  # no rules step: the rule never depends on the client
            rule_starts = array(starts.typecode, [0])
            rule_indices = array("i", [self.rules.catch_all])
        exceptions = None
        if own is not None:
            rules = own.rules
            exceptions = self.exceptions(geo, own)
        else:
            rule_index, rule_shift = yield from bucket_index(rule_starts, geo.bits)
            rules = FamilyTable(geo.bits, geo.shift, rule_starts, rule_indices, None,
                                rule_index, rule_shift)  # fmt: skip
        yield PlaceTable(geo.bits, geo.shift, starts, places, by_place, runs, first_of, rules,
                         *index, exceptions)  # fmt: skip

    def exceptions(self, geo: GeoRanges, own: FamilyTable) -> tuple[array, array, array]:
        """The merged ranges of ``own`` that touch a subnet rule's span (the one holding the
        key before it and the one after it included): (first keys, last keys, classes)."""
        version = 4 if geo.shift == 0 else 6
        width = 32 if version == 4 else 128
        end = 1 << geo.bits
        starts, classes = own.starts, own.classes
        picked: set[int] = set()
        for net, _mask, prefix, _index, _network in self.rules.subnets[version]:
            low = net >> geo.shift
            high = (net + (1 << (width - prefix)) - 1) >> geo.shift
            first = bisect_right(starts, max(low - 1, 0)) - 1
            last = bisect_right(starts, min(high + 1, end - 1)) - 1
            picked.update(range(first, last + 1))
        firsts, lasts, out = array(starts.typecode), array(starts.typecode), array("I")
        for i in sorted(picked):
            firsts.append(starts[i])
            lasts.append(starts[i + 1] - 1 if i + 1 < len(starts) else end - 1)
            out.append(classes[i])
        return firsts, lasts, out

    def overlay_subnets(self, geo: GeoRanges, starts: array,
                        classes: array) -> Iterator[None]:  # fmt: skip
        """Subnet rules cut the geo ranges: inside a subnet, the class is recomputed with that
        rule as the first match (the earliest rule wins where subnets overlap). Yields after
        each subnet piece (each overlay moves the tail of a list of millions)."""
        if self.seed_rules:
            return
        version = 4 if geo.shift == 0 else 6
        spans = []
        for net, _mask, prefix, index, _network in self.rules.subnets[version]:
            size = (1 << ((32 if version == 4 else 128) - prefix)) - 1
            spans.append((net, net + size, index))
        if not spans:
            return
        cuts = sorted({a for a, _, _ in spans} | {b + 1 for _, b, _ in spans})
        end_of_space = 1 << (32 if version == 4 else 128)
        for first, following in zip(cuts, [*cuts[1:], end_of_space], strict=True):
            covering = [index for a, b, index in spans if a <= first <= b]
            if not covering:
                continue
            rule = min(covering)
            last = following - 1
            low, high = first >> geo.shift, last >> geo.shift
            if geo.shift and (first & ((1 << geo.shift) - 1) or following & ((1 << geo.shift) - 1)):
                overlay_span(starts, classes, low, high, ASK_CLASS, 1 << geo.bits)
                yield
                continue  # a subnet finer than /64: the step-by-step path decides there
            # Each geo range inside the subnet gets the class for (its location, rule).
            i = bisect_right(geo.starts, low) - 1
            pieces = []
            while i < len(geo.starts) and geo.starts[i] <= high:
                start = max(geo.starts[i], low)
                place = geo.places[i]
                if place == ASK:
                    klass = ASK_CLASS
                else:
                    location = geo.locations[place] if place != UNKNOWN else None
                    klass = self.classify(location, rule)
                pieces.append((start, klass))
                i += 1
            for n, (start, klass) in enumerate(pieces):
                stop = pieces[n + 1][0] - 1 if n + 1 < len(pieces) else high
                overlay_span(starts, classes, start, stop, klass, 1 << geo.bits)
                yield


def settle() -> None:
    """After a build: the tables' objects (a Location per database record, a Klass per class:
    hundreds of thousands on a City database) move to the permanent generation, so later full
    collections (a reload's, the answer path's) do not walk them (150-300 ms each, measured);
    the build's freed scratch memory goes back to the OS. ``Compiler.work`` also freezes
    after every slice of a build: the collector's full passes over the objects of the build
    so far were the longest pauses left in a City-size rebuild (20-45 ms). Frozen objects
    are still freed when their count drops (an old table's); only a reference cycle that is
    garbage at that moment would stay (the build makes none)."""
    gc.freeze()
    trim_heap()


def trim_heap() -> None:
    """Hand the build's freed scratch memory (lists of millions of ints) back to the OS: glibc
    keeps it otherwise, about 50 MB per process on the shipped database. Best effort."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


class Compiler:
    """Builds the geo ranges once, then a table per rules signature; all in slices.

    ``work(budget)`` advances the build for about ``budget`` seconds and returns whether
    anything is left, so an owner can run it between answers (``gslb.dns.server`` does, in
    a task it owns); ``finish()`` runs it to the end (start-up before the ports open, tests,
    tools). ``table(record, proximity)`` never builds: it returns the finished table or None.
    """

    def __init__(self, geo: Any) -> None:
        self.geo = geo
        self.flattener = Flattener(geo) if geo is not None and hasattr(geo, "_reader") else None
        self.geo_ranges: dict[int, GeoRanges] | None = None
        self.tables: dict[tuple, RecordTable] = {}
        self.wanted: dict[tuple, tuple[DynamicRecord, bool]] = {}
        self.job: Iterator[None] | None = None
        self.geo_seconds = 0.0
        self.over_cap: set[tuple] = set()  # signatures left step by step (MAX_RANGES)
        self.geo_index: dict[int, tuple[array, int]] = {}  # bucket index of the GeoIP ranges

    def want(self, records: list[tuple[DynamicRecord, bool]]) -> None:
        """The records of a new configuration: tables of signatures no longer used go. A
        GeoIP flattening under way carries on (it does not depend on the records: restarting
        it on every reload, 10 s of work on a City database, could starve it)."""
        wanted = {signature(r, p): (r, p) for r, p in records}
        self.tables = {key: t for key, t in self.tables.items() if key in wanted}
        self.wanted = {key: rp for key, rp in wanted.items() if key not in self.tables}
        if self.geo_ranges is not None:
            self.job = None  # a record table under way may be one no longer wanted

    @property
    def pending(self) -> bool:
        """Work is left: tables wanted, the flattening, or a job to finish (its settling)."""
        if self.flattener is None:
            return False
        return bool(self.wanted or self.geo_ranges is None or self.job is not None)

    def table(self, record: DynamicRecord, proximity: bool) -> RecordTable | None:
        return self.tables.get(signature(record, proximity))

    def place(self, version: int, ip: int) -> tuple[Any, int]:
        """(location, scope) of a client from the flattened database: one bisect. The scope
        is the widest aligned block around the client with that same location (at least the
        database network ``GeoDB.locate`` reports). Raises ``Unplaced`` until the database is
        flattened, and where the database's own logic must answer (ASK ranges)."""
        tables = self.geo_ranges
        if tables is None:
            raise Unplaced
        geo = tables[version]
        key = ip >> geo.shift
        starts = geo.starts
        i = bisect_right(starts, key) - 1
        place = geo.places[i]
        if place < 0:
            if place == ASK:
                raise Unplaced
            return None, block_scope(starts, i, key, geo.bits)
        return geo.locations[place], block_scope(starts, i, key, geo.bits)

    def work(self, budget: float) -> bool:
        deadline = time.perf_counter() + budget
        while self.pending:
            if self.job is None:
                self.job = self.run()
            for _ in self.job:
                if time.perf_counter() >= deadline:
                    gc.freeze()  # see settle(): the objects built so far leave the collector
                    return True
            self.job = None
            settle()
        return False

    def abandon(self) -> None:
        """Stop building (after an error): every record keeps the step-by-step path."""
        self.flattener = None
        self.wanted = {}
        self.job = None

    def finish(self, limit: float | None = None) -> bool:
        """Build now, for at most ``limit`` seconds (None: to the end); True when done."""
        deadline = None if limit is None else time.perf_counter() + limit
        while self.work(0.5):
            if deadline is not None and time.perf_counter() >= deadline:
                return False
        return True

    def run(self) -> Iterator[None]:
        if self.geo_ranges is None:
            started = time.perf_counter()
            yield from self.flattener.build()  # type: ignore[union-attr]
            tables = self.flattener.tables  # type: ignore[union-attr]
            for version, geo in tables.items():  # shared by every PlaceTable
                self.geo_index[version] = yield from bucket_index(geo.starts, geo.bits)
            self.geo_ranges = tables
            self.geo_seconds = time.perf_counter() - started
        while self.wanted:
            key, (record, proximity) = next(iter(self.wanted.items()))
            started = time.perf_counter()
            classifier = Classifier(RuleIndex(record.rules), proximity,
                                    "rules" not in record.options.chain)  # fmt: skip
            families: dict[int, FamilyTable | PlaceTable] = {}
            for version, geo in self.geo_ranges.items():
                for table in classifier.family(geo, self.geo_index[version]):
                    if table is None:
                        yield
                    else:
                        families[version] = table
            if self.wanted.get(key, (None,))[0] is record:  # not replaced meanwhile
                table = RecordTable(families, tuple(classifier.classes),
                                    time.perf_counter() - started)  # fmt: skip
                if not self.over(key, record, table.ranges()):
                    self.tables[key] = table
                del self.wanted[key]
            yield

    def over(self, key: tuple, record: DynamicRecord, ranges: int) -> bool:
        """Whether a table holding ``ranges`` of its own would pass MAX_RANGES; says so once
        per signature."""
        used = sum(t.ranges() for t in self.tables.values())
        if used + ranges <= MAX_RANGES:
            return False
        if key not in self.over_cap:
            self.over_cap.add(key)
            log.warning("address table of %s left out (%s ranges over MAX_RANGES with %s in "
                        "use): it answers step by step", record.fqdn, f"{ranges:,}",
                        f"{used:,}")  # fmt: skip
        return True
