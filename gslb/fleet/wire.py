"""What the fleet stores in the engine: keys and JSON values, and their validation.

Everything read from the engine is untrusted input (another version, a bug, a hand-made
``nats kv put``): each value is size-limited, parsed, type-checked and matched against its
key, and a bad one is rejected with a short reason (counted by the caller), never applied.

Keys use only ``[A-Za-z0-9_-]`` tokens joined by ``.``: node names are validated, and a
check key (``http://192.0.2.1:80/health#1a2b3c4d``) or an override id is carried as a digest
token, the full text being inside the value.

| bucket | key | value |
|---|---|---|
| observations | ``<node>.<digest of check key>`` | ``{v, node, region, check, up, reason, at}`` |
| nodes | ``<node>`` | ``{v, node, region, version, digest, started, at, refresh}`` |
| overrides | ``o.<digest of override id>`` | ``Override.to_dict()`` |
| ``gslb_<channel>`` | ``<node>.<digest of key>`` | ``{v, node, key, data, at}`` (``SharedValue``) |

Other data (RUM aggregates, commit data) joins as a named channel (``FleetNode.channel``):
one writer per key, a digest token for the free-text key, a size-limited JSON envelope whose
``data`` the channel's owner validates.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from gslb.fleet.config import NODE_NAME
from gslb.fleet.overrides import Override, parse_override
from gslb.fleet.regions import REGION_NAME

FORMAT = 1
MAX_VALUE = 4096  # bytes; an observation is ~200
MAX_REASON = 256
MAX_CHECK = 1024


class Rejected(ValueError):
    """A value from the engine that must not be applied; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def token(text: str) -> str:
    """A key token standing for free text (a check key, an override id)."""
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def observation_key(node: str, check: str) -> str:
    return f"{node}.{token(check)}"


def override_key(override_id: str) -> str:
    return f"o.{token(override_id)}"


@dataclass(frozen=True, slots=True)
class Observation:
    node: str
    region: str
    check: str
    up: bool
    reason: str
    at: float  # the sender's wall clock (shown only: freshness uses receive time)

    def encode(self) -> bytes:
        return _dump({"v": FORMAT, "node": self.node, "region": self.region,
                      "check": self.check, "up": self.up, "reason": self.reason[:MAX_REASON],
                      "at": self.at})  # fmt: skip


@dataclass(frozen=True, slots=True)
class Heartbeat:
    node: str
    region: str
    version: str
    digest: str  # the config digest this node serves
    started: float
    at: float
    refresh: float

    def encode(self) -> bytes:
        return _dump({"v": FORMAT, "node": self.node, "region": self.region,
                      "version": self.version, "digest": self.digest, "started": self.started,
                      "at": self.at, "refresh": self.refresh})  # fmt: skip


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _load(value: bytes | None, limit: int = MAX_VALUE) -> dict[str, Any]:
    if value is None or len(value) == 0:
        raise Rejected("malformed", "empty value")
    if len(value) > limit:
        raise Rejected("oversized", f"{len(value)} bytes > {limit}")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected("malformed", str(exc)) from None
    if not isinstance(data, dict):
        raise Rejected("malformed", "not a JSON object")
    if data.get("v") != FORMAT:
        raise Rejected("malformed", f"format {data.get('v')!r}, expected {FORMAT}")
    return data


def _text(data: dict[str, Any], name: str, limit: int) -> str:
    value = data.get(name)
    if not isinstance(value, str) or len(value) > limit:
        raise Rejected("malformed", f"{name} must be text of at most {limit} characters")
    return value


def _number(data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Rejected("malformed", f"{name} must be a number")
    return float(value)


def _node(data: dict[str, Any]) -> tuple[str, str]:
    node, region = _text(data, "node", 64), _text(data, "region", 64)
    if not NODE_NAME.match(node):
        raise Rejected("malformed", f"invalid node name {node!r}")
    if not REGION_NAME.match(region):
        raise Rejected("malformed", f"invalid region {region!r}")
    return node, region


def parse_observation(key: str, value: bytes | None) -> Observation:
    data = _load(value)
    node, region = _node(data)
    check = _text(data, "check", MAX_CHECK)
    if not isinstance(data.get("up"), bool):
        raise Rejected("malformed", "up must be true or false")
    if key != observation_key(node, check):
        raise Rejected("key_mismatch", f"key {key} does not belong to node {node} / {check}")
    reason = _text(data, "reason", MAX_REASON)
    return Observation(node, region, check, data["up"], reason, _number(data, "at"))


def parse_heartbeat(key: str, value: bytes | None) -> Heartbeat:
    data = _load(value)
    node, region = _node(data)
    if key != node:
        raise Rejected("key_mismatch", f"heartbeat of {node} under key {key}")
    return Heartbeat(node, region, _text(data, "version", 64), _text(data, "digest", 128),
                     _number(data, "started"), _number(data, "at"),
                     _number(data, "refresh"))  # fmt: skip


def parse_override_value(key: str, value: bytes | None) -> Override:
    if value is None or len(value) > MAX_VALUE:
        raise Rejected("oversized" if value else "malformed", "override value")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected("malformed", str(exc)) from None
    try:
        override = parse_override(data)
    except ValueError as exc:
        raise Rejected("malformed", str(exc)) from None
    if key != override_key(override.id):
        raise Rejected("key_mismatch", f"override {override.id} under key {key}")
    return override


def encode_override(override: Override) -> bytes:
    return _dump(override.to_dict())


MAX_KEY = 256


@dataclass(frozen=True, slots=True)
class SharedValue:
    """One node's value under one key of a channel (RUM aggregates, commit data, …)."""

    node: str
    key: str
    data: Any
    at: float

    def encode(self) -> bytes:
        return _dump({"v": FORMAT, "node": self.node, "key": self.key, "data": self.data,
                      "at": self.at})  # fmt: skip


def shared_key(node: str, key: str) -> str:
    return f"{node}.{token(key)}"


def parse_shared(key: str, value: bytes | None, max_bytes: int) -> SharedValue:
    data = _load(value, max_bytes)
    node = _text(data, "node", 64)
    if not NODE_NAME.match(node):
        raise Rejected("malformed", f"invalid node name {node!r}")
    name = _text(data, "key", MAX_KEY)
    if key != shared_key(node, name):
        raise Rejected("key_mismatch", f"key {key} does not belong to node {node} / {name}")
    if "data" not in data:
        raise Rejected("malformed", "no data")
    return SharedValue(node, name, data["data"], _number(data, "at"))
