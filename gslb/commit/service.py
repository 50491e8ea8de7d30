"""The commit service: owns every record's controller, ticks them off the DNS path, publishes.

One asyncio task (owned by the app, cancelled on stop) wakes every second, reads the answer
counters of every DNS process (the estimate's input), ticks each record whose ``interval`` has
passed, publishes one immutable ``Steering`` mapping for all records, and writes the state to
``<state-dir>/commit.json`` so a restart mid-period resumes with the same weights and ledger.
A usage feed post (``ingest``, or a fleet peer's intervals) ticks the records it touched at
once: new measurements, one bounded step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from gslb.commit.ledger import REASONS
from gslb.commit.record import RecordController
from gslb.commit.view import Steering
from gslb.policy.weighted import NOT_A_TARGET

log = logging.getLogger("gslb.commit")

STATE_FILE = "commit.json"
CHANNEL = "commit"  # fleet channel: each node's accepted usage intervals, replayed by peers
SHARED_SECONDS = 6 * 3600  # intervals shared per (record, target): the last six hours
SHARED_MAX = 500
SHARED_SLOTS = 72  # estimate slots shared per (record, target): the last six hours
STATE_VERSION = 1
TICK_TIMEOUT = 10.0  # a tick that takes longer is abandoned (it never should)
Key = tuple[str, int]
Publish = Callable[[Mapping[Key, Steering]], None]
StatsSource = Callable[[], Awaitable[dict]]
TYPE_NAMES = {1: "A", 28: "AAAA", 5: "CNAME"}


def ttl_weight(controller: RecordController, degraded: bool) -> float:
    """An answer stands for the traffic of one cache lifetime: a fallback answer with a
    shorter ``degraded_ttl`` stands for proportionally less."""
    if degraded and controller.degraded_ttl is not None:
        return max(controller.degraded_ttl, 1) / controller.ttl
    return 1.0


def key_text(key: Key) -> str:
    return f"{key[0]}/{TYPE_NAMES.get(key[1], key[1])}"


class CommitService:
    def __init__(
        self,
        publish: Publish,
        stats: StatsSource | None = None,
        state_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publish = publish
        self.stats = stats
        self.path = None if state_dir is None else Path(state_dir) / STATE_FILE
        self.clock = clock
        self.records: dict[Key, RecordController] = {}
        self.feed: Counter[str] = Counter()  # feed item outcome -> count
        self.problems: Counter[str] = Counter()  # state file and tick problems -> count
        self.last_answers: dict[tuple[str, str, bool], int] = {}
        self.last_users: dict[tuple[str, str], float] = {}
        self.task: asyncio.Task | None = None
        self.restored = False
        self.channel: Any = None  # gslb.fleet.shared.Channel once attached
        self.published: dict[Key, tuple] = {}  # what the answer path has: weights, origin
        self.peer_feed: Counter[str] = Counter()  # peers' intervals by outcome
        self.peer_estimates: Counter[str] = Counter()  # peers' estimates by outcome
        self.peer_states: Counter[str] = Counter()  # peers' controller states by outcome

    # -- configuration -------------------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Controllers for every record with contracts; kept across reloads by (fqdn, type)."""
        wanted = {}
        for zone in config.zones.values():
            for node in zone.nodes.values():
                for record in node.dynamic.values():
                    if record.commit is not None:
                        wanted[(record.fqdn, record.rtype)] = record
        for key in list(self.records):
            if key not in wanted:
                del self.records[key]
        for key, record in wanted.items():
            if key in self.records:
                self.records[key].configure(record)
            else:
                self.records[key] = RecordController(record)
        if not self.restored:
            self.restored = True
            self.load()
        self.publish(self.steering())

    def publish_if_moved(self) -> None:
        """Publish only when some record's weights (or their origin) changed: a new snapshot
        empties every decision and replay cache, and a converged controller stands still.
        ``/commit`` always has the latest figures; explain's are as of the last move."""
        current = self.steering()
        signature = {k: (s.weights, s.mode, s.origin) for k, s in current.items()}
        if signature != self.published:
            self.published = signature
            self.publish(current)

    def steering(self) -> dict[Key, Steering]:
        return {k: c.steering for k, c in self.records.items() if c.steering is not None}

    # -- the task ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.task is None and self.records is not None:
            self.task = asyncio.create_task(self.run(), name="gslb-commit")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.task, timeout=5)
            self.task = None
        self.save()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.wait_for(self.tick_due(), timeout=TICK_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop pacing for good; counted and logged
                self.problems["tick-error"] += 1
                log.exception("commit: tick failed")

    async def tick_due(self, force: bool = False) -> list[Key]:
        """Read answer counters, then tick every record whose interval has passed."""
        if not self.records:
            return []
        now = self.clock()
        if self.stats is not None:
            self.add_answers(await self.stats(), now)
        return self.tick(now, self.records, force)

    def tick(self, now: float, keys: Iterable[Key], force: bool = False) -> list[Key]:
        ticked = []
        for key in keys:
            controller = self.records[key]
            last = controller.last_tick
            if force or last is None or now - last >= controller.spec.interval or now < last:
                controller.tick(now)
                ticked.append(key)
        if ticked:
            self.publish_if_moved()
            self.save()
            for key in ticked:
                self.share_state(key)
        return ticked

    # -- inputs --------------------------------------------------------------------------------

    def add_answers(self, stats: dict, now: float) -> None:
        """Answers per (record, target) since the last read, as estimate units: TTL-weighted,
        then re-weighted by the users behind them (``gslb.commit.estimate``). A counter that
        went down (a worker restarted) counts from zero again."""
        totals: Counter[tuple[str, str, bool]] = Counter()
        for (record, target, reason), count in stats.get("answers", {}).items():
            if reason not in NOT_A_TARGET:
                totals[(record, target, reason == "fallback")] += count
        users: Counter[tuple[str, str]] = Counter()
        for (record, target, _reason), value in stats.get("demand", {}).items():
            users[(record, target)] += value
        read_answers: dict[str, dict[tuple[str, bool], float]] = {}
        for (record, target, degraded), count in totals.items():
            delta = self.delta(self.last_answers, (record, target, degraded), count)
            read_answers.setdefault(record, {})[(target, degraded)] = delta
        read_users: dict[str, dict[str, float]] = {}
        for (record, target), value in users.items():
            read_users.setdefault(record, {})[target] = self.delta(
                self.last_users, (record, target), value
            )
        for controller in self.records.values():
            answers: Counter[str] = Counter()
            for (target, degraded), delta in read_answers.get(controller.fqdn, {}).items():
                if target in controller.static:
                    answers[target] += delta * ttl_weight(controller, degraded)
            users_read = read_users.get(controller.fqdn, {})
            units = controller.demand.units(answers, users_read, now)
            units = {t: v for t, v in units.items() if v > 0}
            if units:
                controller.add_answers(now, units)

    @staticmethod
    def delta(last: dict, key: tuple, total: float) -> float:
        before = last.get(key, 0)
        last[key] = total
        return total - before if total >= before else total

    # -- the fleet -----------------------------------------------------------------------------

    def attach(self, fleet: Any) -> None:
        """Share accepted usage with the fleet: a feed posted to any node reaches every node's
        ledger (replaying an interval twice is a ``duplicate``, so sharing is idempotent), and
        a node that joins or restarts gets the last hours from its peers' keys."""
        self.channel = fleet.channel(CHANNEL, self.on_peer)

    def share(self, key: Key, target: str, now: float) -> None:
        if self.channel is None:
            return
        ledger = self.records[key].ledger.targets.get(target)
        if ledger is None:
            return
        recent = [list(i) for i in ledger.intervals if i[1] >= now - SHARED_SECONDS]
        data = {"record": key[0], "type": key[1], "target": target,
                "intervals": recent[-SHARED_MAX:]}  # fmt: skip
        self.channel.publish(f"{key_text(key)}|{target}", data)

    def share_state(self, key: Key) -> None:
        """Share this node's own estimate of each target (a fleet's nodes each count only
        the answers they gave, and the commit is for all of them) and its controller's state
        (what a peer without a state of its own starts from)."""
        if self.channel is None:
            return
        controller = self.records[key]
        state = {"record": key[0], "type": key[1], "state": controller.fleet_state()}
        self.channel.publish(f"{key_text(key)}|state", state)
        for target in controller.static:
            mine = controller.ledger.own_estimate(target, SHARED_SLOTS)
            if mine is not None:
                data = {"record": key[0], "type": key[1], "target": target, "estimate": mine}
                self.channel.publish(f"{key_text(key)}|{target}|estimate", data)

    def on_peer(self, node: str, name: str, data: Any) -> None:
        """A peer's accepted intervals (each accepted here too, or a duplicate), or its own
        estimate (replacing what it said before)."""
        if data is None:
            return  # withdrawn or expired: what it delivered stays delivered
        if isinstance(data, dict) and "estimate" in data:
            self.on_peer_estimate(node, data)
            return
        if isinstance(data, dict) and "state" in data:
            self.on_peer_state(data)
            return
        try:
            key = (str(data["record"]), int(data["type"]))
            target = str(data["target"])
            intervals = [(float(a), float(b), float(c)) for a, b, c in data["intervals"]]
        except (KeyError, TypeError, ValueError, OverflowError):
            self.peer_feed["malformed"] += 1
            return
        controller = self.records.get(key)
        if controller is None or target not in controller.static:
            self.peer_feed["unknown-target"] += 1
            return
        now = self.clock()
        fresh = 0
        for start, end, amount in intervals:
            outcome = controller.add_feed(target, start, end, amount, now)
            self.peer_feed[outcome] += 1
            fresh += outcome == "accepted"
        if fresh:
            self.tick(now, [key], force=True)

    def on_peer_estimate(self, node: str, data: dict[str, Any]) -> None:
        try:
            key = (str(data["record"]), int(data["type"]))
            controller = self.records.get(key)
            if controller is None:
                outcome = "unknown-target"
            else:
                outcome = controller.ledger.set_peer_estimate(
                    str(data["target"]), node, data["estimate"]
                )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            outcome = "malformed"
        self.peer_estimates[outcome] += 1

    def on_peer_state(self, data: dict[str, Any]) -> None:
        """A peer's controller state: adopted by a controller that has none of its own (a
        node started without ``--state-dir`` or with an empty one), so it answers with the
        fleet's weights instead of starting over from the static ones."""
        try:
            controller = self.records.get((str(data["record"]), int(data["type"])))
            outcome = "unknown-record"
            if controller is not None:
                outcome = controller.adopt(data["state"], self.clock())
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            outcome = "malformed"
        self.peer_states[outcome] += 1
        if outcome == "adopted":
            log.info("commit: %s starts from a fleet peer's weights and profile",
                     key_text(controller.key))  # type: ignore[union-attr]  # fmt: skip
            self.publish_if_moved()

    def ingest(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Usage feed items (already shape-checked): each accepted or refused with a reason.
        Records whose data advanced tick at once: new measurements, one bounded step."""
        now = self.clock()
        results, touched = [], set()
        for index, item in enumerate(items):
            outcome, key = self.ingest_one(item, now)
            self.feed[outcome] += 1
            if outcome == "accepted":
                touched.add(key)
                self.share(key, item["target"], now)
            elif outcome not in ("duplicate",):
                log.warning(
                    "commit: usage item %d for %s refused: %s", index, item.get("target"), outcome
                )
            results.append({"index": index, "target": item.get("target"), "result": outcome})
        ticked = self.tick(now, sorted(touched), force=True) if touched else []
        for result in results:
            result["ticked"] = [key_text(k) for k in ticked]
        return results

    def ingest_one(self, item: dict[str, Any], now: float) -> tuple[str, Key | None]:
        target = item["target"]
        record = item.get("record")
        owners = [k for k, c in self.records.items() if target in c.static
                  and (record is None or k[0] == record)]  # fmt: skip
        if not owners:
            return "unknown-target", None
        if len(owners) > 1 and len({k[0] for k in owners}) > 1:
            return "ambiguous-target", None
        key = owners[0]
        return self.records[key].add_feed(
            target, item["start"], item["end"], item["bytes"], now
        ), key

    # -- state ---------------------------------------------------------------------------------

    def save(self) -> None:
        if self.path is None or not self.records:
            return
        from gslb.fleet.statefile import write_atomic

        data = {"version": STATE_VERSION, "saved_at": self.clock(),
                "records": {key_text(k): c.to_json() for k, c in self.records.items()}}  # fmt: skip
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            self.problems["state-write"] += 1
            log.error("commit: cannot write %s: %s", self.path, exc)

    def load(self) -> None:
        """Resume from the state file; an unusable file is reported and ignored."""
        if self.path is None:
            return
        from gslb.fleet.statefile import StateError, read_json

        try:
            data = read_json(self.path)
        except StateError as exc:
            self.problems["state-unreadable"] += 1
            log.warning("commit: state not restored: %s", exc)
            return
        if data is None:
            return
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            self.problems["state-unreadable"] += 1
            log.warning("commit: state not restored: %s: unknown format", self.path)
            return
        saved = data.get("records", {})
        for key, controller in self.records.items():
            if key_text(key) in saved:
                try:
                    controller.restore(saved[key_text(key)])
                except (KeyError, TypeError, ValueError) as exc:
                    self.problems["state-unreadable"] += 1
                    log.warning("commit: state of %s not restored: %s", key_text(key), exc)
        log.info("commit: state of %d record(s) restored from %s", len(saved), self.path)

    # -- reporting -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "records": {
                key_text(k): {
                    "mode": c.spec.mode,
                    "ticks": c.ticks,
                    "last_tick": c.last_tick,
                    "origin": c.steering.origin if c.steering else "none",
                    "estimate": c.steering is None or c.steering.origin != "feed",
                    "calibration_bytes_per_answer": c.ledger.calibration,
                    "targets": c.state,
                    "events": dict(c.events),
                }
                for k, c in sorted(self.records.items())
            },
            "feed": {reason: self.feed.get(reason, 0) for reason in REASONS},
            "fleet_feed": dict(self.peer_feed),
            "fleet_estimates": dict(self.peer_estimates),
            "fleet_states": dict(self.peer_states),
            "problems": dict(self.problems),
        }
