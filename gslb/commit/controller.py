"""The closed loop: which delivered share each CDN needs, and the answer weights that get it.

Two parts, both pure functions of their inputs so they can be tested (and property-tested)
without a server:

``plan`` (the outer loop, per tick): from each contract, what was delivered so far and the
traffic the profile expects until the period ends, the *delivered* share each target must get
from now on to land on its commit: what is left of the commit over what is left of the
traffic. What no commit needs goes to whoever is cheapest at the margin (overage price for a
contracted CDN, ``cost`` otherwise), within ceilings. 95th-percentile contracts take their
rate's share of the current traffic, and everything up to their ceiling in the slots the free
top 5 % budget is spent on. More than all traffic: ``commit-infeasible`` with the shortfall.

``Loop.step`` (the inner loop): answers are not traffic. Resolvers cache an answer for its TTL
and carry very different populations, and the earlier steps offer a CDN only to some networks,
so each target's delivered share is its answer share times a bias. The loop estimates that bias
from measurements (smoothed in log space), computes the answer shares that would deliver the
planned shares, and moves toward them by at most ``max_step`` per target per tick and at most
``gain`` of the remaining distance: a damped move toward a fixed point never overshoots, so it
does not oscillate. A target the loop already gives (nearly) all it can and still falls short
is ``commit-infeasible`` by the projected shortfall; its users are never moved outside the
set the earlier steps kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gslb.commit.contract import Contract

DEADBAND = 1e-4  # do not move weights for less than one weight unit (1/10000)
BIAS_SMOOTHING = 0.5  # weight of a new bias measurement (log space)
MIN_OBSERVED = 1e-4  # answer shares below one weight unit teach no bias (nothing to measure)
SATURATED = 0.95  # answer share above which a target is "given all it can take"
SHORT = 0.01  # ... and delivered share this far below plan: infeasible
NEGLIGIBLE = 0.001  # a shortfall under 0.1 % of the commit is rounding, not infeasibility
# A commit that needs a million times the traffic left is as infeasible as one that needs
# infinitely more; the cap keeps the arithmetic finite when the expected traffic is a few
# denormal bytes (a hostile feed: 1e-303 bytes made the share infinite, its shortfall NaN).
MAX_NEED = 1e6


@dataclass(frozen=True, slots=True)
class TargetInput:
    """What the planner knows about one target."""

    static_share: float  # the operator's weight share
    contract: Contract | None = None
    delivered: float = 0.0  # period-to-date bytes
    remaining: float | None = None  # expected total traffic (all targets) until its period end
    price: float | None = None  # marginal price per GB without contract (``cost``)
    free_slot: bool = False  # p95: this slot spends one of the free top-5 % samples
    headroom: float = 1.0  # p95: aim at commit x headroom so slot-to-slot noise stays under it


@dataclass(slots=True)
class Plan:
    shares: dict[str, float]  # delivered share each target should get from now on
    infeasible: dict[str, float] = field(default_factory=dict)  # target -> shortfall bytes
    notes: list[str] = field(default_factory=list)


def plan(mode: str, targets: Mapping[str, TargetInput], rate_bps: float) -> Plan:
    """The delivered shares to aim for; ``rate_bps`` is the record's current total rate."""
    static = Plan(_normalised({t: i.static_share for t, i in targets.items()}))
    if mode == "delivered" or not targets:
        return static
    if any(i.contract is not None and i.remaining is None for i in targets.values()):
        static.notes.append("no traffic profile yet: static weights")
        return static
    need, caps, short = {}, {}, {}
    for target, info in targets.items():
        need[target], caps[target] = _commit_share(info, rate_bps)
    total = sum(need.values())
    result = Plan({})
    if total > 1.0:
        for target, share in need.items():
            remaining = targets[target].remaining or 0.0
            missing = share * (1 - 1 / total) * remaining
            contract = targets[target].contract
            if contract is not None and missing > NEGLIGIBLE * contract.amount:
                short[target] = missing
        need = {t: s / total for t, s in need.items()}
        result.notes.append(f"commits need {total:.0%} of the remaining traffic")
    result.infeasible = short
    result.shares = _fill_margin(targets, need, caps, result.notes)
    return result


def _commit_share(info: TargetInput, rate_bps: float) -> tuple[float, float]:
    """``(share the commit needs, largest share before overage or ceiling)``."""
    contract = info.contract
    if contract is None:
        return 0.0, 1.0
    remaining = info.remaining
    if contract.kind == "volume":
        if remaining is None or remaining <= 0:
            return 0.0, 1.0
        need = min(MAX_NEED, max(0.0, contract.amount - info.delivered) / remaining)  # may be > 1
        if contract.ceiling is None:
            return need, 1.0
        cap = min(MAX_NEED, max(0.0, contract.ceiling - info.delivered) / remaining)
        return min(need, cap), cap
    if rate_bps <= 0:
        return 0.0, 1.0
    need = min(1.0, contract.amount * info.headroom / rate_bps)
    ceiling = 1.0 if contract.ceiling is None else min(1.0, contract.ceiling / rate_bps)
    if info.free_slot:
        return ceiling, ceiling
    return need, max(need, ceiling if contract.overage == 0 else need)


def _marginal_price(info: TargetInput) -> float:
    """Price of one more GB: overage for a contracted CDN (a p95 one is free in a free slot),
    ``cost`` otherwise; unknown prices rank last."""
    if info.contract is not None:
        if info.contract.kind == "p95" and info.free_slot:
            return 0.0
        return info.contract.overage
    return info.price if info.price is not None else math.inf


def _fill_margin(
    targets: Mapping[str, TargetInput],
    need: dict[str, float],
    caps: dict[str, float],
    notes: list[str],
) -> dict[str, float]:
    """Add the traffic no commit needs to the cheapest at the margin, group by price."""
    shares = dict(need)
    left = max(0.0, 1.0 - sum(shares.values()))
    by_price: dict[float, list[str]] = {}
    for target, info in targets.items():
        by_price.setdefault(_marginal_price(info), []).append(target)
    for price in sorted(by_price):
        if left <= 1e-12:
            break
        left = _share_out(by_price[price], targets, shares, caps, left)
    if left > 1e-9:  # every ceiling reached: users still get answers (fail open)
        notes.append("every target at its ceiling; the rest follows the static weights")
        _share_out(list(targets), targets, shares, {t: 1.0 for t in targets}, left)
    return _normalised(shares)


def _share_out(
    group: list[str],
    targets: Mapping[str, TargetInput],
    shares: dict[str, float],
    caps: Mapping[str, float],
    left: float,
) -> float:
    """Give ``left`` to ``group`` by static weight, within caps; returns what is still left."""
    open_ = [t for t in group if caps[t] - shares[t] > 1e-12]
    while left > 1e-12 and open_:
        weights = {t: max(targets[t].static_share, 1e-9) for t in open_}
        total = sum(weights.values())
        given = 0.0
        for target in open_:
            portion = min(left * weights[target] / total, caps[target] - shares[target])
            shares[target] += portion
            given += portion
        left -= given
        open_ = [t for t in open_ if caps[t] - shares[t] > 1e-12]
        if given <= 1e-15:
            break
    return left


def _normalised(shares: Mapping[str, float]) -> dict[str, float]:
    total = sum(shares.values())
    if total <= 0:
        return {t: 1.0 / len(shares) for t in shares} if shares else {}
    return {t: s / total for t, s in shares.items()}


# -- the inner loop: answer shares -> delivered shares -----------------------------------


@dataclass(slots=True)
class Loop:
    """Answer shares of one record's targets, and the learned answer->delivery bias."""

    weights: dict[str, float]  # answer shares, sum 1
    max_step: float = 0.05
    gain: float = 0.5
    bias: dict[str, float] = field(default_factory=dict)  # log(delivered share / answer share)

    def observe(self, offered: Mapping[str, float], delivered: Mapping[str, float]) -> None:
        """Learn the bias from one window: the answer shares in force and the delivered
        shares that came of them (both sum to 1 over the same targets)."""
        for target, answer_share in offered.items():
            if answer_share < MIN_OBSERVED or target not in self.weights:
                continue
            share = max(delivered.get(target, 0.0), 1e-4 * answer_share)
            measured = math.log(share / answer_share)
            old = self.bias.get(target)
            self.bias[target] = measured if old is None else old + BIAS_SMOOTHING * (measured - old)

    def ideal(self, shares: Mapping[str, float]) -> dict[str, float]:
        """The answer shares that would deliver ``shares`` under the learned bias."""
        raw = {t: shares.get(t, 0.0) / math.exp(self.bias.get(t, 0.0)) for t in self.weights}
        return _normalised(raw)

    def step(self, shares: Mapping[str, float]) -> dict[str, float]:
        """Move toward the ideal answer shares: at most ``max_step`` per target, at most
        ``gain`` of the distance. Returns the new weights (also kept)."""
        ideal = self.ideal(shares)
        distance = max((abs(ideal[t] - self.weights[t]) for t in self.weights), default=0.0)
        if distance < DEADBAND:
            return self.weights
        alpha = min(self.gain, self.max_step / distance)
        moved = {t: w + alpha * (ideal[t] - w) for t, w in self.weights.items()}
        self.weights = _normalised({t: max(0.0, w) for t, w in moved.items()})
        return self.weights

    def saturated_short(
        self, shares: Mapping[str, float], delivered: Mapping[str, float]
    ) -> dict[str, float]:
        """Targets already given (nearly) every answer yet still short of plan: target ->
        missing delivered share. More weight cannot help; only the earlier steps' sets could."""
        return {
            target: want - delivered.get(target, 0.0)
            for target, want in shares.items()
            if want - delivered.get(target, 0.0) > SHORT
            and self.weights.get(target, 0.0) >= SATURATED
        }

    def to_json(self) -> dict[str, Any]:
        return {"weights": self.weights, "bias": self.bias}

    def restore(self, data: Mapping[str, Any]) -> None:
        known = set(self.weights)
        weights = {t: float(w) for t, w in data.get("weights", {}).items() if t in known}
        if weights and sum(weights.values()) > 0:
            self.weights = _normalised({t: weights.get(t, 0.0) for t in known})
        self.bias = {t: float(b) for t, b in data.get("bias", {}).items() if t in known}
