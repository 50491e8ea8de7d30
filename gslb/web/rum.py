"""HTTP routes of real-user measurements: the snippet, the recipe, beacons, the bulk feed.

``/rum/v1/*`` is meant for browsers on the open Internet (served on the main HTTP listener
and, with ``--rum-listen``, alone on a public one); ``/admin/rum/bulk`` sits behind the admin
token like every ``/admin/`` path. The client's address is read from the connection, or from
``--rum-client-header`` when the connection comes from a ``--rum-trusted-proxy``; it is handed
to ingestion, which keeps only its network's keys, and never logged here.
"""

from __future__ import annotations

import ipaddress
import json
import time
from importlib import resources
from typing import Any

from aiohttp import web

from gslb.rum.ingest import Rejected

STATUS = {
    "too_large": 413, "malformed": 400, "unknown_record": 404, "origin": 403,
    "bad_token": 403, "expired": 403, "replayed": 409, "rate_network": 429, "rate_global": 429,
}  # fmt: skip
TYPES = {"A": 1, "AAAA": 28, "CNAME": 5}


def snippet() -> bytes:
    return resources.files("gslb.rum").joinpath("rum.js").read_bytes()


class RumRoutes:
    """Handlers bound to the app's RumService (``app.rum``) and its client-address settings."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.js = snippet()
        settings = getattr(app.settings, "rum", None)
        self.trusted = tuple(settings.trusted_proxies) if settings is not None else ()
        self.header = settings.client_header if settings is not None else "X-Forwarded-For"

    def add_public(self, router: web.UrlDispatcher) -> None:
        router.add_get("/rum/v1/rum.js", self.script)
        router.add_get("/rum/v1/recipe", self.recipe)
        router.add_post("/rum/v1/beacons", self.beacon)
        router.add_route("OPTIONS", "/rum/v1/beacons", self.preflight)
        router.add_route("OPTIONS", "/rum/v1/recipe", self.preflight)

    def add_admin(self, router: web.UrlDispatcher) -> None:
        router.add_post("/admin/rum/bulk", self.bulk)
        router.add_get("/rum/v1/status", self.status)

    # -- public --------------------------------------------------------------------------------

    async def script(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.js,
            content_type="application/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def recipe(self, request: web.Request) -> web.Response:
        service = self.app.rum
        record = record_key(request.query.get("name", ""), request.query.get("type", "CNAME"))
        options = service.ingest.records.get(record) if record is not None else None
        if options is None:
            service.ingest.beacons["unknown_record"] += 1
            return self._json({"error": "no RUM-steered record by that name and type"}, 404)
        origin = request.headers.get("Origin")
        if options.origins and (origin or "").lower() not in options.origins:
            service.ingest.beacons["origin"] += 1
            return self._json({"error": "origin not allowed"}, 403)
        address = self.client(request)
        if address is None:
            return self._json({"error": "no client address"}, 400)
        job = service.ingest.recipe(record, address, time.time())
        return self._json(job, 200, origin)

    async def beacon(self, request: web.Request) -> web.Response:
        service = self.app.rum
        limit = service.ingest.limits.max_body
        body = await request.content.read(limit + 1)
        address = self.client(request)
        origin = request.headers.get("Origin")
        if address is None:
            return self._json({"error": "no client address"}, 400)
        try:
            added = service.ingest.beacon(body, address, origin, time.monotonic(), time.time())
        except Rejected as exc:
            return self._json({"error": exc.reason}, STATUS.get(exc.reason, 400), origin)
        return web.Response(status=204, headers=self._cors(origin) | {"X-Samples": str(added)})

    async def preflight(self, request: web.Request) -> web.Response:
        headers = self._cors(request.headers.get("Origin"))
        headers["Access-Control-Allow-Methods"] = "GET, POST"
        headers["Access-Control-Allow-Headers"] = "Content-Type"
        headers["Access-Control-Max-Age"] = "86400"
        return web.Response(status=204, headers=headers)

    # -- admin ---------------------------------------------------------------------------------

    async def bulk(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._json({"error": 'body must be JSON: {"samples": [...]}'}, 400)
        items = data.get("samples") if isinstance(data, dict) else None
        try:
            accepted, problems = self.app.rum.ingest.add_bulk(items, time.monotonic())
        except ValueError as exc:
            return self._json({"error": str(exc)}, 400)
        status = 200 if not problems else (207 if accepted else 400)
        return self._json({"accepted": accepted, "rejected": problems}, status)

    async def status(self, request: web.Request) -> web.Response:
        return self._json(self.app.rum.status(), 200)

    # -- helpers -------------------------------------------------------------------------------

    def client(self, request: web.Request) -> Any:
        """The browser's address: the peer, or the proxy's header when the peer is trusted."""
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return None
        if peer.version == 6 and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped
        if not any(peer in net for net in self.trusted):
            return peer
        forwarded = [p.strip() for p in request.headers.get(self.header, "").split(",")]
        for text in reversed(forwarded):  # the rightmost address no trusted proxy added
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                return None
            if not any(address in net for net in self.trusted):
                return address
        return peer

    def _cors(self, origin: str | None) -> dict[str, str]:
        return {"Access-Control-Allow-Origin": origin or "*", "Vary": "Origin"}

    def _json(self, data: Any, status: int, origin: str | None = None) -> web.Response:
        headers = self._cors(origin) | {"Cache-Control": "no-store"}
        return web.json_response(data, status=status, headers=headers)


class PublicRumServer:
    """``--rum-listen``: only ``/rum/v1/*`` beacon paths, for a public address, so the main
    HTTP listener (metrics, explain, admin) can stay on loopback."""

    def __init__(self, app: Any) -> None:
        self.routes = RumRoutes(app)
        self.runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        application = web.Application(client_max_size=64 * 1024)
        self.routes.add_public(application.router)
        self.runner = web.AppRunner(application, access_log=None)  # addresses never logged
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        return site._server.sockets[0].getsockname()[:2]  # noqa: SLF001 - port 0's pick

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def record_key(name: str, rtype: str) -> tuple[str, int] | None:
    name = name.strip().lower()
    if not name or rtype.upper() not in TYPES or len(name) > 255:
        return None
    return (name if name.endswith(".") else name + ".", TYPES[rtype.upper()])
