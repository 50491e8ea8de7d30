"""HTTP side: health endpoints (the operations work extends this with metrics, status, admin)."""

from __future__ import annotations

from aiohttp import web


class WebServer:
    def __init__(self, app) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None

    def routes(self) -> web.Application:
        application = web.Application()
        application.router.add_get("/healthz", self.healthz)
        application.router.add_get("/readyz", self.readyz)
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

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self.app.ready.is_set():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="starting\n")
