"""What-if before apply: replay clients against dynamic records and report the traffic split.

For each record: the share of answers per target, per continent and per target within each
continent, the reasons (rule, fallback, origin...), and the expected cost per GB
(sum of share x cost, from ``gslb.targets`` costs; the origin's cost from the origin's own
``gslb.targets`` entry or ``origin_cost``). Clients come from a file (one IP or CIDR per line)
or a seeded sample. The answers come from the real ``Engine``, so this is exactly what the
server would do with the same health snapshot.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gslb.config.model import DynamicRecord
from gslb.health.view import EMPTY_VIEW, HealthView
from gslb.policy.chain import TYPE_NAMES, Engine
from gslb.policy.client import Address, GeoLike

NO_ANSWER = "(no answer)"
UNKNOWN = "unknown"
Networks = Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]


def load_clients(path: str | Path) -> list[Address]:
    """One IP or CIDR per line (``#`` comments, blank lines ignored); a CIDR stands for one
    client inside it. Raises ValueError naming the line."""
    clients: list[Address] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            if "/" in text:
                net = ipaddress.ip_network(text, strict=False)
                clients.append(net.network_address + (1 if net.num_addresses > 2 else 0))
            else:
                clients.append(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"{path}:{number}: not an IP address or CIDR: {text!r}") from None
    return clients


def sample_clients(
    count: int, *, networks: Networks | Callable[[], Networks] | None = None, seed: int = 0
) -> list[Address]:
    """``count`` addresses: drawn from the geo database's networks when it can list them
    (one network uniformly, then an address inside), else random public IPv4 addresses."""
    rng = random.Random(seed)
    pool = list(networks() if callable(networks) else networks) if networks is not None else []
    if pool:
        out: list[Address] = []
        for _ in range(count):
            net = rng.choice(pool)
            out.append(net.network_address + rng.randrange(net.num_addresses))
        return out
    clients: list[Address] = []
    while len(clients) < count:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global and not address.is_multicast:
            clients.append(address)
    return clients


def simulate(
    records: DynamicRecord | Iterable[DynamicRecord],
    engine: Engine,
    health: HealthView,
    clients: Iterable[Address],
    *,
    origin_cost: float | None = None,
) -> dict[str, Any]:
    """Ask ``engine`` once per client and record; shares are fractions of the clients."""
    batch = [records] if isinstance(records, DynamicRecord) else list(records)
    addresses = list(clients)
    continents = [_continent(engine.geo, address) for address in addresses]
    return {
        "clients": len(addresses),
        "records": [
            _simulate_record(record, engine, health, addresses, continents, origin_cost)
            for record in batch
        ],
    }


def _continent(geo: GeoLike | None, address: Address) -> str:
    location = geo.locate(address) if geo is not None else None
    continent = getattr(location, "continent", None)
    return continent or UNKNOWN


def _simulate_record(
    record: DynamicRecord,
    engine: Engine,
    health: HealthView,
    addresses: list[Address],
    continents: list[str],
    origin_cost: float | None,
) -> dict[str, Any]:
    targets: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    by_continent: dict[str, Counter[str]] = {}
    for address, continent in zip(addresses, continents, strict=True):
        answer = engine.answer(record, address, None, health)
        target = answer.target if answer.values else NO_ANSWER
        targets[target] += 1
        reasons[answer.reason] += 1
        by_continent.setdefault(continent, Counter())[target] += 1
    total = max(len(addresses), 1)
    shares = {t: n / total for t, n in targets.most_common()}
    costs = _costs(record, origin_cost)
    costed = [(share, costs.get(t)) for t, share in shares.items() if t != NO_ANSWER]
    return {
        "record": record.fqdn,
        "type": TYPE_NAMES.get(record.rtype, str(record.rtype)),
        "targets": shares,
        "reasons": {r: n / total for r, n in reasons.most_common()},
        "continents": {
            continent: {
                "share": sum(counts.values()) / total,
                "targets": {t: n / sum(counts.values()) for t, n in counts.most_common()},
            }
            for continent, counts in sorted(by_continent.items())
        },
        "costs": {t: costs.get(t) for t in shares if t != NO_ANSWER},
        "expected_cost_per_gb": sum(share * c for share, c in costed if c is not None),
        "uncosted_share": sum(share for share, c in costed if c is None),
    }


def _costs(record: DynamicRecord, origin_cost: float | None) -> dict[str, float | None]:
    costs: dict[str, float | None] = {
        t.value: t.cost for pool in record.pools.values() for t in pool.targets
    }
    declared = [t.cost for t in record.origin_targets if t.cost is not None]
    costs["origin"] = origin_cost if origin_cost is not None else (declared or [None])[0]
    return costs


def run_simulation(
    records: DynamicRecord | Iterable[DynamicRecord],
    engine: Engine | None = None,
    health: HealthView = EMPTY_VIEW,
    *,
    geo: GeoLike | None = None,
    clients_file: str | Path | None = None,
    sample: int | None = 10000,
    seed: int = 0,
    origin_cost: float | None = None,
    networks: Networks | Callable[[], Networks] | None = None,
) -> dict[str, Any]:
    """What the CLI calls: clients from ``clients_file`` or a sample of ``sample``.

    Answers come from a fresh engine over the same geo database with ``random.Random(seed)``,
    so the same seed gives the same report. ``networks`` (or a ``networks`` attribute of the
    geo object) lets the sample follow the database's networks.
    """
    geo = geo if geo is not None else (engine.geo if engine is not None else None)
    if clients_file is not None:
        clients = load_clients(clients_file)
    else:
        listed = networks if networks is not None else getattr(geo, "networks", None)
        clients = sample_clients(sample or 10000, networks=listed, seed=seed)
    seeded = Engine(geo, random.Random(seed))
    return simulate(records, seeded, health, clients, origin_cost=origin_cost)


def render_text(result: dict[str, Any]) -> str:
    """A plain report: one block per record."""
    lines: list[str] = []
    for rec in result["records"]:
        cost = rec["expected_cost_per_gb"]
        uncosted = rec["uncosted_share"]
        lines.append(
            f"{rec['record']} {rec['type']}: {result['clients']} clients, "
            f"expected cost {cost:.3f} per GB"
            + (f" ({uncosted:.1%} of answers without a cost)" if uncosted else "")
        )
        lines.append(f"  {'target':<40} {'share':>7} {'cost':>8}")
        for target, share in rec["targets"].items():
            value = rec["costs"].get(target)
            shown = "-" if value is None else f"{value:g}"
            lines.append(f"  {target:<40} {share:>7.1%} {shown:>8}")
        reasons = ", ".join(f"{r} {s:.1%}" for r, s in rec["reasons"].items())
        lines.append(f"  reasons: {reasons}")
        lines.append("  by continent:")
        for continent, data in rec["continents"].items():
            split = ", ".join(f"{t} {s:.1%}" for t, s in data["targets"].items())
            lines.append(f"    {continent:<8} {data['share']:>6.1%} of clients: {split}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
