"""How many users one answer stands for: each resolver cache's observed demand.

Without a usage feed the commit controller estimates delivered volume from gslb's own
answers. Counting answers alone assumes every answer carries the same traffic, which resolver
caching breaks: a busy ISP resolver asks once per TTL however many users sit behind it, a
quiet one asks for nearly every user. So each answer is weighted by the demand behind the
cache that asked.

The model (Akamai's "nameserver demand" reads the same signal: how often a resolver re-asks
relative to the TTL). Users behind one cache arrive at random at rate ``λ``; the cache asks
at the first arrival after its copy (TTL ``T``) ran out, so it asks at ``q = λ / (1 + λT)``
per second, and each answer serves ``1 + λT = 1 / (1 - qT)`` arrivals. ``q`` is observable:
the cache's queries for the name per second. A cache is a resolver address plus, when the
answer carried an ECS scope, the client subnet that scope covers (the resolver keeps one copy
per such subnet). Beyond ``qT`` = ``SATURATION`` the weight is capped: a saturated resolver
asks once per TTL whatever its size, and DNS cannot tell busy from very busy (a usage feed
can, which is why a feed, where one exists, calibrates the estimate).

The weights only share out the answers between targets (``gslb.commit.estimate``): the
total stays the answer count, so ``bytes_per_answer`` keeps its meaning.

On the answer path this costs one countdown per GSLB answer (``DemandSampler.see``), and only
while some record has a commit: one answer in ``every`` is kept as it was (client, query,
labels, scope) and the rest of the work happens when the counters are read (``flush``), off
the answer path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from gslb.dns.wire import FormatError, Query, parse_query
from gslb.policy.weighted import DEGRADED, NOT_A_TARGET

SATURATION = 0.97  # qT cap: one answer stands for at most 1 / (1 - 0.97) = 33 users
WINDOW = 3600.0  # seconds of queries a cache's rate is measured over
MIN_SPAN = 300.0  # a young window is read as at least this long (no rate from two queries)
CACHES = 100_000  # caches tracked per generation and process (an int key and count each)
PENDING = 65_536  # samples kept between two reads; more are dropped and counted
FLUSH_BUDGET = 0.005  # seconds one read may spend weighing samples (the rest waits its turn)
DEFAULT_EVERY = 16  # one GSLB answer in 16 is sampled


class DemandEstimator:
    """Queries per cache over a sliding window (two generations of ``window`` seconds), and
    the users one more answer to that cache stands for.

    ``every`` answers are represented by each observation (the sampling rate) and ``spread``
    processes share the traffic evenly (``--workers``: each sees 1/spread of every cache's
    queries), so a cache's rate is its count times both over the span."""

    def __init__(
        self, every: int = 1, spread: int = 1, window: float = WINDOW, limit: int = CACHES
    ) -> None:
        if every < 1 or spread < 1 or window <= 0:
            raise ValueError("every and spread must be >= 1 and window > 0")
        self.every = every
        self.spread = spread
        self.window = window
        self.limit = limit
        self.current: dict[int, int] = {}
        self.previous: dict[int, int] = {}
        self.started: float | None = None  # when the current generation began
        self.first: float | None = None  # the first observation ever
        self.untracked = 0  # observations of caches that found the table full

    def weight(self, cache: int, ttl: float, now: float, count: int = 1) -> float:
        """Users that ``count`` more answers to ``cache`` (answers of TTL ``ttl``) stand for;
        the observation is counted after it is weighted (a cache's first answer weighs 1)."""
        self._roll(now)
        fraction = (now - self.started) / self.window  # type: ignore[operator]
        seen = self.current.get(cache, 0) + self.previous.get(cache, 0) * (1.0 - fraction)
        span = max(MIN_SPAN, min(self.window, now - self.first))  # type: ignore[operator]
        rate = seen * self.every * self.spread / span
        users = 1.0 / (1.0 - min(rate * ttl, SATURATION))
        if cache in self.current or len(self.current) < self.limit:
            self.current[cache] = self.current.get(cache, 0) + count
        else:
            self.untracked += count
        return users * count

    def _roll(self, now: float) -> None:
        if self.started is None:
            self.started = self.first = now
        elif now - self.started >= self.window:
            # a gap longer than two windows leaves nothing worth carrying over
            self.previous = self.current if now - self.started < 2 * self.window else {}
            self.current = {}
            self.started = now
        elif now < self.started:  # the clock stepped back: the window restarts from here
            self.started = now

    def caches(self) -> int:
        return len(self.current)


class DemandSampler:
    """The answer path's side: one GSLB answer in ``every`` is kept as it was; ``flush``
    turns the kept ones into demand units (``Stats.demand``) when the counters are read.

    ``ttls`` maps (record name, degraded) to the TTL its answers carry, for records with
    commits only (the others' samples are dropped at flush)."""

    __slots__ = (
        "every",
        "left",
        "pending",
        "estimator",
        "ttls",
        "offered",
        "dropped",
        "unreadable",
    )

    def __init__(
        self, ttls: Mapping[tuple[str, bool], float], every: int = DEFAULT_EVERY, spread: int = 1
    ) -> None:
        self.every = every
        self.left = every
        self.pending: list[tuple] = []
        self.estimator = DemandEstimator(every, spread)
        self.ttls = dict(ttls)
        self.offered = 0  # samples taken (kept or dropped)
        self.dropped = 0  # samples lost because nobody read the counters for a long time
        self.unreadable = 0  # samples whose query could not be read again (never expected)

    def see(self, client: str, query: Query | bytes, answer: tuple, scope: int) -> None:
        """One GSLB answer was sent (``answer`` is its (record, target, reason) labels). The
        replay and shape paths inline the countdown and call ``take`` (0.1 us a call)."""
        self.left -= 1
        if not self.left:
            self.take(client, query, answer, scope)

    def take(self, client: str, query: Query | bytes, answer: tuple, scope: int) -> None:
        """Keep this answer as it was (the countdown reached zero)."""
        self.left = self.every
        self.offered += 1
        if len(self.pending) < PENDING:
            self.pending.append((client, query, answer, scope))
        else:
            self.dropped += 1

    def configure(self, ttls: Mapping[tuple[str, bool], float]) -> None:
        """A new configuration's commit records; what each cache asked so far stays."""
        self.ttls = dict(ttls)

    def flush(self, demand: dict, now: float, budget: float = FLUSH_BUDGET) -> None:
        """Add the demand of the answers sampled since the last call to ``demand``, a
        (record, target, reason) -> users mapping (``Stats.demand``). It runs on the DNS
        process's loop, so it stops after ``budget`` seconds and leaves the rest for the next
        read (a backlog beyond ``PENDING`` is dropped: the weights are ratios, and what is
        dropped is a random part of the answers)."""
        deadline = time.perf_counter() + budget
        # samples dropped when the backlog was full: the rest stand for them too
        self.estimator.every = self.every * self.offered / max(1, self.offered - self.dropped)
        if self.offered > 1_000_000:  # recent conditions count, not the whole uptime
            self.offered, self.dropped = self.offered // 2, self.dropped // 2
        pending = self.pending
        done = 0
        for done, (client, query, answer, scope) in enumerate(pending, 1):
            self.weigh(demand, now, client, query, answer, scope)
            if not done & 63 and time.perf_counter() > deadline:
                break
        self.pending = pending[done:]

    def weigh(self, demand: dict, now: float, client: str, query: Query | bytes,
              answer: tuple, scope: int) -> None:  # fmt: skip
        record, _target, reason = answer
        if reason in NOT_A_TARGET:
            return
        ttl = self.ttls.get((record, reason in DEGRADED))
        if ttl is None:
            return
        try:
            cache = cache_key(client, query, scope, record)
        except Exception:  # a sample must never fail a read of the counters
            cache = None
        if cache is None:
            self.unreadable += 1
            return
        demand[answer] += self.estimator.weight(cache, ttl, now) * self.estimator.every


def cache_key(client: str, query: Query | bytes, scope: int, record: str) -> int | None:
    """The resolver cache an answer went to: the resolver, the record and the query type (a
    resolver caches A and AAAA apart), plus the client subnet the answer's ECS scope covers
    when the query's ECS decided (source above 0). None for a query that does not parse."""
    if isinstance(query, bytes):
        try:
            query = parse_query(query)
        except FormatError:
            return None
    ecs = query.opt.ecs if query.opt is not None else None
    if ecs is None or ecs.source == 0 or scope == 0:
        return hash((client, record, query.qtype))
    bits = 32 if ecs.family == 1 else 128
    scope = min(scope, bits)
    covered = int.from_bytes(ecs.ip_bytes()) >> (bits - scope)
    return hash((client, record, query.qtype, ecs.family, scope, covered))


def ttls_of(records: Iterable[Any]) -> dict[tuple[str, bool], float]:
    """(record name, degraded) -> answer TTL for the records that have commits."""
    out: dict[tuple[str, bool], float] = {}
    for record in records:
        if record.commit is None:
            continue
        out[(record.fqdn, False)] = record.ttl
        degraded = record.options.degraded_ttl
        out[(record.fqdn, True)] = record.ttl if degraded is None else degraded
    return out
