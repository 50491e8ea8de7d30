"""HTTP side: metrics, health and status for operators, explain, and a token-protected admin API.

Read-only endpoints (``/metrics``, ``/healthz``, ``/readyz``, ``/status``, ``/explain``) are
open: the listener is on loopback by default, and they reveal nothing a zone file does not.
Everything under ``/admin/`` changes what the server answers, so it takes ``POST`` with
``Authorization: Bearer <token>``; without a configured token the admin API is off.

Admin status codes: 401 no credentials, 403 wrong token or admin disabled, 404 unknown check,
400 malformed request, 409 ambiguous check, 422 a reload whose zone files do not validate
(the request was fine, the content is not; the last good configuration keeps serving).
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gslb import __version__
from gslb.stats import merge

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ACTIONS = {"up": "up", "down": "down", "drain": "drained", "obey": None}
QTYPES = ("A", "AAAA", "CNAME")
ADMIN_HOWTO = (
    "admin API disabled: no token configured; start with --admin-token-file FILE "
    "or set GSLB_ADMIN_TOKEN, then send 'Authorization: Bearer <token>'"
)
MEASUREMENT_KEYS = {"check", "latency_ms", "success_ratio", "ttl"}
DEFAULT_MEASUREMENT_TTL = 60.0


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    dumps = functools.partial(json.dumps, indent=2, default=str)
    return web.json_response(data, status=status, dumps=dumps, **kwargs)


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


class WebServer:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None

    def routes(self) -> web.Application:
        application = web.Application(middlewares=[self.admin_auth], client_max_size=64 * 1024)
        router = application.router
        router.add_get("/healthz", self.healthz)
        router.add_get("/readyz", self.readyz)
        router.add_get("/metrics", self.metrics)
        router.add_get("/status", self.status)
        router.add_get("/explain", self.explain)
        router.add_post("/admin/reload", self.admin_reload)
        router.add_post("/admin/measurements", self.admin_measurement)
        # Check keys contain "/" ("http://192.0.2.1:80/health#1a2b3c4d"): match greedily.
        router.add_post(r"/admin/targets/{check:.+}/{action:up|down|drain|obey}", self.admin_target)
        return application

    async def start(self, host: str, port: int) -> tuple[str, int]:
        self.runner = web.AppRunner(self.routes(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets  # noqa: SLF001 - the only way to learn port 0's pick
        return sockets[0].getsockname()[:2]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    # -- read-only -----------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready once zones loaded and the first probe round finished; not while stopping."""
        if self.app.stopping.is_set():
            return web.Response(status=503, text="stopping\n")
        if self.app.ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")

    async def metrics(self, request: web.Request) -> web.Response:
        # Rendered on the loop thread on purpose: the stats dicts are only touched from here.
        stats = merge(await self.app.stats_snapshots())  # one per DNS process
        body, content_type = self.app.metrics.render(request.headers.get("Accept"), stats)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def status(self, request: web.Request) -> web.Response:
        app = self.app
        config = app.config
        last = app.last_reload
        return json_response({
            "version": __version__,
            "ready": app.ready.is_set(),
            "config": None if config is None else {
                "digest": config.digest,
                "loaded_at": config.loaded_at,
                "zones": [
                    {"zone": z.fqdn, "serial": z.serial, "source": z.source}
                    for z in sorted(config.zones.values(), key=lambda z: z.fqdn)
                ],
                "checks": len(config.checks),
            },
            "last_reload": None if last is None else {
                "ok": last.ok, "at": last.at, "digest": last.digest, "errors": last.errors,
            },
            "health": app.prober.status() if app.prober is not None else None,
            "geo": app.geo.description if app.geo is not None else None,
            "admin": {"enabled": bool(app.admin_token)},
        })  # fmt: skip

    async def explain(self, request: web.Request) -> web.Response:
        """The policy chain's decision for one client, step by step (same code as answers)."""
        from gslb.cli import find_record
        from gslb.config.names import NameError_

        try:
            name, qtype, resolver, ecs = explain_args(request.query)
            record = find_record(self.app.config, name, qtype)
        except (ValueError, NameError_) as exc:
            return error(400, str(exc))
        if record is None:
            return error(404, f"{name}: no dynamic {qtype} record")
        trace = self.app.engine.explain(record, resolver, ecs, self.app.prober.view)
        return json_response(trace)

    # -- admin ---------------------------------------------------------------------------------

    @web.middleware
    async def admin_auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Bearer token on /admin/: 401 without credentials, 403 when wrong or not configured."""
        if not request.path.startswith("/admin/"):
            return await handler(request)
        token = self.app.admin_token
        if not token:
            return error(403, ADMIN_HOWTO)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return json_response(
                {"error": "admin API needs 'Authorization: Bearer <token>'"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="gslb admin"'},
            )
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            log.warning("admin: rejected %s %s: wrong token", request.method, request.path)
            return error(403, "wrong admin token")
        return await handler(request)

    async def admin_reload(self, request: web.Request) -> web.Response:
        result = await self.app.reload()
        body = {"ok": result.ok, "digest": result.digest, "at": result.at, "errors": result.errors}
        return json_response(body, status=200 if result.ok else 422)

    async def admin_target(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        key, problem = self.find_check(request.match_info["check"])
        if problem is not None:
            return problem
        self.app.prober.set_override(key, ACTIONS[action])
        log.info("admin: check %s set to %s", key, action)
        state = self.app.prober.status()["checks"][key]
        return json_response({"check": key, "action": action, "override": state["override"],
                              "effective": state["effective"]})  # fmt: skip

    def find_check(self, ref: str) -> tuple[str, web.Response | None]:
        """The exact key, or a unique key without its ``#digest`` suffix (easier to type)."""
        checks = self.app.config.checks
        if ref in checks:
            return ref, None
        matches = sorted(key for key in checks if key.partition("#")[0] == ref)
        if len(matches) == 1:
            return matches[0], None
        if matches:
            return "", error(409, f"check {ref!r} is ambiguous", candidates=matches)
        return "", error(404, f"unknown check {ref!r} (see /status for the configured checks)")

    async def admin_measurement(self, request: web.Request) -> web.Response:
        """External performance feed: {check, latency_ms, success_ratio, ttl (s, default 60)}."""
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "body must be JSON: {check, latency_ms, success_ratio, ttl}")
        if not isinstance(data, dict):
            return error(400, "body must be a JSON object: {check, latency_ms, success_ratio, ttl}")
        unknown = sorted(set(data) - MEASUREMENT_KEYS)
        if unknown:
            return error(400, f"unknown field(s) {', '.join(unknown)}")
        missing = [k for k in ("check", "latency_ms", "success_ratio") if k not in data]
        if missing:
            return error(400, f"missing field(s) {', '.join(missing)}")
        numbers = {k: data.get(k, DEFAULT_MEASUREMENT_TTL) for k in MEASUREMENT_KEYS - {"check"}}
        bad = [k for k, v in numbers.items() if not _is_number(v)]
        if bad or not isinstance(data["check"], str):
            return error(400, f"invalid field(s) {', '.join(sorted(bad) or ['check'])}")
        if numbers["latency_ms"] < 0:
            return error(400, f"invalid latency_ms {numbers['latency_ms']!r}: expected >= 0")
        key, problem = self.find_check(data["check"])
        if problem is not None:
            return problem
        try:
            self.app.prober.push_measurement(
                key, numbers["latency_ms"] / 1000, numbers["success_ratio"], numbers["ttl"]
            )
        except ValueError as exc:
            return error(400, str(exc))
        return json_response({"check": key, "accepted": True, "ttl": numbers["ttl"]})


def explain_args(query: Mapping[str, str]) -> tuple[str, str, IPAddress, tuple | None]:
    """name, qtype, resolver and ECS from ``/explain``'s query; ValueError says what is wrong."""
    name, client = query.get("name", "").strip(), query.get("client", "").strip()
    qtype = query.get("qtype", "A").strip().upper()
    if not name or not client:
        raise ValueError("name and client are required: ?name=www.example.com&client=IP")
    if qtype not in QTYPES:
        raise ValueError(f"invalid qtype {qtype!r}: expected one of {', '.join(QTYPES)}")
    try:
        resolver = ipaddress.ip_address(client)
    except ValueError:
        raise ValueError(f"invalid client {client!r}: expected an IP address") from None
    ecs = None
    if query.get("ecs"):
        try:
            network = ipaddress.ip_network(query["ecs"].strip(), strict=False)
        except ValueError:
            raise ValueError(f"invalid ecs {query['ecs']!r}: expected a prefix") from None
        ecs = (network.network_address, network.prefixlen)
    return name, qtype, resolver, ecs


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
