"""The RUM side of a running server: ingestion, the store, and the snapshot task.

Owned by the app (supervisor process). Beacons arrive over HTTP and go into the store; every
``refresh`` seconds a task rebuilds the decisions (``gslb.rum.decide``) and, when any set or
figure changed, hands the new immutable snapshot to ``publish`` (the app attaches it to the
view it sends to the answer path and to the workers). The task is cancelled by ``stop``; one
round is synchronous CPU work bounded by the store's size limits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from gslb.rum import fleet as rum_fleet
from gslb.rum.decide import Decider
from gslb.rum.ingest import Ingest, Limits
from gslb.rum.network import AsnDB
from gslb.rum.snapshot import Snapshot
from gslb.rum.store import Store
from gslb.tasks import stop_task

log = logging.getLogger("gslb.rum")


def rum_records(config: Any) -> dict[tuple[str, int], Any]:
    """Every dynamic record whose chain has the ``rum`` step: key -> (options, targets)."""
    from gslb.rum.config import RumOptions

    out = {}
    for zone in config.zones.values():
        for node in zone.nodes.values():
            for record in node.dynamic.values():
                if "rum" not in record.options.chain:
                    continue
                targets = frozenset(t.value for pool in record.pools.values() for t in pool.targets)
                out[(record.fqdn, record.rtype)] = (record.rum or RumOptions(), targets)
    return out


class RumService:
    def __init__(
        self, publish: Callable[[Snapshot], None], *, geo: Any = None,
        asn: AsnDB | None = None, limits: Limits | None = None, secret: bytes | None = None,
        refresh: float = 5.0, max_networks: int = 20_000,
        clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.publish = publish
        self.store = Store(max_networks)
        self.ingest = Ingest(self.store, secret, limits, geo, asn)
        self.decider = Decider()
        self.refresh = refresh
        self.clock, self.wall = clock, wall
        self.records: dict[tuple[str, int], Any] = {}
        self.snapshot: Snapshot | None = None  # the one published to the answer path
        self.latest: Snapshot | None = None  # same sets, current figures: for explain
        self._signature: Any = None
        self._task: asyncio.Task | None = None
        self.rounds = 0
        self.last_round_seconds = 0.0
        self.channel: Any = None  # the fleet's ``rum`` channel, once attached
        # record -> node -> (own time bucket on arrival, checked entries): peers' aggregates
        self.peers: dict[tuple[str, int], dict[str, tuple[int, list]]] = {}
        self.fleet_values: Counter[str] = Counter()  # peers' values: accepted or why refused

    def configure(self, config: Any) -> None:
        """After every (re)load: which records are steered by RUM, with which options."""
        self.records = rum_records(config)
        before = dict(self.store.tables)
        self.store.configure({key: options for key, (options, _) in self.records.items()})
        # peers' aggregates stay only for tables kept as they were (same window and metric)
        self.peers = {
            r: by for r, by in self.peers.items() if self.store.tables.get(r) is before.get(r)
        }
        self.ingest.configure(self.records)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gslb-rum")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_task(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                self.rebuild()
            except Exception:  # a bug here must not stop steering for good
                log.exception("rum: rebuilding the decisions failed; keeping the last ones")

    def rebuild(self) -> Snapshot:
        """One round: decisions from the store; published when anything differs."""
        started = time.perf_counter()
        records = {key: (options, len(targets)) for key, (options, targets) in self.records.items()}
        now = self.clock()
        self.share(now)
        store = rum_fleet.merged(self.store, self.peers, now) if self.peers else self.store
        snapshot = self.decider.build(store, records, now, self.wall())
        signature = _signature(snapshot)
        self.latest = snapshot
        self.rounds += 1
        self.last_round_seconds = time.perf_counter() - started
        if signature != self._signature:
            self._signature = signature
            self.snapshot = snapshot
            self.publish(snapshot)
        return self.snapshot

    # -- the fleet -----------------------------------------------------------------------------

    def attach(self, fleet: Any) -> None:
        """Share this node's aggregates with the fleet and decide on everyone's."""
        self.channel = fleet.channel(rum_fleet.CHANNEL, self.on_peer, ttl=rum_fleet.TTL)

    def share(self, now: float) -> None:
        """Publish the own aggregates of every record that got samples since last round."""
        if self.channel is None:
            return
        for record, table in self.store.tables.items():
            if table.dirty:
                self.channel.publish(f"{record[0]}|{record[1]}",
                                     rum_fleet.encode_table(record, table, now))  # fmt: skip

    def on_peer(self, node: str, name: str, data: Any) -> None:
        """A peer's aggregates of one record (None: withdrawn or expired with its node)."""
        record_name, _, rtype = name.rpartition("|")
        record = (record_name, int(rtype)) if rtype.isdigit() else None
        if data is None:
            self.peers.get(record, {}).pop(node, None)
            return
        table = self.store.tables.get(record) if record is not None else None
        if table is None:
            self.fleet_values["unknown-record"] += 1
            return
        try:
            entries = rum_fleet.decode(data, self.records[record][1], table)
        except rum_fleet.Refused as why:
            self.fleet_values[str(why)] += 1
            log.warning("rum: %s's aggregates of %s refused: %s", node, name, why)
            return
        self.fleet_values["accepted"] += 1
        self.peers.setdefault(record, {})[node] = (int(self.clock() // table.width), entries)

    def status(self) -> dict[str, Any]:
        snap = self.snapshot
        return {
            "records": sorted(f"{name} {rtype}" for name, rtype in self.records),
            "keys": self.store.keys(),
            "decisions": {f"{r} {level}": n for (r, level), n in self.decider.decided.items()},
            "set_changes": {f"{r} {level}": n for (r, level), n in self.decider.changes.items()},
            "beacons": dict(self.ingest.beacons),
            "samples": dict(self.ingest.samples),
            "snapshot": None
            if snap is None
            else {"serial": snap.serial, "built_at": snap.built_at},
            "fleet": {
                "peers": sorted({n for by in self.peers.values() for n in by}),
                "values": dict(self.fleet_values),
            },
            "last_round_seconds": round(self.last_round_seconds, 4),
            "resolver_links": {
                "seen": self.ingest.resolvers.seen_total,
                "linked": self.ingest.resolvers.linked_total,
                "pending": len(self.ingest.resolvers.links),
            },
        }


def _signature(snapshot: Snapshot) -> Any:
    """What the answers depend on, plus figures rounded so explain stays roughly current
    without republishing (and clearing caches) on every new sample."""
    out = []
    for record, decisions in sorted(snapshot.records.items()):
        for level in decisions.levels:
            for key, decision in decisions.by_level.get(level, {}).items():
                figures = tuple(
                    (f.target, f.verdict, round(f.p50 or 0, -1)) for f in decision.figures
                )
                out.append((record, level, key, tuple(sorted(decision.dropped)), figures))
    return tuple(out)


def open_service(settings: Any, geo: Any, publish: Callable[[Snapshot], None]) -> RumService:
    """The service for ``gslb serve``'s flags (gslb.rum.settings); OSError or ValueError
    when the ASN database or the key file cannot be used."""
    asn = AsnDB.open(str(settings.asn_db)) if settings.asn_db is not None else None
    secret = None
    if settings.key_file is not None:
        secret = settings.key_file.read_bytes().strip()
        if len(secret) < 16:
            raise ValueError(f"{settings.key_file}: the RUM key needs at least 16 bytes")
    service = RumService(
        publish, geo=geo, asn=asn, limits=settings.limits, secret=secret,
        refresh=settings.refresh, max_networks=settings.max_networks,
    )  # fmt: skip
    service.ingest.resolver_name = settings.resolver_name
    return service
