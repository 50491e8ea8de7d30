"""HTTP side: metrics, health and status for operators, explain, and a token-protected admin API.

Read-only endpoints (``/`` the status page, ``/metrics``, ``/healthz``, ``/readyz``,
``/status``, ``/explain``) are open: the listener is on loopback by default, and they reveal
nothing a zone file does not.
Everything under ``/admin/`` changes what the server answers, so it takes ``POST`` with
``Authorization: Bearer <token>``; without a configured token the admin API is off.

Admin status codes: 401 no credentials, 403 wrong token or admin disabled, 404 unknown check,
400 malformed request, 409 ambiguous check, 422 a reload whose zone files do not validate
(the request was fine, the content is not; the last good configuration keeps serving).
"""

from __future__ import annotations

import collections
import functools
import hmac
import ipaddress
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gslb import __version__
from gslb.config.load import find_record
from gslb.config.names import NameError_
from gslb.dnssec.status import describe as describe_signing
from gslb.fleet.node import OverrideRefused
from gslb.fleet.overrides import ACTIONS, Override, check_name, parse_duration
from gslb.stats import merge
from gslb.web import usage
from gslb.web.console import Console
from gslb.web.rum import RumRoutes

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
QTYPES = ("A", "AAAA", "CNAME")
ADMIN_HOWTO = (
    "admin API disabled: no token configured; start with --admin-token-file FILE "
    "or set GSLB_ADMIN_TOKEN, then send 'Authorization: Bearer <token>'"
)
MEASUREMENT_KEYS = {"check", "latency_ms", "success_ratio", "ttl"}
DEFAULT_MEASUREMENT_TTL = 60.0


def admin_endpoint(request: web.Request) -> str:
    """A bounded metrics label: the matched route's first part after /admin/, else "unknown"."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    if not canonical.startswith("/admin/"):
        return "unknown"
    return canonical.removeprefix("/admin/").split("/", 1)[0] or "unknown"


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    dumps = functools.partial(json.dumps, indent=2, default=str)
    return web.json_response(data, status=status, dumps=dumps, **kwargs)


def error(status: int, message: str, **extra: Any) -> web.Response:
    return json_response({"error": message, **extra}, status=status)


class WebServer:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None
        self.console = Console(app)  # the status page at /; features add panels to it
        # /admin/ requests by endpoint (the path's first part after /admin/) and status code,
        # refused ones included: a script hammering a wrong token or an unknown target shows.
        self.admin_requests: collections.Counter[tuple[str, int]] = collections.Counter()

    def routes(self) -> web.Application:
        application = web.Application(middlewares=[self.admin_auth], client_max_size=64 * 1024)
        router = application.router
        self.console.register(router)
        router.add_get("/healthz", self.healthz)
        router.add_get("/readyz", self.readyz)
        router.add_get("/metrics", self.metrics)
        router.add_get("/status", self.status)
        router.add_get("/explain", self.explain)
        if getattr(self.app, "rum", None) is not None:
            rum = RumRoutes(self.app)
            rum.add_public(router)
            rum.add_admin(router)
        router.add_get("/fleet", self.fleet)
        router.add_get("/fleet/audit", self.fleet_audit)
        router.add_post("/admin/reload", self.admin_reload)
        router.add_post("/admin/measurements", self.admin_measurement)
        # Check keys contain "/" ("http://192.0.2.1:80/health#1a2b3c4d"): match greedily.
        router.add_post(r"/admin/targets/{check:.+}/{action:up|down|drain|obey}", self.admin_target)
        usage.add_routes(router, self.app)
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
                    {"zone": z.fqdn, "serial": z.serial, "source": z.source,
                     "dnssec": describe_signing(config.signing.get(z.origin))}
                    for z in sorted(config.zones.values(), key=lambda z: z.fqdn)
                ],
                "checks": len(config.checks),
                "warnings": list(config.warnings),
            },
            "last_reload": None if last is None else {
                "ok": last.ok, "at": last.at, "digest": last.digest, "errors": last.errors,
            },
            "health": app.prober.status() if app.prober is not None else None,
            "overrides": app.fleet.overrides_json() if app.fleet is not None else [],
            "geo": app.geo.description if app.geo is not None else None,
            "admin": {"enabled": bool(app.admin_token)},
            "commit": app.commit.status() if getattr(app, "commit", None) is not None else None,
        })  # fmt: skip

    async def explain(self, request: web.Request) -> web.Response:
        """The policy chain's decision for one client, step by step (same code as answers)."""
        try:
            name, qtype, resolver, ecs = explain_args(request.query)
            record = find_record(self.app.config, name, qtype)
        except (ValueError, NameError_) as exc:
            return error(400, str(exc))
        if record is None:
            return error(404, f"{name}: no dynamic {qtype} record")
        trace = self.app.engine.explain(record, resolver, ecs, self.app.explain_view())
        zone = self.app.config.zone_for(record.name)
        trace["dnssec"] = describe_signing(self.app.config.signing.get(zone.origin))
        checks = sorted({c["check"] for c in trace["candidates"] if c["check"] is not None})
        trace["fleet"] = self.app.fleet.explain(checks, trace["region"]["client"])
        return json_response(trace)

    async def fleet_audit(self, request: web.Request) -> web.Response:
        """Every override set and cleared, from the engine's history (fleet mode)."""
        try:
            return json_response(await self.app.fleet.audit())
        except OverrideRefused as exc:
            return error(exc.status, str(exc))

    async def fleet(self, request: web.Request) -> web.Response:
        """This node, its engine and peers, the overrides, and the health matrix."""
        return json_response(self.app.fleet.status())

    # -- admin ---------------------------------------------------------------------------------

    @web.middleware
    async def admin_auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Bearer token on /admin/: 401 without credentials, 403 when wrong or not configured.
        Every admin request is counted by endpoint and status code."""
        if not request.path.startswith("/admin/"):
            return await handler(request)
        endpoint = admin_endpoint(request)
        try:
            response = await self.authorised(request, handler)
        except web.HTTPException as exc:
            self.admin_requests[endpoint, exc.status] += 1
            raise
        self.admin_requests[endpoint, response.status] += 1
        return response

    async def authorised(self, request: web.Request, handler: Handler) -> web.StreamResponse:
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
        """Force a check (by name) or a pool value up, down or drained, or obey the probes.

        Optional, as JSON body or query parameters: ``reason``, ``by``, ``for`` (``2h``: the
        override expires), ``record`` and ``pool`` (limit a value override), ``scope=local``
        (apply on this node only, when the fleet engine cannot take the write)."""
        action = request.match_info["action"]
        try:
            options = await override_options(request)
        except ValueError as exc:
            return error(400, str(exc))
        ref = request.match_info["check"]
        key, problem = self.find_check(ref)
        if problem is not None and problem.status == 404 and ref in self.app.fleet.values:
            return await self.override_target(ref, action, options)
        if problem is not None:
            return problem
        short = check_name(key)
        shared = sum(check_name(k) == short for k in self.app.config.checks) > 1
        override = self.make_override("check", key if shared else short, action, options)
        reply = await self.apply_override(override, action, options)
        if reply is not None:
            return reply
        log.info("admin: check %s set to %s", key, action)
        state = self.app.prober.status()["checks"][key]
        return json_response({"check": key, "action": action, "override": state["override"],
                              "effective": state["effective"],
                              **self.override_detail(override, action)})  # fmt: skip

    async def override_target(
        self, value: str, action: str, options: dict[str, Any]
    ) -> web.Response:
        record, pool = options.get("record"), options.get("pool")
        places = self.app.fleet.values[value]
        if not any(record in (None, r) and pool in (None, p) for r, p in places):
            where = ", ".join(f"{r} pool {p}" for r, p in places)
            return error(404, f"value {value!r} is not in record {record} pool {pool} "
                              f"(it is in: {where})")  # fmt: skip
        override = self.make_override("target", value, action, options)
        reply = await self.apply_override(override, action, options)
        if reply is not None:
            return reply
        log.info("admin: value %s set to %s", override.id, action)
        return json_response({"target": value, "record": record, "pool": pool,
                              "action": action, "override": ACTIONS[action],
                              **self.override_detail(override, action)})  # fmt: skip

    def make_override(self, kind: str, name: str, action: str, options: dict[str, Any]) -> Override:
        now = time.time()
        duration = options.get("for")
        return Override(
            kind=kind,
            name=name,
            state=ACTIONS[action] or "up",  # obey: only the id matters
            reason=options.get("reason", ""),
            by=options.get("by", "admin API"),
            at=now,
            expires_at=None if duration is None else now + duration,
            record=options.get("record") if kind == "target" else None,
            pool=options.get("pool") if kind == "target" else None,
            scope=options.get("scope", "fleet"),
        )

    async def apply_override(
        self, override: Override, action: str, options: dict[str, Any]
    ) -> web.Response | None:
        """Set or clear through the fleet node; an error response, or None when done."""
        fleet = self.app.fleet
        try:
            if ACTIONS[action] is None:
                await fleet.clear_override(override.id, override.scope)
            else:
                await fleet.set_override(override)
        except OverrideRefused as exc:
            return error(exc.status, str(exc), hint="retry, or add scope=local to apply "
                         "on this node only (shown in /fleet)")  # fmt: skip
        return None

    @staticmethod
    def override_detail(override: Override, action: str) -> dict[str, Any]:
        if ACTIONS[action] is None:
            return {"id": override.id, "cleared": True}
        return {"id": override.id, "by": override.by, "reason": override.reason,
                "at": override.at, "expires_at": override.expires_at,
                "scope": override.scope}  # fmt: skip

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


OVERRIDE_OPTIONS = ("reason", "by", "for", "record", "pool", "scope")


async def override_options(request: web.Request) -> dict[str, Any]:
    """reason, by, for, record, pool, scope from the JSON body and the query; ValueError."""
    data: dict[str, Any] = {}
    if request.can_read_body:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("body must be JSON: {reason, by, for, record, pool, scope}") from None
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object: {reason, by, for, record, pool, scope}")
        data.update(body)
    data.update({k: v for k, v in request.query.items()})
    unknown = sorted(set(data) - set(OVERRIDE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    for name in ("reason", "by", "record", "pool"):
        if name in data and (not isinstance(data[name], str) or len(data[name]) > 512):
            raise ValueError(f"invalid {name}: expected text of at most 512 characters")
    if data.get("scope", "fleet") not in ("fleet", "local"):
        raise ValueError("invalid scope: expected fleet or local")
    if "for" in data:
        data["for"] = parse_duration(data["for"])
    if data.get("record") and not data["record"].endswith("."):
        data["record"] += "."
    return data


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
