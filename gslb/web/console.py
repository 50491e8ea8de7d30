"""The status page at ``/``: where answers go, what is down, what is being served.

Server-rendered HTML with no JavaScript, refreshing itself (``<meta http-equiv=refresh>``;
``/?refresh=N`` seconds, 0 off). Read-only and open like ``/status``: it shows what a zone file
and ``/metrics`` already show. Charts are inline SVG; every chart has the same numbers as text
next to it, and every health cell says its state in words, so nothing depends on colour.

Where the data comes from:

- traffic: ``App.history`` (``gslb.history``), per-minute answer counts sampled off the answer
  path from the counters behind ``gslb_answers_total``;
- health: a ``Matrix`` of target x region. Standalone it has one column, this server's own
  probes. ``Console.matrix_source`` is the extension point for the fleet, which knows the
  other regions: assign a callable ``(app) -> Matrix``;
- configuration: ``App.config`` and ``App.last_reload``.

Other features add panels with ``Console.add_panel(id, title, render)``: ``render(app)``
returns an HTML fragment (escape what you interpolate: ``html.escape``), or ``None`` when the
feature is not configured, in which case the panel is left out. They register from
``gslb.web.app.WebServer.routes`` (``self.console``), as ``/`` itself does.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from string import Template
from typing import Any

from aiohttp import web

from gslb import __version__
from gslb.dnssec.status import describe as describe_signing
from gslb.health.state import override_reason
from gslb.policy.weighted import DEGRADED
from gslb.web.panels import PANELS

HERE = Path(__file__).parent
TEMPLATE = Template((HERE / "console.html").read_text())
CSS = (HERE / "console.css").read_text()
DEFAULT_REFRESH = 5  # seconds
MAX_REFRESH = 3600
LOCAL_REGION = "this server"
TIMELINE_WINDOW = 3600.0  # seconds of transitions shown
# Okabe-Ito: distinguishable with the common colour-vision deficiencies; origin is grey.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
ORIGIN_COLOUR = "#8a8f98"
LEVEL_WORDS = {"ok": "healthy", "warn": "degraded", "bad": "failing"}

PanelRenderer = Callable[[Any], str | None]


def per_config(function: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Memoise a function of the configuration on its identity (configurations are replaced,
    never changed): the page does not walk every record on every load."""
    memo: list = [None, None]

    @functools.wraps(function)
    def wrapper(config: Any) -> Any:
        if memo[0] is not config:
            memo[0], memo[1] = config, function(config)
        return memo[1]

    return wrapper


# -- the health matrix -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One target in one region: a state in words, a colour level, why, and since when."""

    state: str  # what is shown: "up", "down", "drained", "up (forced)", "unknown", ...
    level: str  # ok | warn | bad: green, amber, red
    reason: str = ""
    since: float | None = None  # wall clock of the last change
    seen: float | None = None  # wall clock of the newest observation (fleet cells)


@dataclass(frozen=True, slots=True)
class Row:
    target: str  # what the operator calls it: the answer value(s) the check stands for
    check: str  # the check key (as in /status, /metrics and the admin API)
    cells: dict[str, Cell] = field(default_factory=dict)  # region -> cell


@dataclass(frozen=True, slots=True)
class Matrix:
    regions: tuple[str, ...]
    rows: tuple[Row, ...]


MatrixSource = Callable[[Any], Matrix]


def standalone_matrix(app: Any) -> Matrix:
    """One column: what this server's own prober (and operator overrides) say."""
    config, prober = app.config, app.prober
    if config is None or prober is None:
        return Matrix((LOCAL_REGION,), ())
    checks = prober.status()["checks"]
    rows = []
    for key, label in sorted(check_labels(config).items(), key=lambda kv: (kv[1], kv[0])):
        status = checks.get(key)
        cell = local_cell(status) if status is not None else Cell("unknown", "warn", "no state")
        rows.append(Row(label, key, {LOCAL_REGION: cell}))
    return Matrix((LOCAL_REGION,), tuple(rows))


FLEET_COLUMN = "whole fleet"


def default_matrix(app: Any) -> Matrix:
    """The fleet's regions when this server is in a fleet (or has a region), else one column."""
    fleet = getattr(app, "fleet", None)
    if fleet is None or (fleet.engine is None and fleet.region is None) or app.config is None:
        return standalone_matrix(app)
    return fleet_matrix(app, fleet.health_matrix(), time.time())


def fleet_matrix(app: Any, data: dict, now: float) -> Matrix:
    """``FleetNode.health_matrix()`` as cells: each region's verdict from its vantage points,
    then the verdict the whole fleet answers with where a region has no fresh vantage."""
    labels = check_labels(app.config)
    regions = tuple(data["regions"]) + (FLEET_COLUMN,)
    rows = []
    for key, info in data["checks"].items():
        cells = {region: region_cell(cell, now) for region, cell in info["regions"].items()}
        cells[FLEET_COLUMN] = fleet_cell(info)
        rows.append(Row(labels.get(key, key), key, cells))
    rows.sort(key=lambda row: (row.target, row.check))
    return Matrix(regions, tuple(rows))


def region_cell(cell: dict, now: float) -> Cell:
    votes = cell["vantages"]
    ups = sum(1 for v in votes if v["up"])
    reasons = "; ".join(f"{v['node']}: {v['reason']}" for v in votes)
    seen = now - min(v["age"] for v in votes) if votes else None
    return verdict_cell(cell["effective"], ups, len(votes), reasons, seen)


def fleet_cell(info: dict) -> Cell:
    verdict = info["global"]
    if verdict is None:
        return Cell("unknown", "warn", "no vantage has probed it yet")
    reason = f"{verdict['ups']} of {verdict['vantages']} vantages up, policy {info['policy']}"
    if verdict["override"]:
        reason = f"{verdict['reason']}; {reason}"
    return verdict_cell(verdict["effective"], verdict["ups"], verdict["vantages"], reason, None)


def verdict_cell(effective: str | None, ups: int, votes: int, reason: str, seen: float | None):
    if effective is None:
        return Cell("no verdict", "warn", reason, seen=seen)
    if effective == "down":
        return Cell("down", "bad", reason, seen=seen)
    if effective == "drained":
        return Cell("drained", "warn", reason, seen=seen)
    if ups < votes:
        return Cell(f"up, {votes - ups} of {votes} down", "warn", reason, seen=seen)
    return Cell(effective, "ok", reason, seen=seen)


def local_cell(status: dict) -> Cell:
    """A cell from one check's ``Prober.status()`` entry."""
    effective, override = status["effective"], status["override"]
    changes = [t["at"] for t in status["transitions"]]
    since = max([status["since"] or 0.0, *changes]) or None
    reason = status["reason"]
    if override is not None:  # the operator decided; what the probes say comes second
        reason = f"{override_reason(override)}; probes: {status['state']}, {reason}"
    if effective == "down":
        return Cell("down", "bad", reason, since)
    if effective == "drained":
        return Cell("drained", "warn", reason, since)
    if override == "up":
        return Cell("up (forced)", "warn", reason, since)
    if status["state"] == "unknown":
        return Cell("unknown", "warn", reason, since)
    failures = status["in_a_row"]["failures"]
    if failures:
        last = status["last"] or {}
        word = "failure" if failures == 1 else "failures"
        return Cell(f"up, {failures} {word}", "warn", last.get("reason", reason), since)
    return Cell("up", "ok", reason, since)


@per_config
def check_labels(config: Any) -> dict[str, str]:
    """Check key -> the answer values it stands for, as the operator wrote them."""
    labels: dict[str, list[str]] = {}
    for record in dynamic_records(config):
        for target in configured_targets(record):
            if target.check is not None:
                _add(labels, target.check, target.value)
            for pop in target.pops:
                if pop.check is not None:
                    _add(labels, pop.check, f"{target.value} ({pop.name})")
        for target in record.origin_targets:
            if target.check is not None:
                _add(labels, target.check, f"origin {target.value}")
        if not record.origin_targets and record.options.origin_check is not None:
            _add(labels, record.options.origin_check, "origin " + " ".join(record.origin))
    return {key: ", ".join(values) for key, values in labels.items()}


def _add(labels: dict[str, list[str]], key: str, label: str) -> None:
    values = labels.setdefault(key, [])
    if label not in values:
        values.append(label)


def dynamic_records(config: Any) -> Iterator[Any]:
    for zone in sorted(config.zones.values(), key=lambda z: z.fqdn):
        for node in zone.nodes.values():
            yield from node.dynamic.values()


def configured_targets(record: Any) -> list[Any]:
    """Every pool value once, in pool order."""
    seen, out = set(), []
    for pool in record.pools.values():
        for target in pool.targets:
            if target.value not in seen:
                seen.add(target.value)
                out.append(target)
    return out


# -- the page ----------------------------------------------------------------------------------


class Console:
    """Renders ``/``. One per web server; extension points: ``matrix_source``, ``add_panel``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.matrix_source: MatrixSource = default_matrix
        self.panels: list[tuple[str, str, PanelRenderer]] = list(PANELS)

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/", self.page)

    def add_panel(self, panel_id: str, title: str, render: PanelRenderer) -> None:
        """A section after the built-in ones, linked from the navigation when it renders."""
        self.panels.append((panel_id, title, render))

    async def page(self, request: web.Request) -> web.Response:
        refresh = refresh_seconds(request.query.get("refresh"))
        sampler = getattr(self.app, "sampler", None)
        if sampler is not None:  # the current minute up to date, as a scrape of /metrics is
            await sampler.sample()
        show_all = request.query.get("records") == "all"
        body = self.render(refresh, time.time(), show_all)
        return web.Response(
            text=body,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    def render(self, refresh: int, now: float, show_all: bool = False) -> str:
        app = self.app
        sections = [
            health_section(self.matrix_source(app), now, overrides_of(app)),
            traffic_section(app, now, show_all),
            transitions_section(app, now),
            config_section(app, now),
        ]
        fleet = fleet_section(app, now)
        if fleet:
            sections.insert(1, fleet)
        nav = []
        for panel_id, title, render in self.panels:
            fragment = render(app)
            if fragment is None:
                continue
            pid = escape(panel_id)
            sections.append(
                f'<section id="{pid}" aria-labelledby="{pid}-h">'
                f'<h2 id="{pid}-h">{escape(title)}</h2>{fragment}</section>'
            )
            nav.append(f'<li><a href="#{pid}">{escape(title)}</a></li>')
        meta = refresh_meta(refresh)
        return TEMPLATE.substitute(
            refresh_meta=meta,
            title=escape(page_title(app)),
            css=CSS,
            meta=header_meta(app, refresh, now),
            nav_extra="\n".join(nav),
            sections="\n".join(sections),
            generated=escape(clock(now)),
        )


def refresh_seconds(raw: str | None) -> int:
    """``?refresh=N``: 0 turns it off; anything unreadable means the default."""
    try:
        value = int(raw) if raw is not None else DEFAULT_REFRESH
    except ValueError:
        return DEFAULT_REFRESH
    return max(0, min(value, MAX_REFRESH))


def refresh_meta(refresh: int) -> str:
    return f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""


def page_title(app: Any) -> str:
    identity = getattr(app.settings, "identity", None)
    if identity:
        return identity.decode(errors="replace")
    http = getattr(app, "http_bound", None)
    return f"{http[0]}:{http[1]}" if http else "gslb"


def header_meta(app: Any, refresh: int, now: float) -> str:
    ready = "ready" if app.ready.is_set() else "starting"
    parts = [f"version {escape(__version__)}", ready]
    workers = getattr(app.settings, "workers", 1)
    if workers > 1:
        parts.append(f"{workers} DNS workers")
    parts.append(f"refreshes every {refresh} s" if refresh else "refresh off")
    return " · ".join(parts)


# -- health ------------------------------------------------------------------------------------


def overrides_of(app: Any) -> list[dict]:
    fleet = getattr(app, "fleet", None)
    return fleet.overrides_json() if fleet is not None else []


def health_section(matrix: Matrix, now: float, overrides: list[dict] = ()) -> str:
    counts = {"ok": 0, "warn": 0, "bad": 0}
    for row in matrix.rows:
        for cell in row.cells.values():
            counts[cell.level] += 1
    summary = "".join(
        f'<li class="{level}"><strong>{counts[level]}</strong> {LEVEL_WORDS[level]}</li>'
        for level in ("bad", "warn", "ok")
    )
    if not matrix.rows:
        body = "<p>No health checks are configured.</p>"
    else:
        heads = "".join(f'<th scope="col">{escape(r)}</th>' for r in matrix.regions)
        rows = "\n".join(matrix_row(row, matrix.regions, now) for row in matrix.rows)
        body = (
            '<table class="matrix"><caption>Each target\'s health check by region: state, '
            "the last reason and how long ago it changed.</caption>"
            f'<thead><tr><th scope="col">Target</th>{heads}</tr></thead>'
            f"<tbody>\n{rows}\n</tbody></table>"
        )
    return (
        '<section id="health" aria-labelledby="health-h"><h2 id="health-h">Health</h2>'
        f'<ul class="summary" aria-label="Summary of health cells">{summary}</ul>{body}'
        f"{overrides_list(overrides, now)}</section>"
    )


def overrides_list(overrides: list[dict], now: float) -> str:
    """Operator overrides in force: what, who, why, since when, until when."""
    if not overrides:
        return ""
    items = []
    for o in overrides:
        where = o["name"]
        if o["kind"] == "target" and (o.get("record") or o.get("pool")):
            where += f" in {o.get('record') or 'any record'} pool {o.get('pool') or 'any'}"
        parts = [f"<strong>{escape(o['state'])}</strong> {escape(o['kind'])} {escape(where)}"]
        if o.get("by"):
            parts.append(f"by {escape(o['by'])}")
        if o.get("at"):
            parts.append(f"since {clock(o['at'])} ({age(now - o['at'])} ago)")
        if o.get("expires_in") is not None:
            parts.append(f"expires in {age(o['expires_in'])}")
        if o.get("reason"):
            parts.append(f"“{escape(o['reason'])}”")
        if o.get("scope") == "local":
            parts.append("<em>this node only</em> (the fleet engine did not take it)")
        if o.get("matches_nothing"):
            parts.append("<em>matches nothing in the configuration</em>")
        items.append(f'<li class="warn">{", ".join(parts)}</li>')
    return (
        '<h3 id="overrides">Operator overrides</h3>'
        f'<ol class="timeline overrides">{"".join(items)}</ol>'
    )


def fleet_section(app: Any, now: float) -> str:
    """Nodes of the fleet and the digests they serve; nothing when standalone."""
    fleet = getattr(app, "fleet", None)
    if fleet is None or fleet.engine is None:
        return ""
    status = fleet.status()
    engine = status.get("engine") or {}
    connected = engine.get("connected", False)
    state = status.get("state", "ok")
    server = f" to {escape(str(engine['server']))}" if connected and engine.get("server") else ""
    lines = [
        f"<p>This node <strong>{escape(str(status.get('node') or '-'))}</strong> in region "
        f"<strong>{escape(str(status.get('region') or '-'))}</strong>; fleet engine "
        f"<strong>{'connected' if connected else 'DISCONNECTED'}</strong>"
        f"{server}"
        f"; state <strong>{escape(state)}</strong>."
    ]
    if status.get("deciding_from_local_only"):
        lines.append('<p class="errors">No fresh observation from any peer: deciding from this '
                     "node's own probes only.</p>")  # fmt: skip
    if engine.get("last_error") and not connected:
        lines.append(f'<p class="errors">{escape(str(engine["last_error"]))}</p>')
    nodes = engine.get("nodes") or {}
    if nodes:
        digest = app.config.digest if app.config is not None else ""
        rows = "".join(fleet_node_row(name, info, digest) for name, info in nodes.items())
        lines.append(
            '<table class="nodes"><caption>Nodes with a live heartbeat</caption><thead><tr>'
            '<th scope="col">Node</th><th scope="col">Region</th><th scope="col">Config</th>'
            '<th scope="col" class="num">Last seen</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    level = "ok" if connected and state == "ok" else "bad"
    return (
        f'<section id="fleet" aria-labelledby="fleet-h" class="fleet-{level}">'
        f'<h2 id="fleet-h">Fleet</h2>{"".join(lines)}</section>'
    )


def fleet_node_row(name: str, info: dict, digest: str) -> str:
    node_digest = str(info.get("digest") or "")
    same = info.get("same_config", node_digest == digest)
    config = f'<code title="{escape(node_digest)}">{escape(node_digest[:12])}</code> ' + (
        "same as this node" if same else "<strong>DIFFERENT from this node</strong>"
    )
    level = "ok" if same else "bad"
    return (
        f'<tr class="{level}" data-node="{escape(name)}"><th scope="row">{escape(name)}</th>'
        f"<td>{escape(str(info.get('region') or '-'))}</td><td>{config}</td>"
        f'<td class="num">{age(float(info.get("last_seen_age") or 0.0))} ago</td></tr>'
    )


def matrix_row(row: Row, regions: Iterable[str], now: float) -> str:
    cells = []
    for region in regions:
        cell = row.cells.get(region)
        if cell is None:
            cells.append(f'<td data-region="{escape(region)}">no data</td>')
            continue
        since = f"for {age(now - cell.since)}" if cell.since else ""
        if not since and cell.seen:
            since = f"seen {age(now - cell.seen)} ago"
        cells.append(
            f'<td class="cell {cell.level}" data-region="{escape(region)}" '
            f'data-check="{escape(row.check)}" data-state="{escape(cell.state)}">'
            f'<span class="state">{escape(cell.state)}</span>'
            f'<span class="reason">{escape(cell.reason)}</span>'
            f'<span class="age">{since}</span></td>'
        )
    return (
        f'<tr><th scope="row">{escape(row.target)}'
        f'<br><span class="key muted">{escape(row.check)}</span></th>{"".join(cells)}</tr>'
    )


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S UTC", time.gmtime(at))


# -- traffic -----------------------------------------------------------------------------------


RECORDS_SHOWN = 30  # records with charts unless ?records=all: the ones that need a look first

Counts = dict[tuple[str, str], int]  # (target, reason) -> answers, for one record


def traffic_section(app: Any, now: float, show_all: bool = False) -> str:
    config, history = app.config, getattr(app, "history", None)
    records = list(unique_records(config)) if config is not None else []
    if not records or history is None:
        body = "<p>No dynamic records are configured.</p>"
    else:
        summary = history.answers.summary(5, now)
        records.sort(key=lambda r: rank(summary.get(r.fqdn, {}), r.fqdn))
        shown = records if show_all else records[:RECORDS_SHOWN]
        parts = []
        for record in shown:
            counts = summary.get(record.fqdn, {})
            last5 = {key: spans[0] for key, spans in counts.items() if spans[0]}
            hour = {key: spans[1] for key, spans in counts.items()}
            parts.append(record_panel(record, history.answers, last5, hour, now))
        if len(shown) < len(records):
            parts.insert(0, (
                f"<p>The {len(shown)} of {len(records)} records that most need a look: "
                "answering from a fallback or the origin first, then the busiest. "
                '<a href="/?records=all">Show all</a>.</p>'
            ))  # fmt: skip
        body = "\n".join(parts)
    return (
        '<section id="traffic" aria-labelledby="traffic-h"><h2 id="traffic-h">Traffic</h2>'
        '<p class="muted">Share of each record\'s answers per target (from '
        "<code>gslb_answers_total</code>), sampled every few seconds.</p>"
        f"{body}</section>"
    )


@per_config
def unique_records(config: Any) -> tuple[Any, ...]:
    """One per name: A and AAAA of one name share the metrics label."""
    seen, out = set(), []
    for record in dynamic_records(config):
        if record.fqdn not in seen:
            seen.add(record.fqdn)
            out.append(record)
    return tuple(out)


def rank(counts: dict, name: str) -> tuple:
    """Records answering from a fallback or the origin first, then the busiest."""
    total = degraded = hour = 0
    for (_, reason), (last5, last_hour) in counts.items():
        total += last5
        hour += last_hour
        if reason in DEGRADED:
            degraded += last5
    return (-(degraded / total if total else 0.0), -hour, name)


def record_panel(record: Any, answers: Any, last5: Counts, hour: Counts, now: float) -> str:
    name = record.fqdn
    targets = [t.value for t in configured_targets(record)]
    extra = sorted({t for t, _ in (*last5, *hour) if t not in targets and t != "origin"})
    targets += [*extra, "origin"]
    colours = target_colours(targets)
    by5, by_hour = by_target(last5), by_target(hour)
    total5, total_hour = sum(by5.values()), sum(by_hour.values())
    start, columns = answers.per_minute(name, now)
    slug = "rec-" + "".join(c if c.isalnum() else "-" for c in name.rstrip("."))
    charts = (
        '<div class="charts">'
        + figure(
            "Last 5 minutes", share_bar(by5, total5, targets, colours, "last 5 minutes"), total5
        )
        + figure(
            "Last hour", share_bar(by_hour, total_hour, targets, colours, "last hour"), total_hour
        )
        + '<figure class="chart"><figcaption>Share per minute, last hour (right: now)'
        f"</figcaption>{minute_chart(start, columns, targets, colours, answers.minutes)}"
        "</figure></div>"
    )
    rows = "".join(
        target_row(t, colours[t], by5, total5, by_hour, total_hour, last5)
        for t in targets
        if t != "origin" or by_hour.get("origin")
    )
    table = (
        f'<table class="traffic"><caption>{escape(name)}: answers by target and reason'
        "</caption><thead><tr>"
        '<th scope="col">Target</th><th scope="col" class="num">5 min</th>'
        '<th scope="col" class="num">1 hour</th><th scope="col">Reasons, 5 min</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )
    return (
        f'<article class="record" id="{escape(slug)}" data-record="{escape(name)}">'
        f"<h3>{escape(name)}</h3>{charts}{table}</article>"
    )


def figure(title: str, chart: str, total: int) -> str:
    return (
        f'<figure class="chart"><figcaption>{title}: {total} answer{"s" if total != 1 else ""}'
        f"</figcaption>{chart}</figure>"
    )


def target_colours(targets: list[str]) -> dict[str, str]:
    colours, index = {}, 0
    for target in targets:
        if target == "origin":
            colours[target] = ORIGIN_COLOUR
        else:
            colours[target] = PALETTE[index % len(PALETTE)]
            index += 1
    return colours


def by_target(counts: Counts) -> dict[str, int]:
    out: dict[str, int] = {}
    for (target, _reason), count in counts.items():
        out[target] = out.get(target, 0) + count
    return out


def percent(part: int, total: int) -> str:
    return f"{100 * part / total:.0f} %" if total else "–"


def share_bar(
    counts: dict[str, int], total: int, targets: list[str], colours: dict[str, str], what: str
) -> str:
    """A 100 % stacked bar: one segment per target, its share as width and as text."""
    if not total:
        return (
            f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
            f'aria-label="No answers in the {what}"><rect width="100" height="10" '
            'fill="#e3e7eb"/></svg>'
        )
    x, rects, words = 0.0, [], []
    for target in targets:
        count = counts.get(target, 0)
        if not count:
            continue
        share = count / total
        words.append(f"{target} {percent(count, total)}")
        rects.append(
            f'<rect x="{x:.3f}" width="{100 * share:.3f}" height="10" '
            f'fill="{colours[target]}" data-target="{escape(target)}" data-share="{share:.4f}">'
            f"<title>{escape(target)}: {percent(count, total)} ({count})</title></rect>"
        )
        x += 100 * share
    label = escape(f"Share of answers in the {what}: " + ", ".join(words))
    return (
        f'<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
        f'aria-label="{label}">{"".join(rects)}</svg>'
    )


def minute_chart(
    start: int, columns: dict[str, list[int]], targets: list[str], colours: dict[str, str],
    width: int,
) -> str:  # fmt: skip
    """One stacked column per minute (height = share), grey where there were no answers."""
    parts = [f'<rect width="{width}" height="20" fill="#eef1f4"/>']
    shown = [t for t in targets if t in columns]
    totals = (
        [sum(minute) for minute in zip(*(columns[t] for t in shown), strict=True)] if shown else []
    )
    for index, total in enumerate(totals):
        if not total:
            continue
        y = 20.0
        for target in shown:
            count = columns[target][index]
            if not count:
                continue
            height = 20 * count / total
            y -= height
            minute = clock((start + index) * 60)[:5]
            parts.append(
                f'<rect x="{index}" y="{y:.3f}" width="0.92" height="{height:.3f}" '
                f'fill="{colours[target]}"><title>{minute} {escape(target)}: '
                f"{percent(count, total)} of {total}</title></rect>"
            )
    label = "Share of answers per target for each minute of the last hour"
    return (
        f'<svg class="minutes" viewBox="0 0 {width} 20" preserveAspectRatio="none" role="img" '
        f'aria-label="{label}">{"".join(parts)}</svg>'
    )


def target_row(
    target: str, colour: str, by5: dict, total5: int, by_hour: dict, total_hour: int,
    last5: Counts,
) -> str:  # fmt: skip
    reasons = {reason: c for (t, reason), c in last5.items() if t == target}
    words = ", ".join(f"{r} {c}" for r, c in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return (
        f'<tr data-target="{escape(target)}"><th scope="row">'
        f'<span class="swatch" style="background:{colour}" aria-hidden="true"></span>'
        f'{escape(target)}</th><td class="num" data-window="5m">'
        f"{percent(by5.get(target, 0), total5)}</td>"
        f'<td class="num" data-window="1h">{percent(by_hour.get(target, 0), total_hour)}</td>'
        f"<td>{escape(words) or '–'}</td></tr>"
    )


# -- transitions -------------------------------------------------------------------------------


def transitions_section(app: Any, now: float) -> str:
    history = getattr(app, "history", None)
    changes = history.timeline.recent(now - TIMELINE_WINDOW) if history is not None else []
    labels = check_labels(app.config) if app.config is not None else {}
    if not changes:
        body = "<p>No health changes in the last hour.</p>"
    else:
        items = []
        for change in changes:
            level = {"down": "bad", "up": "ok"}.get(change.new, "warn")
            where = f" in {escape(change.region)}" if change.region else ""
            items.append(
                f'<li class="{level}"><time datetime="{iso(change.at)}">{clock(change.at)}</time>'
                f" ({age(now - change.at)} ago) <strong>"
                f"{escape(labels.get(change.check, change.check))}</strong>{where}: "
                f"{escape(change.old)} → <strong>{escape(change.new)}</strong> "
                f"<span>({escape(change.reason)})</span></li>"
            )
        body = f'<ol class="timeline" reversed>{"".join(items)}</ol>'
    return (
        '<section id="transitions" aria-labelledby="transitions-h">'
        '<h2 id="transitions-h">Transitions, last hour</h2>'
        f"{body}</section>"
    )


def iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


# -- configuration -----------------------------------------------------------------------------


def config_section(app: Any, now: float) -> str:
    config, last = app.config, app.last_reload
    parts = []
    if config is None:
        parts.append("<p>No configuration loaded yet.</p>")
    else:
        signing = getattr(config, "signing", {})
        zones = "".join(
            f'<tr><th scope="row">{escape(z.fqdn)}</th><td class="num">{z.serial}</td>'
            f"<td>{dnssec_text(signing.get(z.origin))}</td>"
            f"<td><code>{escape(str(z.source))}</code></td></tr>"
            for z in sorted(config.zones.values(), key=lambda z: z.fqdn)
        )
        parts.append(
            f'<p>Config digest <code title="{escape(config.digest)}">{escape(config.digest[:12])}'
            f"</code>, loaded {clock(config.loaded_at)} ({age(now - config.loaded_at)} ago); "
            f"{len(config.checks)} health check(s).</p>"
            '<table class="zones"><caption>Zones served</caption><thead><tr>'
            '<th scope="col">Zone</th><th scope="col" class="num">Serial</th>'
            '<th scope="col">DNSSEC</th>'
            f'<th scope="col">File</th></tr></thead><tbody>{zones}</tbody></table>'
        )
    if last is not None:
        parts.append(reload_text(last, now))
    return (
        '<section id="config" aria-labelledby="config-h"><h2 id="config-h">Configuration</h2>'
        f"{''.join(parts)}</section>"
    )


def dnssec_text(settings: Any) -> str:
    """Signed or not; when signed, the key and how long the signatures served now stay valid."""
    info = describe_signing(settings)
    if not info["signed"]:
        return "not signed"
    return escape(
        f"signed, key {info['key_tag']} {info['algorithm']}, "
        f"signatures valid {info['days_until_expiry']:.1f} more days"
    )


def reload_text(last: Any, now: float) -> str:
    when = f"{clock(last.at)} ({age(now - last.at)} ago)"
    if last.ok:
        return f'<p class="reload-ok">Last load or reload: <strong>ok</strong> at {when}.</p>'
    errors = "".join(f"<li><code>{escape(e)}</code></li>" for e in last.errors)
    return (
        f'<div class="errors reload-failed" role="alert"><p>Last reload <strong>failed</strong> '
        f"at {when}; the previous configuration keeps serving. {len(last.errors)} error(s):</p>"
        f"<ul>{errors}</ul></div>"
    )
