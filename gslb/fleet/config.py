"""Fleet settings: from ``gslb serve --fleet … --node … --region …`` and/or a YAML file.

A config file (``--fleet-config FILE``) holds the same keys plus what flags cannot say well::

    servers: [nats://10.0.0.1:4222, nats://10.0.1.1:4222, nats://10.0.2.1:4222]
    node: fra-1                 # unique per instance; letters, digits, - and _
    region: EU                  # this node's vantage region (default regions: continents)
    regions:                    # optional: geo codes -> region names (most specific wins)
      eu-west: [EU]
      us-east: [NA-US-NY, NA-US-VA]
    refresh: 5                  # seconds between observation refreshes and heartbeats
    replicas: 3                 # JetStream replicas of the buckets (1 for a lone server)

Flags win over the file. Every problem is reported at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gslb.fleet.regions import REGION_NAME, RegionMap, parse_regions

NODE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SERVER_URL = re.compile(r"^(nats|tls)://[^\s,]+$")
FILE_KEYS = ("servers", "node", "region", "regions", "refresh", "replicas")


@dataclass(slots=True)
class FleetSettings:
    servers: list[str]
    node: str
    region: str
    regions: RegionMap = field(default_factory=RegionMap)
    refresh: float = 5.0  # observation refresh and heartbeat period, seconds
    replicas: int = 3
    connect_timeout: float = 2.0  # one connection attempt
    op_timeout: float = 2.0  # one JetStream request (a write, a bucket lookup)

    @property
    def freshness(self) -> float:
        """A peer's observation counts this long after it arrived: three refreshes."""
        return 3 * self.refresh

    @property
    def key_ttl(self) -> int:
        """Per-key TTL in the engine (whole seconds, at least 1): a stopped node's keys go."""
        return max(1, math.ceil(3 * self.refresh))


class FleetConfigError(Exception):
    """Every problem with the fleet settings, one per line."""


def fleet_settings(
    servers: str | None,
    node: str | None,
    region: str | None,
    config_file: Path | None = None,
    *,
    yaml_loader: Any = None,
) -> FleetSettings | None:
    """Merge flags over the optional file; None when no fleet is configured (standalone)."""
    data: dict[str, Any] = {}
    errors: list[str] = []
    if config_file is not None:
        data = _read_file(config_file, errors, yaml_loader)
    if servers:
        data["servers"] = servers
    if node:
        data["node"] = node
    if region:
        data["region"] = region
    if not data.get("servers"):
        if data:
            errors.append("fleet: no servers (--fleet nats://HOST:PORT[,…] or servers:)")
        if errors:
            raise FleetConfigError("\n".join(errors))
        return None
    settings = _build(data, errors)
    if errors:
        raise FleetConfigError("\n".join(errors))
    return settings


def _read_file(path: Path, errors: list[str], yaml_loader: Any) -> dict[str, Any]:
    if yaml_loader is None:
        from gslb.config.safeyaml import load_yaml as yaml_loader
    try:
        loaded = yaml_loader(path.read_bytes())
    except Exception as exc:  # unreadable or not YAML: say which and why
        errors.append(f"{path}: {exc}")
        return {}
    if not isinstance(loaded, Mapping):
        errors.append(f"{path}: expected a mapping with {', '.join(FILE_KEYS)}")
        return {}
    unknown = sorted(str(k) for k in loaded if k not in FILE_KEYS)
    if unknown:
        errors.append(f"{path}: unknown key(s) {', '.join(unknown)}")
    return dict(loaded)


def _build(data: dict[str, Any], errors: list[str]) -> FleetSettings:
    servers = data["servers"]
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    if not isinstance(servers, list) or not servers:
        errors.append("fleet: servers must be a list of nats:// URLs")
        servers = []
    for url in servers:
        if not isinstance(url, str) or not SERVER_URL.match(url):
            errors.append(f"fleet: invalid server {url!r} (expected nats://HOST:PORT)")
    node = data.get("node")
    if not isinstance(node, str) or not NODE_NAME.match(node):
        errors.append(f"fleet: invalid or missing node name {node!r} (--node; letters, "
                      "digits, - and _, up to 64)")  # fmt: skip
    region = data.get("region")
    if not isinstance(region, str) or not REGION_NAME.match(region):
        errors.append(f"fleet: invalid or missing region {region!r} (--region, e.g. EU)")
    regions = parse_regions(data.get("regions"), errors, "fleet: regions")
    refresh = data.get("refresh", 5.0)
    number = isinstance(refresh, int | float) and not isinstance(refresh, bool)
    if not number or not 0.2 <= refresh <= 300:
        errors.append(f"fleet: invalid refresh {refresh!r} (seconds, 0.2 to 300)")
        refresh = 5.0
    replicas = data.get("replicas", 3)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 5:
        errors.append(f"fleet: invalid replicas {replicas!r} (1 to 5)")
        replicas = 3
    names = regions.names()
    if names and isinstance(region, str) and region not in names:
        errors.append(f"fleet: region {region!r} is not one of the regions: {', '.join(names)}")
    return FleetSettings(servers, str(node), str(region), regions, float(refresh), replicas)
