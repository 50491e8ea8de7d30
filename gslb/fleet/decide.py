"""The fleet's health decision: a pure function of replicated state, identical on every node.

For each check, from the fresh vantage points (this node's own probe, always, plus every peer
observation *received* within the freshness window — local receive time, so a skewed clock
elsewhere cannot flip a verdict):

1. an operator override wins (it travels in the local view's ``CheckState.override``);
2. each region that has fresh vantages decides by **majority** of them (a tie counts as up):
   the per-region health matrix; a client of that region is answered from it;
3. clients of any other region get the **global policy** over all fresh vantages:
   ``quorum`` (default: down only when more than half say down), ``all`` (up only when every
   vantage says up), ``any`` (up when one does), or ``threshold`` (up when more than that
   fraction says up; 0.18 is Route 53's rule).

With only the own vantage (standalone, or the engine lost) this reduces to today's
single-prober verdict, reason included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from gslb.health.view import CheckState, HealthView, RegionOf, TargetKey

POLICIES = ("quorum", "all", "any", "threshold")


@dataclass(frozen=True, slots=True)
class Vantage:
    """One node's latest verdict on one check (after its own rise/fall thresholds)."""

    node: str
    region: str
    up: bool
    reason: str
    received: float  # local monotonic time it arrived (the own vantage: when probed)
    sent: float = 0.0  # the sender's wall clock, shown only


@dataclass(frozen=True, slots=True)
class Policy:
    """How all fresh vantages make the global verdict of one check."""

    mode: str = "quorum"  # quorum | all | any | threshold
    threshold: float = 0.5  # threshold mode: up when more than this fraction says up

    def verdict(self, ups: int, total: int) -> bool:
        if total == 0:
            return True
        if self.mode == "all":
            return ups == total
        if self.mode == "any":
            return ups > 0
        if self.mode == "threshold":
            return ups / total > self.threshold
        return 2 * (total - ups) <= total  # quorum: down only when a majority says down

    def describe(self) -> str:
        return f"threshold {self.threshold:g}" if self.mode == "threshold" else self.mode


DEFAULT_POLICY = Policy()


def majority(ups: int, total: int) -> bool:
    """A region's verdict: up unless more than half of its vantages say down."""
    return 2 * (total - ups) <= total


def fresh(vantages: Iterable[Vantage], now: float, window: float) -> list[Vantage]:
    """The vantages received within ``window`` seconds of ``now`` (monotonic)."""
    return [v for v in vantages if now - v.received <= window]


def decide(
    local: HealthView,
    vantages: Mapping[str, list[Vantage]],
    policies: Mapping[str, Policy],
    *,
    version: int,
    targets: Mapping[TargetKey, str] | None = None,
    region_of: RegionOf | None = None,
) -> HealthView:
    """The view every node computes from the same inputs.

    ``local`` is this node's prober view (its states carry the operator overrides and the
    performance averages); ``vantages`` the fresh vantages per check key, own included;
    ``policies`` the global policy per check (default ``quorum``).
    """
    states: dict[str, CheckState] = dict(local.states)
    by_region: dict[str, dict[str, CheckState]] = {}
    for key, votes in vantages.items():
        if key not in policies or not votes:
            continue
        base = local.states.get(key)
        policy = policies.get(key, DEFAULT_POLICY)
        ups = sum(v.up for v in votes)
        states[key] = _state(base, policy.verdict(ups, len(votes)), votes, None)
        for region, members in _group(votes).items():
            region_ups = sum(v.up for v in members)
            verdict = majority(region_ups, len(members))
            by_region.setdefault(region, {})[key] = _state(base, verdict, members, region)
    varies = frozenset(
        key
        for region_states in by_region.values()
        for key, state in region_states.items()
        if state.up != states[key].up
    )
    frozen_targets = MappingProxyType(dict(targets or {}))
    regional = {
        region: HealthView(
            version, MappingProxyType({**states, **region_states}), frozen_targets, varies=varies
        )  # fmt: skip
        for region, region_states in by_region.items()
    }
    return HealthView(version, MappingProxyType(states), frozen_targets,
                      MappingProxyType(regional), varies, region_of)  # fmt: skip


def _group(votes: list[Vantage]) -> dict[str, list[Vantage]]:
    groups: dict[str, list[Vantage]] = {}
    for vote in votes:
        groups.setdefault(vote.region, []).append(vote)
    return groups


def _state(
    base: CheckState | None, up: bool, votes: list[Vantage], region: str | None
) -> CheckState:
    """The check's state for a verdict, keeping the override and averages of ``base``.

    The local prober's moving averages (latency, success ratio) describe the local vantage:
    where the verdict overrules the local probes, they would mislead the performance step
    (a CDN failing only from here would still be dropped as "unreliable"), so they go."""
    reason = _reason(up, votes, region)
    if base is None:
        return CheckState(up=up, reason=reason)
    if base.up != up:
        base = replace(base, latency=None, success_ratio=None)
    if base.override is not None:
        return replace(base, up=up)  # the override's reason stays what answers show
    return replace(base, up=up, reason=reason)


def _reason(up: bool, votes: list[Vantage], region: str | None) -> str:
    agreeing = [v for v in votes if v.up == up] or votes
    if len(votes) == 1:
        return votes[0].reason
    where = f" in {region}" if region else ""
    return f"{agreeing[0].reason} ({len(agreeing)} of {len(votes)} vantages{where})"


def matrix(
    vantages: Mapping[str, list[Vantage]],
    view: HealthView,
    policies: Mapping[str, Policy],
    now: float,
    targets_of: Mapping[str, list[dict[str, str]]] | None = None,
) -> dict[str, Any]:
    """The health matrix (check x region) as JSON: each region's verdict and every vantage's
    last result and age, the global verdict and its policy. For /fleet and status pages."""
    regions = sorted({v.region for votes in vantages.values() for v in votes})
    checks: dict[str, Any] = {}
    for key in sorted(set(policies) | set(vantages)):
        votes = vantages.get(key, [])
        state = view.states.get(key)
        cells = {}
        for region, members in sorted(_group(votes).items()):
            regional = view.for_region(region).states.get(key)
            cells[region] = {
                "up": regional.up if regional is not None else None,
                "effective": regional.effective if regional is not None else None,
                "vantages": [_vantage_json(v, now) for v in members],
            }
        checks[key] = {
            "targets": (targets_of or {}).get(key, []),
            "policy": policies.get(key, DEFAULT_POLICY).describe(),
            "global": None if state is None else {
                "up": state.up, "effective": state.effective, "reason": state.reason,
                "override": state.override, "ups": sum(v.up for v in votes),
                "vantages": len(votes),
            },
            "regions": cells,
            "varies_by_region": key in view.varies,
        }  # fmt: skip
    return {"regions": regions, "checks": checks}


def _vantage_json(vantage: Vantage, now: float) -> dict[str, Any]:
    return {
        "node": vantage.node,
        "up": vantage.up,
        "reason": vantage.reason,
        "age": round(max(0.0, now - vantage.received), 3),
    }
