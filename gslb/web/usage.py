"""Commit routes: ``POST /admin/usage`` (the usage feed) and ``GET /commit`` (controller state).

Usage feed body (token-protected like every ``/admin/`` path)::

    {"usage": [{"target": "example.cdn-a.net.", "start": 1764547200, "end": 1764547500,
                "bytes": 1234567890, "record": "content.example.com."}]}

``start``/``end`` are epoch seconds or ISO 8601 times, ``record`` is needed only when the
target serves several records with contracts. Each item is accepted or refused with a reason
(``duplicate``, ``overlap``, ``unknown-target``, ``ambiguous-target``, ``future``,
``previous-period``, ``invalid``); the reply lists them all. 400 only for a body that is not
a list of such items at all.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

from gslb.commit.contract import timestamp

ITEM_KEYS = {"target", "start", "end", "bytes", "record"}
MAX_ITEMS = 1000


def add_routes(router: web.UrlDispatcher, app: Any) -> None:
    """Register the commit routes on the web server's router."""
    routes = CommitRoutes(app)
    router.add_post("/admin/usage", routes.post_usage)
    router.add_get("/commit", routes.get_commit)


class CommitRoutes:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def get_commit(self, request: web.Request) -> web.Response:
        return await get_commit(request, self.app)

    async def post_usage(self, request: web.Request) -> web.Response:
        return await post_usage(request, self.app)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, indent=2))


async def get_commit(request: web.Request, app: Any) -> web.Response:
    return _json(app.commit.status())


async def post_usage(request: web.Request, app: Any) -> web.Response:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _json({"error": "body must be JSON: {usage: [{target, start, end, bytes}]}"}, 400)
    items = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        return _json({"error": f"usage must be a list of 1..{MAX_ITEMS} items"}, 400)
    parsed, problems = [], []
    for index, item in enumerate(items):
        clean, problem = _item(item)
        if problem is not None:
            problems.append(f"item {index}: {problem}")
        parsed.append(clean)
    if problems:
        app.commit.feed["invalid"] += len(problems)
        return _json({"error": "invalid usage items", "problems": problems}, 400)
    results = app.commit.ingest(parsed)
    accepted = sum(1 for r in results if r["result"] == "accepted")
    return _json({"accepted": accepted, "results": results})


def _item(item: Any) -> tuple[dict[str, Any], str | None]:
    if not isinstance(item, dict):
        return {}, "expected an object {target, start, end, bytes}"
    unknown = sorted(set(item) - ITEM_KEYS)
    if unknown:
        return {}, f"unknown field(s) {', '.join(unknown)}"
    missing = [k for k in ("target", "start", "end", "bytes") if k not in item]
    if missing:
        return {}, f"missing field(s) {', '.join(missing)}"
    if not isinstance(item["target"], str) or not isinstance(item.get("record", ""), str):
        return {}, "target and record are names"
    amount = item["bytes"]
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        return {}, f"invalid bytes {amount!r}"
    try:
        start, end = timestamp(item["start"]), timestamp(item["end"])
    except ValueError as exc:
        return {}, f"start/end: {exc}"
    target = item["target"].lower()
    record = item.get("record")
    return {"target": target if target.endswith(".") or _is_ip(target) else target + ".",
            "record": None if record is None else record.lower().rstrip(".") + ".",
            "start": start, "end": end, "bytes": float(amount)}, None  # fmt: skip


def _is_ip(text: str) -> bool:
    return any(c == ":" for c in text) or text.replace(".", "").isdigit()
