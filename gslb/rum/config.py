"""The record's ``gslb.rum`` block: how real-user measurements steer this name.

Parsed in the octoDNS style of ``gslb.config.dynamic``: nothing raises, every problem is
reported at once through ``error`` with the field it concerns. The parser is hooked from
``dynamic.py`` with two lines, so the record schema keeps one place per concern.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

LEVELS = ("resolver", "prefix", "asn", "country", "continent", "global")
METRICS = ("warm", "cold")
KEYS = (
    "probes",
    "metric",
    "window",
    "min_samples",
    "min_networks",
    "availability_floor",
    "tolerance",
    "margin_ms",
    "hysteresis",
    "hold",
    "levels",
    "origins",
)
MAX_PROBES = 16


@dataclass(frozen=True, slots=True)
class RumOptions:
    """Steering by real-user measurements for one record (see gslb/policy/README.md)."""

    probes: tuple[tuple[str, str], ...] = ()  # (target value, URL of its test object)
    metric: str = "warm"  # which fetch's duration ranks the targets: warm | cold
    window: float = 300.0  # s of samples considered (Pulsar: 5-minute availability)
    min_samples: int = 20  # per target and level key; fewer -> the next coarser level
    min_networks: int = 3  # client networks behind a key above the /24 before it decides
    availability_floor: float = 0.9  # drop targets whose fetches succeed less often
    tolerance: float = 0.2  # keep targets <= best * (1 + tolerance) ...
    margin_ms: float = 15.0  # ... or <= best + margin: 3 ms vs 5 ms is no difference
    hysteresis: float = 0.15  # a kept target leaves only above limit * (1 + hysteresis)
    hold: float = 120.0  # s: a level key's set changes at most this often
    levels: tuple[str, ...] = LEVELS
    origins: tuple[str, ...] = ()  # pages allowed to send beacons (CORS); empty = any

    def probe_url(self, target: str) -> str | None:
        return dict(self.probes).get(target)


Error = Callable[[str], None]


def parse_rum(
    gslb: Mapping, rdata: Callable[[Any], str], in_pools: set[str], error: Error
) -> RumOptions | None:
    """``gslb.rum`` -> RumOptions, None when absent; problems go to ``error``."""
    raw = gslb.get("rum")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        error(f"gslb.rum: expected a mapping with {', '.join(KEYS)}")
        return None
    for key in raw:
        if key not in KEYS:
            error(f'gslb.rum: unknown key "{key}"; expected {", ".join(KEYS)}')
    values: dict[str, Any] = {}
    if "probes" in raw:
        values["probes"] = _probes(raw["probes"], rdata, in_pools, error)
    if "metric" in raw:
        if raw["metric"] not in METRICS:
            error(f'gslb.rum.metric: invalid value "{raw["metric"]}" (expected warm or cold)')
        values["metric"] = raw["metric"]
    bounds = {
        "window": (10, 86400, False),
        "min_samples": (1, 1_000_000, True),
        "min_networks": (1, 16, True),
        "availability_floor": (0, 1, False),
        "tolerance": (0, 10, False),
        "margin_ms": (0, 10_000, False),
        "hysteresis": (0, 10, False),
        "hold": (0, 86400, False),
    }
    for key, (low, high, integer) in bounds.items():
        if key in raw:
            values[key] = _number(raw[key], f"gslb.rum.{key}", low, high, integer, error)
    if "levels" in raw:
        values["levels"] = _levels(raw["levels"], error)
    if "origins" in raw:
        values["origins"] = _origins(raw["origins"], error)
    return RumOptions(**{k: v for k, v in values.items() if v is not None})


def check_chain(
    chain: tuple[str, ...], explicit: bool, rum: RumOptions | None, error: Error
) -> tuple[str, ...]:
    """A ``rum`` block with the default chain adds the step after ``health``; an explicit
    chain without it is a mistake worth naming (the block would silently do nothing)."""
    if rum is None or "rum" in chain:
        return chain
    if explicit:
        error('gslb.rum: the chain has no "rum" step, so these settings would do nothing')
        return chain
    at = chain.index("health") + 1 if "health" in chain else 1
    return (*chain[:at], "rum", *chain[at:])


def with_rum(options: Any, rum: RumOptions | None, explicit: bool, error: Error) -> Any:
    """GslbOptions with the chain completed for ``rum``."""
    if options is None:
        return None
    return replace(options, chain=check_chain(options.chain, explicit, rum, error))


def _number(
    raw: Any, where: str, low: float, high: float, integer: bool, error: Error
) -> float | int | None:
    bad = isinstance(raw, bool) or not isinstance(raw, int | float)
    if not bad and integer and not isinstance(raw, int):
        bad = True
    if bad or not math.isfinite(raw) or not low <= raw <= high:
        kind = "an integer" if integer else "a number"
        error(f'{where}: invalid value "{raw}" (expected {kind} {low}..{high})')
        return None
    return raw if integer else float(raw)


def _probes(
    raw: Any, rdata: Callable[[Any], str], in_pools: set[str], error: Error
) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping) or not raw:
        error("gslb.rum.probes: expected a mapping of pool value -> URL of its test object")
        return ()
    if len(raw) > MAX_PROBES:
        error(f"gslb.rum.probes: at most {MAX_PROBES} targets (a beacon measures each one)")
    out: list[tuple[str, str]] = []
    for key, url in raw.items():
        where = f'gslb.rum.probes "{key}"'
        try:
            value = rdata(key)
        except ValueError as exc:
            error(f"{where}: {exc}")
            continue
        if value not in in_pools:
            error(f"{where}: not a value of any pool (a typo?)")
            continue
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            error(f'{where}: invalid URL "{url}" (expected http(s)://host/path)')
            continue
        if parts.fragment or parts.username or parts.password:
            error(f'{where}: invalid URL "{url}" (no credentials or #fragment)')
            continue
        out.append((value, url))
    return tuple(sorted(out))


def _levels(raw: Any, error: Error) -> tuple[str, ...] | None:
    if not isinstance(raw, list) or not raw:
        error(f"gslb.rum.levels: expected a non-empty list of {', '.join(LEVELS)}")
        return None
    ok = True
    for level in raw:
        if level not in LEVELS:
            error(f'gslb.rum.levels: unknown level "{level}" (expected {", ".join(LEVELS)})')
            ok = False
        elif raw.count(level) > 1:
            error(f'gslb.rum.levels: level "{level}" listed twice')
            ok = False
    if not ok:
        return None
    return tuple(level for level in LEVELS if level in raw)  # always finest first


def _origins(raw: Any, error: Error) -> tuple[str, ...] | None:
    if not isinstance(raw, list):
        error("gslb.rum.origins: expected a list of https://host[:port] origins")
        return None
    out: list[str] = []
    for origin in raw:
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
        ):
            error(f'gslb.rum.origins: invalid origin "{origin}" (expected scheme://host[:port])')
            continue
        out.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(out)
