"""octoDNS ``dynamic`` records plus our ``gslb:`` block -> ``DynamicRecord`` and its checks.

The rules are octoDNS' own (octodns/record/dynamic.py), made at least as strict: a file written
for octoDNS loads and routes the same way, and a typo anywhere (an unknown key, a geo that can
never match, a pool nobody uses) is an error instead of a silent no-op. Nothing here raises:
every problem is appended to ``errors`` at once, each naming the field, so one ``gslb check``
run shows the operator everything to fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gslb.commit.contract import chain_with_commit, parse_commit
from gslb.config.model import (
    CNAME,
    DEFAULT_CHAIN,
    DynamicRecord,
    GslbOptions,
    IPNetwork,
    Pool,
    Pop,
    Rule,
    Target,
)
from gslb.config.octodns import gslb_block as octodns_gslb_block
from gslb.config.values import hostname, ipv4, ipv6
from gslb.health.spec import CheckSpec, from_octodns, parse_check
from gslb.rum.config import parse_rum, with_rum

# every step, in the recommended order
STEPS = (*DEFAULT_CHAIN[:2], "rum", *DEFAULT_CHAIN[2:-1], "commit", DEFAULT_CHAIN[-1])
STATUSES = ("up", "down", "obey")
MAX_ANSWERS = 8  # Route 53 multivalue answers stop at 8 as well
MAX_TTL = 2**31 - 1

DYNAMIC_KEYS = ("pools", "rules")
POOL_KEYS = ("values", "fallback")
VALUE_KEYS = ("value", "weight", "status")
RULE_KEYS = ("pool", "geos", "subnets")
GSLB_KEYS = (
    "chain",
    "answers",
    "sticky",
    "ecs",
    "degraded_ttl",
    "fail_open",
    "proximity",
    "cost",
    "performance",
    "check",
    "origin_check",
    "targets",
    "rum",
    "commit",
)
TARGET_KEYS = ("cost", "check", "lat", "lon", "pops", "commit")
POP_KEYS = ("name", "lat", "lon", "addresses", "check")


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


GEO_RE = re.compile(r"^[A-Z]{2}(-[A-Z]{2}(-[A-Z]{2})?)?$")

# Continent -> its countries (ISO 3166-1 alpha-2), as octoDNS' geo_data has them, plus XK
# (Kosovo, used by MaxMind and DB-IP) and TL (which octoDNS files under a bogus "ID").
COUNTRIES: dict[str, frozenset[str]] = {
    continent: _codes(codes)
    for continent, codes in {
        "AF": "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR "
        "LS LY MA MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG "
        "YT ZA ZM ZW",
        "AN": "AQ BV HM TF",
        "AS": "AE AF AM AZ BD BH BN BT CC CN CX CY GE HK ID IL IN IO IQ IR JO JP KG KH KP KR "
        "KW KZ LA LB LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
        "EU": "AD AL AT AX BA BE BG BY CH CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS "
        "IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
        "NA": "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF "
        "MQ MS MX NI PA PM PR SV SX TC TT US VC VG VI",
        "OC": "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
        "SA": "AR BO BR CL CO EC FK GF GS GY PE PY SR UY VE",
    }.items()
}
# Subdivisions octoDNS checks (US states and territories), plus the Canadian provinces.
SUBDIVISIONS: dict[str, frozenset[str]] = {
    "US": _codes(
        "AK AL AR AS AZ CA CO CT DC DE FL GA GU HI IA ID IL IN KS KY LA MA MD ME MI MN MO MP "
        "MS MT NC ND NE NH NJ NM NV NY OH OK OR PA PR RI SC SD TN TX UM UT VA VI VT WA WI WV "
        "WY"
    ),
    "CA": _codes("AB BC MB NB NL NS NT NU ON PE QC SK YT"),
}


def parse_dynamic(
    fqdn: str,
    name: bytes,
    rtype: int,
    ttl: int,
    data: Mapping,
    where: str,
    errors: list[str],
) -> tuple[DynamicRecord | None, dict[str, CheckSpec]]:
    """Parse one dynamic record; on any problem return ``(None, {})`` with ``errors`` extended.

    ``data`` is the whole record mapping (type, ttl, value(s), dynamic, octodns, gslb). The
    returned checks are keyed by ``CheckSpec.key``: the prober runs each key once however many
    values or records share it.
    """
    parser = _Parser(fqdn, rtype, where, errors)
    record = parser.parse(name, ttl, data)
    # The same bad default check is reported once, not once per value it applies to.
    errors[parser.start :] = list(dict.fromkeys(errors[parser.start :]))
    if parser.failed() or record is None:
        return None, {}
    return record, parser.checks


@dataclass(slots=True)
class _Value:
    """One pool value as written: the raw mapping already checked, kept for building Targets."""

    value: str
    weight: int
    status: str


@dataclass(slots=True)
class _TargetExtra:
    """What ``gslb.targets`` says about one value."""

    cost: float | None = None
    check: Any = None  # mapping, False, or None (not given)
    pops: list[dict[str, Any]] = field(default_factory=list)


_MakeCheck = Callable[[str, Any, str], "str | None"]


class _Parser:
    """Holds the record being parsed so each helper can report with the same prefix."""

    def __init__(self, fqdn: str, rtype: int, where: str, errors: list[str]) -> None:
        self.fqdn, self.rtype, self.where, self.errors = fqdn, rtype, where, errors
        self.start = len(errors)  # the loader may have reported on this record already
        self.kind = {1: "IPv4", 28: "IPv6", CNAME: "CNAME"}.get(rtype, "?")
        self.checks: dict[str, CheckSpec] = {}

    # -- helpers -----------------------------------------------------------------------------

    def error(self, message: str) -> None:
        self.errors.append(f"{self.where}: {message}")

    def unknown_keys(self, data: Mapping, allowed: tuple[str, ...], field_: str) -> None:
        """Typos must not silently do nothing: name the key and the closest valid one."""
        for key in data:
            if key in allowed:
                continue
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
            expected = ", ".join(allowed)
            self.error(f'{field_}unknown key "{key}"{suggestion}; expected {expected}')

    def rdata(self, raw: Any) -> str:
        """Validate and normalise one value of the record's type; raises ValueError."""
        if self.rtype == 1:
            return ipv4(raw)
        if self.rtype == 28:
            return ipv6(raw)
        hostname(raw)
        value = str(raw).lower()
        if value == self.fqdn:
            raise ValueError(f'CNAME "{raw}" points to the record itself')
        return value

    def number(self, raw: Any, field_: str, low: float, high: float | None = None) -> float | None:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            self.error(f'{field_}: invalid value "{raw}" (expected a number)')
            return None
        if raw < low or (high is not None and raw > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            self.error(f'{field_}: invalid value "{raw}" (expected {bound})')
            return None
        return float(raw)

    def integer(self, raw: Any, field_: str, low: int, high: int) -> int | None:
        if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
            self.error(f'{field_}: invalid value "{raw}" (expected an integer {low}..{high})')
            return None
        return raw

    def boolean(self, raw: Any, field_: str) -> bool | None:
        if not isinstance(raw, bool):
            self.error(f'{field_}: invalid value "{raw}" (expected true or false)')
            return None
        return raw

    # -- the record --------------------------------------------------------------------------

    def parse(self, name: bytes, ttl: int, data: Mapping) -> DynamicRecord | None:
        origin = self.origin(data)
        dynamic = data.get("dynamic")
        if not isinstance(dynamic, Mapping):
            self.error("dynamic must be a mapping with pools and rules")
            return None
        self.unknown_keys(dynamic, DYNAMIC_KEYS, "dynamic: ")
        pools, fallbacks = self.pools(dynamic.get("pools"))
        rules = self.rules(dynamic.get("rules"), pools)
        self.unused_pools(pools, fallbacks, dynamic.get("rules"))
        raw, problem = octodns_gslb_block(data)
        if problem:
            self.error(problem)
        gslb = self.gslb_block(raw)
        options = self.options(gslb)
        in_pools = {value.value for values in pools.values() for value in values}
        extras = self.targets(gslb.get("targets"), in_pools, set(origin))
        make_check = self.check_factory(gslb.get("check"), self.healthcheck(data.get("octodns")))
        built = {value: self.build_target(value, extras, make_check) for value in sorted(in_pools)}
        origin_targets = self.origin_targets(gslb.get("origin_check"), origin, extras, make_check)
        rum = parse_rum(gslb, self.rdata, in_pools, self.error)
        options = with_rum(options, rum, "chain" in gslb, self.error)
        commit = parse_commit(gslb, self.rdata, in_pools, self.error)
        if options is not None:
            options = chain_with_commit(options, commit, "chain" in gslb, self.error)
        if self.failed() or options is None or rules is None:
            return None
        first_check = origin_targets[0].check if origin_targets else None
        return DynamicRecord(
            name=name,
            fqdn=self.fqdn,
            rtype=self.rtype,
            ttl=ttl,
            origin=origin,
            pools={
                pool_id: Pool(
                    id=pool_id,
                    targets=tuple(
                        replace(built[v.value], weight=v.weight, status=v.status) for v in values
                    ),
                    fallback=fallbacks.get(pool_id),
                )
                for pool_id, values in pools.items()
            },
            rules=rules,
            options=replace(options, origin_check=first_check),
            origin_targets=origin_targets,
            rum=rum,
            commit=commit,
        )

    def gslb_block(self, raw: Any) -> Mapping:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.error("gslb must be a mapping")
            return {}
        self.unknown_keys(raw, GSLB_KEYS, "gslb: ")
        return raw

    def failed(self) -> bool:
        return len(self.errors) > self.start

    def origin(self, data: Mapping) -> tuple[str, ...]:
        """The record's own value(s): the last-resort answer (octoDNS "default")."""
        if "value" in data and "values" in data:
            self.error("give value or values, not both")
            return ()
        raw = data.get("values", data.get("value"))
        if raw is None or raw == []:
            self.error("missing value: the record's own value(s) are the last-resort answer")
            return ()
        items = raw if isinstance(raw, list) else [raw]
        if self.rtype == CNAME and len(items) != 1:
            self.error("CNAME takes exactly one value")
            return ()
        out: list[str] = []
        for index, item in enumerate(items):
            label = "value" if len(items) == 1 else f"value {index + 1}"
            try:
                value = self.rdata(item)
            except ValueError as exc:
                self.error(f"{label}: {exc}")
                continue
            if value in out:
                self.error(f'{label}: duplicate value "{item}"')
                continue
            out.append(value)
        return tuple(out)

    # -- pools -------------------------------------------------------------------------------

    def pools(self, raw: Any) -> tuple[dict[str, list[_Value]], dict[str, str | None]]:
        """Pools by id with their parsed values, and each pool's fallback (None = origin)."""
        pools: dict[str, list[_Value]] = {}
        fallbacks: dict[str, str | None] = {}
        if raw is None:
            self.error("dynamic: missing pools")
            return pools, fallbacks
        if not isinstance(raw, Mapping) or not raw:
            self.error("dynamic.pools must be a non-empty mapping of pool id -> pool")
            return pools, fallbacks
        for pool_id, pool in raw.items():
            if not isinstance(pool_id, str) or not pool_id:
                self.error(f'pool "{pool_id}": pool ids must be non-empty strings')
                continue
            if not isinstance(pool, Mapping):
                self.error(f'pool "{pool_id}": must be a mapping with values')
                continue
            self.unknown_keys(pool, POOL_KEYS, f'pool "{pool_id}": ')
            pools[pool_id] = self.pool_values(pool_id, pool.get("values"))
            fallback = pool.get("fallback")
            if fallback is not None and not isinstance(fallback, str):
                self.error(f'pool "{pool_id}": invalid fallback "{fallback}" (expected a pool id)')
                fallback = None
            fallbacks[pool_id] = None if fallback in (None, "default") else fallback
        for pool_id, fallback in fallbacks.items():
            if fallback is not None and fallback not in raw:
                self.error(f'pool "{pool_id}": undefined fallback "{fallback}"')
        self.fallback_loops(fallbacks)
        return pools, fallbacks

    def pool_values(self, pool_id: str, raw: Any) -> list[_Value]:
        where = f'pool "{pool_id}"'
        if raw is None:
            self.error(f"{where}: missing values")
            return []
        if not isinstance(raw, list) or not raw:
            self.error(f"{where}: values must be a non-empty list")
            return []
        values: list[_Value] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(raw, start=1):
            value = self.pool_value(f"{where} value {index}", item)
            if value is None:
                continue
            if value.value in seen:
                self.error(
                    f'{where} value {index}: duplicate value "{value.value}" '
                    f"(also value {seen[value.value]})"
                )
                continue
            seen[value.value] = index
            values.append(value)
        if len(values) == 1 == len(raw) and values[0].weight != 1:
            self.error(f"{where}: single value with weight != 1 (octoDNS rejects it too)")
        return values

    def pool_value(self, where: str, item: Any) -> _Value | None:
        if not isinstance(item, Mapping):
            self.error(f"{where}: must be a mapping with value, weight, status")
            return None
        self.unknown_keys(item, VALUE_KEYS, f"{where}: ")
        ok = True
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
            self.error(f'{where}: invalid weight "{weight}" (expected an integer 1..100)')
            ok = False
        status = item.get("status", "obey")
        if status not in STATUSES:
            self.error(f'{where}: invalid status "{status}" (expected up, down or obey)')
            ok = False
        if "value" not in item:
            self.error(f"{where}: missing value")
            return None
        try:
            value = self.rdata(item["value"])
        except ValueError as exc:
            self.error(f"{where}: {exc}")
            return None
        return _Value(value, weight, status) if ok else None

    def fallback_loops(self, fallbacks: dict[str, str | None]) -> None:
        """Each loop reported once, starting from its alphabetically first pool."""
        reported: set[frozenset[str]] = set()
        for start in sorted(fallbacks):
            seen = [start]
            current = fallbacks.get(start)
            while current is not None and current in fallbacks:
                if current in seen:
                    cycle = seen[seen.index(current) :]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        first = min(cycle)
                        i = cycle.index(first)
                        ordered = cycle[i:] + cycle[:i] + [first]
                        self.error(f"loop in pool fallbacks: {' -> '.join(ordered)}")
                    break
                seen.append(current)
                current = fallbacks.get(current)

    # -- rules -------------------------------------------------------------------------------

    def rules(self, raw: Any, pools: Mapping[str, Any]) -> tuple[Rule, ...] | None:
        if raw is None:
            self.error("dynamic: missing rules")
            return None
        if not isinstance(raw, list) or not raw:
            self.error("dynamic.rules must be a non-empty list")
            return None
        rules: list[Rule] = []
        targeted: dict[str, int] = {}
        geos_seen: dict[str, int] = {}
        subnets_seen: dict[IPNetwork, int] = {}
        previous = 0  # category of the previous rule: 0 subnet, 1 subnet+geo, 2 geo, 3 catch-all
        catch_all: int | None = None
        for number, item in enumerate(raw, start=1):
            where = f"rule {number}"
            if not isinstance(item, Mapping):
                self.error(f"{where}: must be a mapping with pool (and geos and/or subnets)")
                continue
            self.unknown_keys(item, RULE_KEYS, f"{where}: ")
            geos = self.rule_geos(where, number, item.get("geos", []), geos_seen)
            subnets = self.rule_subnets(where, number, item.get("subnets", []), subnets_seen)
            category = _category(bool(item.get("subnets")), bool(item.get("geos")))
            previous = self.rule_order(where, category, previous, catch_all)
            if category == 3 and catch_all is None:
                catch_all = number
            pool = self.rule_pool(where, number, item, category, pools, targeted)
            if pool is not None and geos is not None and subnets is not None:
                rules.append(Rule(pool=pool, geos=geos, subnets=subnets))
        if catch_all is None:
            self.error("missing catch-all rule: the last rule must have only a pool")
        if len(rules) != len(raw):
            return None
        return tuple(rules)

    def rule_order(self, where: str, category: int, previous: int, catch_all: int | None) -> int:
        """octoDNS order: subnet-only, subnet+geo, geo-only, then exactly one catch-all."""
        if catch_all is not None:
            if category == 3:
                self.error(f"{where}: a second catch-all rule (rule {catch_all} is one)")
            else:
                self.error(f"{where}: comes after the catch-all rule {catch_all}, never used")
            return max(previous, category)
        if category < previous:
            names = ("subnet-only", "subnet+geo", "geo-only", "catch-all")
            self.error(
                f"{where}: {names[category]} rules must come before {names[previous]} rules "
                "(order: subnet-only, subnet+geo, geo-only, catch-all last)"
            )
        return max(previous, category)

    def rule_pool(
        self,
        where: str,
        number: int,
        item: Mapping,
        category: int,
        pools: Mapping[str, Any],
        targeted: dict[str, int],
    ) -> str | None:
        if "pool" not in item:
            self.error(f"{where}: missing pool")
            return None
        pool = item["pool"]
        if not isinstance(pool, str) or pool not in pools:
            self.error(f'{where}: undefined pool "{pool}"')
            return None
        if pool in targeted and category != 3:
            self.error(
                f'{where}: pool "{pool}" is already targeted by rule {targeted[pool]} '
                "(only the catch-all rule may reuse a pool; merge the geos/subnets instead)"
            )
        targeted.setdefault(pool, number)
        return pool

    def rule_geos(
        self, where: str, number: int, raw: Any, seen: dict[str, int]
    ) -> tuple[str, ...] | None:
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.error(f"{where}: geos must be a list")
            return None
        ok = True
        # Sorted so NA comes before NA-US: a parent and its child in one rule is caught too.
        for geo in sorted(raw, key=str):
            if not self.geo_valid(where, geo):
                ok = False
                continue
            for other, other_rule in seen.items():
                if geo == other:
                    self.error(f'{where}: geo "{geo}" listed {_rules(other_rule, number)}')
                    ok = False
                elif geo.startswith(other + "-"):
                    self.error(
                        f'{where}: geo "{geo}" is more specific than "{other}" of rule '
                        f"{other_rule} and would never match (list it before its parent)"
                    )
                    ok = False
            seen.setdefault(geo, number)
        return tuple(raw) if ok else None

    def geo_valid(self, where: str, geo: Any) -> bool:
        if not isinstance(geo, str) or not GEO_RE.match(geo):
            self.error(
                f'{where}: invalid geo "{geo}" (expected CONTINENT[-COUNTRY[-SUBDIVISION]] in '
                "capitals, e.g. EU, NA-US, NA-US-CA)"
            )
            return False
        parts = geo.split("-")
        if parts[0] not in COUNTRIES:
            known = " ".join(sorted(COUNTRIES))
            self.error(f'{where}: unknown continent code "{parts[0]}" in geo "{geo}" ({known})')
            return False
        if len(parts) > 1 and parts[1] not in COUNTRIES[parts[0]]:
            home = [c for c, codes in COUNTRIES.items() if parts[1] in codes]
            hint = f"; {parts[1]} is in {home[0]}" if home else ""
            self.error(f'{where}: unknown country code "{parts[1]}" in geo "{geo}"{hint}')
            return False
        if len(parts) > 2 and parts[1] in SUBDIVISIONS and parts[2] not in SUBDIVISIONS[parts[1]]:
            self.error(f'{where}: unknown subdivision code "{parts[2]}" in geo "{geo}"')
            return False
        return True

    def rule_subnets(
        self, where: str, number: int, raw: Any, seen: dict[IPNetwork, int]
    ) -> tuple[IPNetwork, ...] | None:
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            self.error(f"{where}: subnets must be a list")
            return None
        parsed: list[IPNetwork] = []
        ok = True
        for item in raw:
            try:
                parsed.append(ipaddress.ip_network(str(item), strict=True))
            except ValueError as exc:
                why = "host bits set" if "host bits" in str(exc) else "not a network"
                self.error(f'{where}: invalid subnet "{item}" ({why})')
                ok = False
        # Widest first within the rule, so a parent and its child in one rule are caught too.
        for net in sorted(parsed, key=lambda n: (n.version, n.prefixlen, n.network_address)):
            for other, other_rule in seen.items():
                if net == other:
                    self.error(f'{where}: subnet "{net}" listed {_rules(other_rule, number)}')
                    ok = False
                elif net.version == other.version and net.subnet_of(other):  # type: ignore[arg-type]
                    self.error(
                        f'{where}: subnet "{net}" is more specific than "{other}" of rule '
                        f"{other_rule} and would never match (list it before its parent)"
                    )
                    ok = False
            seen.setdefault(net, number)
        return tuple(parsed) if ok else None

    def unused_pools(
        self, pools: Mapping[str, Any], fallbacks: Mapping[str, str | None], rules: Any
    ) -> None:
        """octoDNS flags pools no rule or fallback reaches: they are dead configuration."""
        used: set[Any] = {f for f in fallbacks.values() if f}
        if isinstance(rules, list):
            pools_of = (r.get("pool") for r in rules if isinstance(r, Mapping))
            used |= {p for p in pools_of if isinstance(p, str)}
        for pool_id in pools:
            if pool_id not in used:
                self.error(f'pool "{pool_id}": unused (no rule or fallback targets it)')

    # -- gslb block --------------------------------------------------------------------------

    def options(self, gslb: Mapping) -> GslbOptions | None:
        before = len(self.errors)
        values: dict[str, Any] = {}
        if "chain" in gslb:
            values["chain"] = self.chain(gslb["chain"])
        if "answers" in gslb:
            answers = self.integer(gslb["answers"], "gslb.answers", 1, MAX_ANSWERS)
            if answers is not None and answers > 1 and self.rtype == CNAME:
                self.error("gslb.answers: a CNAME answer holds exactly one value")
            values["answers"] = answers
        for key in ("sticky", "ecs", "fail_open"):
            if key in gslb:
                values[key] = self.boolean(gslb[key], f"gslb.{key}")
        if "degraded_ttl" in gslb:
            ttl = self.integer(gslb["degraded_ttl"], "gslb.degraded_ttl", 0, MAX_TTL)
            values["degraded_ttl"] = ttl
        values.update(self.proximity(gslb.get("proximity")))
        values.update(self.sub_options(gslb, "cost", {"tolerance": ("cost_tolerance", 0, None)}))
        performance = {
            "latency_tolerance": ("latency_tolerance", 0, None),
            "latency_margin": ("latency_margin", 0, None),
            "success_floor": ("success_floor", 0, 1),
        }
        values.update(self.sub_options(gslb, "performance", performance))
        if len(self.errors) > before:
            return None
        return GslbOptions(**values)

    def chain(self, raw: Any) -> tuple[str, ...]:
        if not isinstance(raw, list) or not raw:
            self.error(f"gslb.chain: expected a non-empty list of steps ({', '.join(STEPS)})")
            return DEFAULT_CHAIN
        steps: list[str] = []
        for step in raw:
            if step not in STEPS:
                self.error(f'gslb.chain: unknown step "{step}" (expected {", ".join(STEPS)})')
            elif step in steps:
                self.error(f'gslb.chain: step "{step}" listed twice')
            else:
                steps.append(step)
        if "rules" in steps and steps[0] != "rules":
            self.error('gslb.chain: "rules" must be the first step (it picks the pool)')
        if "weighted" in steps and steps[-1] != "weighted":
            self.error('gslb.chain: "weighted" must be the last step (it picks the answer)')
        return tuple(steps)

    def proximity(self, raw: Any) -> dict[str, Any]:
        """``{km: N}`` or ``{ratio: R, min_km: M}`` (ratio alone keeps the default floor)."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.error("gslb.proximity: expected a mapping with km, or ratio and min_km")
            return {}
        self.unknown_keys(raw, ("km", "ratio", "min_km"), "gslb.proximity: ")
        if "km" in raw and ("ratio" in raw or "min_km" in raw):
            self.error("gslb.proximity: give km, or ratio (and min_km), not both")
            return {}
        if "km" in raw:
            km = self.number(raw["km"], "gslb.proximity.km", 0)
            return {"proximity_km": km, "proximity_ratio": None}
        out: dict[str, Any] = {}
        if "ratio" in raw:
            out["proximity_ratio"] = self.number(raw["ratio"], "gslb.proximity.ratio", 1)
        if "min_km" in raw:
            out["proximity_min_km"] = self.number(raw["min_km"], "gslb.proximity.min_km", 0)
        return out

    def sub_options(
        self, gslb: Mapping, key: str, spec: dict[str, tuple[str, float, float | None]]
    ) -> dict[str, Any]:
        """A small mapping of bounded numbers, e.g. ``cost: {tolerance: 0.2}``."""
        raw = gslb.get(key)
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.error(f"gslb.{key}: expected a mapping with {', '.join(spec)}")
            return {}
        self.unknown_keys(raw, tuple(spec), f"gslb.{key}: ")
        out: dict[str, Any] = {}
        for name, (option, low, high) in spec.items():
            if name in raw:
                out[option] = self.number(raw[name], f"gslb.{key}.{name}", low, high)
        return out

    def targets(self, raw: Any, in_pools: set[str], origin: set[str]) -> dict[str, _TargetExtra]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.error("gslb.targets: expected a mapping of value -> cost/check/lat/lon/pops")
            return {}
        out: dict[str, _TargetExtra] = {}
        for key, item in raw.items():
            where = f'gslb.targets "{key}"'
            try:
                value = self.rdata(key)
            except ValueError as exc:
                self.error(f"{where}: {exc}")
                continue
            if value not in in_pools and value not in origin:
                self.error(f"{where}: not a value of any pool nor of the record (a typo?)")
                continue
            if not isinstance(item, Mapping):
                self.error(f"{where}: expected a mapping with cost, check, lat/lon or pops")
                continue
            self.unknown_keys(item, TARGET_KEYS, f"{where}: ")
            if "check" in item and value not in in_pools:
                self.error(f"{where}.check: the origin is probed by gslb.origin_check")
            out[value] = self.target_extra(where, value, item)
        return out

    def target_extra(self, where: str, value: str, item: Mapping) -> _TargetExtra:
        extra = _TargetExtra()
        if "cost" in item:
            extra.cost = self.number(item["cost"], f"{where}.cost", 0)
        if "check" in item:
            extra.check = self.check_option(item["check"], f"{where}.check")
        has_point = "lat" in item or "lon" in item
        if has_point and "pops" in item:
            self.error(f"{where}: give lat/lon (one location) or pops, not both")
        elif has_point:
            point = self.coordinates(where, item)
            if point is not None:
                extra.pops = [{"name": value.rstrip("."), "lat": point[0], "lon": point[1]}]
        elif "pops" in item:
            extra.pops = self.pops(where, item["pops"])
        return extra

    def coordinates(self, where: str, item: Mapping) -> tuple[float, float] | None:
        if "lat" not in item or "lon" not in item:
            self.error(f"{where}: lat and lon go together")
            return None
        lat = self.number(item["lat"], f"{where}.lat", -90, 90)
        lon = self.number(item["lon"], f"{where}.lon", -180, 180)
        return None if lat is None or lon is None else (lat, lon)

    def pops(self, where: str, raw: Any) -> list[dict[str, Any]]:
        if not isinstance(raw, list) or not raw:
            self.error(f"{where}.pops: expected a non-empty list of PoPs")
            return []
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        for index, item in enumerate(raw, start=1):
            pwhere = f"{where}.pops {index}"
            if not isinstance(item, Mapping):
                self.error(f"{pwhere}: expected a mapping with name, lat, lon")
                continue
            self.unknown_keys(item, POP_KEYS, f"{pwhere}: ")
            name = item.get("name")
            if not isinstance(name, str) or not name:
                self.error(f"{pwhere}: missing name")
                continue
            if name in names:
                self.error(f'{pwhere}: PoP name "{name}" listed twice')
            names.add(name)
            point = self.coordinates(pwhere, item)
            addresses = self.pop_addresses(pwhere, item.get("addresses"))
            check = self.check_option(item["check"], f"{pwhere}.check") if "check" in item else None
            if point is not None:
                out.append({"name": name, "lat": point[0], "lon": point[1], "addresses": addresses})
                out[-1]["check"] = check
        return out

    def pop_addresses(self, where: str, raw: Any) -> tuple[str, ...]:
        if raw is None:
            return ()
        if self.rtype == CNAME:
            self.error(f"{where}.addresses: a CNAME record answers with the name, not addresses")
            return ()
        if not isinstance(raw, list) or not raw:
            self.error(f"{where}.addresses: expected a non-empty list of {self.kind} addresses")
            return ()
        out: list[str] = []
        for item in raw:
            try:
                address = self.rdata(item)
            except ValueError as exc:
                self.error(f"{where}.addresses: {exc}")
                continue
            if address in out:
                self.error(f'{where}.addresses: duplicate address "{item}"')
                continue
            out.append(address)
        return tuple(out)

    # -- checks ------------------------------------------------------------------------------

    def check_option(self, raw: Any, where: str) -> Any:
        """A check option is a mapping of check settings, or ``false`` for "no check"."""
        if raw is False or isinstance(raw, Mapping):
            return raw
        self.error(f"{where}: expected a mapping of check settings or false")
        return None

    def healthcheck(self, raw: Any) -> Mapping | None:
        """``octodns.healthcheck``; the other provider keys under ``octodns`` are not ours."""
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.error("octodns must be a mapping")
            return None
        healthcheck = raw.get("healthcheck")
        if healthcheck is not None and not isinstance(healthcheck, Mapping):
            self.error("octodns.healthcheck: expected a mapping (host, path, port, protocol)")
            return None
        return healthcheck

    def check_factory(self, gslb_check: Any, healthcheck: Mapping | None) -> _MakeCheck:
        """Return ``make(target, override, field) -> check key`` for the record's values.

        ``gslb.check`` wins over ``octodns.healthcheck``; ``false`` disables both. An override
        (a target's or PoP's own ``check``) is merged over ``gslb.check``, or is ``false``.
        ``target`` is what the probe connects to: the CDN hostname or the address.
        """
        default = self.check_option(gslb_check, "gslb.check") if gslb_check is not None else None
        host = self.fqdn.rstrip(".")

        def make(target: str, override: Any, field_: str) -> str | None:
            if override is False or (override is None and default is False):
                return None
            if isinstance(override, Mapping):
                base = default if isinstance(default, Mapping) else {}
                data, where, parse = {**base, **override}, field_, parse_check
            elif isinstance(default, Mapping):
                data, where, parse = default, "gslb.check", parse_check
            elif healthcheck is not None:
                data, where, parse = healthcheck, "octodns.healthcheck", from_octodns
            else:
                return None  # octoDNS without a health check: status obey counts as up
            spec = parse(
                data,
                target=target,
                default_host=host,
                where=f"{self.where}: {where}",
                errors=self.errors,
            )
            if spec is None:
                return None
            self.checks[spec.key] = spec
            return spec.key

        return make

    def build_target(
        self, value: str, extras: Mapping[str, _TargetExtra], make_check: _MakeCheck
    ) -> Target:
        """One Target per distinct value; weight and status are set per pool afterwards."""
        extra = extras.get(value, _TargetExtra())
        field_ = f'gslb.targets "{value}".check'
        check = make_check(value, extra.check, field_)
        pops = tuple(self.build_pop(value, pop, extra.check, make_check) for pop in extra.pops)
        return Target(value=value, cost=extra.cost, pops=pops, check=check)

    def build_pop(
        self, value: str, pop: dict[str, Any], target_check: Any, make_check: _MakeCheck
    ) -> Pop:
        """A PoP with addresses is probed on its first address, with its target's settings."""
        addresses = pop.get("addresses", ())
        check = None
        if addresses:
            override = pop.get("check")
            field_ = f'gslb.targets "{value}" pop "{pop["name"]}".check'
            check = make_check(addresses[0], target_check if override is None else override, field_)
        return Pop(
            name=pop["name"], lat=pop["lat"], lon=pop["lon"], addresses=addresses, check=check
        )

    def origin_targets(
        self,
        raw: Any,
        origin: tuple[str, ...],
        extras: Mapping[str, _TargetExtra],
        make_check: _MakeCheck,
    ) -> tuple[Target, ...]:
        """The origin values as Targets: probed only by ``gslb.origin_check`` (octoDNS does
        not check the record's own values at all)."""
        if raw is not None and raw is not False and not isinstance(raw, Mapping):
            self.error("gslb.origin_check: expected a mapping of check settings or false")
            raw = None
        out: list[Target] = []
        for value in origin:
            extra = extras.get(value, _TargetExtra())
            check = None
            if isinstance(raw, Mapping):
                spec = parse_check(
                    raw,
                    target=value,
                    default_host=self.fqdn.rstrip("."),
                    where=f"{self.where}: gslb.origin_check",
                    errors=self.errors,
                )
                if spec is not None:
                    self.checks[spec.key] = spec
                    check = spec.key
            pops = tuple(self.build_pop(value, pop, False, make_check) for pop in extra.pops)
            out.append(Target(value=value, cost=extra.cost, pops=pops, check=check))
        return tuple(out)


def _category(subnets: bool, geos: bool) -> int:
    if subnets:
        return 1 if geos else 0
    return 2 if geos else 3


def _rules(first: int, second: int) -> str:
    return "twice in one rule" if first == second else f"twice (rules {first} and {second})"
