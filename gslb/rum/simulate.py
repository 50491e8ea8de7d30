"""``gslb simulate rum``: synthetic users, real ingestion, real decisions, real chain.

A seeded world of client /24s grouped into carriers (ASNs) and countries; each (carrier, CDN)
has a true latency (log-normal around a per-CDN base, so no CDN is best everywhere), each /24 a
small offset, each fetch noise. Time is virtual: every ``step`` seconds each network's browsers
send beacons (Poisson) that go through ``Ingest`` (recipe token, network binding, rate limits)
into the real ``Store``; the real ``Decider`` builds the snapshot; each network's resolver asks
the real ``Engine`` (ECS /24) and its users get the true latency of the CDN answered.

Events: at ``degrade_at`` the CDN that is best for one carrier gets ``degrade_ms`` slower there
for ``degrade_for`` seconds; one carrier has two CDNs within 3 % of each other all along (flap
bait). Reported: users' mean latency against an oracle that always answers the truly fastest
CDN (and against no RUM: every CDN at random), the time until 90 % of the degraded carrier's
networks stop getting the degraded CDN, and answer-set changes per network per hour.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME
from gslb.geo import Location
from gslb.health.view import HealthView
from gslb.policy.chain import Engine
from gslb.rum.ingest import Ingest, Limits, Rejected
from gslb.rum.network import prefix_key
from gslb.rum.service import RumService

CDNS = ("cdn-a.example.net.", "cdn-b.example.net.", "cdn-c.example.net.")
BASE_MS = (40.0, 45.0, 50.0)
COUNTRIES = (("DE", "EU"), ("FR", "EU"), ("US", "NA"), ("JP", "AS"), ("BR", "SA"))
NAME = "content.example.com."


@dataclass(slots=True)
class Scenario:
    networks: int = 200  # client /24s
    carriers: int = 20  # ASNs, each in one country
    hours: float = 2.0
    step: float = 10.0  # s of virtual time per round
    beacon_rate: float = 0.02  # beacons per second per network
    degrade_at: float | None = None  # s; default a quarter into the run
    degrade_for: float | None = None  # s; default 20 minutes, at most a quarter of the run
    degrade_ms: float = 200.0
    seed: int = 1
    window: float = 300.0
    min_samples: int = 20
    hold: float = 120.0
    tolerance: float = 0.1
    margin_ms: float = 5.0
    hysteresis: float = 0.2

    def __post_init__(self) -> None:
        duration = self.hours * 3600
        if self.degrade_at is None:
            self.degrade_at = round(duration / 4 / self.step) * self.step
        if self.degrade_for is None:
            self.degrade_for = min(1200.0, duration / 4)


@dataclass(slots=True)
class Network:
    address: ipaddress.IPv4Address
    carrier: int
    location: Location
    offsets: tuple[float, ...]


class SimGeo:
    """A geo database for the synthetic world: each /24 knows its country."""

    def __init__(self, networks: dict[int, Network]) -> None:
        self.networks = networks

    def locate(self, address: Any) -> Location | None:
        net = self.networks.get(prefix_key(address))
        return net.location if net is not None else None


class SimAsn:
    """The ASN database of the synthetic world: carrier i is AS64500 + i."""

    def __init__(self, networks: dict[int, Network]) -> None:
        self.networks = networks

    def lookup(self, address: Any) -> tuple[int, int] | None:
        net = self.networks.get(prefix_key(address))
        return (64500 + net.carrier, 24) if net is not None else None


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        rng = self.rng = random.Random(scenario.seed)
        self.carrier_ms = [
            [base * math.exp(rng.gauss(0, 0.35)) for base in BASE_MS]
            for _ in range(scenario.carriers)
        ]
        self.flap_bait = 0  # carrier 0: its two best CDNs within 3 %
        ranked = sorted(range(len(CDNS)), key=lambda i: self.carrier_ms[0][i])
        self.carrier_ms[0][ranked[1]] = self.carrier_ms[0][ranked[0]] * 1.03
        self.degraded = 1  # carrier 1: its best CDN degrades mid-run
        self.victim = min(range(len(CDNS)), key=lambda i: self.carrier_ms[1][i])
        self.networks: dict[int, Network] = {}
        for index in range(scenario.networks):
            carrier = index % scenario.carriers
            country, continent = COUNTRIES[carrier % len(COUNTRIES)]
            address = ipaddress.IPv4Address(f"10.{index // 250}.{index % 250}.1")
            location = Location(country, continent, None, None, None,
                                ipaddress.ip_network(f"{address}/16", strict=False))  # fmt: skip
            offsets = tuple(rng.uniform(-3, 3) for _ in CDNS)
            self.networks[prefix_key(address)] = Network(address, carrier, location, offsets)

    def latency(self, net: Network, cdn: int, now: float) -> float:
        """True median latency (ms) of a CDN for one network at a moment."""
        ms = self.carrier_ms[net.carrier][cdn] + net.offsets[cdn]
        s = self.s
        hit = net.carrier == self.degraded and cdn == self.victim
        if hit and s.degrade_at <= now < s.degrade_at + s.degrade_for:
            ms += s.degrade_ms
        return max(1.0, ms)


def record_data(s: Scenario) -> dict[str, Any]:
    return {
        "type": "CNAME",
        "ttl": 20,
        "value": "origin.example.com.",
        "dynamic": {
            "pools": {"cdns": {"values": [{"value": cdn} for cdn in CDNS]}},
            "rules": [{"pool": "cdns"}],
        },
        "gslb": {
            "rum": {
                "probes": {cdn: f"https://{cdn.rstrip('.')}/gslb-rum.gif" for cdn in CDNS},
                "window": s.window,
                "min_samples": s.min_samples,
                "hold": s.hold,
                "tolerance": s.tolerance,
                "margin_ms": s.margin_ms,
                "hysteresis": s.hysteresis,
            }
        },
    }


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.world = World(scenario)
        errors: list[str] = []
        self.record, _ = parse_dynamic(
            NAME, b"\x07content\x07example\x03com\x00", CNAME, 20, record_data(scenario),
            "simulate", errors,
        )  # fmt: skip
        if self.record is None:
            raise ValueError("; ".join(errors))
        self.now = 0.0
        geo, asn = SimGeo(self.world.networks), SimAsn(self.world.networks)
        limits = Limits(global_rate=1e9, global_burst=1e9)
        self.asn = asn
        self.service = RumService(
            self._publish, geo=geo, asn=asn, limits=limits, secret=b"s" * 32,
            refresh=scenario.step,
            clock=lambda: self.now, wall=lambda: 1_000_000.0 + self.now,
        )  # fmt: skip
        self.service.records = {(NAME, CNAME): (self.record.rum, frozenset(CDNS))}
        self.service.store.configure({(NAME, CNAME): self.record.rum})
        self.service.ingest.configure(self.service.records)
        self.service.ingest.rng = random.Random(scenario.seed + 2)
        self.engine = Engine(geo, random.Random(scenario.seed))
        self.engine.asn = asn
        self.view = HealthView(0)
        self.rng = random.Random(scenario.seed + 1)

    def _publish(self, snapshot: Any) -> None:
        self.view = HealthView(self.view.version + 1, rum=snapshot)

    def beacons(self) -> None:
        ingest: Ingest = self.service.ingest
        for net in self.world.networks.values():
            for _ in range(_poisson(self.rng, self.s.beacon_rate * self.s.step)):
                job = ingest.recipe((NAME, CNAME), net.address, 1_000_000.0 + self.now)
                body = self.beacon_body(net, job)
                with contextlib.suppress(Rejected):  # counted by reason in the report
                    ingest.beacon(body, net.address, None, self.now, 1_000_000.0 + self.now)

    def beacon_body(self, net: Network, job: dict) -> bytes:
        measurements = []
        for target in job["targets"]:
            cdn = CDNS.index(target["t"])
            true = self.world.latency(net, cdn, self.now)
            warm = true * math.exp(self.rng.gauss(0, 0.25))
            measurements.append({"t": target["t"], "k": "cold", "ok": 1, "ms": 3 * warm})
            measurements.append({"t": target["t"], "k": "warm", "ok": 1, "ms": round(warm, 1)})
        return json.dumps({"v": 1, "r": job["r"], "y": job["y"], "tok": job["tok"],
                           "m": measurements}).encode()  # fmt: skip

    def run(self) -> dict[str, Any]:
        s, world = self.s, self.world
        steps = int(s.hours * 3600 / s.step)
        got = oracle = blind = 0.0
        answers = 0
        last_set: dict[int, frozenset] = {}
        changes = 0
        bait_changes = 0
        reaction = None
        affected = [k for k, n in world.networks.items() if n.carrier == world.degraded]
        for _ in range(steps):
            self.now += s.step
            self.beacons()
            self.service.rebuild()
            avoided = 0
            for key, net in world.networks.items():
                truth = [world.latency(net, i, self.now) for i in range(len(CDNS))]
                ecs = (net.address, 24)
                kept = self.kept(net)
                if key in last_set and kept != last_set[key]:
                    changes += 1
                    bait_changes += net.carrier == world.flap_bait
                last_set[key] = kept
                answer = self.engine.answer(self.record, ipaddress.IPv4Address("192.0.2.53"),
                                            ecs, self.view)  # fmt: skip
                got += truth[CDNS.index(answer.values[0])]
                oracle += min(truth)
                blind += sum(truth) / len(truth)
                answers += 1
                if net.carrier == world.degraded and CDNS[world.victim] not in kept:
                    avoided += 1
            degraded = s.degrade_at <= self.now < s.degrade_at + s.degrade_for
            if degraded and reaction is None and avoided >= 0.9 * len(affected):
                reaction = self.now - s.degrade_at
        hours = s.hours
        return {
            "scenario": asdict(s),
            "latency_ms": {
                "rum": round(got / answers, 2),
                "oracle": round(oracle / answers, 2),
                "no_rum": round(blind / answers, 2),
                "rum_over_oracle": round(got / oracle, 4),
                "no_rum_over_oracle": round(blind / oracle, 4),
            },
            "reaction_s": reaction,
            "flaps_per_network_hour": round(changes / (len(world.networks) * hours), 4),
            "flaps_per_network_hour_near_equal": round(
                bait_changes / (sum(1 for n in world.networks.values() if n.carrier == 0) * hours),
                4,
            ),
            "set_changes_by_level": {
                level: n for (_, level), n in self.service.decider.changes.items()
            },
            "beacons": dict(self.service.ingest.beacons),
            "keys": self.service.store.keys(),
        }

    def kept(self, net: Network) -> frozenset[str]:
        """The CDNs this network's answers may use now (all when nothing decides)."""
        snapshot = self.view.rum
        if snapshot is None:
            return frozenset(CDNS)
        decision, _ = snapshot.lookup((NAME, CNAME), net.address, 24, net.location, self.asn)
        if decision is None:
            return frozenset(CDNS)
        return frozenset(c for c in CDNS if c not in decision.dropped)


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method: fine for the small means used here."""
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def run(scenario: Scenario) -> dict[str, Any]:
    return Simulation(scenario).run()


def render(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    s = report["scenario"]
    reaction = report["reaction_s"]
    lines = [
        f"gslb simulate rum: {s['networks']} networks in {s['carriers']} carriers, "
        f"{s['hours']} h virtual, {s['beacon_rate']} beacons/s per network, seed {s['seed']}",
        f"users' mean latency: {lat['rum']} ms with RUM, {lat['oracle']} ms oracle "
        f"(x{lat['rum_over_oracle']}), {lat['no_rum']} ms without RUM "
        f"(x{lat['no_rum_over_oracle']})",
        f"reaction to +{s['degrade_ms']:.0f} ms on one carrier's best CDN: "
        + (f"{reaction:.0f} s" if reaction is not None else "never"),
        f"answer-set changes: {report['flaps_per_network_hour']} per network per hour "
        f"({report['flaps_per_network_hour_near_equal']} where two CDNs are within 3 %)",
        f"beacons: {report['beacons']}",
    ]
    return "\n".join(lines)


def add_arguments(simulate: Any) -> None:
    """``gslb simulate rum`` flags (NAME = rum)."""
    group = simulate.add_argument_group("simulate rum (NAME = rum: synthetic RUM world)")
    group.add_argument("--networks", type=int, default=200, help="client /24s (default 200)")
    group.add_argument("--carriers", type=int, default=20, help="ASNs (default 20)")
    group.add_argument("--hours", type=float, default=2.0, help="virtual hours (default 2)")


def main(args: Any) -> int:
    """Full RUM, and RUM without hysteresis and hold, on the same seeded world."""
    base = Scenario(networks=args.networks, carriers=args.carriers, hours=args.hours,
                    seed=args.seed)  # fmt: skip
    if base.networks < base.carriers or base.carriers < 2 or base.hours * 3600 < 600:
        print("gslb simulate rum: need carriers >= 2, networks >= carriers, hours >= 1/6")
        return 2
    reports = {
        "rum": run(base),
        "rum_without_hysteresis": run(replace(base, hysteresis=0.0, hold=0.0)),
    }
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        print(render(reports["rum"]))
        print("-- the same world without hysteresis and hold:")
        print("\n".join(render(reports["rum_without_hysteresis"]).splitlines()[1:]))
    return 0
