"""Channels: other data shared through the fleet engine the same way as health votes.

RUM aggregates, commit/usage figures or anything else a node measures and its peers should
know join as a named channel instead of a home-made protocol::

    channel = app.fleet.channel("rum", on_value, ttl=300)
    channel.publish("content.example.com./AS-JP", {"n": 120, "hist": [...]})

    def on_value(node: str, key: str, data: Any | None) -> None:
        ...  # a peer's value arrived (None: withdrawn, or expired with its node)

Each node writes only its own keys (``<node>.<digest of key>`` in bucket ``gslb_<name>``),
re-published after every reconnect and, with ``ttl``, re-written every third of it so they
expire when the node stops. Values travel in a size-limited JSON envelope checked by the
engine (node, key, size); ``data`` itself is the owner's to validate. Standalone, ``publish``
keeps the value locally and no peer ever calls back. Callbacks run on the event loop: keep
them short.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

CHANNEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
RESERVED = ("obs", "node", "ovr")
MAX_BYTES = 64 * 1024

OnValue = Callable[[str, str, Any], None]


class Channel:
    """This node's side of one shared channel."""

    def __init__(self, name: str, on_value: OnValue, *, ttl: int | None = None,
                 max_bytes: int = MAX_BYTES) -> None:  # fmt: skip
        if not CHANNEL_NAME.match(name) or name in RESERVED:
            raise ValueError(f"invalid channel name {name!r} (a-z, 0-9, _; not {RESERVED})")
        if ttl is not None and ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        self.name = name
        self.bucket = f"gslb_{name}"
        self.on_value = on_value
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.own: dict[str, Any] = {}  # key -> data this node publishes
        self.dirty: set[str] = set()
        self.withdrawn: set[str] = set()
        self.refreshed = 0.0  # loop time of the last TTL refresh (engine)
        self.wake: Callable[[], None] = lambda: None  # set by the engine

    def publish(self, key: str, data: Any) -> None:
        """Share ``data`` (JSON-able) under ``key``; written soon, never awaited here."""
        self.own[key] = data
        self.dirty.add(key)
        self.withdrawn.discard(key)
        self.wake()

    def withdraw(self, key: str) -> None:
        if self.own.pop(key, None) is not None:
            self.dirty.discard(key)
            self.withdrawn.add(key)
            self.wake()
