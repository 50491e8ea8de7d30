"""Which targets each client network keeps, with hysteresis: the store -> a Snapshot.

Per level key: the key decides only when at least two targets (or every target, for a record
with one) have ``min_samples`` fetches, and, above the /24 (/48), when at least
``min_networks`` client networks measured it (one network cannot steer its country); otherwise
its clients fall to the next coarser level.
Targets under the availability floor leave at once. Among the rest, with ``best`` the lowest
p50, a target *enters* the kept set when its p50 <= limit = max(best * (1 + tolerance),
best + margin) and, once in, *leaves* only above limit * (1 + hysteresis): clearly worse, not
a coin flip between two near-equal CDNs. The set of one key changes at most every ``hold``
seconds, except that availability drops act immediately. Targets without enough samples at
the deciding key are left in (no data is not bad data; the beacon measures every CDN, so they
fill up quickly). If every measured target would go, all stay (a slow answer beats none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gslb.rum.config import RumOptions
from gslb.rum.network import prefix_text
from gslb.rum.snapshot import Decision, RecordDecisions, Snapshot, TargetFigures
from gslb.rum.store import PARENTS, Store, Summary, Table

HELD = "dropped earlier; held until the hold time has passed"
COARSE_FIRST = ("global", "continent", "country", "asn", "prefix", "resolver")


@dataclass(slots=True)
class KeyState:
    """What one level key decided last: kept the hysteresis and the hold need."""

    dropped: frozenset[str]
    changed_at: float  # monotonic
    since: float  # wall clock of the last change, for explain


@dataclass(frozen=True, slots=True)
class Choice:
    dropped: dict[str, str]  # target -> why
    figures: tuple[TargetFigures, ...]
    changed: bool
    pending: bool = False  # the hold kept a change back


def usable(
    options: RumOptions, summaries: dict[str, Summary], targets: int, floor: float | None = None
) -> bool:
    floor = options.min_samples if floor is None else floor
    enough = sum(1 for s in summaries.values() if s.samples >= floor)
    return enough >= min(2, targets)


def choose(
    options: RumOptions,
    summaries: dict[str, Summary],
    previous: frozenset[str] | None,
    held: bool,
) -> Choice:
    """The dropped set for one key. ``previous``: the key's dropped set so far (None: first
    decision); ``held``: the last change is younger than ``hold``. A key that already decides
    counts targets as measured down to half of ``min_samples`` (see ``Decider._key``)."""
    enough = options.min_samples if previous is None else options.min_samples / 2
    measured = {t: s for t, s in summaries.items() if s.samples >= enough}
    floor = options.availability_floor
    available = {t: s for t, s in measured.items() if s.availability >= floor and s.p50}
    why: dict[str, str] = {}
    for target, s in measured.items():
        if target not in available:
            why[target] = f"availability {s.availability:.2f} < floor {floor:.2f}"
    limit = leave = None
    if available:
        best = min(s.p50 for s in available.values())
        limit = max(best * (1 + options.tolerance), best + options.margin_ms)
        leave = limit * (1 + options.hysteresis)
        for target, s in available.items():
            was_kept = previous is not None and target not in previous
            bound = leave if was_kept else limit
            if s.p50 > bound:
                kind = "leave limit" if was_kept else "limit"
                why[target] = f"p50 {s.p50:.1f} ms > {kind} {bound:.1f} ms (best {best:.1f} ms)"
    if len(why) == len(measured):
        why = {}  # never drop every measured target
    pending = held and previous is not None and set(why) != previous
    if pending:
        why = _hold(why, previous, measured, available)
    dropped = frozenset(why)
    figures = tuple(
        _figures(target, summaries[target], measured, why.get(target), limit, leave, options)
        for target in sorted(summaries)
    )
    return Choice(why, figures, previous is not None and dropped != previous, pending)


def _hold(
    why: dict[str, str], previous: frozenset[str], measured: dict, available: dict
) -> dict[str, str]:
    """Within ``hold`` the old set stays, except that targets now under the availability
    floor leave at once (a dead CDN must not wait for the hold)."""
    held = {t: why.get(t, HELD) for t in previous if t in measured}
    held.update({t: why[t] for t in why if t not in available})
    return held if len(held) < len(measured) else why


def _figures(
    target: str, s: Summary, measured: dict, why: str | None, limit: float | None,
    leave: float | None, options: RumOptions,
) -> TargetFigures:  # fmt: skip
    if target not in measured:
        verdict, text = "unmeasured", f"{s.samples:.0f} samples, too few to judge: kept"
    elif why is not None:
        verdict, text = "dropped", why
    elif limit is not None and s.p50 is not None and s.p50 > limit:
        verdict, text = "kept", f"p50 {s.p50:.1f} ms > limit {limit:.1f} ms but within the "
        text += f"leave limit {leave:.1f} ms (hysteresis)"
    else:
        verdict, text = "kept", f"p50 within limit {limit:.1f} ms" if limit else "kept"
    return TargetFigures(target, s.n, s.p50, s.p90, s.availability, verdict, text)


class Decider:
    """Turns the store into snapshots, keeping each key's state between rounds."""

    def __init__(self) -> None:
        self.states: dict[tuple[tuple[str, int], str, Any], KeyState] = {}
        self.changes: dict[tuple[str, str], int] = {}  # (record fqdn, level) -> set changes
        self.decided: dict[tuple[str, str], int] = {}  # (record fqdn, level) -> keys deciding
        self.serial = 0
        # state key -> (time bucket, decision or None, change pending a hold, options)
        self.cache: dict[tuple, tuple[int, Decision | None, bool, RumOptions]] = {}
        self.outcomes: dict[frozenset, frozenset] = {}  # interned dropped sets

    def build(
        self, store: Store, records: dict[tuple[str, int], tuple[RumOptions, int]],
        now: float, wall: float,
    ) -> Snapshot:  # fmt: skip
        """``records``: record key -> (options, number of distinct pool values)."""
        out: dict[tuple[str, int], RecordDecisions] = {}
        live: set[tuple[tuple[str, int], str, Any]] = set()
        self.decided = {}
        for record, (options, targets) in records.items():
            table = store.tables.get(record)
            if table is None:
                continue
            table.expire(now)
            by_level = self._record(record, table, options, targets, now, wall, live)
            table.dirty.clear()
            out[record] = RecordDecisions(options.levels, by_level)
        for key in [k for k in self.states if k not in live]:
            del self.states[key]
        for key in [k for k in self.cache if k not in live]:
            del self.cache[key]
        self.serial += 1
        return Snapshot(out, wall, self.serial)

    def _record(
        self, record: tuple[str, int], table: Table, options: RumOptions, targets: int,
        now: float, wall: float, live: set,
    ) -> dict[str, dict[Any, Decision]]:  # fmt: skip
        by_level: dict[str, dict[Any, Decision]] = {}
        for level in COARSE_FIRST:
            if level not in options.levels:
                continue
            decisions = by_level[level] = {}
            for key, entry in table.levels[level].items():
                state_key = (record, level, key)
                live.add(state_key)
                parent = _parent(by_level, level, entry.parents, options.levels)
                decision = self._key(state_key, table, entry, options, targets, parent, now,
                                     wall)  # fmt: skip
                if decision is None:
                    continue
                if parent is not None and parent.dropped.keys() == decision.dropped.keys():
                    continue  # the coarser level decides the same: answer with its scope
                decisions[key] = decision
            counted = (record[0], level)
            self.decided[counted] = self.decided.get(counted, 0) + len(decisions)
        return by_level

    def _key(
        self, state_key: tuple, table: Table, entry: Any, options: RumOptions, targets: int,
        parent: Decision | None, now: float, wall: float,
    ) -> Decision | None:  # fmt: skip
        """One key's decision, recomputed only when it got samples, a time bucket rolled
        over, or a held change may now pass: a round costs little when few keys move."""
        bucket = int(now // table.width)
        cached = self.cache.get(state_key)
        if (
            cached is not None
            and cached[0] == bucket
            and cached[3] is options
            and not cached[2]
            and state_key[1:] not in table.dirty
        ):
            return cached[1]
        summaries = table.summaries(entry, now)
        state = self.states.get(state_key)
        decision, pending = None, False
        # A key that decides keeps deciding down to half the samples: no coming and going
        # (and flapping between levels) as its count hovers around min_samples.
        floor = options.min_samples / 2 if state is not None else options.min_samples
        if usable(options, summaries, targets, floor) and (
            state_key[1] == "prefix" or entry.networks(table.oldest(now)) >= options.min_networks
        ):
            if state is None and parent is not None:
                # A key that starts deciding starts from what its clients get now (its
                # parent's set) under the hold: switching level is no excuse to flap.
                self.states[state_key] = KeyState(frozenset(parent.dropped), now, wall)
            decision, pending = self._decide(state_key, options, summaries, now, wall)
        self.cache[state_key] = (bucket, decision, pending, options)
        return decision

    def _decide(
        self, state_key: tuple, options: RumOptions, summaries: dict[str, Summary],
        now: float, wall: float,
    ) -> tuple[Decision, bool]:  # fmt: skip
        state = self.states.get(state_key)
        held = state is not None and now - state.changed_at < options.hold
        choice = choose(options, summaries, state.dropped if state else None, held)
        if state is None:
            state = self.states[state_key] = KeyState(frozenset(choice.dropped), now, wall)
        elif choice.changed:
            state.dropped, state.changed_at, state.since = frozenset(choice.dropped), now, wall
            counted = (state_key[0][0], state_key[1])
            self.changes[counted] = self.changes.get(counted, 0) + 1
        record, level, key = state_key
        outcome = frozenset(choice.dropped)
        decision = Decision(
            level=level,
            key=prefix_text(key) if level in ("prefix", "resolver") else str(key),
            dropped=dict(choice.dropped),
            figures=choice.figures,
            samples=sum(s.n for s in summaries.values()),
            since=state.since,
            outcome=self.outcomes.setdefault(outcome, outcome),
        )
        return decision, choice.pending


def _parent(
    by_level: dict[str, dict[Any, Decision]], level: str, parents: tuple, levels: tuple
) -> Decision | None:
    """The decision a client of this key would get if the key were not in the snapshot."""
    for parent_level, key in zip(PARENTS[level], parents, strict=True):
        if parent_level not in levels or key is None:
            continue
        found = by_level.get(parent_level, {}).get(key)
        if found is not None:
            return found
    return None
