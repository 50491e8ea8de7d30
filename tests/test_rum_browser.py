"""The RUM beacon in a real browser: headless Debian Chromium (``make test-console``).

A site page on one local port embeds ``/rum/v1/rum.js`` from gslb on another; three local
HTTP servers on further ports stand in for three CDNs, each serving the test object with
``Access-Control-Allow-Origin`` and ``Timing-Allow-Origin``. One CDN is made slow: each page
view sends a beacon with the Resource Timing figures the browser measured, gslb drops the slow
CDN from the DNS answers for this client network (127.0.0.0/24: the browser, and the resolver
that asks without ECS), and takes it back once it recovers. No timing is hard-coded in the
assertions beyond "slow is slower than fast": the browser's own measurements decide.
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.message
import pytest
from aiohttp import web

from gslb.config.load import find_record
from gslb.rum.ingest import Limits
from gslb.rum.settings import RumSettings
from tests.browser import Chromium, Page
from tests.conftest import write_zone
from tests.server import ServerThread
from tests.test_rum_server import CDNS, rum_zone

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)


class FakeCdn:
    """A CDN edge serving the RUM test object after ``delay`` seconds."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.hits = 0
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        await asyncio.sleep(self.delay)
        return web.Response(body=GIF, content_type="image/gif", headers={
            "Access-Control-Allow-Origin": "*",
            "Timing-Allow-Origin": "*",
            "Cache-Control": "no-store",
        })  # fmt: skip

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/gslb-rum.gif", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def site(gslb_port: int) -> tuple[web.AppRunner, int]:
    """The customer's web site: one page with the snippet, measured right after load."""
    page = (
        "<!doctype html><html><head><title>shop</title></head><body><p>hello</p>"
        f'<script async src="http://127.0.0.1:{gslb_port}/rum/v1/rum.js" '
        'data-name="content.example.com" data-delay="0" data-timeout="3000"></script>'
        "</body></html>"
    )

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site_ = web.TCPSite(runner, "127.0.0.1", 0)
    await site_.start()
    return runner, site_._server.sockets[0].getsockname()[1]  # noqa: SLF001


def zone(cdns: list[FakeCdn]) -> str:
    probes = {
        name: f"http://127.0.0.1:{cdn.port}/gslb-rum.gif"
        for name, cdn in zip(CDNS, cdns, strict=True)
    }
    return rum_zone(probes, "      tolerance: 0.5\n      margin_ms: 40\n")


def answers(server: ServerThread, count: int = 30) -> set[str]:
    seen = set()
    for _ in range(count):
        reply = server.udp(dns.message.make_query("content.example.com", "CNAME"))
        seen.add(reply.answer[0][0].target.to_text())
    return seen


def explained(server: ServerThread) -> dict:
    """The rum step of the explain trace for this network's resolver (127.0.0.1, no ECS)."""
    record = find_record(server.app.config, "content.example.com", "CNAME")
    resolver = ipaddress.ip_address("127.0.0.1")
    trace = server.app.engine.explain(record, resolver, None, server.app.explain_view())
    return next(s for s in trace["steps"] if s["step"] == "rum")


async def decision_rounds(server: ServerThread, count: int) -> None:
    """Until the RUM service has rebuilt its decisions ``count`` more times."""
    target = server.app.rum.rounds + count
    for _ in range(200):
        if server.app.rum.rounds >= target:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"no RUM decision round in 2 s (rounds {server.app.rum.rounds})")


async def view_pages_until(page: Page, url: str, server: ServerThread, done, what: str) -> int:
    """Load the page (one beacon per view) until ``done(answers)``; returns the views."""
    for views in range(1, 40):
        accepted = server.app.rum.ingest.beacons["accepted"]
        await page.goto(url)
        for _ in range(100):  # the beacon leaves after the fetches; wait for gslb to count it
            if server.app.rum.ingest.beacons["accepted"] > accepted:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"no beacon accepted after a page view: {server.app.rum.status()}")
        await decision_rounds(server, 2)  # one round that surely started after the beacon
        if done(await asyncio.to_thread(answers, server)):
            return views
    pytest.fail(f"{what}: not after 40 page views; beacons {server.app.rum.ingest.beacons}")


async def test_a_slow_cdn_leaves_this_networks_answers_and_comes_back(tmp_path, geo_db):
    cdns = [FakeCdn() for _ in CDNS]
    for cdn in cdns:
        await cdn.start()
    write_zone(tmp_path, "example.com", zone(cdns))
    rum = RumSettings(limits=Limits(per_network=6000, network_burst=100), refresh=0.05)
    server = await asyncio.to_thread(ServerThread(tmp_path, geo_db, rum=rum).start)
    runner, port = await site(server.http_port)
    try:
        async with Chromium() as browser:
            page = await browser.new_page()
            url = f"http://127.0.0.1:{port}/"
            assert await asyncio.to_thread(answers, server) == set(CDNS)
            cdns[0].delay = 0.4  # a is slow for this network
            await view_pages_until(page, url, server, lambda seen: CDNS[0] not in seen,
                                   "slow a to leave")  # fmt: skip
            assert await asyncio.to_thread(answers, server) == {CDNS[1], CDNS[2]}
            assert all(cdn.hits >= 4 for cdn in cdns)  # cold + warm from every view
            figures = explained(server)["notes"]["targets"]
            assert figures[CDNS[0]]["p50_ms"] > figures[CDNS[1]]["p50_ms"] + 200  # as measured
            status = server.app.rum.status()
            assert status["beacons"].get("accepted", 0) >= 2
            assert not set(status["beacons"]) - {"accepted"}  # nothing from the browser refused
            cdns[0].delay = 0.0  # a recovers
            await view_pages_until(page, url, server, lambda seen: CDNS[0] in seen,
                                   "recovered a to come back")  # fmt: skip
            step = explained(server)
            assert step["notes"]["level"] == "prefix"
            assert step["notes"]["targets"][CDNS[0]]["verdict"] == "kept"
    finally:
        await runner.cleanup()
        await asyncio.to_thread(server.stop)
        for cdn in cdns:
            await cdn.stop()
