"""One record's controller: ledger + profile + plan + loop, ticked off the DNS path.

``tick(now)`` turns what was delivered into a new ``Steering`` snapshot; everything it needs
is in this object, so it can be persisted (``to_json``) and restored after a restart with no
swing: the weights come back exactly as they were.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, deque
from typing import Any

from gslb.commit.contract import (
    FREE_FRACTION,
    SAMPLE_SECONDS,
    CommitSpec,
    Period,
    billed_p95,
)
from gslb.commit.controller import Loop, TargetInput, plan
from gslb.commit.estimate import DemandWeights
from gslb.commit.ledger import Ledger, slot_of
from gslb.commit.profile import HOURS, Profile, hour_of_week
from gslb.commit.view import WEIGHT_SCALE, Steering

WINDOW_SLOTS = 3  # the inner loop measures delivered shares over the last 15 minutes
HISTORY = 64  # answer-share snapshots kept to average over a measurement window
AIMED_SLOTS = 288  # p95 headroom: a day of (aimed share, delivered share) pairs
ADOPT_WINDOW = 600.0  # seconds after this process began steering a record: peers' states
# older than its own are adopted in this window only, then it keeps its own
AIM_LOOKBACK = 24  # slots back to find the tick in force (ticks may be an hour apart)
MAX_BIAS = 10.0  # a peer's learned bias beyond this is not ours to believe
MAX_SLOT_BYTES = 1e18  # a peer's profile figure beyond this (26 Pbit/s) is not traffic
MIN_AIMED = 24  # ... and no headroom before two hours of them
HEADROOM_FLOOR = 0.5  # never aim below half the commit for noise


def static_shares(record: Any) -> dict[str, float]:
    """Each distinct pool value's weight share (a value in several pools: its largest weight)."""
    weights: dict[str, int] = {}
    for pool in record.pools.values():
        for target in pool.targets:
            weights[target.value] = max(weights.get(target.value, 0), target.weight)
    total = sum(weights.values()) or 1
    return {t: w / total for t, w in sorted(weights.items())}


def month_period() -> Period:
    """Targets without a contract are accounted per calendar month."""
    return Period(dt.datetime(2000, 1, 1, tzinfo=dt.UTC).timestamp())


class RecordController:
    def __init__(self, record: Any) -> None:
        self.key = (record.fqdn, record.rtype)
        self.fqdn = record.fqdn
        self.ledger = Ledger(record.commit.bytes_per_answer, record.commit.feed_stale)
        self.profile = Profile()
        self.demand = DemandWeights()  # users per answer per target, for the estimate
        self.from_disk = False  # restored from the state dir: never replaced by a peer's
        self.since: float | None = None  # when this state began steering (its first tick)
        self.here: float | None = None  # when this process began (first tick or adoption)
        self.loop = Loop(static_shares(record))
        self.ticks = 0
        self.last_tick: float | None = None
        self.learned = -1  # last slot learned into the profile
        self.history: deque[tuple[float, dict[str, float]]] = deque(maxlen=HISTORY)
        # slot -> up to two (time, delivered shares) ticks in it: the last at or before its
        # middle and the last after; what p95 targets were aimed at (free slots left out)
        self.aimed: dict[int, list[tuple[float, dict[str, float]]]] = {}
        self.events: Counter[str] = Counter()  # reason -> count (rollovers, infeasible, ...)
        self.state: dict[str, dict[str, Any]] = {}
        self.steering: Steering | None = None
        self.configure(record)

    def configure(self, record: Any) -> None:
        """Take a (re)loaded record's settings; delivered volume and weights carry over."""
        spec: CommitSpec = record.commit
        self.spec = spec
        self.ttl = max(1, record.ttl)
        self.degraded_ttl = record.options.degraded_ttl
        self.static = static_shares(record)
        self.prices = {t.value: t.cost for p in record.pools.values() for t in p.targets}
        self.ledger.bytes_per_unit, self.ledger.feed_stale = spec.bytes_per_answer, spec.feed_stale
        self.loop.max_step, self.loop.gain = spec.max_step, spec.gain
        known = self.loop.weights
        if set(known) != set(self.static):
            kept = {t: known.get(t, 0.0) for t in self.static}
            if sum(kept.values()) <= 0:
                kept = dict(self.static)
            total = sum(kept.values())
            self.loop.weights = {t: w / total for t, w in kept.items()}
        for target in list(self.ledger.targets):
            if target not in self.static:
                del self.ledger.targets[target]

    def period(self, target: str) -> Period:
        contract = self.spec.contracts.get(target)
        return contract.period if contract is not None else month_period()

    # -- inputs ------------------------------------------------------------------------------

    def ensure_periods(self, now: float) -> None:
        for target in self.static:
            reason = self.ledger.ensure(target, self.period(target).bounds(now))
            if reason is not None:
                self.events[reason] += 1

    def add_answers(self, now: float, units: dict[str, float]) -> None:
        self.ensure_periods(now)
        for target, value in units.items():
            self.ledger.add_estimate(target, now, value)

    def add_feed(self, target: str, start: float, end: float, amount: float, now: float) -> str:
        self.ensure_periods(now)
        return self.ledger.add_feed(target, start, end, amount, now)

    # -- the tick ------------------------------------------------------------------------------

    def tick(self, now: float) -> Steering:
        self.since = now if self.since is None else self.since
        self.here = now if self.here is None else self.here
        self.ensure_periods(now)
        self.ledger.calibrate()
        self.learn(now)
        end_slot = self.measured_slot(now)
        window = {t: self.ledger.window(t, end_slot, WINDOW_SLOTS) for t in self.static}
        total = sum(window.values())
        delivered_shares = {t: v / total for t, v in window.items()} if total > 0 else {}
        offered = self.offered(
            (end_slot - WINDOW_SLOTS + 1) * SAMPLE_SECONDS, (end_slot + 1) * SAMPLE_SECONDS
        )
        if delivered_shares and offered:
            self.loop.observe(offered, delivered_shares)
        rate = total * 8 / (WINDOW_SLOTS * SAMPLE_SECONDS)
        inputs = {t: self.target_input(t, now) for t in self.static}
        result = plan(self.spec.mode, inputs, rate)
        self.remember_aim(now, {t: result.shares[t] for t, i in inputs.items()
                                if self.bills_p95(t) and not i.free_slot
                                and t in result.shares})  # fmt: skip
        weights = self.loop.step(result.shares)
        short = (
            self.loop.saturated_short(result.shares, delivered_shares) if delivered_shares else {}
        )
        # a p95 CDN short of its share in a quiet hour misses nothing: the rate is a cap that
        # is billed at the period's 95th percentile, not a volume to fill by the end
        short = {t: v for t, v in short.items() if not self.bills_p95(t)}
        self.history.append((now, dict(weights)))
        self.ticks += 1
        self.last_tick = now
        self.events["commit-infeasible"] += len(set(result.infeasible) | set(short))
        self.state = self.describe(now, inputs, result, delivered_shares, short)
        return self.snapshot(self.origin(now))

    def snapshot(self, origin: str) -> Steering:
        """The immutable snapshot of the current weights for the answer path."""
        weights = self.loop.weights
        self.steering = Steering(
            weights=tuple((t, round(w * WEIGHT_SCALE)) for t, w in sorted(weights.items())),
            mode=self.spec.mode,
            origin=origin,
            tick=self.ticks,
            state=tuple(sorted(self.state.items())),
        )
        return self.steering

    def learn(self, now: float) -> None:
        """Teach the profile every complete slot not learned yet (measured ones first)."""
        last = slot_of(now) - 1
        first = max(self.learned + 1, last - 2 * 288)
        for slot in range(first, last + 1):
            values = [self.ledger.slot_bytes(t, slot) for t in self.static]
            if any(v > 0 for v, _ in values):
                self.profile.learn(slot * SAMPLE_SECONDS, sum(v for v, _ in values))
        self.learned = max(self.learned, last)

    def measured_slot(self, now: float) -> int:
        """The last complete slot with data: the feed's end when it is fresh, else now's."""
        end = self.ledger.measured_end()
        if end is not None and self.ledger.feed_fresh(now):
            return slot_of(end) - 1
        return slot_of(now) - 1

    def offered(self, start: float, end: float) -> dict[str, float]:
        """Average answer shares in force over ``[start, end)``."""
        inside = [w for t, w in self.history if start <= t < end + SAMPLE_SECONDS]
        if not inside:
            return dict(self.history[-1][1]) if self.history else {}
        return {t: sum(w.get(t, 0.0) for w in inside) / len(inside) for t in self.static}

    def target_input(self, target: str, now: float) -> TargetInput:
        begin, end = self.ledger.targets[target].period
        delivered, _ = self.ledger.delivered(target, now)
        p95 = self.bills_p95(target)
        return TargetInput(
            static_share=self.static[target],
            contract=self.spec.contracts.get(target),
            delivered=delivered,
            remaining=self.profile.expected(now, end),
            price=self.prices.get(target),
            free_slot=p95 and self.free_slot(target, now),
            headroom=self.headroom(target, now) if p95 else 1.0,
        )

    def bills_p95(self, target: str) -> bool:
        contract = self.spec.contracts.get(target)
        return contract is not None and contract.kind == "p95"

    def headroom(self, target: str, now: float) -> float:
        """How far below its p95 commit to aim a target: delivery misses the aimed share
        from slot to slot (resolver caching, the draw, the loop's lag), and a p95 contract
        bills the 95th percentile of those slots, so aiming *at* the commit puts half of them
        over it. Over the last day's slots, the ratio of delivered to aimed share; the aim is
        the commit divided by that ratio's 97.5th percentile (1.0 until there are enough)."""
        if not self.aimed:
            return 1.0
        ratios = []
        last = slot_of(now) - 1
        for slot in range(last - AIMED_SLOTS + 1, last + 1):
            aimed = self.aim_in(slot).get(target)
            values = {t: self.ledger.slot_bytes(t, slot)[0] for t in self.static}
            total = sum(values.values())
            if not aimed or total <= 0:
                continue
            ratios.append(values[target] / total / aimed)
        if len(ratios) < MIN_AIMED:
            return 1.0
        ratios.sort()
        high = ratios[max(0, math.ceil(len(ratios) * (1 - FREE_FRACTION / 2)) - 1)]
        return min(1.0, max(HEADROOM_FLOOR, 1.0 / high)) if high > 0 else 1.0

    def remember_aim(self, now: float, shares: dict[str, float]) -> None:
        slot = slot_of(now)
        middle = (slot + 0.5) * SAMPLE_SECONDS
        before = [e for e in self.aimed.get(slot, []) if e[0] <= middle][-1:]
        self.aimed[slot] = [*before, (now, shares)] if now > middle else [(now, shares)]
        for old in [s for s in self.aimed if s < slot - AIMED_SLOTS - AIM_LOOKBACK]:
            del self.aimed[old]

    def aim_in(self, slot: int) -> dict[str, float]:
        """The shares in force in the middle of ``slot``: its own last tick if that came
        before the middle, else the last tick of an earlier slot (ticks may be an hour
        apart)."""
        middle = (slot + 0.5) * SAMPLE_SECONDS
        for at, shares in reversed(self.aimed.get(slot, [])):
            if at <= middle:
                return shares
        for earlier in range(slot - 1, slot - AIM_LOOKBACK - 1, -1):
            entries = self.aimed.get(earlier)
            if entries:
                return entries[-1][1]
        return {}

    def free_slot(self, target: str, now: float) -> bool:
        """Spend one of the period's free top-5 % samples now? Only while the budget lasts and
        only when this hour is among the busiest of what is left of the period."""
        contract = self.spec.contracts[target]
        begin, end = self.ledger.targets[target].period
        total = int((end - begin) // SAMPLE_SECONDS)
        used = sum(1 for s in self.ledger.samples(target, now) if s > contract.amount * 1.0001)
        left = int(total * FREE_FRACTION) - used
        slots_left = max(1, int((end - now) // SAMPLE_SECONDS))
        if left <= 0:
            return False
        hours = range(int(now // 3600), int(end // 3600) + 1)
        rates = sorted(
            (self.profile.rate(hour_of_week(h * 3600)) or 0.0 for h in hours), reverse=True
        )
        top = max(1, int(len(rates) * min(1.0, left / slots_left)))
        threshold = rates[top - 1] if rates else 0.0
        return (self.profile.rate(hour_of_week(now)) or 0.0) >= threshold > 0

    def origin(self, now: float) -> str:
        origins = {self.ledger.delivered(t, now)[1] for t in self.static}
        origins.discard("none")
        if not origins:
            return "none"
        return origins.pop() if len(origins) == 1 else "mixed"

    def describe(self, now, inputs, result, delivered_shares, short) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for target, info in inputs.items():
            begin, end = self.ledger.targets[target].period
            delivered, origin = self.ledger.delivered(target, now)
            share = delivered_shares.get(target, result.shares.get(target, 0.0))
            remaining = info.remaining or 0.0
            entry: dict[str, Any] = {
                "target_share": round(result.shares.get(target, 0.0), 4),
                "answer_share": round(self.loop.weights.get(target, 0.0), 4),
                "delivered_share": round(delivered_shares[target], 4) if delivered_shares else None,
                "delivered_bytes": round(delivered),
                "origin": origin,
                "estimate": origin != "feed",
                "users_per_answer": round(self.demand.relative(target), 3),
                "projected_bytes": round(delivered + share * remaining),
                "period": [begin, end],
                "feed_age": self.ledger.feed_age(target, now),
            }
            contract = info.contract
            if contract is not None:
                entry |= self.contract_state(target, contract, delivered, entry, begin, end, now)
                if contract.kind == "p95":
                    entry["headroom"] = round(info.headroom, 3)
            missing = result.infeasible.get(target, 0.0) + short.get(target, 0.0) * remaining
            if missing > 0:
                entry["infeasible"] = {"reason": "commit-infeasible", "short_bytes": round(missing)}
            out[target] = entry
        return out

    def contract_state(self, target, contract, delivered, entry, begin, end, now) -> dict[str, Any]:
        so_far = self.profile.expected(begin, now)
        whole = self.profile.expected(begin, end)
        elapsed = (now - begin) / (end - begin)
        fraction = so_far / whole if so_far is not None and whole else elapsed
        state: dict[str, Any] = {"kind": contract.kind, "commit": contract.amount}
        if contract.kind == "volume":
            pace = contract.amount * fraction
            state |= {
                "progress": delivered / contract.amount,
                "pace_bytes": round(pace),
                "pacing_error": (delivered - pace) / contract.amount,
                "projected_progress": entry["projected_bytes"] / contract.amount,
            }
        else:
            samples = self.ledger.samples(target, now)
            total = int((end - begin) // SAMPLE_SECONDS)
            free = int(total * FREE_FRACTION)
            p95 = billed_p95(samples, total)  # billed so far
            used = sum(1 for s in samples if s > contract.amount * 1.0001)
            state |= {
                "p95_bps": round(p95),
                "progress": p95 / contract.amount,
                "free_slots_left": max(0, free - used),
                "pacing_error": (p95 - contract.amount) / contract.amount,
            }
        return state

    # -- persistence ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger.to_json(),
            "profile": self.profile.to_json(),
            "loop": self.loop.to_json(),
            "ticks": self.ticks,
            "learned": self.learned,
            "history": [[t, w] for t, w in self.history],
            "aimed": {
                str(slot): [[t, shares] for t, shares in entries]
                for slot, entries in self.aimed.items()
            },  # fmt: skip
            "since": self.since,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.ledger.restore(data.get("ledger", {}))
        self.profile.restore(data.get("profile", {}))
        self.loop.restore(data.get("loop", {}))
        self.ticks = int(data.get("ticks", 0))
        self.learned = int(data.get("learned", -1))
        self.history.extend((float(t), dict(w)) for t, w in data.get("history", []))
        self.aimed = {int(slot): _aims(entries) for slot, entries in data.get("aimed", {}).items()}
        since = data.get("since")
        self.since = float(since) if since is not None else self.since
        for target in list(self.ledger.targets):
            if target not in self.static:
                del self.ledger.targets[target]
        self.from_disk = True
        self.snapshot("restored")

    def fleet_state(self) -> dict[str, Any]:
        """What a fleet peer without a state of its own starts from: the weights, the
        loop's learned biases and the traffic profile (delivered volume travels separately:
        usage intervals and estimates)."""
        return {"loop": self.loop.to_json(), "profile": self.profile.to_json(),
                "learned": self.learned, "ticks": self.ticks, "since": self.since}  # fmt: skip

    def adopt(self, data: dict[str, Any], now: float) -> str:
        """Start from a fleet peer's ``fleet_state`` while this controller has no state of
        its own: not restored from the state dir, and within ``ADOPT_WINDOW`` of this process
        starting to steer the record. Among peers, the oldest state wins (the one that began
        steering first), so a peer that itself just started from the static weights is not
        followed for long. Returns what happened; nothing changes unless every figure is
        sane."""
        self.here = now if self.here is None else self.here
        if self.from_disk or now - self.here > ADOPT_WINDOW:
            return "kept-own"
        loop, profile = data["loop"], data["profile"]
        ticks, learned, since = data.get("ticks", 0), data.get("learned", -1), data.get("since")
        if not (_sane_loop(loop) and _sane_profile(profile)
                and isinstance(ticks, int) and isinstance(learned, int)
                and -1 <= learned < slot_of(now) and _number(since) and since <= now):  # fmt: skip
            return "invalid"
        if self.since is not None and since >= self.since:
            return "kept-own"  # this one began steering as early
        fresh = Profile()
        fresh.restore(profile)  # everything parsed before anything changes
        self.loop.restore(loop)
        self.profile = fresh
        self.learned = max(self.learned, learned)  # not learned twice
        self.ticks, self.since = max(self.ticks, ticks), since
        self.snapshot("restored")
        return "adopted"


def _aims(entries: list) -> list[tuple[float, dict[str, float]]]:
    """A slot's aims from the state file ([t, shares] pairs; one bare pair as written
    before a slot kept two)."""
    if entries and isinstance(entries[0], int | float):
        entries = [entries]
    return [(float(t), {k: float(v) for k, v in shares.items()}) for t, shares in entries]


def _sane_loop(loop: Any) -> bool:
    """A peer's loop: weights are shares, biases logs of share ratios (our own stay within
    about +-9.2: shares are floored at 1e-4)."""
    weights, bias = loop["weights"], loop.get("bias", {})
    return (all(_number(w) and 0 <= w <= 1 for w in weights.values())
            and all(_number(b) and abs(b) <= MAX_BIAS for b in bias.values()))  # fmt: skip


def _sane_profile(profile: Any) -> bool:
    """A peer's traffic profile: HOURS bins and (actual, expected) pairs of bytes per slot,
    none negative or beyond MAX_SLOT_BYTES."""
    bins, recent = profile["bins"], profile.get("recent", [])
    values = [b for b in bins if b is not None]
    for pair in recent:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            return False
        values.extend(pair)
    return len(bins) == HOURS and all(_number(v) and 0 <= v <= MAX_SLOT_BYTES for v in values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
