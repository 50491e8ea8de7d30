"""Server-wide RUM settings: the ``gslb serve`` flags, kept beside the feature they configure."""

from __future__ import annotations

import argparse
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from gslb.dns.server import parse_endpoint
from gslb.rum.ingest import Limits

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class RumSettings:
    asn_db: Path | None = None  # MaxMind/DB-IP ASN mmdb; None: no ASN level
    key_file: Path | None = None  # token secret shared by a fleet; None: random per start
    trusted_proxies: list[IPNetwork] = field(default_factory=list)
    client_header: str = "X-Forwarded-For"
    limits: Limits = field(default_factory=Limits)
    max_networks: int = 20_000  # client-network keys per record in the store
    refresh: float = 5.0  # s between decision rounds
    listen: tuple[str, int] | None = None  # --rum-listen: a public listener for beacons only
    resolver_name: str | None = None  # --rum-resolver-name: learn which resolver serves whom


def add_arguments(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("real-user measurements (gslb.rum)")
    group.add_argument("--rum-listen", metavar="ADDR:PORT",
                       help="also serve only /rum/v1/* (snippet, recipe, beacons) here: the "
                       "public side, while --http stays on loopback")  # fmt: skip
    group.add_argument("--rum-resolver-name", metavar="NAME",
                       help="a name in a served zone (e.g. rum.example.com): each page view "
                       "resolves <session>.NAME, so queries without ECS from that resolver "
                       "get its users' measurements")  # fmt: skip
    group.add_argument("--asn-db", metavar="FILE",
                       help="ASN database (GeoLite2-ASN or DB-IP ASN Lite mmdb): enables the "
                       "ASN-within-country level")  # fmt: skip
    group.add_argument("--rum-key-file", metavar="FILE",
                       help="secret for beacon session tokens (same file on every instance); "
                       "default: random at each start")  # fmt: skip
    group.add_argument("--rum-trusted-proxy", action="append", default=[], metavar="CIDR",
                       help="beacons from here carry the browser's address in "
                       "--rum-client-header (repeat for several)")  # fmt: skip
    group.add_argument("--rum-client-header", default="X-Forwarded-For", metavar="NAME")
    group.add_argument(
        "--rum-rate-network",
        type=float,
        default=12.0,
        metavar="N",
        help="beacons per minute accepted from one /24 or /48 (default 12)",
    )
    group.add_argument(
        "--rum-rate-global",
        type=float,
        default=500.0,
        metavar="N",
        help="beacons per second accepted in all (default 500)",
    )
    group.add_argument(
        "--rum-max-networks",
        type=int,
        default=20_000,
        metavar="N",
        help="client networks remembered per record (default 20000)",
    )
    group.add_argument(
        "--rum-refresh",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between rebuilds of the RUM decisions (default 5)",
    )


def from_args(args: argparse.Namespace) -> RumSettings:
    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return RumSettings(
        asn_db=path(getattr(args, "asn_db", None)),
        key_file=path(getattr(args, "rum_key_file", None)),
        trusted_proxies=[
            ipaddress.ip_network(c, strict=False) for c in getattr(args, "rum_trusted_proxy", [])
        ],
        client_header=getattr(args, "rum_client_header", "X-Forwarded-For"),
        limits=Limits(
            per_network=getattr(args, "rum_rate_network", 12.0),
            network_burst=2 * getattr(args, "rum_rate_network", 12.0),
            global_rate=getattr(args, "rum_rate_global", 500.0),
            global_burst=2 * getattr(args, "rum_rate_global", 500.0),
        ),
        max_networks=getattr(args, "rum_max_networks", 20_000),
        refresh=getattr(args, "rum_refresh", 5.0),
        resolver_name=getattr(args, "rum_resolver_name", None),
        listen=parse_endpoint(args.rum_listen, 80) if getattr(args, "rum_listen", None) else None,
    )
