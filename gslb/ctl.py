"""``gslb ctl`` and ``gslb fleet status``: the operator's client for a running server or fleet.

So nobody hand-writes curl with bearer tokens at 3 a.m.: the token comes from
``--token-file`` or ``GSLB_ADMIN_TOKEN``, the target is a check name or a pool value exactly
as ``/admin/targets/…`` takes it, and every answer is printed as a short text (``--json`` for
the raw reply). Only the standard library: it runs wherever gslb is installed.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:9053"
TIMEOUT = 10.0


class CtlError(Exception):
    """A problem to print; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def request(url: str, path: str, method: str = "GET", token: str | None = None,
            body: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """One HTTP call; the decoded JSON, or CtlError with the server's own message."""
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as reply:
            return json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise CtlError(f"{exc.code}: {_message(exc.read())}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CtlError(f"cannot reach {url}: {reason}", 2) from None


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()
    if isinstance(data, dict) and "error" in data:
        hint = f" ({data['hint']})" if data.get("hint") else ""
        return f"{data['error']}{hint}"
    return json.dumps(data)


def load_token(path: str | None) -> str:
    if path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise CtlError(f"token file {path}: {exc.strerror or exc}", 2) from None
    else:
        token = os.environ.get("GSLB_ADMIN_TOKEN", "").strip()
    if not token:
        raise CtlError("no admin token: --token-file FILE or GSLB_ADMIN_TOKEN", 2)
    return token


def operator() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def set_target(args: Any) -> Any:
    """drain | down | up | obey TARGET, with reason, duration and scope."""
    body: dict[str, Any] = {"by": args.by or operator()}
    for name in ("reason", "record", "pool"):
        if getattr(args, name, None):
            body[name] = getattr(args, name)
    if args.duration:
        body["for"] = args.duration
    if args.local:
        body["scope"] = "local"
    if args.action == "obey":
        body = {k: v for k, v in body.items() if k in ("record", "pool", "scope")}
    path = f"/admin/targets/{urllib.parse.quote(args.target, safe='')}/{args.action}"
    return request(args.url, path, "POST", load_token(args.token_file), body)


def render_override(reply: dict[str, Any]) -> str:
    what = reply.get("check") or reply.get("target")
    if reply.get("cleared"):
        return f"{what}: obeying the probes again ({reply['id']})"
    until = ""
    if reply.get("expires_at"):
        when = time.localtime(reply["expires_at"])
        until = f", until {time.strftime('%Y-%m-%d %H:%M:%S', when)}"
    why = reply.get("reason") or "no reason given"
    return (f"{what}: {reply['action']} ({reply['id']}) by {reply.get('by')}: {why}{until}, "
            f"scope {reply.get('scope')}")  # fmt: skip


def render_overrides(overrides: list[dict[str, Any]]) -> str:
    if not overrides:
        return "no overrides"
    lines = []
    for o in overrides:
        left = "" if o["expires_in"] is None else f" expires in {_age(o['expires_in'])}"
        flags = " [local only]" if o["scope"] == "local" else ""
        flags += " [matches nothing]" if o.get("matches_nothing") else ""
        lines.append(f"{o['state']:<8} {o['id']}  by {o['by'] or '?'}: "
                     f"{o['reason'] or 'no reason'}{left}{flags}")  # fmt: skip
    return "\n".join(lines)


def render_audit(trail: list[dict[str, Any]]) -> str:
    lines = []
    for entry in trail:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry["at"] or 0))
        if entry["operation"] == "set":
            o = entry["override"]
            lines.append(f"{when} #{entry['revision']} {o['state']:<8} {entry['id']} by "
                         f"{o['by'] or '?'}: {o['reason'] or 'no reason'}")  # fmt: skip
        else:
            lines.append(f"{when} #{entry['revision']} {entry['operation']:<8} {entry['id']}")
    return "\n".join(lines) or "no override changes kept"


def render_fleet(status: dict[str, Any]) -> str:
    """``gslb fleet status``: nodes, the health matrix (check x region), overrides."""
    engine = status.get("engine")
    lines = [f"mode {status['mode']}, state {status['state']}, node {status['node'] or '-'} "
             f"region {status['region'] or '-'}"]  # fmt: skip
    if engine is not None:
        link = f"connected to {engine['server']}" if engine["connected"] else "NOT connected"
        if engine.get("refused"):
            link = f"refused: {engine['refused']}"
        lines.append(f"engine: {link}")
        for name, node in engine["nodes"].items():
            flag = "" if node["same_config"] else f"  OTHER CONFIG {node['digest'][:12]}"
            lines.append(f"  node {name:<16} {node['region']:<10} v{node['version']:<8} "
                         f"seen {_age(node['last_seen_age'])} ago{flag}")  # fmt: skip
    matrix = status["matrix"]
    regions = matrix["regions"]
    lines.append("")
    lines.append(f"{'check':<48} {'global':<8} " + " ".join(f"{r:<10}" for r in regions))
    for key, row in matrix["checks"].items():
        verdict = (row["global"] or {}).get("effective", "-")
        cells = []
        for region in regions:
            cell = row["regions"].get(region)
            if cell is None:
                cells.append(f"{'-':<10}")
                continue
            votes = cell["vantages"]
            ups = sum(v["up"] for v in votes)
            cells.append(f"{cell['effective'] + f' {ups}/{len(votes)}':<10}")
        lines.append(f"{key[:48]:<48} {verdict:<8} " + " ".join(cells))
    lines.append("")
    lines.append(render_overrides(status["overrides"]))
    return "\n".join(lines)


def render_status(status: dict[str, Any], fleet: dict[str, Any]) -> str:
    config = status.get("config") or {}
    checks = (status.get("health") or {}).get("checks", {})
    digest = (config.get("digest") or "")[:12]
    lines = [f"gslb {status['version']}, ready {status['ready']}, config {digest}, "
             f"{len(config.get('zones', []))} zone(s)"]  # fmt: skip
    for key, check in checks.items():
        lines.append(f"  {check['effective']:<8} {key}  ({check['reason']})")
    lines.append(f"fleet: {fleet['mode']}, {fleet['state']}")
    lines.append(render_overrides(fleet["overrides"]))
    return "\n".join(lines)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def run(args: Any) -> int:
    """Entry for ``gslb ctl`` and ``gslb fleet``; prints, returns the exit status."""
    try:
        data, text = _dispatch(args)
    except CtlError as exc:
        print(f"gslb {args.command}: {exc}", file=sys.stderr)
        return exc.code
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _dispatch(args: Any) -> tuple[Any, str]:
    if args.command == "fleet" or args.action == "fleet":
        status = request(args.url, "/fleet")
        return status, render_fleet(status)
    if args.action == "status":
        status, fleet = request(args.url, "/status"), request(args.url, "/fleet")
        return {"status": status, "fleet": fleet}, render_status(status, fleet)
    if args.action == "audit":
        trail = request(args.url, "/fleet/audit")
        return trail, render_audit(trail)
    if args.action == "overrides":
        overrides = request(args.url, "/fleet")["overrides"]
        return overrides, render_overrides(overrides)
    reply = set_target(args)
    return reply, render_override(reply)
