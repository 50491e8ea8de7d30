"""Status page panels of optional features, shown only when the feature is configured.

Each ``render(app)`` returns an HTML fragment or ``None`` (not configured: the panel is left
out). ``Console`` registers the ones here; a feature may also register its own with
``WebServer.console.add_panel``.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from gslb.rum.config import LEVELS

TYPE_NAMES = {1: "A", 28: "AAAA", 5: "CNAME"}


def rum_panel(app: Any) -> str | None:
    """Real-user measurements: which records use them, beacons and samples by result, how many
    level keys decide for each record, how often kept sets changed, how fresh the decisions are."""
    rum = getattr(app, "rum", None)
    if rum is None or not rum.records:
        return None
    status = rum.status()
    snapshot = status.get("snapshot")
    fresh = "no decisions yet"
    if snapshot is not None:
        ago = max(0.0, time.time() - snapshot["built_at"])
        fresh = f"decisions rebuilt {ago:.0f} s ago (serial {snapshot['serial']})"
    records = ", ".join(
        escape(f"{name} {TYPE_NAMES.get(rtype, rtype)}") for name, rtype in sorted(rum.records)
    )
    parts = [
        f"<p>Steered by real-user measurements: {records}; {fresh}, the last round took "
        f"{1000 * status['last_round_seconds']:.1f} ms.</p>",
        counts_line("Beacons", status["beacons"]),
        counts_line("Samples", status["samples"]),
        decisions_table(status),
    ]
    return "".join(parts)


def counts_line(what: str, counts: dict[str, int]) -> str:
    accepted = counts.get("accepted", 0)
    refused = {k: v for k, v in sorted(counts.items()) if k != "accepted" and v}
    detail = ", ".join(f"{escape(k)} {v}" for k, v in refused.items()) or "none"
    level = "bad" if refused and sum(refused.values()) > accepted else "ok"
    return (
        f'<p class="rum-{escape(what.lower())}">{what}: <strong>{accepted}</strong> accepted; '
        f'<span class="{level}-text">not taken: {detail}</span>.</p>'
    )


def decisions_table(status: dict) -> str:
    decisions, changes = status["decisions"], status["set_changes"]
    names = sorted({key.rsplit(" ", 1)[0] for key in (*decisions, *changes)})
    if not names:
        return "<p>No level has enough measurements to decide yet: every CDN passes.</p>"
    heads = "".join(f'<th scope="col" class="num">{level}</th>' for level in LEVELS)
    rows = []
    for name in names:
        cells = "".join(
            f'<td class="num">{decisions.get(f"{name} {level}", 0)}</td>' for level in LEVELS
        )
        flaps = sum(changes.get(f"{name} {level}", 0) for level in LEVELS)
        rows.append(
            f'<tr><th scope="row">{escape(name)}</th>{cells}<td class="num">{flaps}</td></tr>'
        )
    return (
        '<table class="rum"><caption>Keys deciding on their own per level, and changes of a '
        'kept set since start</caption><thead><tr><th scope="col">Record</th>'
        f'{heads}<th scope="col" class="num">set changes</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def commit_panel(app: Any) -> str | None:
    """Commits (gslb.commit): per record and CDN, delivered against the commit, projection to
    the period's end, pacing error, where the volume came from, and any infeasibility."""
    commit = getattr(app, "commit", None)
    if commit is None or not commit.records:
        return None
    status = commit.status()
    rows = []
    for record, info in status["records"].items():
        for target, state in sorted(info["targets"].items()):
            rows.append(commit_row(record, target, state))
    if not rows:
        return "<p>Contracts configured; the controller has not ticked yet: static weights.</p>"
    feed = status["feed"]
    refused = sum(v for k, v in feed.items() if k != "accepted")
    return (
        f"<p>Usage feed: <strong>{feed.get('accepted', 0)}</strong> intervals accepted, "
        f"{refused} refused (see /commit for reasons).</p>"
        '<table class="commit"><caption>Delivered this period against each commit '
        "(estimate: from gslb's own answers, no usage feed)</caption><thead><tr>"
        '<th scope="col">Record</th><th scope="col">CDN</th><th scope="col" class="num">'
        'delivered</th><th scope="col" class="num">commit</th><th scope="col" class="num">'
        'progress</th><th scope="col" class="num">projected</th><th scope="col" class="num">'
        'pacing error</th><th scope="col" class="num">answer share</th><th scope="col">'
        f"source</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def commit_row(record: str, target: str, state: dict) -> str:
    commit = state.get("commit")
    progress = state.get("progress")
    error = state.get("pacing_error")
    short = (state.get("infeasible") or {}).get("short_bytes")
    source = escape(state["origin"]) + (" (estimate)" if state.get("estimate") else "")
    if short:
        source += f' <span class="bad-text">commit-infeasible, {short / 1e12:.2f} TB short</span>'
    cells = [
        f"{state['delivered_bytes'] / 1e12:.3f} TB",
        "" if commit is None else (f"{commit / 1e12:.1f} TB" if state.get("kind") == "volume"
                                   else f"{commit / 1e9:.1f} Gbps p95"),
        "" if progress is None else f"{progress:.1%}",
        f"{state['projected_bytes'] / 1e12:.3f} TB",
        "" if error is None else f"{error:+.1%}",
        f"{state['answer_share']:.1%}",
    ]  # fmt: skip
    tds = "".join(f'<td class="num">{cell}</td>' for cell in cells)
    head = f'<th scope="row">{escape(record)}</th><td>{escape(target)}</td>'
    return f"<tr>{head}{tds}<td>{source}</td></tr>"


PANELS = (("rum", "Real-user measurements", rum_panel), ("commit", "Commits", commit_panel))
