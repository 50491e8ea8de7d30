"""This node's part of the fleet: overrides, vantage points, and the health view it publishes.

The ``FleetNode`` sits between the prober and the answer path. Every input — the local
prober's view, an operator's override, a peer's observation arriving from the engine, an
observation going stale, an override expiring — ends in ``recompute``, which runs the pure
decision (``gslb.fleet.decide``) and hands the new immutable view to ``publish`` (the app,
which swaps it into the responder and the workers). Nothing on the DNS path waits for this.

Standalone (no engine) the node is a fleet of one: the book persists overrides under
``--state-dir``, the only vantage is the local prober, and the view is the prober's own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from gslb.fleet.decide import Policy, Vantage, decide, matrix
from gslb.fleet.overrides import Override, OverrideBook, Resolved, resolve, target_values
from gslb.fleet.shared import MAX_BYTES, Channel, OnValue
from gslb.health.view import HealthView, RegionOf

if TYPE_CHECKING:
    from gslb.config.load import Config
    from gslb.health.prober import Prober

log = logging.getLogger(__name__)

COALESCE = 0.01  # seconds: peer updates arriving together make one new view
LOCAL_REGION = "local"  # the own vantage's region when none is configured (standalone)


class OverrideRefused(Exception):
    """An override write the fleet could not accept; ``status`` is the HTTP code to send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Engine(Protocol):
    """What the node needs from a replication engine (``gslb.fleet.nats.NatsEngine``)."""

    connected: bool

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def write_override(self, override: Override) -> None: ...
    async def clear_override(self, override_id: str) -> None: ...
    def publish_observations(self, states: Mapping[str, tuple[bool, str, float]]) -> None: ...
    def add_channel(self, channel: Channel) -> None: ...
    async def audit(self) -> list[dict[str, Any]]: ...
    def set_config_digest(self, digest: str) -> None: ...
    def status(self) -> dict[str, Any]: ...


class FleetNode:
    """Owns the override book, the peers' vantages and the published view."""

    def __init__(
        self,
        prober: Prober,
        book: OverrideBook,
        publish: Callable[[HealthView], None],
        *,
        node: str = "",
        region: str | None = None,
        freshness: float = 15.0,
        region_of: RegionOf | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.prober = prober
        self.book = book
        self.publish = publish
        self.node = node
        self.region = region
        self.freshness = freshness  # seconds a peer observation counts after it arrived
        self.region_of = region_of
        self.clock, self.wall = clock, wall
        self.engine: Engine | None = None
        self.config: Config | None = None
        self.policies: dict[str, Policy] = {}
        self.values: dict[str, list[tuple[str, str]]] = {}
        self.resolved = Resolved()
        self.peers: dict[tuple[str, str], Vantage] = {}  # (check key, node) -> latest
        self.view: HealthView = prober.view
        self.version = 0
        self.counters: Counter[str] = Counter()  # override changes, fallbacks, rejections
        self.local_only = False  # the last decision had no fresh peer (fallback to local)
        self._had_peers = False
        self.channels: dict[str, Channel] = {}
        self._soon: asyncio.TimerHandle | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._stale: asyncio.TimerHandle | None = None

    def channel(self, name: str, on_value: OnValue, *, ttl: int | None = None,
                max_bytes: int = MAX_BYTES) -> Channel:  # fmt: skip
        """Share other data (RUM, commit figures) with the fleet (``gslb.fleet.shared``)."""
        if name in self.channels:
            raise ValueError(f"channel {name!r} already exists")
        channel = self.channels[name] = Channel(name, on_value, ttl=ttl, max_bytes=max_bytes)
        if self.engine is not None:
            self.engine.add_channel(channel)
        return channel

    async def start(self) -> None:
        """Start the engine (in the background) when there is one."""
        if self.engine is not None:
            await self.engine.start()

    async def stop(self) -> None:
        for timer in (self._expiry, self._stale, self._soon):
            if timer is not None:
                timer.cancel()
        if self.engine is not None:
            await self.engine.stop()

    # -- inputs ------------------------------------------------------------------------------

    def set_config(self, config: Config) -> None:
        """A (re)loaded configuration: re-map overrides onto its checks and values."""
        self.config = config
        self.policies = {
            key: Policy(spec.policy, spec.threshold) for key, spec in config.checks.items()
        }
        self.values = target_values(config)
        if self.engine is not None:
            self.engine.set_config_digest(config.digest)
        self.apply_overrides()

    def on_local(self, view: HealthView) -> None:
        """The prober published: recompute, and share the own verdicts with the fleet."""
        if self.engine is not None:
            self.engine.publish_observations(self.prober.probe_states())
        self.recompute()

    def observe(self, key: str, vantage: Vantage | None, node: str) -> None:
        """A peer's observation of ``key`` arrived (None: it was deleted or expired).

        A refresh that changes nothing only renews the vote's freshness; a change schedules
        one recompute for the whole burst (a snapshot replay brings thousands at once)."""
        if vantage is None:
            if self.peers.pop((key, node), None) is not None:
                self.schedule_recompute()
            return
        previous = self.peers.get((key, node))
        self.peers[(key, node)] = vantage
        if previous is None or (previous.up, previous.reason, previous.region) != (
            vantage.up, vantage.reason, vantage.region
        ) or self.clock() - previous.received > self.freshness:  # fmt: skip
            self.schedule_recompute()

    def schedule_recompute(self) -> None:
        if self._soon is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.recompute()
            return
        self._soon = loop.call_later(COALESCE, self._recompute_soon)

    def _recompute_soon(self) -> None:
        self._soon = None
        self.recompute()

    # -- overrides ---------------------------------------------------------------------------

    async def set_override(self, override: Override) -> Override | None:
        """Record an operator's override: through the engine in a fleet (compare-and-set,
        replicated), else in the book. Returns the override it replaced."""
        previous = self.book.items.get(override.id)
        if self.engine is not None and override.scope != "local":
            await self.engine.write_override(override)
        self.book.put(override)
        self.counters["override_changes"] += 1
        until = "" if override.expires_at is None else f" until {override.expires_at:.0f}"
        log.info("override %s: %s by %s (%s)%s", override.id, override.state,
                 override.by or "?", override.reason or "no reason given", until)  # fmt: skip
        self.apply_overrides()
        return previous

    async def clear_override(self, override_id: str, scope: str = "fleet") -> Override | None:
        if self.engine is not None and scope != "local":
            await self.engine.clear_override(override_id)
        removed = self.book.remove(override_id)
        if removed is not None:
            self.counters["override_changes"] += 1
            log.info("override %s cleared", override_id)
        self.apply_overrides()
        return removed

    async def audit(self) -> list[dict[str, Any]]:
        """Every override change the engine kept; OverrideRefused when there is none."""
        if self.engine is None:
            raise OverrideRefused(404, "standalone: no audit trail; the current overrides are in "
                                       "GET /fleet (and --state-dir/overrides.json)")  # fmt: skip
        return await self.engine.audit()

    def adopt_overrides(self, overrides: list[Override]) -> None:
        """The engine's replicated set (a snapshot or a change): it becomes the book.

        The engine wins whenever it is reachable (an override cleared while this node was
        down stays cleared); this node's local-only overrides stay. Expired ones are left
        out: every node expires them by itself, the engine keeps them as history."""
        now = self.wall()
        local = [o for o in self.book.items.values() if o.scope == "local"]
        merged = {o.id: o for o in overrides if not o.expired(now)}
        for override in local:
            merged.setdefault(override.id, override)
        if self.book.replace_all(merged.values()):
            self.counters["override_changes"] += 1
            self.apply_overrides()

    def apply_overrides(self) -> None:
        """Map the active overrides onto the configuration; push check overrides into the
        prober (its view carries them), keep value overrides for the view; arm expiry."""
        now = self.wall()
        for gone in self.book.expire(now):
            log.info("override %s expired", gone.id)
            self.counters["override_changes"] += 1
        if self.config is None:
            return
        self.resolved = resolve(self.book.active(now), self.config.checks, self.values)
        for key in self.config.checks:
            wanted = self.resolved.checks.get(key)
            state = wanted.state if wanted is not None else None
            if self.prober.override_of(key) != state:
                self.prober.set_override(key, state)  # publishes -> on_local -> recompute
        self._arm_expiry()
        self.recompute()

    def _arm_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        when = self.book.next_expiry()
        if when is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._expiry = loop.call_later(max(0.0, when - self.wall()) + 0.01, self.apply_overrides)

    # -- the decision ------------------------------------------------------------------------

    def vantages(self, now: float) -> dict[str, list[Vantage]]:
        """Fresh vantages per check: the own probe, always, then peers seen recently."""
        own_region = self.region or LOCAL_REGION
        result: dict[str, list[Vantage]] = {}
        for key, (up, reason, at) in self.prober.probe_states().items():
            result[key] = [Vantage(self.node or "self", own_region, up, reason, now, at)]
        for (key, node), vantage in self.peers.items():
            if node != self.node and now - vantage.received <= self.freshness:
                result.setdefault(key, []).append(vantage)
        return result

    def recompute(self) -> None:
        now = self.clock()
        local = self.prober.view
        targets = {key: o.state for key, o in self.resolved.targets.items()}
        vantages = self.vantages(now)
        has_peers = any(len(votes) > 1 or votes[0].node != (self.node or "self")
                        for votes in vantages.values())  # fmt: skip
        if self.engine is not None and not has_peers and self._had_peers:
            self.counters["fallbacks_to_local"] += 1
            log.warning("fleet: no fresh peer observation left, deciding from the local vantage")
        if has_peers and not self._had_peers:
            log.info(
                "fleet: deciding from %d node(s)' vantage points",
                1 + len({v.node for votes in vantages.values() for v in votes} - {self.node}),
            )
        self._had_peers = has_peers
        self.local_only = self.engine is not None and not has_peers
        self.version += 1
        if not has_peers and self.region is None:
            frozen = MappingProxyType(targets)
            view = local if not targets else HealthView(self.version, local.states, frozen)
        else:
            view = decide(local, vantages, self.policies, version=self.version,
                          targets=targets, region_of=self.region_of)  # fmt: skip
        self.view = view
        self._arm_staleness(now)
        self.publish(view)

    def _arm_staleness(self, now: float) -> None:
        """Recompute when the next peer observation goes stale, so it stops counting."""
        if self._stale is not None:
            self._stale.cancel()
            self._stale = None
        pending = [v.received + self.freshness for v in self.peers.values()
                   if v.received + self.freshness >= now]  # fmt: skip
        if not pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._stale = loop.call_later(min(pending) - now + 0.01, self.recompute)

    # -- visibility --------------------------------------------------------------------------

    def health_matrix(self) -> dict[str, Any]:
        """Check x region, each vantage's verdict, reason and age; with the targets each check
        vouches for (for status pages: ``GET /fleet`` -> ``matrix``)."""
        now = self.clock()
        return matrix(self.vantages(now), self.view, self.policies, now, self._targets_of())

    def explain(self, checks: list[str], region: str | None) -> dict[str, Any]:
        """For /explain: per check of the decision, the matrix row used (the client's region
        when it has votes, else the global verdict) with every vantage's result and age."""
        rows = self.health_matrix()["checks"]
        out: dict[str, Any] = {}
        for check in checks:
            row = rows.get(check)
            if row is None:
                continue
            cell = row["regions"].get(region) if region is not None else None
            out[check] = {
                "used": f"region {region}" if cell is not None else f"global ({row['policy']})",
                "verdict": cell if cell is not None else row["global"],
                "regions": row["regions"],
            }
        return out

    def _targets_of(self) -> dict[str, list[dict[str, str]]]:
        out: dict[str, list[dict[str, str]]] = {}
        if self.config is None:
            return out
        for zone in self.config.zones.values():
            for node in zone.nodes.values():
                for record in node.dynamic.values():
                    for pool in record.pools.values():
                        for target in pool.targets:
                            for check in (target.check, *(p.check for p in target.pops)):
                                if check is not None:
                                    out.setdefault(check, []).append(
                                        {
                                            "record": record.fqdn,
                                            "pool": pool.id,
                                            "value": target.value,
                                        }  # fmt: skip
                                    )
        return out

    def metrics(self) -> dict[str, Any]:
        """Numbers for /metrics (gslb.metrics.fleet_metrics)."""
        now = self.clock()
        verdicts: dict[tuple[str, str], float] = {}
        view = self.view
        for key, state in view.states.items():
            verdicts[(key, "global")] = 1.0 if state.effective == "up" else 0.0
        for region, regional in view.regional.items():
            for key, state in regional.states.items():
                verdicts[(key, region)] = 1.0 if state.effective == "up" else 0.0
        ages: dict[str, float] = {}
        for vantage in self.peers.values():
            age = max(0.0, now - vantage.received)
            ages[vantage.node] = min(age, ages.get(vantage.node, age))
        rejected: dict[tuple[str, str], int] = {}
        for name, count in self.counters.items():
            if name.startswith("rejected:"):
                _, kind, reason = name.split(":", 2)
                rejected[(kind, reason)] = count
        for name in ("observations_from_unknown_node", "other_config_digest"):
            if self.counters.get(name):
                rejected[("observation" if "observ" in name else "node", name)] = self.counters[
                    name
                ]
        engine = self.engine
        nodes = 1 + len(engine.status()["nodes"].keys() - {self.node}) if engine else 1
        return {
            "matching_nothing": len(self.resolved.unmatched),
            "engine": None if engine is None else engine.connected,
            "nodes": nodes,
            "verdicts": verdicts,
            "ages": ages,
            "counters": dict(self.counters),
            "rejected": rejected,
        }

    def overrides_json(self) -> list[dict[str, Any]]:
        now = self.wall()
        unmatched = {o.id for o in self.resolved.unmatched}
        return [
            o.describe(now) | {"matches_nothing": o.id in unmatched}
            for o in sorted(self.book.active(now), key=lambda o: o.id)
        ]

    def status(self) -> dict[str, Any]:
        """``GET /fleet``: mode, this node, the engine, nodes, overrides and the matrix."""
        engine = self.engine.status() if self.engine is not None else None
        degraded = engine is not None and not engine.get("connected", False)
        local_overrides = [o.id for o in self.book.items.values() if o.scope == "local"]
        return {
            "mode": "fleet" if self.engine is not None else "standalone",
            "state": "degraded" if degraded else "ok",
            "node": self.node or None,
            "region": self.region,
            "freshness_seconds": self.freshness,
            "deciding_from_local_only": self.local_only,
            "engine": engine,
            "local_only_overrides": local_overrides,
            "overrides": self.overrides_json(),
            "counters": dict(self.counters),
            "matrix": self.health_matrix(),
        }
