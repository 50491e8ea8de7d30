"""The status page in a real browser: headless Debian Chromium (``make test-console``).

A live server with three local HTTP edges; the test reads the page's DOM as a browser built
it, fails an edge and watches the page (refreshing itself, nobody reloads it) turn that cell
red with words and move the share chart, checks a 375 px phone viewport needs no horizontal
scrolling, and that the state cells' text has enough contrast (WCAG AA, 4.5:1).
Screenshots land in the test's tmp dir, or in ``$CONSOLE_SCREENSHOTS`` when set (the README's
pictures come from there).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.browser import Chromium, Page
from tests.edges import EdgeThread
from tests.server import ServerThread
from tests.test_console import ask, console_zone

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CELLS = """Array.from(document.querySelectorAll('td[data-check]')).map(td => ({
  check: td.dataset.check, state: td.dataset.state, cls: td.className,
  text: td.innerText.replace(/\\s+/g, ' ').trim(),
  right: td.getBoundingClientRect().right}))"""
SHARE = """(target => {
  const bar = document.querySelector('article.record svg.bar');
  return Array.from(bar.querySelectorAll('rect[data-target]'))
    .filter(r => r.dataset.target === target)
    .reduce((sum, r) => sum + parseFloat(r.dataset.share), 0);
})"""
CONTRAST = """Array.from(document.querySelectorAll('td.cell, ol.timeline li')).map(el => {
  const rgb = s => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const style = getComputedStyle(el);
  const [a, b] = [lum(rgb(style.color)), lum(rgb(style.backgroundColor))];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
})"""


@pytest.fixture(scope="module")
def edges():
    threads = [EdgeThread() for _ in range(3)]
    yield threads
    for edge in threads:
        edge.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db, edges):
    zones = tmp_path_factory.mktemp("zones")
    console_zone(zones, edges)
    with ServerThread(zones, geo_db) as server:
        yield server


@pytest.fixture
def shots(tmp_path) -> Path:
    directory = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


async def save(page: Page, path: Path, full_page: bool = True) -> None:
    png = await page.screenshot(full_page=full_page)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    path.write_bytes(png)


async def wait_for_refresh(page: Page, predicate: str, timeout: float) -> object:
    """Let the page reload itself (meta refresh) until ``predicate`` is truthy in it."""
    async with asyncio.timeout(timeout):
        while True:
            loaded = page.event("Page.loadEventFired")
            value = await page.evaluate(predicate)
            if value:
                loaded.cancel()
                return value
            await loaded


async def test_edge_failure_turns_its_cell_red_and_moves_the_share(server, edges, shots):
    url = server.url("/?refresh=1")
    await asyncio.to_thread(ask, server, 200)
    async with Chromium() as browser:
        page = await browser.new_page(1100, 900)
        await page.goto(url)
        assert (await page.evaluate("document.title")).startswith("gslb status")
        cells = await page.evaluate(CELLS)
        assert len(cells) == 3 and all(c["state"] == "up" for c in cells), cells
        assert all(c["text"].lower().startswith("up") for c in cells)  # in words
        before = await page.evaluate(f"{SHARE}('127.0.0.1')")
        assert before > 0.2
        await save(page, shots / "console.png")

        failing = edges[0]
        key = next(k for k in server.app.config.checks if f":{failing.edge.port}/" in k)
        failing.switch("status", 503)
        started = time.monotonic()
        try:
            cell = await wait_for_refresh(
                page,
                f"Array.from(document.querySelectorAll('td[data-check]'))"
                f".find(td => td.dataset.check === {key!r} && td.dataset.state === 'down')"
                f"?.innerText",
                timeout=10,
            )
            took = time.monotonic() - started
            assert "DOWN" in cell.upper() and "status 503" in cell  # words, not only colour
            colour = await page.evaluate(
                f"getComputedStyle(document.querySelector('td[data-check=\"{key}\"]'))"
                ".backgroundColor"
            )
            red, green, _ = (int(v) for v in colour[4:-1].split(",")[:3])
            assert red > green  # and red, for those who see it
            await asyncio.to_thread(ask, server, 300)
            after = await wait_for_refresh(
                page, f"(s => s < {before - 0.1} && s)({SHARE}('127.0.0.1'))", timeout=10
            )
            assert after < before - 0.1
            timeline = await page.evaluate("document.querySelector('ol.timeline').innerText")
            assert "up → down" in timeline and "status 503" in timeline
            await save(page, shots / "console-down.png")
        finally:
            failing.switch("healthy")
        print(f"cell red {took:.1f} s after the edge failed")
        assert took < 10


async def test_phone_viewport_shows_the_matrix_without_horizontal_scrolling(server, shots):
    await asyncio.to_thread(ask, server, 50)
    async with Chromium() as browser:
        page = await browser.new_page(375, 800, mobile=True)
        await page.goto(server.url("/"))
        width = await page.evaluate("window.innerWidth")
        assert width == 375
        scroll = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"page is {scroll} px wide on a {width} px screen"
        cells = await page.evaluate(CELLS)
        assert len(cells) == 3 and all(c["right"] <= width for c in cells), cells
        # the region is named in the cell itself once the table header is folded away
        region = await page.evaluate(
            "getComputedStyle(document.querySelector('td[data-check]'), '::before').content"
        )
        assert "this server" in region
        await save(page, shots / "console-phone.png", full_page=False)


async def test_state_text_has_enough_contrast(server, edges):
    async with Chromium() as browser:
        page = await browser.new_page(1100, 900)
        await page.goto(server.url("/"))
        ratios = await page.evaluate(CONTRAST)
        assert ratios and min(ratios) >= 4.5, ratios
        labels = await page.evaluate(
            "Array.from(document.querySelectorAll('svg[role=img]')).map(s => s.ariaLabel)"
        )
        assert labels and all(labels), "every chart has a text alternative"
