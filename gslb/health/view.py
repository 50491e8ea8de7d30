"""The health view: an immutable snapshot of every check's state, read by the policy chain.

The prober publishes a new ``HealthView`` on every change (a state transition, an override, a
performance update); the answer path only ever reads the current one and never waits. ``version``
lets the policy layer cache decisions per snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol

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


class RegionOf(Protocol):
    """Maps a client's location (``gslb.geo.Location`` or None) to a fleet region name.

    It reads the location's data (continent, country, subdivision, coordinates), never its
    database network: the compiled cold path gives a whole class of addresses with equal
    data one region (``gslb.policy.compile.place_data``)."""

    def __call__(self, location: Any) -> str | None: ...


TargetKey = tuple[str, str, str]  # (record fqdn | "", pool | "", value); "" matches any


def _empty() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HealthView:
    """``states`` is the global verdict per check. In a fleet, ``regional`` holds one view
    per region that has fresh vantage points (decided by that region's majority), ``varies``
    the checks whose verdict differs between regions (their answers depend on where the
    client is), and ``region_of`` maps a client location to its region. ``targets`` are
    operator overrides of pool values (``gslb.fleet.overrides``)."""

    version: int = 0
    states: Mapping[str, CheckState] = field(default_factory=_empty)
    targets: Mapping[TargetKey, str] = field(default_factory=_empty)
    regional: Mapping[str, HealthView] = field(default_factory=_empty)
    varies: frozenset[str] = frozenset()
    region_of: RegionOf | None = None
    # Real-user measurement decisions (gslb.rum.snapshot.Snapshot), attached by the app to
    # every view it publishes: a new snapshot reaches workers and clears caches like health.
    rum: Any = None
    # Commit controller weights per record ((fqdn, rtype) -> gslb.commit.view.Steering),
    # attached the same way (``with_steering``).
    steering: Mapping[tuple[str, int], Any] = field(default_factory=_empty)

    def state(self, check: str | None) -> CheckState | None:
        return None if check is None else self.states.get(check)

    def target_override(self, record: str, pool: str | None, value: str) -> str | None:
        """The operator's state for a pool value: most specific override first."""
        targets = self.targets
        if not targets or pool is None:
            return None
        for key in ((record, pool, value), (record, "", value), ("", "", value)):
            state = targets.get(key)
            if state is not None:
                return state
        return None

    def for_region(self, region: str | None) -> HealthView:
        """The view a client of ``region`` is answered from: its region's, else the global."""
        if region is None or not self.regional:
            return self
        return self.regional.get(region, self)

    def with_rum(self, rum: Any) -> HealthView:
        """This view with RUM decisions attached, to the regional views as well (a client
        answered from its region's verdicts keeps its real-user measurements)."""
        regional = {name: replace(view, rum=rum) for name, view in self.regional.items()}
        return replace(self, rum=rum, regional=MappingProxyType(regional))

    def with_steering(self, steering: Mapping[tuple[str, int], Any]) -> HealthView:
        """This view with commit weights attached, to the regional views as well."""
        frozen = MappingProxyType(dict(steering))
        regional = {name: replace(view, steering=frozen) for name, view in self.regional.items()}
        return replace(self, steering=frozen, regional=MappingProxyType(regional))

    def to_wire(self) -> tuple:
        """Plain picklable data for worker processes (``from_wire`` rebuilds the view)."""
        regional = {name: view.to_wire() for name, view in self.regional.items()}
        return (self.version, dict(self.states), dict(self.targets), regional,
                self.varies, self.region_of, self.rum, dict(self.steering))  # fmt: skip

    @classmethod
    def from_wire(cls, data: tuple) -> HealthView:
        version, states, targets, regional, varies, region_of, rum, steering = data
        return cls(
            version,
            MappingProxyType(states),
            MappingProxyType(targets),
            MappingProxyType({name: cls.from_wire(v) for name, v in regional.items()}),
            varies,
            region_of,
            rum,
            MappingProxyType(steering),
        )

    def effective(self, check: str | None) -> str:
        """A value without a check, or a check not probed yet, counts as up (``obey``)."""
        state = self.state(check)
        return UP if state is None else state.effective


EMPTY_VIEW = HealthView()
