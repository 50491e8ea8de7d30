"""Status page panels of optional features, shown only when the feature is configured.

Each ``render(app)`` returns an HTML fragment or ``None`` (not configured: the panel is left
out). ``Console`` registers the ones here; a feature may also register its own with
``WebServer.console.add_panel``.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

RUM_LEVELS = ("prefix", "asn", "country", "continent", "global")
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
    heads = "".join(f'<th scope="col" class="num">{level}</th>' for level in RUM_LEVELS)
    rows = []
    for name in names:
        cells = "".join(
            f'<td class="num">{decisions.get(f"{name} {level}", 0)}</td>' for level in RUM_LEVELS
        )
        flaps = sum(changes.get(f"{name} {level}", 0) for level in RUM_LEVELS)
        rows.append(
            f'<tr><th scope="row">{escape(name)}</th>{cells}<td class="num">{flaps}</td></tr>'
        )
    return (
        '<table class="rum"><caption>Keys deciding on their own per level, and changes of a '
        'kept set since start</caption><thead><tr><th scope="col">Record</th>'
        f'{heads}<th scope="col" class="num">set changes</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


PANELS = (("rum", "Real-user measurements", rum_panel),)
