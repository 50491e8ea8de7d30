"""The immutable snapshot the controller hands the answer path: weights plus what explain shows.

It travels inside the ``HealthView`` (``steering``, keyed by ``(fqdn, rtype)``), so it reaches
worker processes and clears decision and replay caches exactly like a health change, and a
query never waits for the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WEIGHT_SCALE = 10000  # a share of 1.0 -> weight 10000; the smallest non-zero weight is 1


@dataclass(frozen=True, slots=True)
class Steering:
    """One record's answer weights from the commit controller, and its state for explain."""

    weights: tuple[tuple[str, int], ...]  # (target value, weight) for every target it knows
    mode: str  # commit | delivered
    origin: str  # where delivered volume came from: feed | estimate | mixed | none
    tick: int  # controller tick number (explain: is it moving?)
    state: tuple[tuple[str, Any], ...] = ()  # per target: target share, delivered, projection

    def weight_of(self, target: str) -> int | None:
        for value, weight in self.weights:
            if value == target:
                return weight
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "origin": self.origin,
            "estimate": self.origin != "feed",
            "tick": self.tick,
            "weights": dict(self.weights),
            "targets": dict(self.state),
        }


def record_key(fqdn: str, rtype: int) -> tuple[str, int]:
    return (fqdn, rtype)
