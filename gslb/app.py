"""The running server: wires configuration, geo, policy engine, prober, DNS and HTTP together.

Start-up order matters for correct first answers: zones load and validate, the GeoIP database
opens, the prober runs one full round, and only then do the DNS listeners open.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from gslb.commit.metrics import CommitCollector
from gslb.commit.service import CommitService
from gslb.config.load import Config, keep_serials_increasing, load_config
from gslb.config.sources import SPLIT_EXTENSION
from gslb.dns.responder import Options, Responder
from gslb.dns.rrl import RrlConfig
from gslb.dns.server import DnsServer, TcpLimits, parse_endpoint
from gslb.dnssec.settings import newest_file_time
from gslb.dnssec.window import WindowClock, clock_problem
from gslb.fleet.config import FleetSettings, fleet_settings
from gslb.fleet.node import FleetNode
from gslb.fleet.overrides import OverrideBook
from gslb.geo import GeoDB, GeoError, default_db_path
from gslb.health.prober import Prober
from gslb.health.state import Transition
from gslb.health.view import HealthView
from gslb.history import History, HistorySampler
from gslb.metrics import Metrics, install_query_log
from gslb.notify import Notifier
from gslb.policy.chain import Engine
from gslb.policy.compile import COMPILE_AT_START
from gslb.privileges import PrivilegeError, describe, drop_privileges
from gslb.rum import settings as rum_settings
from gslb.rum.metrics import RumCollector
from gslb.rum.resolvers import watcher
from gslb.rum.service import RumService, open_service
from gslb.stats import Stats, merge
from gslb.watch import ZoneWatcher
from gslb.workers import WorkerPool, WorkerSpec

log = logging.getLogger("gslb")


@dataclass(slots=True)
class Settings:
    zones: Path
    dns: list[tuple[str, int]]
    http: tuple[str, int] | None
    geoip: Path
    identity: bytes | None = None
    version_string: str | None = None
    tcp: TcpLimits = field(default_factory=TcpLimits)
    probe_wait: bool = True
    workers: int = 1  # >1: that many DNS processes on the same ports (SO_REUSEPORT)
    admin_token_file: Path | None = None  # else GSLB_ADMIN_TOKEN; neither: admin API off
    watch_interval: float = 0.0  # seconds between zone polls; 0 off (the CLI defaults to 1)
    split_extension: str = SPLIT_EXTENSION  # octoDNS split zone directories: <zone><ext>/
    query_log_sample: int = 0  # log one query in N; 0 disables (and costs nothing)
    commit_demand_sample: int = 16  # gslb.dns.demand: one GSLB answer in N; 0 disables
    rrl: RrlConfig = field(default_factory=RrlConfig)  # UDP response rate limiting; off
    user: str | None = None  # drop to this user once every socket is bound
    udp_batch: bool = True  # recvmmsg/sendmmsg (gslb.dns.udpbatch); False: asyncio transport
    log_format: str = "plain"
    log_level: str = "info"
    state_dir: Path | None = None  # overrides.json lives here; None: overrides in memory only
    rum: rum_settings.RumSettings = field(default_factory=rum_settings.RumSettings)
    fleet: FleetSettings | None = None  # None: standalone (a fleet of one)
    probe_source: str | None = None  # local address probes leave from (this vantage point)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        return cls(
            zones=Path(args.zones),
            dns=[parse_endpoint(e, 53) for e in (args.dns or ["127.0.0.1:5300"])],
            http=parse_endpoint(args.http, 9053) if args.http else None,
            geoip=Path(args.geoip) if args.geoip else default_db_path(),
            identity=args.identity.encode() if args.identity else None,
            version_string=args.version_string,
            tcp=TcpLimits(
                max_connections=args.tcp_max_connections,
                per_client=args.tcp_max_per_client,
                idle_timeout=args.tcp_idle_timeout,
                read_timeout=args.tcp_read_timeout,
                max_in_flight=args.tcp_max_in_flight,
                write_timeout=args.tcp_write_timeout,
                max_message=args.tcp_max_message,
            ),
            probe_wait=not args.no_probe_wait,
            workers=max(1, args.workers),
            admin_token_file=Path(args.admin_token_file) if args.admin_token_file else None,
            watch_interval=args.watch_interval,
            split_extension=args.split_extension,
            query_log_sample=args.query_log_sample,
            commit_demand_sample=args.commit_demand_sample,
            rrl=RrlConfig(
                rate=args.rrl_rate,
                slip=args.rrl_slip,
                window=args.rrl_window,
                ipv4_prefix=args.rrl_ipv4_prefix,
                ipv6_prefix=args.rrl_ipv6_prefix,
                max_buckets=args.rrl_max_buckets,
            ),
            user=args.user,
            udp_batch=args.udp_batch,
            log_format=args.log_format,
            log_level=args.log_level,
            state_dir=Path(args.state_dir) if args.state_dir else None,
            rum=rum_settings.from_args(args),
            fleet=fleet_settings(
                args.fleet, args.node, args.region,
                Path(args.fleet_config) if args.fleet_config else None,
            ),
            probe_source=args.probe_source,
        )  # fmt: skip


@dataclass(slots=True)
class ReloadResult:
    ok: bool
    errors: list[str]
    at: float = field(default_factory=time.time)
    digest: str = ""


class StartupError(Exception):
    """Configuration or GeoIP problems that stop the server from starting."""


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.config: Config | None = None
        self.geo: GeoDB | None = None
        self.engine: Engine | None = None
        self.responder: Responder | None = None
        self.prober: Prober | None = None
        self.fleet: FleetNode | None = None
        self.rum: RumService | None = None
        self.rum_web = None  # gslb.web.rum.PublicRumServer with --rum-listen
        self.rum_bound: tuple[str, int] | None = None
        self.commit: CommitService | None = None
        self.steering: dict = {}  # gslb.commit weights, attached to every view we answer from
        self.dns: DnsServer | None = None
        self.pool: WorkerPool | None = None
        self.dns_bound: list[tuple[str, int]] = []
        self.web = None
        self.http_bound: tuple[str, int] | None = None
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.last_reload: ReloadResult | None = None
        self.reload_lock = asyncio.Lock()
        self.metrics = Metrics(self.stats.snapshot, self)
        self.notifier = Notifier.from_env()
        self.watcher: ZoneWatcher | None = None
        self.admin_token: str | None = None
        self.history = History()  # for the status page, fed off the answer path
        self.sampler = HistorySampler(self.history, self.stats_snapshots)
        self.window_clock: WindowClock | None = None

    async def start(self) -> None:
        if self.settings.watch_interval > 0:  # fingerprint before loading: no edit is missed
            self.watcher = ZoneWatcher(
                self.settings.zones,
                self.reload,
                self.settings.watch_interval,
                split_extension=self.settings.split_extension,
            )
        config, errors = load_config(self.settings.zones, self.settings.split_extension)
        if config is None:
            raise StartupError("\n".join(errors))
        for warning in config.warnings:
            log.warning("zones: %s", warning)
        self.admin_token = load_admin_token(self.settings.admin_token_file)
        try:
            self.geo = GeoDB.open(self.settings.geoip)
        except GeoError as exc:
            raise StartupError(str(exc)) from None
        self.config = config
        self.engine = Engine(self.geo)
        self.start_rum(config)
        options = Options(self.settings.identity, self.settings.version_string,
                          self.settings.commit_demand_sample)  # fmt: skip
        self.responder = Responder(config, self.engine, options, self.stats)
        if self.settings.rum.resolver_name is not None:
            self.responder.rum_watch = watcher(self.settings.rum.resolver_name,
                                               self.on_rum_resolver)  # fmt: skip
        if self.settings.workers <= 1:  # workers answer DNS and build their own tables
            self.engine.compiler.finish(COMPILE_AT_START)  # the rest in the background
        install_query_log(self.responder, self.settings.query_log_sample)
        self.window_clock = WindowClock(self.responder)  # new signature window at midnight
        self.window_clock.start()
        warn_about_clock(config)
        self.prober = Prober(source=self.settings.probe_source)
        self.fleet = self.make_fleet(self.prober)
        self.prober.on_change = self.fleet.on_local
        if self.settings.fleet is not None:  # RUM aggregates shared (gslb.rum.fleet)
            self.rum.attach(self.fleet)
        self.metrics.attach(self.prober.events)
        self.prober.events.transition.append(log_transition)
        self.prober.events.transition.append(self.history.timeline.on_transition)
        await self.prober.start()
        await self.prober.update(config.checks)
        self.fleet.set_config(config)
        await self.fleet.start()  # connects in the background, never waits for the engine
        if self.settings.probe_wait:
            await self.prober.first_round(timeout=max_timeout(config))
        self.start_commit(config)
        self.on_health(self.fleet.view)
        sockets = await self.bind_dns()
        await self.start_web()
        await self.start_rum_web()
        self.rum.start()
        self.drop_privileges()
        await self.start_dns(sockets)
        self.last_reload = ReloadResult(True, [], digest=config.digest)
        self.sampler.start()
        self.ready.set()
        log.info(
            "ready: %d zone(s), %d health check(s), GeoIP %s",
            len(config.zones), len(config.checks), self.geo.description,
        )  # fmt: skip
        self.notifier.ready(serving_status(config))
        self.notifier.start_watchdog()
        if self.watcher is not None:
            self.watcher.start()

    def make_fleet(self, prober: Prober) -> FleetNode:
        """The node between the prober and the answers; its overrides from ``--state-dir``."""
        book = OverrideBook.in_dir(self.settings.state_dir)
        for problem in book.load(time.time()):
            log.warning("state: %s", problem)
        if book.items:
            log.info("state: %d override(s) restored from %s", len(book.items), book.path)
        fleet = self.settings.fleet
        if fleet is None:
            return FleetNode(prober, book, self.on_health)
        from gslb.fleet.jetstream import JetStreamEngine

        node = FleetNode(prober, book, self.on_health, node=fleet.node, region=fleet.region,
                         freshness=fleet.freshness, region_of=fleet.regions)  # fmt: skip
        node.engine = JetStreamEngine(fleet, node)
        log.info("fleet: node %s in region %s, engine %s (connecting in the background)",
                 fleet.node, fleet.region, ", ".join(fleet.servers))  # fmt: skip
        return node

    async def bind_dns(self) -> list[tuple]:
        """Bind the DNS sockets (privileged ports need root) without serving on them yet;
        workers bind their own, drop privileges, then serve."""
        if self.settings.workers > 1:
            await self.start_workers()
            return []
        return [DnsServer.bind_pair(host, port) for host, port in self.settings.dns]

    def drop_privileges(self) -> None:
        """Every socket is bound: become ``--user`` before any DNS query is read."""
        if self.settings.user is None:
            return
        try:
            identity = drop_privileges(self.settings.user)
        except (PrivilegeError, OSError) as exc:
            raise StartupError(str(exc)) from None
        log.info("running as %s", describe(identity))

    async def start_dns(self, sockets: list[tuple]) -> None:
        if self.settings.workers <= 1:
            self.dns = DnsServer(self.responder, self.settings.tcp, self.settings.rrl,
                                 batched=self.settings.udp_batch)  # fmt: skip
            for (host, port), pair in zip(self.settings.dns, sockets, strict=True):
                self.dns_bound.append(await self.dns.listen(host, port, pair))
        for host, port in self.dns_bound:
            log.info("listening for DNS on %s port %d (UDP and TCP)", host, port)

    async def start_workers(self) -> None:
        """Port 0 is resolved here first, so every worker binds the same port."""
        placeholders = [DnsServer.bind_pair(host, port) for host, port in self.settings.dns]
        endpoints = tuple(
            (host, udp.getsockname()[1])
            for (host, _), (udp, _) in zip(self.settings.dns, placeholders, strict=True)
        )
        spec = WorkerSpec(0, endpoints, str(self.settings.geoip), self.settings.identity,
                          self.settings.version_string, self.settings.tcp,
                          rrl=self.settings.rrl, user=self.settings.user,
                          udp_batch=self.settings.udp_batch,
                          query_log_sample=self.settings.query_log_sample,
                          commit_demand_sample=self.settings.commit_demand_sample,
                          log_format=self.settings.log_format,
                          log_level=self.settings.log_level,
                          asn_db=str(self.settings.rum.asn_db or "") or None,
                          rum_resolver_name=self.settings.rum.resolver_name,
                          workers=self.settings.workers)  # fmt: skip
        self.pool = WorkerPool(self.settings.workers)
        self.pool.on_rum_resolver = self.on_rum_resolver
        try:
            await self.pool.start(spec, self.config, self.responder.health)
        finally:
            for udp, tcp in placeholders:  # never left to swallow a share of the queries
                udp.close()
                tcp.close()
        self.dns_bound = list(endpoints)

    def start_rum(self, config: Config) -> None:
        """Real-user measurements: ingestion and the decisions task (gslb.rum)."""
        try:
            self.rum = open_service(self.settings.rum, self.geo, self.on_rum)
        except (OSError, ValueError) as exc:
            raise StartupError(f"RUM: {exc}") from None
        self.rum.configure(config)
        self.engine.asn = self.rum.ingest.asn
        self.metrics.registry.register(RumCollector(self.rum))

    async def start_rum_web(self) -> None:
        """``--rum-listen``: the public beacon listener (bound before privileges drop)."""
        if self.settings.rum.listen is None:
            return
        from gslb.web.rum import PublicRumServer

        self.rum_web = PublicRumServer(self)
        host, port = self.rum_bound = await self.rum_web.start(*self.settings.rum.listen)
        log.info("listening for RUM beacons on %s port %d", host, port)

    def on_rum_resolver(self, sid: str, resolver: str) -> None:
        """A resolver asked for a session's one-off name (gslb.rum.resolvers)."""
        self.rum.ingest.resolvers.seen(sid, resolver, time.time())

    def on_rum(self, snapshot: object) -> None:
        """New RUM decisions: republish the current view with them attached."""
        if self.fleet is not None:
            self.on_health(self.fleet.view)

    def explain_view(self) -> HealthView:
        """The view answers use, with the RUM figures of the latest round (the published
        snapshot has the same sets; its figures may be a few rounds old)."""
        view = self.responder.health
        if self.rum is not None and self.rum.latest is not None:
            view = view.with_rum(self.rum.latest)
        return view

    def on_health(self, view: HealthView) -> None:
        """Every new health view goes to the in-process responder and to every worker, with
        the latest RUM decisions attached."""
        if self.rum is not None and self.rum.snapshot is not None:
            view = view.with_rum(self.rum.snapshot)
        if self.steering:
            view = view.with_steering(self.steering)
        self.responder.set_health(view)
        if self.pool is not None:
            self.pool.push_health(view)

    def start_commit(self, config: Config) -> None:
        """The commit controllers (off the DNS path), resumed from ``--state-dir``."""
        self.commit = CommitService(self.on_steering, self.merged_stats, self.settings.state_dir)
        self.metrics.registry.register(CommitCollector(self.commit))
        self.commit.configure(config)
        self.commit.attach(self.fleet)
        self.commit.start()

    def on_steering(self, steering: dict) -> None:
        """New commit weights: republish the current view with them attached."""
        self.steering = steering
        if self.fleet is not None:
            self.on_health(self.fleet.view)

    async def merged_stats(self) -> dict:
        return merge(await self.stats_snapshots())

    async def stats_snapshots(self) -> list[dict]:
        """Counters of every process that answers DNS (for /metrics)."""
        if self.pool is not None:
            return await self.pool.stats()
        return [self.stats.snapshot()]

    async def start_web(self) -> None:
        if self.settings.http is None:
            return
        from gslb.web.app import WebServer

        self.web = WebServer(self)
        host, port = self.http_bound = await self.web.start(*self.settings.http)
        log.info("listening for HTTP on %s port %d", host, port)

    async def reload(self) -> ReloadResult:
        """Load everything, validate, swap atomically; on any error keep serving the old."""
        async with self.reload_lock:
            self.notifier.reloading()
            config, errors = await asyncio.to_thread(
                load_config, self.settings.zones, self.settings.split_extension
            )
            if config is None:
                result = ReloadResult(False, errors)
                for line in errors:
                    log.error("reload failed: %s", line)
            else:
                for note in (*config.warnings, *keep_serials_increasing(self.config, config)):
                    log.warning("reload: %s", note)
                await self.prober.update(config.checks)
                self.fleet.set_config(config)
                self.rum.configure(config)
                self.commit.configure(config)
                self.config = config
                self.responder.set_config(config)
                if self.pool is not None:
                    await self.pool.push_config(config)
                result = ReloadResult(True, [], digest=config.digest)
                log.info("reload ok: %d zone(s), digest %s", len(config.zones), config.digest[:12])
            self.last_reload = result
            self.metrics.on_reload(result.ok, self.config.checks)
            failed = "" if result.ok else f"reload failed ({len(result.errors)} error(s)), "
            self.notifier.ready(failed + serving_status(self.config))
            return result

    async def stop(self) -> None:
        if self.commit is not None:
            await self.commit.stop()
        self.notifier.stopping()
        if self.watcher is not None:
            await self.watcher.stop()
        await self.notifier.stop_watchdog()
        await self.sampler.stop()
        if self.window_clock is not None:
            await self.window_clock.stop()
        if self.dns is not None:
            self.dns.close()
        if self.pool is not None:
            await self.pool.stop()
        if self.web is not None:
            await self.web.stop()
        if self.rum_web is not None:
            await self.rum_web.stop()
        if self.rum is not None:
            await self.rum.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.prober is not None:
            await self.prober.stop()
        if self.geo is not None:
            self.geo.close()

    async def run(self) -> int:
        try:
            await self.start()
        except StartupError as exc:
            log.error("cannot start:\n%s", exc)
            return 2
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return 2
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.stopping.wait()
        log.info("stopping")
        await self.stop()
        return 0


def load_admin_token(path: Path | None) -> str | None:
    """The admin bearer token from ``path``, else ``GSLB_ADMIN_TOKEN``; never logged."""
    if path is None:
        token = os.environ.get("GSLB_ADMIN_TOKEN", "").strip()
        log.info("admin API %s", "enabled (GSLB_ADMIN_TOKEN)" if token else "disabled (no token)")
        return token or None
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"admin token file {path}: {exc}") from None
    if not token:
        raise StartupError(f"admin token file {path} is empty")
    log.info("admin API enabled (token from %s)", path)
    return token


def warn_about_clock(config: Config) -> None:
    """Signature windows come from the clock: a clock far off makes every answer bogus."""
    problem = clock_problem(time.time(), newest_file_time(config.signing.values()))
    if config.signing and problem is not None:
        log.warning("DNSSEC: %s", problem)
    for settings in config.signing.values():
        log.info("DNSSEC: %s signed with key %d", settings.fqdn, settings.active.tag)


def serving_status(config: Config) -> str:
    """One line for systemctl status (sd_notify STATUS=)."""
    zones, checks = len(config.zones), len(config.checks)
    return f"serving {zones} zone(s), {checks} check(s), config {config.digest[:12]}"


def log_transition(transition: Transition) -> None:
    """One line per health state change, with the reason (probe result or operator)."""
    level = logging.WARNING if transition.new == "down" else logging.INFO
    log.log(level, "health %s: %s -> %s (%s)",
            transition.key, transition.old, transition.new, transition.reason)  # fmt: skip


def max_timeout(config: Config) -> float:
    return max((spec.timeout for spec in config.checks.values()), default=0.0) + 0.5
