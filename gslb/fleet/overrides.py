"""Operator overrides: keyed by what the operator means, persisted, with who, why and until when.

An override names either

- a **check by name**: its key without the ``#digest`` of its options
  (``http://192.0.2.1:80/health``), so editing the check's timeout or thresholds keeps the
  override; a full key pins one check when two share a name; or
- a **target value** as written in a record's pools (``example.cdn-b.net.``, ``192.0.2.7``),
  in every record and pool, or only in one record (and one pool of it).

It forces ``up``, ``down`` or ``drained`` and carries ``by``, ``reason``, ``at`` and an optional
``expires_at``. The ``OverrideBook`` keeps them, writes them to ``<state-dir>/overrides.json``
on every change (atomically), and forgets them when they expire. In a fleet the engine
replicates them and the book is each node's copy, so a node that starts with the engine
down still obeys the last overrides it knew.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gslb.fleet.statefile import StateError, read_json, write_atomic

if TYPE_CHECKING:
    from gslb.config.load import Config

log = logging.getLogger(__name__)

STATES = ("up", "down", "drained")
ACTIONS = {"up": "up", "down": "down", "drain": "drained", "obey": None}
KINDS = ("check", "target")
SCOPES = ("fleet", "local")
MAX_NAME = 512
MAX_TEXT = 512
FILE_NAME = "overrides.json"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Override:
    """One operator decision; immutable, replaced as a whole when changed."""

    kind: str  # check | target
    name: str  # the check's name (key without #digest, or a full key), or the target value
    state: str  # up | down | drained
    reason: str = ""
    by: str = ""
    at: float = 0.0  # wall clock when set
    expires_at: float | None = None  # wall clock; None = until cleared
    record: str | None = None  # target overrides only: this record (fqdn with dot) ...
    pool: str | None = None  # ... and this pool of it
    scope: str = "fleet"  # local: written while the engine had no quorum (flagged in /fleet)

    @property
    def id(self) -> str:
        """What two overrides share when one replaces the other."""
        if self.kind == "check":
            return f"check:{self.name}"
        return f"target:{self.record or '*'}:{self.pool or '*'}:{self.name}"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, now: float) -> dict[str, Any]:
        """JSON for /fleet, /status and ``gslb ctl overrides``."""
        left = None if self.expires_at is None else max(0.0, self.expires_at - now)
        return {"id": self.id, **self.to_dict(), "expires_in": left}


def parse_override(data: Any) -> Override:
    """An Override from JSON (the state file, the engine); ValueError naming every problem."""
    if not isinstance(data, Mapping):
        raise ValueError("override must be a JSON object")
    problems: list[str] = []
    known = set(Override.__dataclass_fields__)
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        problems.append(f"unknown field(s) {', '.join(unknown)}")
    kind, name, state = data.get("kind"), data.get("name"), data.get("state")
    if kind not in KINDS:
        problems.append(f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        problems.append(f"name must be a string of 1-{MAX_NAME} characters")
    if state not in STATES:
        problems.append(f"state must be one of {', '.join(STATES)}")
    for text in ("reason", "by"):
        if not isinstance(data.get(text, ""), str) or len(data.get(text, "")) > MAX_TEXT:
            problems.append(f"{text} must be a string of at most {MAX_TEXT} characters")
    for number in ("at", "expires_at"):
        value = data.get(number, 0.0)
        if value is not None and not _finite(value):
            problems.append(f"{number} must be a number (seconds since the epoch)")
    for scoped in ("record", "pool"):
        value = data.get(scoped)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
            problems.append(f"{scoped} must be a string")
    if kind == "check" and (data.get("record") or data.get("pool")):
        problems.append("record and pool apply to target overrides only")
    if data.get("scope", "fleet") not in SCOPES:
        problems.append(f"scope must be one of {', '.join(SCOPES)}")
    if problems:
        raise ValueError("; ".join(problems))
    return Override(**{k: data[k] for k in known if k in data})


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_duration(text: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"``, ``"1d"``; ValueError otherwise."""
    if _finite(text) and text > 0:
        return float(text)
    match = _DURATION.match(str(text)) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90, 90s, 30m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


class OverrideBook:
    """Every active override by id, mirrored to ``path`` (None: memory only)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.items: dict[str, Override] = {}
        self.rejected = 0  # entries of the state file that did not parse

    @classmethod
    def in_dir(cls, state_dir: Path | None) -> OverrideBook:
        return cls(None if state_dir is None else Path(state_dir) / FILE_NAME)

    def load(self, now: float) -> list[str]:
        """Read the state file; returns the problems (a bad entry is skipped, not fatal)."""
        if self.path is None:
            return []
        try:
            data = read_json(self.path)
        except StateError as exc:
            return [f"{exc}; starting without the overrides it held"]
        if data is None:
            return []
        entries = data.get("overrides") if isinstance(data, Mapping) else None
        if not isinstance(entries, list):
            return [f"{self.path}: expected {{'overrides': [...]}}; starting without it"]
        problems = []
        for number, entry in enumerate(entries, 1):
            try:
                override = parse_override(entry)
            except ValueError as exc:
                self.rejected += 1
                problems.append(f"{self.path}: override {number}: {exc}")
                continue
            if not override.expired(now):
                self.items[override.id] = override
        return problems

    def save(self) -> None:
        if self.path is None:
            return
        entries = [o.to_dict() for o in sorted(self.items.values(), key=lambda o: o.id)]
        write_atomic(self.path, {"version": 1, "overrides": entries})

    def put(self, override: Override) -> Override | None:
        """Add or replace; returns the override it replaced."""
        previous = self.items.get(override.id)
        self.items[override.id] = override
        self.save()
        return previous

    def remove(self, override_id: str) -> Override | None:
        removed = self.items.pop(override_id, None)
        if removed is not None:
            self.save()
        return removed

    def replace_all(self, overrides: Iterable[Override]) -> bool:
        """Adopt a whole replicated set (the engine's); True when anything changed."""
        fresh = {o.id: o for o in overrides}
        if fresh == self.items:
            return False
        self.items = fresh
        self.save()
        return True

    def expire(self, now: float) -> list[Override]:
        """Forget every override past its ``expires_at``; returns them."""
        gone = [o for o in self.items.values() if o.expired(now)]
        for override in gone:
            del self.items[override.id]
        if gone:
            self.save()
        return gone

    def next_expiry(self) -> float | None:
        times = [o.expires_at for o in self.items.values() if o.expires_at is not None]
        return min(times, default=None)

    def active(self, now: float) -> list[Override]:
        return [o for o in self.items.values() if not o.expired(now)]


@dataclass(frozen=True, slots=True)
class Resolved:
    """Overrides mapped onto one configuration: what the health view needs."""

    checks: Mapping[str, Override] = field(default_factory=dict)  # check key -> override
    # (record fqdn | "", pool | "", value) -> override; "" matches any record or pool
    targets: Mapping[tuple[str, str, str], Override] = field(default_factory=dict)
    unmatched: tuple[Override, ...] = ()  # name nothing in this configuration


def check_name(key: str) -> str:
    """A check's name: its key without the ``#digest`` of its options."""
    return key.partition("#")[0]


def resolve(overrides: Iterable[Override], check_keys: Iterable[str], values: Mapping) -> Resolved:
    """Map overrides onto the check keys and target values of one configuration.

    ``values`` maps each target value to the (record fqdn, pool) pairs it appears in
    (``target_values``). A check override applies to every key with that name (or that
    exact key when pinned); a more specific target override wins over a broader one.
    """
    keys = list(check_keys)
    checks: dict[str, Override] = {}
    targets: dict[tuple[str, str, str], Override] = {}
    unmatched: list[Override] = []
    for override in overrides:
        if override.kind == "check":
            hits = [k for k in keys if k == override.name or check_name(k) == override.name]
            for key in hits:
                checks[key] = override
        else:
            places = values.get(override.name, ())
            hits = [
                place
                for place in places
                if override.record in (None, place[0]) and override.pool in (None, place[1])
            ]
            if hits:
                targets[(override.record or "", override.pool or "", override.name)] = override
        if not hits:
            unmatched.append(override)
    return Resolved(checks, targets, tuple(unmatched))


def target_values(config: Config) -> dict[str, list[tuple[str, str]]]:
    """Every pool value of every dynamic record: value -> [(record fqdn, pool id)]."""
    places: dict[str, list[tuple[str, str]]] = {}
    for zone in config.zones.values():
        for node in zone.nodes.values():
            for record in node.dynamic.values():
                for pool in record.pools.values():
                    for target in pool.targets:
                        places.setdefault(target.value, []).append((record.fqdn, pool.id))
    return places


def with_scope(override: Override, scope: str) -> Override:
    return replace(override, scope=scope)
