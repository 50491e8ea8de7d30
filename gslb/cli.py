"""Command line: ``gslb serve | check | explain | simulate | dnssec | fleet | ctl`` and
``gslb --version``.

Thin on purpose: parse flags, call the rooms that do the work, turn results into exit codes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from gslb import GEOIP_ATTRIBUTION, __version__
from gslb.rum import settings as rum_settings
from gslb.rum import simulate as rum_simulate

DEFAULT_ZONES = "zones"
DEFAULT_DNS = "127.0.0.1:5300"
DEFAULT_HTTP = "127.0.0.1:9053"


def version_text() -> str:
    return f"gslb {__version__}\nDefault GeoIP data: {GEOIP_ATTRIBUTION}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gslb", description="Authoritative GSLB DNS server for multi-CDN hostnames."
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="answer DNS queries for the zones in a directory")
    add_common(serve)
    serve.add_argument(
        "--dns", action="append", metavar="ADDR:PORT",
        help=f"DNS listener, UDP and TCP; repeat for IPv4 and IPv6 (default {DEFAULT_DNS})",
    )  # fmt: skip
    serve.add_argument(
        "--http",
        default=DEFAULT_HTTP,
        metavar="ADDR:PORT",
        help=f"HTTP listener for /metrics, /status, /admin (default {DEFAULT_HTTP})",
    )
    serve.add_argument("--identity", metavar="TEXT",
                       help="answer id.server/hostname.bind CH TXT and NSID with TEXT "
                            "(default: refuse)")  # fmt: skip
    serve.add_argument(
        "--version-string",
        metavar="TEXT",
        help="answer version.bind CH TXT with TEXT (default: refuse)",
    )
    serve.add_argument("--tcp-idle-timeout", type=float, default=10.0, metavar="SECONDS")
    serve.add_argument("--tcp-max-connections", type=int, default=1024, metavar="N")
    serve.add_argument("--tcp-max-per-client", type=int, default=32, metavar="N")
    add_limits(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        metavar="N",
        help="DNS worker processes sharing the ports (default: number of cores)",
    )
    serve.add_argument(
        "--no-probe-wait",
        action="store_true",
        help="do not wait for the first probe round before answering",
    )
    serve.add_argument("--log-format", choices=("plain", "json"), default="plain")
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--admin-token-file",
        metavar="FILE",
        help="bearer token for POST /admin/* (else env GSLB_ADMIN_TOKEN; neither: admin API off)",
    )
    serve.add_argument(
        "--watch-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="poll the zones directory, reload on change (0: off; SIGHUP and /admin/reload work)",
    )
    serve.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep operator overrides in DIR/overrides.json and the commit controllers' "
        "state in DIR/commit.json across restarts (default: none, both live in memory)",
    )
    add_fleet(serve)
    serve.add_argument(
        "--query-log-sample",
        type=int,
        default=0,
        metavar="N",
        help="log one query in N (default 0: off)",
    )
    serve.add_argument(
        "--commit-demand-sample",
        type=int,
        default=16,
        metavar="N",
        help="weigh one GSLB answer in N by its resolver's demand, for the commit estimate "
        "of records with commits (default 16; 0: count answers alone)",
    )

    rum_settings.add_arguments(serve)

    check = sub.add_parser("check", help="validate a zones directory, print every problem")
    check.add_argument("directory", nargs="?", default=DEFAULT_ZONES)
    check.add_argument("--geoip", metavar="FILE", help="also check that this GeoIP DB opens")
    add_split_extension(check)

    explain = sub.add_parser("explain", help="show the GSLB decision for one client, step by step")
    explain.add_argument("name")
    add_common(explain)
    explain.add_argument("--client", required=True, metavar="IP", help="resolver address")
    explain.add_argument("--ecs", metavar="PREFIX", help="EDNS Client Subnet, e.g. 203.0.113.0/24")
    explain.add_argument("--qtype", default="A", choices=("A", "AAAA", "CNAME"))
    explain.add_argument("--json", action="store_true")

    simulate = sub.add_parser("simulate", help="share of answers per target for many clients")
    simulate.add_argument("name")
    add_common(simulate)
    group = simulate.add_mutually_exclusive_group()
    group.add_argument("--clients", metavar="FILE", help="one IP or CIDR per line")
    group.add_argument("--sample", type=int, default=10000, metavar="N")
    simulate.add_argument("--qtype", default="A", choices=("A", "AAAA", "CNAME"))
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--json", action="store_true")
    period = simulate.add_argument_group("simulate commit (NAME = commit: a billing period)")
    period.add_argument("--days", type=int, default=30, help="period length (default 30)")
    period.add_argument("--resolvers", type=int, default=200, help="resolver population")
    period.add_argument("--ttl", type=int, default=60, help="answer TTL, seconds")
    period.add_argument("--max-step", type=float, default=0.05, help="largest weight step")
    period.add_argument("--estimate", action="store_true", help="no usage feed: own answers")
    period.add_argument("--no-outage", action="store_true", help="no CDN outage mid-period")
    period.add_argument("--mode", choices=("commit", "delivered"), default="commit",
                        help="delivered: weights mean delivered shares")  # fmt: skip
    period.add_argument(
        "--gbps",
        type=float,
        default=10.0,
        help="mean traffic over the period (default 10; low rates leave the "
        "small resolvers' caches cold between users)",
    )
    period.add_argument(
        "--isp",
        choices=("eu", "asia", "sa"),
        metavar="REGION",
        help="every user of REGION (eu, asia, sa) behind three big resolvers",
    )
    period.add_argument(
        "--p95",
        action="store_true",
        help="cdn-a bills the 95th percentile of 5-minute rates (ceiling 2x)",
    )
    period.add_argument(
        "--no-demand",
        action="store_true",
        help="with --estimate: count answers alone, not weighed by demand",
    )
    rum_simulate.add_arguments(simulate)
    add_dnssec(sub)
    add_ctl(sub)
    return parser


def add_dnssec(sub) -> None:
    dnssec = sub.add_parser("dnssec", help="DNSSEC keys: keygen, DS for the parent")
    tools = dnssec.add_subparsers(dest="dnssec_command", required=True)
    keygen = tools.add_parser("keygen", help="new signing key (CSK) for a zone")
    keygen.add_argument("zone")
    keygen.add_argument("--zones", default=DEFAULT_ZONES, metavar="DIR")
    keygen.add_argument("--algorithm", default="ECDSAP256SHA256",
                        help="ECDSAP256SHA256 (13, default) or ED25519 (15)")  # fmt: skip
    keygen.add_argument("--key-dir", metavar="DIR", help="where the PEM goes (default DIR/keys)")
    ds = tools.add_parser("ds", help="the DS records the parent zone should hold")
    ds.add_argument("zone")
    ds.add_argument("--zones", default=DEFAULT_ZONES, metavar="DIR")


def add_ctl(sub: argparse._SubParsersAction) -> None:
    """``gslb ctl …`` and ``gslb fleet status``: talk to a running server (gslb.ctl)."""
    ctl = sub.add_parser("ctl", help="operate a running server or fleet over its HTTP API")
    fleet = sub.add_parser("fleet", help="fleet status of a running server")
    fleet.add_argument("action", choices=("status",))
    for parser in (ctl, fleet):
        parser.add_argument(
            "--url",
            default=f"http://{DEFAULT_HTTP}",
            help=f"the server's HTTP listener (default http://{DEFAULT_HTTP})",
        )
        parser.add_argument("--json", action="store_true", help="print the raw JSON reply")
    actions = ctl.add_subparsers(dest="action", required=True)
    actions.add_parser("status", help="checks, fleet state and overrides")
    actions.add_parser("overrides", help="every override with who, why and until when")
    actions.add_parser("audit", help="every override change kept by the fleet engine")
    actions.add_parser("fleet", help="nodes and the health matrix (as gslb fleet status)")
    for action in ("drain", "down", "up", "obey"):
        target = actions.add_parser(action, help=f"{action} a check (by name) or a pool value")
        target.add_argument("target", help="check name (http://192.0.2.1:80/health) or value")
        target.add_argument("--reason", help="why (shown in /fleet and the logs)")
        target.add_argument(
            "--for",
            dest="duration",
            metavar="DURATION",
            help="expire after 90s, 30m, 2h, 1d (default: until obey)",
        )
        target.add_argument("--record", help="only in this record (a pool value)")
        target.add_argument("--pool", help="only in this pool of --record")
        target.add_argument("--by", help="who (default: user@host)")
        target.add_argument(
            "--local",
            action="store_true",
            help="this node only, when the fleet engine cannot take the write",
        )
        target.add_argument(
            "--token-file", metavar="FILE", help="admin token (default: env GSLB_ADMIN_TOKEN)"
        )


LIMIT_FLAGS = (
    ("--tcp-read-timeout", float, 3.0, "SECONDS",
     "time to receive a whole message once its first byte came (slowloris; default 3)"),
    ("--tcp-write-timeout", float, 5.0, "SECONDS",
     "time a client that stopped reading its answers has to catch up (default 5)"),
    ("--tcp-max-in-flight", int, 64, "N",
     "replies queued for a client that does not read before we stop reading (default 64)"),
    ("--tcp-max-message", int, 4096, "BYTES", "largest query accepted over TCP (default 4096)"),
    ("--rrl-rate", int, 0, "N", "UDP response rate limit: responses/s per client network and "
     "response kind (default 0: off; 5-20 is usual)"),
    ("--rrl-slip", int, 2, "N", "send every Nth limited response as TC=1 (0: drop all; default 2)"),
    ("--rrl-window", float, 15.0, "SECONDS",
     "how long a flooding client stays limited after it stops (default 15)"),
    ("--rrl-ipv4-prefix", None, 24, "BITS", "client network size for IPv4 (default /24)"),
    ("--rrl-ipv6-prefix", None, 56, "BITS", "client network size for IPv6 (default /56)"),
    ("--rrl-max-buckets", int, 20000, "N", "rate limiter table size, least recently used "
     "evicted first (default 20000)"),
)  # fmt: skip


def add_limits(serve: argparse.ArgumentParser) -> None:
    """Limits for untrusted clients (TCP resources, UDP response rate) and privileges."""
    for flag, kind, default, metavar, text in LIMIT_FLAGS:
        if kind is None:
            kind = prefix(32 if "ipv4" in flag else 128)
        serve.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)
    serve.add_argument(
        "--user",
        metavar="NAME",
        help="bind as root, then run as NAME (zones must be readable by NAME)",
    )
    serve.add_argument("--allow-root", action="store_true",
                       help="run as root without --user (refused otherwise)")  # fmt: skip
    serve.add_argument("--udp-batch", action=argparse.BooleanOptionalAction, default=True,
                       help="read and answer UDP in batches with recvmmsg/sendmmsg "
                            "(Linux; about 2x the queries per second)")  # fmt: skip


def add_fleet(serve: argparse.ArgumentParser) -> None:
    """Fleet mode: several instances decide as one over NATS JetStream (see README)."""
    serve.add_argument(
        "--fleet",
        metavar="nats://HOST:PORT[,…]",
        help="join a fleet through these NATS servers (local first)",
    )
    serve.add_argument("--node", metavar="NAME", help="this instance's unique fleet name")
    serve.add_argument(
        "--region",
        metavar="REGION",
        help="this instance's vantage region (default regions: continents, EU)",
    )
    serve.add_argument(
        "--fleet-config",
        metavar="FILE",
        help="YAML: servers, node, region, regions, refresh, replicas (flags win)",
    )
    serve.add_argument(
        "--probe-source",
        metavar="ADDR",
        help="local address health probes leave from (default: the system's)",
    )


def prefix(bits: int):
    def parse(text: str) -> int:
        value = int(text)
        if not 1 <= value <= bits:
            raise argparse.ArgumentTypeError(f"must be between 1 and {bits}")
        return value

    return parse


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--zones", default=DEFAULT_ZONES, metavar="DIR")
    parser.add_argument("--geoip", metavar="FILE", help="MaxMind-format DB (default: geoip/)")
    add_split_extension(parser)


def add_split_extension(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--split-extension", default=".", metavar="EXT",
        help="octoDNS YamlProvider split_extension: <zone><EXT>/ directories hold one file per "
             "record (default '.'; '' reads zone files only)",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"serve": cmd_serve, "check": cmd_check, "explain": cmd_explain,
               "simulate": cmd_simulate, "dnssec": cmd_dnssec, "ctl": cmd_ctl,
               "fleet": cmd_ctl}[args.command]  # fmt: skip
    return handler(args)


def cmd_ctl(args: argparse.Namespace) -> int:
    from gslb.ctl import run

    if args.command == "fleet":
        args.action = "fleet"
    return run(args)


def cmd_check(args: argparse.Namespace) -> int:
    from gslb.config.load import load_config

    warnings: list[str] = []
    config, errors = load_config(args.directory, args.split_extension, warnings)
    if args.geoip:
        errors += geo_errors(args.geoip)
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in errors:
        print(line, file=sys.stderr)
    if errors:
        print(f"{len(errors)} problem(s) found", file=sys.stderr)
        return 1
    names = ", ".join(zone.fqdn for zone in config.zones.values())
    warned = f"; {len(config.warnings)} warning(s)" if config.warnings else ""
    print(f"ok: {len(config.zones)} zone(s): {names}; {len(config.checks)} health check(s)"
          f"{warned}")  # fmt: skip
    return 0


def geo_errors(path: str) -> list[str]:
    from gslb.geo import GeoDB, GeoError

    try:
        GeoDB.open(path).close()
    except GeoError as exc:
        return [str(exc)]
    return []


def cmd_serve(args: argparse.Namespace) -> int:
    from gslb.app import App, Settings
    from gslb.logs import setup_logging
    from gslb.privileges import PrivilegeError, lookup, root_refusal

    refusal = root_refusal(os.geteuid(), args.user, args.allow_root)
    if refusal is None and args.user is not None:
        try:
            lookup(args.user)
        except PrivilegeError as exc:
            refusal = str(exc)
    if refusal is not None:
        print(f"gslb serve: {refusal}", file=sys.stderr)
        return 2
    setup_logging(args.log_format, args.log_level)
    from gslb.fleet.config import FleetConfigError

    try:
        settings = Settings.from_args(args)
    except FleetConfigError as exc:
        print(f"gslb serve: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop  # measured: about 3 times the UDP answers per second of asyncio's loop

        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(App(settings).run())
    except KeyboardInterrupt:
        return 0


def load_for_tools(args: argparse.Namespace):
    """Shared by explain and simulate: config, geo and engine, or an exit code."""
    from gslb.config.load import load_config
    from gslb.geo import GeoDB, GeoError, default_db_path
    from gslb.policy.chain import Engine

    config, errors = load_config(args.zones, args.split_extension)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return None
    try:
        geo = GeoDB.open(args.geoip or default_db_path())
    except GeoError as exc:
        print(exc, file=sys.stderr)
        return None
    return config, geo, Engine(geo)


def cmd_explain(args: argparse.Namespace) -> int:
    import ipaddress

    from gslb.config.load import find_record
    from gslb.health.view import EMPTY_VIEW

    loaded = load_for_tools(args)
    if loaded is None:
        return 1
    config, _, engine = loaded
    record = find_record(config, args.name, args.qtype)
    if record is None:
        print(f"{args.name}: no dynamic {args.qtype} record", file=sys.stderr)
        return 1
    ecs = None
    if args.ecs:
        network = ipaddress.ip_network(args.ecs, strict=False)
        ecs = (network.network_address, network.prefixlen)
    trace = engine.explain(record, ipaddress.ip_address(args.client), ecs, EMPTY_VIEW)
    signing = config.signing.get(config.zone_for(record.name).origin)
    if args.json:
        from gslb.dnssec.status import describe

        trace["dnssec"] = describe(signing)
        print(json.dumps(trace, indent=2, default=str))
    else:
        from gslb.dnssec.status import explain_line
        from gslb.policy.chain import render_explain

        print(render_explain(trace))
        print(explain_line(signing))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.name == "commit":
        return cmd_simulate_commit(args)
    from gslb.config.load import find_record
    from gslb.health.view import EMPTY_VIEW
    from gslb.simulate import render_text, run_simulation

    if args.name == "rum":
        return rum_simulate.main(args)
    loaded = load_for_tools(args)
    if loaded is None:
        return 1
    config, geo, engine = loaded
    record = find_record(config, args.name, args.qtype)
    if record is None:
        print(f"{args.name}: no dynamic {args.qtype} record", file=sys.stderr)
        return 1
    clients = Path(args.clients) if args.clients else None
    result = run_simulation(
        record, engine, EMPTY_VIEW, geo=geo, clients_file=clients, sample=args.sample,
        seed=args.seed,
    )  # fmt: skip
    print(json.dumps(result, indent=2, default=str) if args.json else render_text(result))
    return 0


def cmd_dnssec(args: argparse.Namespace) -> int:
    from gslb.config.load import load_config
    from gslb.config.names import to_wire
    from gslb.dnssec.keys import KeyError_, parse_algorithm
    from gslb.dnssec.tools import ToolError, ds_lines, keygen

    if args.dnssec_command == "keygen":
        try:
            algorithm = parse_algorithm(args.algorithm)
            key_dir = Path(args.key_dir) if args.key_dir else None
            print("\n".join(keygen(Path(args.zones), args.zone, algorithm, key_dir)))
        except (KeyError_, ToolError, OSError) as exc:
            print(f"gslb dnssec keygen: {exc}", file=sys.stderr)
            return 1
        return 0
    config, errors = load_config(args.zones)
    if config is None:
        print("\n".join(errors), file=sys.stderr)
        return 1
    settings = config.signing.get(to_wire(args.zone.rstrip(".") + "."))
    if settings is None:
        print(f"gslb dnssec ds: zone {args.zone} is not signed (no sidecar .dnssec.yaml)",
              file=sys.stderr)  # fmt: skip
        return 1
    removal = f"; {settings.fqdn} announces CDS delete (RFC 8078): the parent holds no DS"
    print("\n".join(ds_lines(settings) or [removal]))
    return 0


def cmd_simulate_commit(args: argparse.Namespace) -> int:
    """``gslb simulate commit``: a billing period on a virtual clock (gslb.commit.simulate)."""
    from gslb.commit.simulate import Scenario, render, run

    scenario = Scenario(days=args.days, resolvers=args.resolvers, ttl=args.ttl, seed=args.seed,
                        estimate=args.estimate, max_step=args.max_step, mode=args.mode,
                        isp=args.isp, demand=not args.no_demand, mean_gbps=args.gbps,
                        p95=args.p95,
                        outage=None if args.no_outage else (args.days * 0.4, 36.0))  # fmt: skip
    report = run(scenario)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    logging.basicConfig()
    raise SystemExit(main())
