"""``gslb simulate commit``: a billing period in seconds on a virtual clock.

The world: three CDNs behind one CNAME record; networks in three regions, each allowed only
the CDNs its RUM/performance set keeps (the record's pools, chosen by subnet rules, stand for
that set); a population of resolvers with Zipf-skewed sizes, each caching its answer for the
TTL (a few keep it far longer); traffic with a diurnal and weekly shape, shifted per region;
one CDN down for a while mid-period. Every answer comes from the real policy chain
(``gslb.policy.chain.Engine``) with the controller's real snapshot, and the controller is the
real ``RecordController`` fed by a usage feed (true bytes, one slot late) or, with
``estimate``, by gslb's own answers only.

Three policies run on the same world and the same random draws: ``commit`` (the controller),
``static`` (the operator's weights) and ``cheapest`` (everything to the lowest list price
within each network's set). The report gives delivered volume per CDN against its commit, the
period's cost per policy, the largest weight step, and how many answers left the allowed set
(always zero: the commit step only re-weights what earlier steps kept).
"""

from __future__ import annotations

import ipaddress
import math
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gslb.commit.contract import SAMPLE_SECONDS, billed_p95
from gslb.commit.record import RecordController
from gslb.commit.view import Steering
from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME
from gslb.config.names import to_wire
from gslb.dns.demand import DemandEstimator
from gslb.health.view import HealthView
from gslb.policy.chain import Engine

DAY = 86400
ISP_RESOLVERS = 3  # --isp: the region's users behind this few resolvers (no ECS)
START = 1_764_547_200.0  # 2025-12-01 00:00 UTC: a Monday, a period boundary
CDNS = ("cdn-a.example.net.", "cdn-b.example.net.", "cdn-c.example.net.")
# region -> (subnet, CDNs its RUM set keeps, share of users, hours ahead of UTC)
REGIONS = {
    "eu": ("10.1.0.0/16", CDNS, 0.5, 1),
    "asia": ("10.2.0.0/16", CDNS[:2], 0.3, 8),
    "sa": ("10.3.0.0/16", CDNS[1:], 0.2, -3),
}
# Median time to first byte per (region, CDN), ms: what "good enough" kept.
LATENCY = {
    "eu": {CDNS[0]: 38, CDNS[1]: 42, CDNS[2]: 35},
    "asia": {CDNS[0]: 55, CDNS[1]: 60},
    "sa": {CDNS[1]: 70, CDNS[2]: 64},
}


@dataclass(slots=True)
class Scenario:
    days: int = 30
    resolvers: int = 200
    ttl: int = 60
    seed: int = 1
    mean_gbps: float = 10.0  # average total rate over the period
    commits: tuple[float, float] = (0.45, 0.25)  # cdn-a, cdn-b commits as shares of traffic
    outage: tuple[float, float] | None = (12.0, 36.0)  # cdn-b down: (start day, hours)
    estimate: bool = False  # no usage feed: the controller sees gslb's own answers only
    mode: str = "commit"  # delivered: no pacing, the weights are delivered-traffic shares
    max_step: float = 0.05
    stale_share: float = 0.02  # resolvers that keep answers 15 minutes whatever the TTL
    isp: str | None = None  # a region whose users all sit behind ISP_RESOLVERS big resolvers
    demand: bool = True  # with estimate: weigh answers by their resolver's demand
    p95: bool = False  # cdn-a bills the 95th percentile of 5-minute rates, not volume


@dataclass(slots=True)
class Outcome:
    policy: str
    delivered: dict[str, float] = field(default_factory=dict)  # bytes per CDN
    cost: float = 0.0
    max_step: float = 0.0
    outside: int = 0  # answers outside the network's allowed set
    answers: int = 0
    latency_ms: float = 0.0  # bytes-weighted mean time to first byte
    infeasible: dict[str, Any] = field(default_factory=dict)
    origin: str = "feed"
    rates: dict[str, list[float]] = field(default_factory=dict)  # bits/s per 5-minute slot


def record_data(
    scenario: Scenario, total_bytes: float, bytes_per_answer: float = 1e6
) -> dict[str, Any]:
    """The zone-file record the simulation steers (also what the README shows)."""
    start = "2025-12-01T00:00:00+00:00"
    a_commit, b_commit = (share * total_bytes for share in scenario.commits)
    a_contract = {"volume": f"{a_commit:.0f}B", "price": 0.004, "overage": 0.006}
    if scenario.p95:  # the same share of the mean rate, as a 95th percentile in bits/s
        # prices per Mbps: 1 Mbps for 30 days is 324 GB, about 1.3 at the volume price
        rate = scenario.commits[0] * scenario.mean_gbps * 1e9
        a_contract = {"p95": f"{rate:.0f}bps", "ceiling": f"{2 * rate:.0f}bps",
                      "price": 1.0, "overage": 1.5}  # fmt: skip
    pools = {
        name: {
            "values": [
                {"value": cdn, "weight": w}
                for cdn, w in zip(CDNS, (50, 30, 20), strict=True)
                if cdn in cdns
            ]
        }  # fmt: skip
        for name, (_, cdns, _, _) in REGIONS.items()
    }
    return {
        "type": "CNAME",
        "ttl": scenario.ttl,
        "value": "origin.example.com.",
        "dynamic": {
            "pools": pools,
            "rules": [{"subnets": [REGIONS[n][0]], "pool": n} for n in ("asia", "sa")]
            + [{"pool": "eu"}],
        },
        "gslb": {
            "commit": {"interval": SAMPLE_SECONDS, "max_step": scenario.max_step,
                       "mode": scenario.mode, "bytes_per_answer": bytes_per_answer},
            "targets": {
                CDNS[0]: {"commit": a_contract | {"period": f"{scenario.days}d",
                                                  "start": start}},
                CDNS[1]: {"commit": {"volume": f"{b_commit:.0f}B", "period": f"{scenario.days}d",
                                     "start": start, "price": 0.005, "overage": 0.008}},
                CDNS[2]: {"cost": 0.0055},
            },
        },
    }  # fmt: skip


def build_record(scenario: Scenario, total_bytes: float, bytes_per_answer: float = 1e6) -> Any:
    errors: list[str] = []
    fqdn = "content.example.com."
    data = record_data(scenario, total_bytes, bytes_per_answer)
    record, _ = parse_dynamic(
        fqdn, to_wire(fqdn), CNAME, scenario.ttl, data, "simulate", errors,
    )  # fmt: skip
    if record is None:
        raise ValueError("; ".join(errors))
    return record


def shape(moment: float, offset_hours: int) -> float:
    """Relative demand at ``moment`` for a region ``offset_hours`` ahead of UTC: an evening
    peak about 3x the night trough, weekends 15 % lower."""
    local = moment + offset_hours * 3600
    hour = (local % DAY) / 3600
    diurnal = 1.0 + 0.5 * math.cos(2 * math.pi * (hour - 20) / 24)
    weekday = int((local // DAY + 3) % 7)  # 0 = Monday
    return diurnal * (0.85 if weekday >= 5 else 1.0)


@dataclass(slots=True)
class Resolver:
    address: ipaddress.IPv4Address
    region: str
    size: float  # share of its region's users
    stale: bool
    answer: str | None = None  # the cached answer (stale resolvers re-query every 3 slots)


def population(scenario: Scenario, rng: random.Random) -> list[Resolver]:
    """Zipf-sized resolvers; the biggest ones land in any region."""
    out = []
    for region, (subnet, _, _, _) in REGIONS.items():
        net = ipaddress.ip_network(subnet)
        count = max(3, int(scenario.resolvers * REGIONS[region][2]))
        if region == scenario.isp:
            count = ISP_RESOLVERS
        sizes = [1 / (rank**1.1) for rank in range(1, count + 1)]
        rng.shuffle(sizes)
        total = sum(sizes)
        for index, size in enumerate(sizes):
            address = net.network_address + 256 * (index + 1) + 53
            stale = rng.random() < scenario.stale_share
            out.append(Resolver(address, region, size / total, stale))
    return out


class World:
    """One run of the period for one policy."""

    def __init__(self, scenario: Scenario, policy: str) -> None:
        self.s = scenario
        self.policy = policy
        self.rng = random.Random(scenario.seed)
        self.resolvers = population(scenario, self.rng)
        slots = scenario.days * DAY // SAMPLE_SECONDS
        # Bytes per slot for a region's whole population at shape 1.0.
        self.unit = scenario.mean_gbps * 1e9 / 8 * SAMPLE_SECONDS
        self.total = self.expected_total(slots)
        # Without a feed, bytes per answer is what the operator calibrated on last month's
        # invoice: last month's bytes over last month's answers (same shape, same resolvers).
        self.bytes_per_answer = self.total / self.expected_answers(slots)
        self.record = build_record(scenario, self.total, self.bytes_per_answer)
        self.engine = Engine(None, rng=random.Random(scenario.seed + 1))
        self.demand = DemandEstimator()  # sees every query: the simulation samples nothing
        self.controller = RecordController(self.record)
        self.outcome = Outcome(policy, {cdn: 0.0 for cdn in CDNS})
        self.steering: dict = {}
        self._view: tuple[tuple, HealthView] | None = None
        self.decided: HealthView | None = None
        self.latency_bytes = 0.0
        self.slots = slots

    def expected_total(self, slots: int) -> float:
        total = 0.0
        for slot in range(slots):
            moment = START + slot * SAMPLE_SECONDS
            total += sum(self.region_bytes(region, moment) for region in REGIONS)
        return total

    def expected_answers(self, slots: int) -> float:
        """Expected answers over ``slots`` (every 12th slot, times 12: the shape is smooth)."""
        total = 0.0
        for slot in range(0, slots, 12):
            moment = START + slot * SAMPLE_SECONDS
            for resolver in self.resolvers:
                rate = self.region_bytes(resolver.region, moment) * resolver.size / 2e6 / 300
                window = SAMPLE_SECONDS if resolver.stale else self.s.ttl
                asks = 1 if resolver.stale else SAMPLE_SECONDS // self.s.ttl
                total += 12 * asks * (1 - math.exp(-rate * window))
        return total

    def region_bytes(self, region: str, moment: float) -> float:
        _, _, users, offset = REGIONS[region]
        return self.unit * users * shape(moment, offset) / 1.0

    def view(self, moment: float) -> HealthView:
        """The health view of this slot; the same object while nothing changed (so the
        engine's decision cache holds, as in the server)."""
        down = False
        if self.s.outage is not None:
            begin = START + self.s.outage[0] * DAY
            down = begin <= moment < begin + self.s.outage[1] * 3600
        key = (down, id(self.steering))
        if self._view is not None and self._view[0] == key:
            return self._view[1]
        targets = {("", "", CDNS[1]): "down"} if down else {}
        base = HealthView(version=int(moment), targets=MappingProxyType(targets))
        view = base.with_steering(self.steering)
        self._view = (key, view)
        return view

    def fixed_steering(self) -> dict:
        if self.policy != "cheapest":
            return {}
        weights = ((CDNS[0], 10000), (CDNS[1], 1), (CDNS[2], 1))  # a has the lowest list price
        return {(self.record.fqdn, CNAME): Steering(weights, "commit", "none", 0)}

    def warm_up(self) -> None:
        """Last period's profile: the controller starts knowing the shape (not the level)."""
        for slot in range(self.slots):
            moment = START - self.slots * SAMPLE_SECONDS + slot * SAMPLE_SECONDS
            total = sum(self.region_bytes(region, moment) for region in REGIONS)
            self.controller.profile.learn(moment, total * (0.9 + 0.2 * self.rng.random()))
        self.controller.profile.restore({"recent": []})

    def run(self) -> Outcome:
        self.steering = self.fixed_steering()
        if self.policy == "commit":
            self.warm_up()
        previous = None
        pending: dict[str, float] | None = None
        for slot in range(self.slots):
            moment = START + slot * SAMPLE_SECONDS
            view = self.view(moment)
            delivered, answers, users = self.slot(moment, view)
            if self.policy == "commit":
                if pending is not None and not self.s.estimate:  # the feed: one slot late
                    for cdn, value in pending.items():
                        self.controller.add_feed(cdn, moment - SAMPLE_SECONDS, moment, value,
                                                 moment + 1)  # fmt: skip
                if self.s.estimate:
                    if self.s.demand:
                        answers = self.controller.demand.units(answers, users, moment)
                    self.controller.add_answers(moment, answers)
                pending = delivered
                steering = self.controller.tick(moment + SAMPLE_SECONDS - 1)
                weights = self.controller.loop.weights
                if previous is not None:
                    step = max(abs(weights[t] - previous[t]) for t in weights)
                    self.outcome.max_step = max(self.outcome.max_step, step)
                previous = dict(weights)
                self.steering = {(self.record.fqdn, CNAME): steering}
        return self.finish()

    def slot(self, moment: float, view: HealthView) -> tuple[dict, dict, dict]:
        """One 5-minute slot: every resolver asks when its cache expired, its users fetch.
        Returns bytes delivered, answers and the users those answers stood for (by the
        demand model of ``gslb.dns.demand``), per CDN."""
        delivered = dict.fromkeys(CDNS, 0.0)
        answers = dict.fromkeys(CDNS, 0.0)
        users = dict.fromkeys(CDNS, 0.0)
        if self.decided is not view:  # a new view: the engine decides again
            self.decisions: dict[str, tuple[list[str], list[int]]] = {}
            self.decided = view
        windows = SAMPLE_SECONDS // self.s.ttl
        stale_slot = int(moment // SAMPLE_SECONDS) % 3 != 0
        for resolver in self.resolvers:
            volume = self.region_bytes(resolver.region, moment) * resolver.size
            requests = volume / 2e6  # 2 MB per request
            rate = requests / SAMPLE_SECONDS
            asks = 1 if resolver.stale else windows
            busy = 1 - math.exp(-rate * (SAMPLE_SECONDS if resolver.stale else self.s.ttl))
            if busy > 0.999:
                queries = asks
            else:
                queries = sum(1 for _ in range(asks) if self.rng.random() < busy)
            if queries == 0:
                continue
            allowed = self.allowed(resolver.region, view)
            share = volume / queries
            if resolver.stale and stale_slot and resolver.answer in allowed:
                picks = [resolver.answer] * queries
            else:
                picks = self.picks(resolver, view, queries)
                resolver.answer = picks[-1]
                self.outcome.answers += queries
                each = 1.0
                if self.s.estimate and self.s.demand:
                    cache = int(resolver.address)
                    each = self.demand.weight(cache, self.s.ttl, moment, queries) / queries
                for target in picks:
                    answers[target] = answers.get(target, 0.0) + 1
                    users[target] = users.get(target, 0.0) + each
            for target in picks:
                if target not in allowed:
                    self.outcome.outside += 1
                delivered[target] = delivered.get(target, 0.0) + share
                self.latency_bytes += share * LATENCY[resolver.region].get(target, 500)
        for cdn, value in delivered.items():
            self.outcome.delivered[cdn] = self.outcome.delivered.get(cdn, 0.0) + value
            self.outcome.rates.setdefault(cdn, []).append(value * 8 / SAMPLE_SECONDS)
        return delivered, answers, users

    def picks(self, resolver: Resolver, view: HealthView, count: int) -> list[str]:
        """``count`` answers for ``resolver``: the engine's decision for its network (once per
        network and slot: every resolver of a region matches the same rule), then the same
        weighted draw as ``weighted.pick`` (a bisect on the cumulative weights)."""
        choices = self.decisions.get(resolver.region)
        if choices is None:
            key = int(resolver.address)
            self.engine.answer(self.record, resolver.address, None, view, client_key=key)
            front = self.engine.front(self.record, key, view)
            prepared = front.prepared
            labels = [choice.label for choice in prepared.choices] or ["origin"]
            cumulative = list(prepared.cumulative) or [1]
            choices = self.decisions[resolver.region] = (labels, cumulative)
        labels, cumulative = choices
        if len(labels) == 1:
            return labels * count
        return self.rng.choices(labels, cum_weights=cumulative, k=count)

    def allowed(self, region: str, view: HealthView) -> set[str]:
        keep = set(REGIONS[region][1])
        if view.targets:
            keep.discard(CDNS[1])
        return keep or {"origin"}

    def finish(self) -> Outcome:
        out = self.outcome
        contracts = self.record.commit.contracts
        cost = 0.0
        for cdn, value in out.delivered.items():
            if cdn in contracts:
                rates = out.rates.get(cdn, [])
                cost += contracts[cdn].cost(value, billed_p95(rates, len(rates)))
            else:
                cost += 0.0055 * value / 1e9
        out.cost = cost
        total = sum(out.delivered.values())
        out.latency_ms = self.latency_bytes / total if total else 0.0
        if self.policy == "commit":
            state = self.controller.state
            out.infeasible = {t: s["infeasible"] for t, s in state.items() if "infeasible" in s}
            out.origin = self.controller.steering.origin if self.controller.steering else "none"
        return out


def run(
    scenario: Scenario, policies: tuple[str, ...] = ("commit", "static", "cheapest")
) -> dict[str, Any]:
    """The policies on the same world (all three by default); the report as a dict."""
    outcomes = {policy: World(scenario, policy).run() for policy in policies}
    world = World(scenario, "static")
    contracts = world.record.commit.contracts
    report: dict[str, Any] = {"scenario": {
        "days": scenario.days, "resolvers": len(world.resolvers), "ttl": scenario.ttl,
        "seed": scenario.seed, "mean_gbps": scenario.mean_gbps,
        "outage": scenario.outage, "feed": "estimate" if scenario.estimate else "usage feed",
        "max_step": scenario.max_step, "expected_total_bytes": world.total,
        "mode": scenario.mode, "bytes_per_answer": world.bytes_per_answer,
        "isp": scenario.isp, "demand": scenario.estimate and scenario.demand,
        "p95": scenario.p95,
    }, "policies": {}}  # fmt: skip
    for policy, out in outcomes.items():
        cdns = {}
        for cdn in CDNS:
            total = sum(out.delivered.values()) or 1.0
            value = out.delivered.get(cdn, 0.0)
            entry: dict[str, Any] = {"delivered_bytes": value, "delivered_share": value / total}
            contract = contracts.get(cdn)
            if contract is not None and contract.kind == "volume":
                entry |= {"commit_bytes": contract.amount,
                          "vs_commit": value / contract.amount - 1}  # fmt: skip
            elif contract is not None:  # p95: the billed rate against the committed one
                rates = out.rates.get(cdn, [])
                p95 = billed_p95(rates, len(rates))
                above = sum(1 for r in rates if r > contract.amount * 1.0001)
                entry |= {"commit_bps": contract.amount, "p95_bps": p95,
                          "vs_commit": p95 / contract.amount - 1,
                          "slots_above_commit": above / max(1, len(rates)),
                          "peak_bps": max(rates, default=0.0)}  # fmt: skip
            cdns[cdn] = entry
        report["policies"][policy] = {
            "cdns": cdns,
            "cost": out.cost,
            "max_weight_step": out.max_step,
            "answers": out.answers,
            "answers_outside_allowed_set": out.outside,
            "latency_ms": out.latency_ms,
            "infeasible": out.infeasible,
            "origin": out.origin if policy == "commit" else None,
        }
    if "commit" in outcomes and "static" in outcomes:
        penalty = outcomes["commit"].latency_ms - outcomes["static"].latency_ms
        report["latency_penalty_ms_vs_static"] = penalty
    return report


def render(report: dict[str, Any]) -> str:
    s = report["scenario"]
    lines = [
        f"simulated {s['days']} days, {s['resolvers']} resolvers, TTL {s['ttl']} s, "
        f"{s['mean_gbps']} Gbps mean, delivered volume from the {s['feed']}, "
        f"max step {s['max_step']}, mode {s['mode']}",
    ]
    if s["isp"]:
        lines.append(f"{s['isp']}: every user behind {ISP_RESOLVERS} resolvers")
    if s["feed"] == "estimate":
        how = "weighed by each resolver's demand" if s["demand"] else "counted alone"
        lines.append(f"answers {how}")
    if s["outage"]:
        lines.append(f"cdn-b down from day {s['outage'][0]:g} for {s['outage'][1]:g} h")
    for policy, p in report["policies"].items():
        outside = p["answers_outside_allowed_set"]
        lines.append(f"{policy}: cost {p['cost']:,.0f}, latency {p['latency_ms']:.1f} ms, "
                     f"largest weight step {p['max_weight_step']:.3f}, "
                     f"answers outside the allowed set {outside}")  # fmt: skip
        for cdn, c in p["cdns"].items():
            text = f"  {cdn:<22} {c['delivered_bytes'] / 1e12:9.1f} TB"
            text += f"  {c['delivered_share']:6.1%} of all"
            if "commit_bytes" in c and s["mode"] == "commit":
                text += f"  commit {c['commit_bytes'] / 1e12:9.1f} TB  {c['vs_commit']:+.2%}"
            if "commit_bps" in c and s["mode"] == "commit":
                text += (f"  p95 {c['p95_bps'] / 1e9:.2f} Gbps vs commit "
                         f"{c['commit_bps'] / 1e9:.2f} ({c['vs_commit']:+.2%}), "
                         f"{c['slots_above_commit']:.1%} of slots above, "
                         f"peak {c['peak_bps'] / 1e9:.2f}")  # fmt: skip
            lines.append(text)
        for cdn, why in (p["infeasible"] or {}).items():
            lines.append(f"  {cdn}: {why['reason']}, short {why['short_bytes'] / 1e12:.1f} TB")
    penalty = report.get("latency_penalty_ms_vs_static", 0.0)
    lines.append(f"latency penalty of commit pacing vs static weights: {penalty:+.2f} ms "
                 "(every answer within the network's allowed set)")  # fmt: skip
    return "\n".join(lines)
