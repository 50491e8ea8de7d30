"""Step ``weighted``: pick ``answers`` values by weight, at random or stuck to the client.

Everything before this step is deterministic for a given record, rule/location and health
snapshot, so the chain caches its outcome as a ``Prepared`` (choices with cumulative weights)
and only ``pick`` runs per query:

- random, one answer: a bisect on the cumulative weights (one ``rng.random()`` call);
- several answers: weighted sampling without replacement (Efraimidis-Spirakis keys
  ``log(u) / weight``, top N);
- sticky: the same keys with ``u`` from a hash of the client's /24 or /56 and the value
  (weighted rendezvous hashing): a client keeps its value, and when one value leaves only its
  own clients move (PowerDNS ``pickchashed`` has the same property).
"""

from __future__ import annotations

import hashlib
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from gslb.policy.context import Candidate, Context

MASK64 = (1 << 64) - 1
STUCK_LIMIT = 16384  # sticky picks remembered per cached decision (client /24s or /56s)
# Answers none of the record's pool targets got (the origin, fail-open, nothing left): not
# counted against any target's commit.
NOT_A_TARGET = frozenset({"origin", "fail-open", "exhausted"})
DEGRADED = NOT_A_TARGET | {"fallback"}


@dataclass(frozen=True, slots=True)
class Choice:
    values: tuple[str, ...]
    label: str  # metrics label: target value or "origin"
    reason: str  # the pool's reason, or "forced" when a status/override kept this value
    weight: int
    seed: int  # per-value 64-bit seed for sticky hashing


@dataclass(slots=True, eq=False)
class Prepared:
    """The cacheable outcome of the chain up to the final pick."""

    choices: tuple[Choice, ...]
    cumulative: tuple[int, ...]
    pool: str | None
    reason: str
    ttl: int
    used_location: bool
    weighted: bool  # False: the chain has no weighted step, answer the first N in order
    sticky: bool
    answers: int
    pins: tuple[Any, ...] = ()  # objects whose id() is part of the cache key: keep them alive
    memo: dict[tuple[int, int], Any] = field(default_factory=dict)  # (choice, scope) -> Answer
    stuck: dict[int, list[int]] = field(default_factory=dict)  # sticky key -> picked indices
    # The total weight when one random draw picks the answer (weighted, one answer, not
    # sticky, several choices: the common case, which the engine inlines); else 0.
    draw: int = 0

    def __post_init__(self) -> None:
        single = self.weighted and self.answers == 1 and not self.sticky
        if single and len(self.choices) > 1:
            self.draw = self.cumulative[-1]

    @property
    def total(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    """Drops nothing: records each value's share, the pick itself happens per query."""
    ctx.trace.step("weighted", cands)
    total = sum(c.weight for c in cands) or 1
    ctx.trace.note("mode", "sticky" if ctx.options.sticky else "random")
    ctx.trace.note("shares", {c.target.value: round(c.weight / total, 4) for c in cands})
    ctx.trace.done(cands)
    return cands


def prepare(ctx: Context, cands: list[Candidate], weighted: bool) -> Prepared:
    options = ctx.options
    name = ctx.record.fqdn.encode()
    choices = tuple(
        Choice(
            values=c.values,
            label=c.label,
            reason="forced" if c.forced else ctx.reason,
            weight=c.weight,
            seed=_seed(name, c.target.value),
        )
        for c in cands
    )
    degraded = ctx.reason in DEGRADED and options.degraded_ttl is not None
    return Prepared(
        choices=choices,
        cumulative=tuple(accumulate(c.weight for c in choices)),
        pool=ctx.pool,
        reason=ctx.reason,
        ttl=options.degraded_ttl if degraded else ctx.record.ttl,  # type: ignore[arg-type]
        used_location=ctx.used_location,
        weighted=weighted,
        sticky=weighted and options.sticky and len(choices) > 1,
        answers=options.answers,
    )


def _seed(name: bytes, value: str) -> int:
    return int.from_bytes(hashlib.blake2b(name + b"|" + value.encode(), digest_size=8).digest())


def _mix(x: int) -> float:
    """splitmix64 finaliser -> a uniform float in (0, 1)."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    x ^= x >> 31
    return ((x >> 11) + 0.5) * (1.0 / (1 << 53))


def pick(prepared: Prepared, rng: random.Random, sticky_key: int) -> list[int]:
    """Indices into ``prepared.choices``, best first."""
    choices = prepared.choices
    if len(choices) <= 1:
        return [0] if choices else []
    if not prepared.weighted:
        return list(range(min(prepared.answers, len(choices))))
    if prepared.draw:  # one answer by one random draw (Engine.pick inlines this case)
        index = bisect_right(prepared.cumulative, rng.random() * prepared.draw)
        return [min(index, len(choices) - 1)]
    if prepared.sticky:
        picked = prepared.stuck.get(sticky_key)
        if picked is None:
            if len(prepared.stuck) >= STUCK_LIMIT:
                prepared.stuck.clear()
            keys = [math.log(_mix(sticky_key ^ c.seed)) / c.weight for c in choices]
            picked = prepared.stuck[sticky_key] = _top(keys, prepared.answers)
        return picked
    keys = [math.log(1.0 - rng.random()) / c.weight for c in choices]
    return _top(keys, prepared.answers)


def _top(keys: list[float], count: int) -> list[int]:
    """Indices of the ``count`` largest keys, largest first."""
    if count == 1:
        return [max(range(len(keys)), key=keys.__getitem__)]
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=True)[:count]


def values_of(prepared: Prepared, indices: list[int]) -> tuple[str, ...]:
    """At most ``answers`` values, taking one from each picked choice in turn (so two answers
    name two CDNs before a second address of the first one), each value once."""
    lists = [prepared.choices[i].values for i in indices]
    out: dict[str, None] = {}
    for depth in range(max(map(len, lists), default=0)):
        for values in lists:
            if depth < len(values):
                out[values[depth]] = None
    return tuple(out)[: prepared.answers]
