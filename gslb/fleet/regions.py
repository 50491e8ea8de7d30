"""Client regions: which fleet region a client's location belongs to.

By default a region is the client's continent code (``EU``, ``NA``, ``AS``, ``OC``, ``SA``,
``AF``, ``AN``), so ``--region EU`` on a node in Frankfurt makes it a vantage point for European
clients with no configuration at all. A mapping of octoDNS geo codes to region names (in the
fleet config file) groups or splits them: ``{eu-west: [EU], us-east: [NA-US-NY, NA-US-VA],
us: [NA]}``; the most specific code wins (subdivision, then country, then continent), and a
location no code matches has no region (its clients get the global verdict).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REGION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
GEO_CODE = re.compile(r"^[A-Z]{2}(-[A-Z]{2}(-[A-Z0-9]{1,3})?)?$")


class RegionMap:
    """Callable: location -> region name or None. Picklable (workers get it in the view)."""

    __slots__ = ("by_geo",)

    def __init__(self, by_geo: Mapping[str, str] | None = None) -> None:
        self.by_geo = dict(by_geo or {})  # empty: the continent is the region

    def __call__(self, location: Any) -> str | None:
        if location is None:
            return None
        if not self.by_geo:
            return getattr(location, "continent", None)
        for code in location.geos():
            region = self.by_geo.get(code)
            if region is not None:
                return region
        return None

    def __getstate__(self) -> dict:
        return {"by_geo": self.by_geo}

    def __setstate__(self, state: dict) -> None:
        self.by_geo = state["by_geo"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RegionMap) and other.by_geo == self.by_geo

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.by_geo.items())))

    def names(self) -> list[str]:
        return sorted(set(self.by_geo.values()))


def parse_regions(data: Any, errors: list[str], where: str = "regions") -> RegionMap:
    """``{region: [geo, ...]}`` from the fleet config; every problem appended to ``errors``."""
    if data is None:
        return RegionMap()
    if not isinstance(data, Mapping):
        errors.append(f"{where}: expected a mapping of region name to a list of geo codes")
        return RegionMap()
    by_geo: dict[str, str] = {}
    for region, geos in data.items():
        if not isinstance(region, str) or not REGION_NAME.match(region):
            errors.append(f"{where}: invalid region name {region!r} (letters, digits, - and _)")
            continue
        if not isinstance(geos, list) or not geos:
            errors.append(f"{where}: region {region}: expected a non-empty list of geo codes")
            continue
        for geo in geos:
            if not isinstance(geo, str) or not GEO_CODE.match(geo):
                errors.append(f"{where}: region {region}: invalid geo code {geo!r} (EU, NA-US)")
            elif geo in by_geo and by_geo[geo] != region:
                errors.append(f"{where}: geo {geo} is in both {by_geo[geo]} and {region}")
            else:
                by_geo[geo] = region
    return RegionMap(by_geo)
