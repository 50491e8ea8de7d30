"""The health view: an immutable snapshot of every check's state, read by the policy chain.

The prober publishes a new ``HealthView`` on every change (a state transition, an override, a
performance update); the answer path only ever reads the current one and never waits. ``version``
lets the policy layer cache decisions per snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

UP, DOWN, DRAINED = "up", "down", "drained"


@dataclass(frozen=True, slots=True)
class CheckState:
    """What the prober (or an operator) says about one check."""

    up: bool
    reason: str = ""  # "status 503", "timeout after 2.0 s", "forced down by operator", ...
    override: str | None = None  # "up" | "down" | "drained" | None (obey the probes)
    latency: float | None = None  # moving average, seconds (probe or external feed)
    success_ratio: float | None = None  # moving average of successes, 0..1

    @property
    def effective(self) -> str:
        """``up``, ``down`` or ``drained``: the override wins over the probes."""
        if self.override is not None:
            return self.override
        return UP if self.up else DOWN


@dataclass(frozen=True, slots=True)
class HealthView:
    version: int = 0
    states: Mapping[str, CheckState] = field(default_factory=lambda: MappingProxyType({}))

    def state(self, check: str | None) -> CheckState | None:
        return None if check is None else self.states.get(check)

    def effective(self, check: str | None) -> str:
        """A value without a check, or a check not probed yet, counts as up (``obey``)."""
        state = self.state(check)
        return UP if state is None else state.effective


EMPTY_VIEW = HealthView()
