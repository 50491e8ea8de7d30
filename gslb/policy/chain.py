"""The GSLB decision: the record's chain of steps, a decision cache, and ``explain``.

``Engine.answer`` is the hot path. Everything before the final weighted pick is deterministic
for (record, matched rule, client location when proximity matters, health snapshot), so its
outcome is cached per key and a query costs: choose the client address, match the rule (a few
int compares, one geo lookup when geo rules or proximity need it), one dict lookup, one pick.
A new health snapshot clears the cache. ``Engine.explain`` runs the very same steps with a
recording trace instead of the no-op one.
"""

from __future__ import annotations

import ipaddress
import random
from bisect import bisect_right
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from gslb.config.model import DynamicRecord
from gslb.health.view import HealthView
from gslb.policy import commit, cost, health, performance, proximity, rules, rum, weighted
from gslb.policy.client import (
    STICKY_PREFIX,
    Address,
    Client,
    GeoLike,
    client_address,
    full_prefix,
    sticky_key,
)
from gslb.policy.compile import ASK_CLASS, Compiler, RecordPlan, Unplaced
from gslb.policy.context import NULL_TRACE, Candidate, Context, NullTrace, Step, Trace, candidates
from gslb.policy.rules import Match, RuleIndex
from gslb.policy.weighted import Prepared

STEPS: dict[str, Step] = {
    "rules": rules.step,
    "health": health.step,
    "rum": rum.step,
    "performance": performance.step,
    "proximity": proximity.step,
    "cost": cost.step,
    "commit": commit.step,
    "weighted": weighted.step,
}
TYPE_NAMES = {1: "A", 28: "AAAA", 5: "CNAME"}


NOWHERE = (None, 0)  # no database: every client of unknown location


def _same(place: tuple[Any, int]) -> tuple[Any, int]:
    return place


@dataclass(frozen=True, slots=True)
class Answer:
    values: tuple[str, ...]  # rdata texts (addresses, or one CNAME target with trailing dot)
    ttl: int
    scope: int  # ECS scope prefix length this answer depended on
    reason: str  # rule | pool | fallback | origin | fail-open | forced | exhausted
    target: str  # bounded metrics label: the chosen target value, or "origin"
    pool: str | None


class Compiled:
    """A record prepared for matching: built once per record object, reused per query."""

    __slots__ = ("record", "rules", "steps", "weighted", "proximity", "seed_rules", "fixed",
                 "rum")  # fmt: skip

    def __init__(self, record: DynamicRecord) -> None:
        chain = record.options.chain
        self.record = record
        self.rules = RuleIndex(record.rules)
        self.steps = tuple(STEPS[name] for name in chain)
        self.weighted = "weighted" in chain
        self.seed_rules = "rules" not in chain  # start from the catch-all pool instead
        targets = [t for pool in record.pools.values() for t in pool.targets]
        has_coordinates = any(t.pops for t in (*targets, *record.origin_targets))
        self.proximity = "proximity" in chain and has_coordinates
        # No subnet, geo or proximity input: every client gets the catch-all, scope 0.
        uses_client = not self.seed_rules and (self.rules.has_subnets or self.rules.has_geos)
        self.fixed = None
        self.rum = (record.fqdn, record.rtype) if "rum" in chain else None
        if not uses_client and not self.proximity:
            self.fixed = Match(self.rules.catch_all, "catch-all", 0)


@dataclass(frozen=True, slots=True)
class Front:
    """What a repeat client needs: the prepared decision, its ECS scope, its sticky key."""

    record: DynamicRecord
    prepared: Prepared
    scope: int
    sticky_key: int


class Engine:
    """Decides answers for dynamic records. One per process; not thread-safe (asyncio)."""

    def __init__(
        self,
        geo: GeoLike | None,
        rng: random.Random | None = None,
        *,
        cache_size: int = 65536,
    ) -> None:
        self.geo = geo
        self.asn = None  # gslb.rum.network.AsnDB (--asn-db): the RUM ASN level
        self._locate = geo.locate if geo is not None else None
        self.rng = rng if rng is not None else random.Random()
        self.cache_size = cache_size
        self._compiled: dict[int, Compiled] = {}
        self._cache: dict[tuple[int, int, Any], Prepared] = {}
        # (id(record), client key) -> Front: a repeat client skips matching entirely.
        self._front: dict[tuple[int, Any], Front] = {}
        self._health: HealthView | None = None
        self._version = -1
        self.hits = 0
        self.misses = 0
        # Address tables compiled ahead (the cold path); plans per record object.
        self.compiler = Compiler(geo)
        self._plans: dict[int, RecordPlan | None] = {}
        # id(location) -> (location, fleet region) for the flattened database's locations.
        self._regions: dict[int, tuple[Any, Any]] = {}
        self._regions_of: Any = None

    # -- compiled tables ---------------------------------------------------------------------

    def plan(self, records: list[DynamicRecord]) -> None:
        """A new configuration's dynamic records: their tables get built by ``compiler``
        (off the answer path); until then each record takes the step-by-step path."""
        wanted = []
        for record in records:
            comp = self._compiled.get(id(record))
            if comp is None or comp.record is not record:
                comp = self.compile(record)
            if comp.fixed is None:
                wanted.append((record, comp.proximity))
        self.compiler.want(wanted)
        self._plans = {}

    def decide(
        self, record: DynamicRecord, version: int, ip: int, source: int | None, health: HealthView
    ) -> tuple[Answer, Prepared, int] | None:
        """The cold path: (answer, prepared decision, sticky key) for a client given as
        (family, integer address, ECS source prefix or None), from the record's compiled
        table: one bisect, the class's decision (made once per class and health view), the
        weighted pick. Fleet verdicts per region and RUM decisions add their own key to the
        class's (``_decide_keyed``). None when the table is not built yet or the address
        needs the database's own logic (alias ranges): the caller then asks ``answer``."""
        plan = self._plans.get(id(record), False)
        if plan is False or (plan is not None and plan.record is not record):
            plan = self._plan_for(record)
        if plan is None:
            return None
        table = plan.table
        family = None
        if table is None:  # no client input at all: the catch-all, scope 0
            klass, scope = 1, 0
        else:
            family = table.families[version]
            klass, scope = family.find(ip >> family.shift)
            if klass == ASK_CLASS:
                return None
        if plan.health is not health or plan.version != health.version:
            plan.health, plan.version = health, health.version
            plan.decisions = [None] * (len(table.classes) if table is not None else 2)
            plan.keyed = {}
        if (health.regional and health.region_of is not None) or (
            plan.rum and health.rum is not None
        ):
            return self._decide_keyed(plan, klass, scope, version, ip, source, health)
        prepared = plan.decisions[klass]
        if prepared is None:
            prepared = plan.decisions[klass] = self._decide_class(plan, klass, version, ip,
                                                                  source, health)  # fmt: skip
        if family is not None and family.rules is not None and not prepared.used_location:
            scope = family.rules.find(ip >> family.shift)[1]  # only the rule mattered
        if not prepared.sticky:
            return self.pick(prepared, scope, 0), prepared, 0
        return self._finish(prepared, scope, version, ip)

    def _finish(self, prepared: Prepared, scope: int, version: int, ip: int):
        """The sticky key (and its scope floor), then the weighted pick."""
        if prepared.sticky:
            if version == 4:
                key = ip >> 8
                scope = scope if scope > 24 else 24
            else:
                key = (ip >> 72) | (1 << 60)
                scope = scope if scope > 56 else 56
            return self.pick(prepared, scope, key), prepared, key
        return self.pick(prepared, scope, 0), prepared, 0

    def _decide_keyed(
        self, plan: RecordPlan, klass: int, scope: int, version: int, ip: int,
        source: int | None, health: HealthView,
    ) -> tuple[Answer, Prepared, int] | None:  # fmt: skip
        """The cold path when the decision also depends on the client's fleet region or its
        RUM decision: the same class, plus the region (from the class's place when it has
        one, else the client's location in the flattened database: one more bisect) and the
        RUM outcome (the snapshot's keys; the client's /24 is one dict lookup), key the
        prepared decision. The ECS scope grows as
        ``answer`` grows it: to the client's location block when the decision read it (a
        verdict that differs by region), to the deciding RUM level's prefix."""
        place: tuple[Any, int] | None = None
        table = plan.table
        single = False
        if table is not None:
            known = table.classes[klass]
            if known.single:  # the class's range holds one place: no lookup of the client's
                place, single = (known.place, scope), True
        regional = health.regional and health.region_of is not None
        region = None
        decision, rum_scope = None, 0
        try:
            if regional and not single:  # a single place's region is the class's: see below
                place = self._place(version, ip)
                region = self._region_of(place[0], health.region_of)
            if plan.rum and health.rum is not None:
                if place is not None:
                    where = partial(_same, place)
                else:  # asked only when a level above the client's /24 decides
                    where = partial(self._place, version, ip)
                decision, rum_scope = health.rum.find(plan.rum, version, ip, source, where,
                                                      self.asn)  # fmt: skip
        except Unplaced:
            return None  # database not flattened yet, or an alias range
        key = (klass, region, decision.outcome if decision is not None else None)
        keyed = plan.keyed
        prepared = keyed.get(key)
        if prepared is None:
            if len(keyed) >= len(plan.decisions) + self.cache_size:  # every class once,
                del keyed[next(iter(keyed))]  # and room for regions and RUM sets: the oldest
            if regional and single:  # one region per class and view: not part of the key
                region = health.region_of(known.place)  # type: ignore[misc]
            location = place[0] if place is not None else None
            prepared = keyed[key] = self._decide_class(
                plan, klass, version, ip, source, health.for_region(region), decision, location
            )
        if prepared.used_location:
            if place is not None and place[1] > scope:
                scope = place[1]  # e.g. a verdict that differs by region
        elif table is not None:
            family = table.families[version]
            if family.rules is not None:
                scope = family.rules.find(ip >> family.shift)[1]  # only the rule mattered
        if rum_scope > scope:
            scope = rum_scope
        return self._finish(prepared, scope, version, ip)

    def _place(self, version: int, ip: int) -> tuple[Any, int]:
        """(location, block scope) from the flattened database (``Compiler.place``); without
        a database every client is of unknown location, which decides alike for all."""
        if self._locate is None:
            return NOWHERE
        return self.compiler.place(version, ip)

    def _region_of(self, location: Any, region_of: Any) -> Any:
        """The fleet region of a location, memoised per location object (the flattened
        database interns them) for as long as the region function stays the same."""
        if self._regions_of is not region_of:
            if self._regions_of != region_of:
                self._regions.clear()
            self._regions_of = region_of  # an equal map unpickled with a new view
        known = self._regions.get(id(location))
        if known is None or known[0] is not location:
            if len(self._regions) >= 65536:
                self._regions.clear()
            known = self._regions[id(location)] = (location, region_of(location))
        return known[1]

    def _plan_for(self, record: DynamicRecord) -> RecordPlan | None:
        comp = self._compiled.get(id(record))
        if comp is None or comp.record is not record:
            comp = self.compile(record)
        plan = None
        if comp.fixed is not None:
            plan = RecordPlan(record, None)  # type: ignore[arg-type]
        else:
            table = self.compiler.table(record, comp.proximity)
            if table is None:
                return None  # not built yet: ask again next time
            plan = RecordPlan(record, table)
        plan.rum = comp.rum
        if len(self._plans) >= 4096:
            self._plans.clear()  # records of old configurations
        self._plans[id(record)] = plan
        return plan

    def _decide_class(
        self, plan: RecordPlan, klass: int, version: int, ip: int, source: int | None,
        view: HealthView, rum_decision: Any = None, location: Any = None,
    ) -> Prepared:  # fmt: skip
        """Run the chain once for a class, with one of its addresses as the client: under the
        health view of the client's region and with its RUM decision when they apply.
        ``location`` is the client's when its region was looked up (``answer`` locates such a
        client too; no step but proximity reads it, and proximity classes carry theirs)."""
        record = plan.record
        comp = self._compiled.get(id(record))
        if comp is None or comp.record is not record:
            comp = self.compile(record)
        table = plan.table
        match = comp.fixed if table is None else table.classes[klass].match()  # type: ignore
        address = ipaddress.IPv4Address(ip) if version == 4 else ipaddress.IPv6Address(ip)
        if location is not None and match.location is None:
            match = replace(match, location=location, located=True)
        client = Client(address, source, match.location, match.located)
        prepared = self.run(comp, client, match, view, NULL_TRACE, rum_decision)
        prepared.pins = (comp,)
        return prepared

    # -- hot path ----------------------------------------------------------------------------

    def front(self, record: DynamicRecord, client_key: Any, health: HealthView) -> Front | None:
        """The prepared decision for a client seen before under this health view, else None:
        what the responder needs to replay one packed reply per choice."""
        if health is not self._health or health.version != self._version:
            return None
        front = self._front.get((id(record), client_key))
        return front if front is not None and front.record is record else None

    def answer_cached(self, record: DynamicRecord, client_key: Any, health: HealthView):
        """The answer for a client seen before under the same health view, else None.

        ``client_key`` must identify every input of the decision that comes from the query:
        the responder uses (resolver address text, raw ECS option payload or None).
        """
        front = self.front(record, client_key, health)
        if front is None:
            return None
        self.hits += 1
        return self.pick(front.prepared, front.scope, front.sticky_key)

    def answer(
        self,
        record: DynamicRecord,
        resolver: Address,
        ecs: tuple[Address, int] | None,
        health: HealthView,
        client_key: Any = None,
    ) -> Answer:
        comp = self._compiled.get(id(record))
        if comp is None or comp.record is not record:
            comp = self.compile(record)
        address, source = client_address(record.options, resolver, ecs)
        match = self.match(comp, address, source)
        if health is not self._health or health.version != self._version:
            self._cache.clear()
            self._front.clear()
            self._health, self._version = health, health.version
        match, region = self.region(match, address, health)
        location = match.location
        # Proximity reads only the client's coordinates: key on them, not on the network, so
        # the thousands of networks that share a point (a country hub) share one decision.
        where = (location.lat, location.lon) if comp.proximity and location is not None else 0
        decision, rum_scope = self.rum_decision(comp, address, source, match, health)
        # Keyed on the dropped set, not the decision: thousands of networks share a few sets.
        outcome = decision.outcome if decision is not None else None
        key = (id(comp), match.index, where, region, outcome)
        prepared = self._cache.get(key)
        if prepared is None:
            self.misses += 1
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            client = Client(address, source, location, match.located)
            view = health.for_region(region)
            prepared = self.run(comp, client, match, view, NULL_TRACE, decision)
            prepared.pins = (comp,)  # its id() is in the key: keep it alive
            self._cache[key] = prepared
        else:
            self.hits += 1
        scope = max(self.scope(prepared, match, address, source), rum_scope)
        key = sticky_key(address) if prepared.sticky else 0
        if client_key is not None:
            if len(self._front) >= self.cache_size:
                self._front.clear()
            self._front[(id(record), client_key)] = Front(record, prepared, scope, key)
        return self.pick(prepared, scope, key)

    def region(self, match: Match, address: Address, health: HealthView) -> tuple[Match, Any]:
        """The client's fleet region when the health view has regional verdicts (locating
        the client if the rules did not), else None: one global verdict for everyone."""
        if not health.regional or health.region_of is None:
            return match, None
        if not match.located and self._locate is not None:
            match = replace(match, location=self._locate(address), located=True)
        return match, health.region_of(match.location)

    def rum_decision(
        self, comp: Compiled, address: Address, source: int | None, match: Match,
        health: HealthView,
    ) -> tuple[Any, int]:  # fmt: skip
        """The RUM decision for this client's network (gslb.rum.snapshot) and the ECS scope
        it depends on; (None, 0) when the record has no rum step or no level has data."""
        if comp.rum is None or health.rum is None:
            return None, 0
        location: Any = match.location
        if not match.located and self._locate is not None:
            locate = self._locate

            def location() -> Any:  # only when a level above the client's /24 is asked
                return locate(address)

        return health.rum.lookup(comp.rum, address, source, location, self.asn)

    def compile(self, record: DynamicRecord) -> Compiled:
        if len(self._compiled) >= 4096:  # old records after many reloads
            self._compiled.clear()
        comp = self._compiled[id(record)] = Compiled(record)
        return comp

    def match(self, comp: Compiled, address: Address, source: int | None) -> Match:
        if comp.fixed is not None:
            return comp.fixed
        if comp.seed_rules:  # no rules step, so only proximity can want the location
            location = self._locate(address) if self._locate is not None else None
            return Match(comp.rules.catch_all, "catch-all", 0, location, self._locate is not None)
        return comp.rules.match(address, source, self._locate, comp.proximity)

    def run(
        self, comp: Compiled, client: Client, match: Match, view: HealthView, trace: NullTrace,
        rum_decision: Any = None,
    ) -> Prepared:  # fmt: skip
        """Run the record's chain; everything up to (not including) the per-query pick."""
        record = comp.record
        ctx = Context(record, record.options, client, view, match, trace, rum=rum_decision)
        cands: list[Candidate] = []
        if comp.seed_rules:
            rule = record.rules[match.index]
            ctx.pool, ctx.reason = rule.pool, "pool" if rule.catch_all else "rule"
            cands = candidates(record.pools[rule.pool].targets, rule.pool)
        for step in comp.steps:
            cands = step(ctx, cands)
        return weighted.prepare(ctx, cands, comp.weighted)

    def finish(
        self, prepared: Prepared, match: Match, address: Address, source: int | None,
        rum_scope: int = 0,
    ) -> Answer:  # fmt: skip
        """The per-query part: scope, then the weighted pick (memoised Answer objects)."""
        scope = max(self.scope(prepared, match, address, source), rum_scope)
        return self.pick(prepared, scope, sticky_key(address) if prepared.sticky else 0)

    @staticmethod
    def scope(prepared: Prepared, match: Match, address: Address, source: int | None) -> int:
        scope = match.scope
        if prepared.used_location:
            loc = match.location
            prefix = loc.network.prefixlen if loc is not None else source or full_prefix(address)
            scope = max(scope, prefix)
        if prepared.sticky:
            scope = max(scope, STICKY_PREFIX[address.version])
        return scope

    def pick(self, prepared: Prepared, scope: int, key: int) -> Answer:
        draw = prepared.draw
        if draw:  # weighted.pick's one-draw case, inlined: the same single rng.random() call
            index = bisect_right(prepared.cumulative, self.rng.random() * draw)
            last = len(prepared.choices) - 1
            memo = prepared.memo.get((index if index < last else last, scope))
            if memo is not None:
                return memo
            indices = [index if index < last else last]
        elif not prepared.choices:
            return Answer((), prepared.ttl, scope, prepared.reason, "origin", prepared.pool)
        else:
            indices = weighted.pick(prepared, self.rng, key)
        first = prepared.choices[indices[0]]
        if len(indices) == 1 and len(first.values) <= prepared.answers:
            memo = prepared.memo.get((indices[0], scope))
            if memo is None:
                memo = prepared.memo[(indices[0], scope)] = Answer(
                    first.values, prepared.ttl, scope, first.reason, first.label, prepared.pool
                )
            return memo
        values = weighted.values_of(prepared, indices)
        return Answer(values, prepared.ttl, scope, first.reason, first.label, prepared.pool)

    # -- explain -----------------------------------------------------------------------------

    def explain(
        self,
        record: DynamicRecord,
        resolver: Address,
        ecs: tuple[Address, int] | None,
        health: HealthView,
    ) -> dict[str, Any]:
        """The whole decision as JSON-able data, computed by the same steps as ``answer``."""
        comp = Compiled(record)
        address, source = client_address(record.options, resolver, ecs)
        match, region = self.region(self.match(comp, address, source), address, health)
        client = Client(address, source, match.location, match.located)
        trace = Trace()
        view = health.for_region(region)
        decision, rum_scope = self.rum_decision(comp, address, source, match, health)
        prepared = self.run(comp, client, match, view, trace, decision)
        answer = self.finish(prepared, match, address, source, rum_scope)
        rule = record.rules[match.index]
        return {
            "record": record.fqdn,
            "type": TYPE_NAMES.get(record.rtype, str(record.rtype)),
            "query": {
                "resolver": str(resolver),
                "ecs": None if ecs is None else f"{ecs[0]}/{ecs[1]}",
                "ecs_used": source is not None,
            },
            "client": client.describe(),
            "rule": {
                "number": match.index + 1,
                "pool": rule.pool,
                "geos": list(rule.geos),
                "subnets": [str(s) for s in rule.subnets],
                "catch_all": rule.catch_all,
                "matched_by": match.by,
                "matched": None if match.matched is None else str(match.matched),
            },
            "chain": list(record.options.chain),
            "steps": trace.steps,
            "candidates": trace.candidates(),
            "choices": [
                {"values": list(c.values), "target": c.label, "weight": c.weight}
                for c in prepared.choices
            ],
            "answer": {
                "values": list(answer.values),
                "ttl": answer.ttl,
                "scope": answer.scope,
                "reason": answer.reason,
                "target": answer.target,
                "pool": answer.pool,
            },
            "health_version": health.version,
            "region": {
                "client": region,
                "verdicts": "regional" if view is not health else "global",
                "regions_with_vantages": sorted(health.regional),
            },
        }


def render_explain(trace: dict[str, Any]) -> str:
    """``explain`` output as text: who asked, where they are, the rule, each step, the answer."""
    client, rule, answer = trace["client"], trace["rule"], trace["answer"]
    loc = client["location"]
    where = "unknown location"
    if loc is not None:
        geos = loc["geos"][0] if loc["geos"] else "?"
        where = f"{geos} ({loc['lat']}, {loc['lon']}) via {loc['network']}"
    source = f"ECS /{client['source_prefix']}" if client["from_ecs"] else "resolver"
    matched = f" on {rule['matched']}" if rule["matched"] else ""
    lines = [
        f"{trace['record']} {trace['type']} for {client['address']} ({source}): {where}",
        f"rule {rule['number']} -> pool {rule['pool']} (by {rule['matched_by']}{matched})",
    ]
    for step in trace["steps"]:
        notes = ", ".join(f"{k}={v}" for k, v in step["notes"].items())
        lines.append(f"  {step['step']:<12} -> {', '.join(step.get('out', [])) or '(none)'}")
        if notes:
            lines.append(f"  {'':<12}    {notes}")
        for drop in step["dropped"]:
            lines.append(f"  {'':<12}    dropped {drop['pool']}: {drop['value']}: {drop['why']}")
    values = " ".join(answer["values"]) or "(no answer)"
    lines.append(
        f"answer: {values} ttl={answer['ttl']} scope=/{answer['scope']} "
        f"reason={answer['reason']} target={answer['target']} pool={answer['pool']}"
    )
    return "\n".join(lines)
