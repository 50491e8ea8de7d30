"""The running server: wires configuration, geo, policy engine, prober, DNS and HTTP together.

Start-up order matters for correct first answers: zones load and validate, the GeoIP database
opens, the prober runs one full round, and only then do the DNS listeners open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from gslb.config.load import Config, load_config
from gslb.dns.responder import Options, Responder
from gslb.dns.server import DnsServer, TcpLimits, parse_endpoint
from gslb.geo import GeoDB, GeoError, default_db_path
from gslb.health.prober import Prober
from gslb.policy.chain import Engine
from gslb.stats import Stats

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
            ),
            probe_wait=not args.no_probe_wait,
        )


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
        self.dns: DnsServer | None = None
        self.web = None
        self.http_bound: tuple[str, int] | None = None
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self.last_reload: ReloadResult | None = None
        self.reload_lock = asyncio.Lock()

    async def start(self) -> None:
        config, errors = load_config(self.settings.zones)
        if config is None:
            raise StartupError("\n".join(errors))
        try:
            self.geo = GeoDB.open(self.settings.geoip)
        except GeoError as exc:
            raise StartupError(str(exc)) from None
        self.config = config
        self.engine = Engine(self.geo)
        options = Options(self.settings.identity, self.settings.version_string)
        self.responder = Responder(config, self.engine, options, self.stats)
        self.prober = Prober(on_change=self.responder.set_health)
        await self.prober.start()
        await self.prober.update(config.checks)
        if self.settings.probe_wait:
            await self.prober.first_round(timeout=max_timeout(config))
        self.responder.set_health(self.prober.view)
        self.dns = DnsServer(self.responder, self.settings.tcp)
        for host, port in self.settings.dns:
            bound = await self.dns.listen(host, port)
            log.info("listening for DNS on %s port %d (UDP and TCP)", *bound)
        await self.start_web()
        self.last_reload = ReloadResult(True, [], digest=config.digest)
        self.ready.set()
        log.info(
            "ready: %d zone(s), %d health check(s), GeoIP %s",
            len(config.zones), len(config.checks), self.geo.description,
        )  # fmt: skip

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
            config, errors = await asyncio.to_thread(load_config, self.settings.zones)
            if config is None:
                result = ReloadResult(False, errors)
                for line in errors:
                    log.error("reload failed: %s", line)
            else:
                await self.prober.update(config.checks)
                self.config = config
                self.responder.set_config(config)
                result = ReloadResult(True, [], digest=config.digest)
                log.info("reload ok: %d zone(s), digest %s", len(config.zones), config.digest[:12])
            self.last_reload = result
            return result

    async def stop(self) -> None:
        if self.dns is not None:
            self.dns.close()
        if self.web is not None:
            await self.web.stop()
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


def max_timeout(config: Config) -> float:
    return max((spec.timeout for spec in config.checks.values()), default=0.0) + 0.5


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(fmt: str = "plain", level: str = "info") -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
