"""Headless Debian Chromium driven over the DevTools protocol, for tests of pages gslb serves.

No browser download and no new dependency: ``make test-console`` installs Debian's
``chromium``, and this module speaks the DevTools protocol over aiohttp's WebSocket client.
Anything that needs a real browser (the status page, the RUM beacon) can use it::

    async with Chromium() as browser:
        page = await browser.new_page(width=375, height=800)
        await page.goto("http://127.0.0.1:9053/")
        title = await page.evaluate("document.title")
        png = await page.screenshot()

Chromium runs with a fresh ``--user-data-dir`` and without any background networking (this
machine has no network but loopback, and a browser phoning home would only time out). The
DevTools endpoint is read from Chromium's own "DevTools listening on" line, not polled for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where the sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
START_TIMEOUT = 30.0
CALL_TIMEOUT = 15.0
LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class BrowserError(Exception):
    """Chromium did not start, or a DevTools call failed."""


class Chromium:
    """One headless Chromium process and its DevTools connection (an async context manager)."""

    def __init__(self, executable: str = CHROMIUM) -> None:
        self.executable = executable
        self.process: asyncio.subprocess.Process | None = None
        self.profile: str | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.listeners: list[Callable[[dict], None]] = []
        self.reader: asyncio.Task | None = None
        self.stderr_task: asyncio.Task | None = None

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="gslb-chromium-")
        self.process = await asyncio.create_subprocess_exec(
            self.executable, *FLAGS, f"--user-data-dir={self.profile}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with asyncio.timeout(START_TIMEOUT):
                url = await self._endpoint()
        except TimeoutError:
            await self.stop()
            raise BrowserError(f"no DevTools endpoint in {START_TIMEOUT} s") from None
        self.stderr_task = asyncio.create_task(self._drain_stderr())
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(url, max_msg_size=64 * 2**20)
        self.reader = asyncio.create_task(self._read())

    async def _endpoint(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        seen = []
        while line := await self.process.stderr.readline():
            text = line.decode(errors="replace")
            match = LISTENING.search(text)
            if match:
                return match.group(1)
            seen.append(text)
        raise BrowserError("chromium exited before listening:\n" + "".join(seen[-20:]))

    async def _drain_stderr(self) -> None:
        """Keep reading Chromium's log so a full pipe never blocks it."""
        assert self.process is not None and self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data)
            future = self.pending.pop(data.get("id"), None) if "id" in data else None
            if future is not None:
                if not future.done():
                    future.set_result(data)
                continue
            for listener in list(self.listeners):
                listener(data)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(BrowserError("DevTools connection closed"))

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        """One DevTools command; its ``result``, or BrowserError with the protocol's error."""
        if self.ws is None:
            raise BrowserError("browser not started")
        request_id = next(self.ids)
        message: dict[str, Any] = {"id": request_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        future = self.pending[request_id] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(json.dumps(message))
        async with asyncio.timeout(CALL_TIMEOUT):
            reply = await future
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    async def new_page(self, width: int = 1280, height: int = 900, mobile: bool = False) -> Page:
        """A fresh tab with the given viewport (CSS pixels)."""
        target = await self.call("Target.createTarget", url="about:blank")
        attached = await self.call(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, attached["sessionId"])
        await page.call("Page.enable")
        await page.call("Runtime.enable")
        await page.viewport(width, height, mobile)
        return page

    async def stop(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.call("Browser.close")
            await self.ws.close()
            self.ws = None
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)
        if self.process is not None:
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()
        if self.stderr_task is not None:
            await asyncio.gather(self.stderr_task, return_exceptions=True)
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: navigate, run JavaScript in it, wait for its events, take screenshots."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    async def call(self, method: str, **params: Any) -> dict:
        return await self.browser.call(method, self.session, **params)

    async def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=mobile,
        )  # fmt: skip

    def event(self, method: str) -> asyncio.Future:
        """A future for this tab's next ``method`` event (e.g. ``Page.loadEventFired``);
        create it before the action that causes the event."""
        future = asyncio.get_running_loop().create_future()

        def listener(data: dict) -> None:
            if data.get("sessionId") == self.session and data.get("method") == method:
                if not future.done():
                    future.set_result(data.get("params", {}))
                self.browser.listeners.remove(listener)

        self.browser.listeners.append(listener)
        return future

    async def goto(self, url: str, timeout: float = CALL_TIMEOUT) -> None:
        """Navigate and wait for the load event."""
        loaded = self.event("Page.loadEventFired")
        result = await self.call("Page.navigate", url=url)
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        async with asyncio.timeout(timeout):
            await loaded

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, full_page: bool = False) -> bytes:
        """A PNG of the viewport, or of the whole page."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = await self.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
            )
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = await self.call("Page.captureScreenshot", **params)
        return base64.b64decode(data["data"])
