"""Step ``rules``: the first rule whose subnets contain the client or whose geos match its
location picks the pool; the catch-all otherwise (octoDNS semantics).

Matching runs before the chain, once per query, because the matched rule is part of the
decision-cache key; the step itself only turns the match into the pool's candidates. Matching
also works out the ECS scope the rule choice depends on (RFC 7871 section 7.2.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gslb.config.model import DynamicRecord, IPNetwork, Rule
from gslb.policy.client import Address, full_prefix
from gslb.policy.context import Candidate, Context, candidates

LOCATION_MEMO = 65536  # geo rule per interned Location, like GeoDB's own network cache


def geo_key(geo: str) -> str:
    """``NA`` -> ``NA`` (continent); ``NA-US`` -> ``-US``; ``NA-US-CA`` -> ``-US-CA``.

    Countries and subdivisions match without their continent, as Route 53 and NS1 do, so a
    database that files Turkey or Cyprus under another continent still matches ``AS-TR``.
    """
    return geo[2:] if len(geo) > 2 else geo


@dataclass(slots=True, eq=False)
class Match:
    """Which rule won, how, and the widest ECS scope that choice is valid for."""

    index: int  # into record.rules
    by: str  # subnet | geo | catch-all
    scope: int  # prefix length the rule choice depended on (0 = not on the client at all)
    location: Any = None  # the client's Location when the geo database was asked
    located: bool = False
    matched: Any = None  # the subnet (network) or geo (str) that matched


class RuleIndex:
    """A record's rules compiled for matching: subnets as ints, geos in one dict."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self.catch_all = next(
            (i for i, r in enumerate(rules) if r.catch_all), max(len(rules) - 1, 0)
        )
        # (network int, mask int, prefix length, rule index, network) in rule order, per family.
        self.subnets: dict[int, list[tuple[int, int, int, int, IPNetwork]]] = {4: [], 6: []}
        self.geos: dict[str, int] = {}
        for index, rule in enumerate(rules):
            for net in rule.subnets:
                entry = (int(net.network_address), int(net.netmask), net.prefixlen, index, net)
                self.subnets[net.version].append(entry)
            for geo in rule.geos:
                self.geos.setdefault(geo_key(geo), index)
        geo_rules = [i for i, r in enumerate(rules) if r.geos]
        self.first_geo = geo_rules[0] if geo_rules else len(rules)
        self.has_geos = bool(geo_rules)
        self.has_subnets = bool(self.subnets[4] or self.subnets[6])
        # id(location) -> (location, rule index or None, geo): GeoDB interns one Location per
        # network, so this is one dict hit per query; the location is kept so its id stays its.
        self._by_location: dict[int, tuple[Any, int | None, str | None]] = {}

    def match(
        self,
        address: Address,
        source_prefix: int | None,
        locate: Callable[[Address], Any] | None,
        always_locate: bool,
    ) -> Match:
        """Subnets first (most specific rules come first), then geos, then the catch-all."""
        ip = int(address)
        best, by, scope, matched = self.catch_all, "catch-all", 0, None
        for net, mask, prefix, index, network in self.subnets[address.version]:
            if ip & mask == net:
                best, by, scope, matched = index, "subnet", prefix, network
                break
        location, located = None, False
        need_geo = self.first_geo < best
        if (need_geo or always_locate) and locate is not None:
            location, located = locate(address), True
        if need_geo:
            if location is None:
                scope = max(scope, source_prefix or full_prefix(address))
            else:
                scope = max(scope, location.network.prefixlen)
                index, geo = self.geo_rule(location)
                if index is not None and index < best:
                    best, by, matched = index, "geo", geo
        scope = self.narrow(ip, address.version, best, scope)
        return Match(best, by, scope, location, located, matched)

    def geo_rule(self, location: Any) -> tuple[int | None, str | None]:
        """The first rule matching one of the location's geos, and that geo."""
        known = self._by_location.get(id(location))
        if known is not None and known[0] is location:
            return known[1], known[2]
        index, matched = None, None
        for geo in location.geos():
            candidate = self.geos.get(geo_key(geo))
            if candidate is not None and (index is None or candidate < index):
                index, matched = candidate, geo
        if len(self._by_location) >= LOCATION_MEMO:
            self._by_location.clear()
        self._by_location[id(location)] = (location, index, matched)
        return index, matched

    def narrow(self, ip: int, version: int, best: int, scope: int) -> int:
        """Lengthen the scope until it excludes every earlier rule's subnet.

        The client is outside each subnet of a rule before the winner (else that rule would
        have won); the answer holds for the client's /L only if /L does not overlap it, which
        is the first bit where client and subnet differ, plus one.
        """
        width = 32 if version == 4 else 128
        for net, _mask, _prefix, index, _network in self.subnets[version]:
            if index >= best:
                break
            needed = width - (ip ^ net).bit_length() + 1
            if needed > scope:
                scope = needed
        return scope


def step(ctx: Context, cands: list[Candidate]) -> list[Candidate]:
    """The matched rule's pool, as fresh candidates (whatever came in is replaced)."""
    record: DynamicRecord = ctx.record
    match = ctx.match
    rule = record.rules[match.index]
    ctx.trace.step("rules", cands)
    ctx.trace.note("rule", match.index + 1)
    ctx.trace.note("matched_by", match.by)
    ctx.trace.note("matched", None if match.matched is None else str(match.matched))
    ctx.trace.note("pool", rule.pool)
    ctx.pool = rule.pool
    ctx.reason = "pool" if rule.catch_all else "rule"
    out = candidates(record.pools[rule.pool].targets, rule.pool)
    ctx.trace.done(out)
    return out
