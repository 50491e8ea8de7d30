"""What every policy step reads and returns: the context, the candidates, the trace.

All steps share one signature, ``step(ctx, candidates) -> candidates``, so the chain can run
them in any order a record asks for, and ``explain`` runs exactly the code ``answer`` runs:
the only difference is the trace, which is a no-op object on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gslb.config.model import DynamicRecord, GslbOptions, Pop, Target
from gslb.health.view import HealthView

if TYPE_CHECKING:
    from gslb.policy.client import Client
    from gslb.policy.rules import Match


@dataclass(slots=True, eq=False)
class Candidate:
    """One value still in the running, with what the steps learned about it."""

    target: Target
    pool: str | None  # None = the record's own values (origin)
    weight: int
    pops: tuple[Pop, ...]  # PoPs still usable (health drops those whose own check is down)
    values: tuple[str, ...]  # the rdata this candidate answers with
    health: str = "up"  # up | drained | down, after status and overrides
    forced: bool = False  # kept only because ``status: up`` (or an operator) said so
    distance_km: float | None = None
    pop: str | None = None  # the PoP the answer uses (nearest, when proximity ran)
    latency: float | None = None
    success_ratio: float | None = None

    @property
    def label(self) -> str:
        """Bounded metrics label: the target value, or ``origin``."""
        return "origin" if self.pool is None else self.target.value

    def describe(self) -> dict[str, Any]:
        """JSON-able view for ``explain``."""
        return {
            "value": self.target.value,
            "pool": _pool(self),
            "answer": list(self.values),
            "weight": self.weight,
            "status": self.target.status,
            "check": self.target.check,
            "health": self.health,
            "forced": self.forced,
            "cost": self.target.cost,
            "distance_km": None if self.distance_km is None else round(self.distance_km, 1),
            "pop": self.pop,
            "latency": self.latency,
            "success_ratio": self.success_ratio,
        }


def pop_values(target: Target, pops: tuple[Pop, ...]) -> tuple[str, ...]:
    """Addresses of the given PoPs (in order, once each), or the target value itself."""
    addresses = tuple(dict.fromkeys(a for pop in pops for a in pop.addresses))
    return addresses or (target.value,)


def candidates(targets: Iterable[Target], pool: str | None) -> list[Candidate]:
    """Fresh candidates for a pool (or the origin): steps mutate them, so never share."""
    return [
        Candidate(
            target=t,
            pool=pool,
            weight=t.weight,
            pops=t.pops,
            values=pop_values(t, t.pops),
        )
        for t in targets
    ]


class NullTrace:
    """The hot path's recorder: every call is a no-op, so steps trace unconditionally."""

    enabled = False

    def step(self, name: str, before: list[Candidate]) -> None:
        pass

    def drop(self, candidate: Candidate, why: str) -> None:
        pass

    def note(self, key: str, value: Any) -> None:
        pass

    def done(self, after: list[Candidate]) -> None:
        pass


class Trace(NullTrace):
    """Records, per step, who came in and out, who was dropped and why, and the step's notes;
    and every candidate ever considered, with the step that dropped it."""

    enabled = True

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.seen: dict[int, Candidate] = {}
        self.dropped: dict[int, dict[str, str]] = {}

    def step(self, name: str, before: list[Candidate]) -> None:
        self.steps.append({"step": name, "in": _names(before), "dropped": [], "notes": {}})
        self._see(before)

    def drop(self, candidate: Candidate, why: str) -> None:
        step = self.steps[-1]
        step["dropped"].append(
            {"value": candidate.target.value, "pool": _pool(candidate), "why": why}
        )
        self.dropped[id(candidate)] = {"step": step["step"], "why": why}
        self._see([candidate])

    def note(self, key: str, value: Any) -> None:
        self.steps[-1]["notes"][key] = value

    def done(self, after: list[Candidate]) -> None:
        self.steps[-1]["out"] = _names(after)
        self._see(after)

    def _see(self, cands: list[Candidate]) -> None:
        for cand in cands:
            self.seen.setdefault(id(cand), cand)

    def candidates(self) -> list[dict[str, Any]]:
        """Every candidate considered, with what the steps learned, and why it left."""
        return [
            cand.describe() | {"dropped": self.dropped.get(key)} for key, cand in self.seen.items()
        ]


def _pool(cand: Candidate) -> str:
    return cand.pool if cand.pool is not None else "(origin)"


def _names(cands: list[Candidate]) -> list[str]:
    return [f"{_pool(c)}: {c.target.value}" for c in cands]


NULL_TRACE = NullTrace()


@dataclass(slots=True, eq=False)
class Context:
    """One decision: the record, who asks, the health snapshot and what the steps decided."""

    record: DynamicRecord
    options: GslbOptions
    client: Client
    health: HealthView
    match: Match
    trace: NullTrace
    pool: str | None = None  # pool currently answering; None = origin
    reason: str = "pool"  # rule | pool | fallback | origin | fail-open | exhausted
    used_location: bool = False  # a step's outcome depended on the client's coordinates
    rum: Any = None  # gslb.rum.snapshot.Decision for this client, looked up by the engine


Step = Callable[[Context, list[Candidate]], list[Candidate]]
