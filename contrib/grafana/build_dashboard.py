"""Writes contrib/grafana/gslb.json, the Grafana dashboard for gslb, from the panels below.

Run ``python contrib/grafana/build_dashboard.py`` after editing; ``tests/test_contrib.py``
fails when the committed JSON and this script disagree, and checks that every metric a panel
queries is one a live gslb server exports. Import the JSON in Grafana (Dashboards -> New ->
Import) and pick the Prometheus data source that scrapes gslb.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("gslb.json")
SEL = 'job=~"$job", instance=~"$instance"'
RATE = "$__rate_interval"
DS = {"type": "prometheus", "uid": "${datasource}"}


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = self.y = 0
        self.row_height = 0
        self.ids = iter(range(1, 1000))

    def row(self, title: str) -> None:
        self._newline()
        grid = {"h": 1, "w": 24, "x": 0, "y": self.y}
        self.panels.append({"type": "row", "title": title, "id": next(self.ids),
                            "collapsed": False, "gridPos": grid, "panels": []})  # fmt: skip
        self.y += 1

    def add(self, panel: dict, w: int, h: int) -> None:
        if self.x + w > 24:
            self._newline()
        panel = {"id": next(self.ids), "datasource": DS, **panel}
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)

    def _newline(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0


def target(expr: str, legend: str = "", ref: str = "A", **extra) -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref,
            **extra}  # fmt: skip


def stat(title: str, expr: str, unit: str, description: str, thresholds=None) -> dict:
    steps = thresholds or [{"color": "green", "value": None}]
    return {
        "type": "stat", "title": title, "description": description,
        "targets": [target(expr)],
        "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute",
                                                                  "steps": steps}},
                        "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "background", "graphMode": "area", "textMode": "auto"},
    }  # fmt: skip


def series(title: str, targets: list[dict], unit: str, description: str, stack: str = "none",
           max_: float | None = None) -> dict:  # fmt: skip
    defaults: dict = {
        "unit": unit,
        "custom": {
            "stacking": {"mode": stack, "group": "A"},
            "fillOpacity": 20 if stack != "none" else 0,
        },
    }
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "timeseries", "title": title, "description": description, "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom",
                               "calcs": ["mean", "lastNotNull"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }  # fmt: skip


def table(title: str, expr: str, description: str) -> dict:
    return {
        "type": "table", "title": title, "description": description,
        "targets": [target(expr, format="table", instant=True)],
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True}}}],
        "fieldConfig": {"defaults": {}, "overrides": []}, "options": {"showHeader": True},
    }  # fmt: skip


def build() -> dict:
    layout = Layout()
    overview(layout)
    queries(layout)
    answers(layout)
    health(layout)
    configuration(layout)
    fleet(layout)
    dnssec(layout)
    rum(layout)
    commit(layout)
    limits(layout)
    return dashboard(layout.panels)


def overview(layout: Layout) -> None:
    layout.row("Overview")
    red_above = lambda limit: [{"color": "green", "value": None}, {"color": "red", "value": limit}]  # noqa: E731
    layout.add(stat("Queries / s", f"sum(rate(gslb_queries_total{{{SEL}}}[{RATE}]))", "reqps",
                    "Every DNS query answered or refused, all instances."), 4, 4)  # fmt: skip
    layout.add(stat(
        "SERVFAIL", f'sum(rate(gslb_queries_total{{{SEL}, rcode="SERVFAIL"}}[{RATE}])) / '
                    f"sum(rate(gslb_queries_total{{{SEL}}}[{RATE}]))",
        "percentunit", "Share of queries answered SERVFAIL (a record with nothing left).",
        red_above(0.01)), 4, 4)  # fmt: skip
    layout.add(stat(
        "p99 latency", "histogram_quantile(0.99, sum by (le) "
        f"(rate(gslb_query_duration_seconds_bucket{{{SEL}}}[{RATE}])))", "s",
        "99th percentile of the time from a query's arrival to its reply.", red_above(0.01)),
        4, 4)  # fmt: skip
    layout.add(stat("Checks down", f"count(gslb_target_up{{{SEL}}} == 0) or vector(0)", "none",
                    "Health checks that answers treat as down or drained.", red_above(1)),
               4, 4)  # fmt: skip
    layout.add(stat(
        "Last reload", f"min(gslb_config_last_reload_successful{{{SEL}}})", "none",
        "1: the last reload succeeded everywhere; 0: one failed (the old zones keep serving).",
        [{"color": "red", "value": None}, {"color": "green", "value": 1}]), 4, 4)  # fmt: skip
    layout.add(stat(
        "Config digests", f"count(count by (digest) (gslb_config_info{{{SEL}}}))", "none",
        "Distinct zone-file digests served; more than 1 means instances disagree.",
        red_above(2)), 4, 4)  # fmt: skip


def queries(layout: Layout) -> None:
    layout.row("Queries")
    layout.add(series("Queries by rcode", [target(
        f"sum by (rcode) (rate(gslb_queries_total{{{SEL}}}[{RATE}]))", "{{rcode}}")],
        "reqps", "Queries per second by response code.", "normal"), 8, 8)  # fmt: skip
    layout.add(series("Queries by transport and type", [
        target(f"sum by (transport) (rate(gslb_queries_total{{{SEL}}}[{RATE}]))",
               "{{transport}}"),
        target(f"sum by (qtype) (rate(gslb_queries_total{{{SEL}}}[{RATE}]))", "{{qtype}}", "B"),
    ], "reqps", "Queries per second by transport (udp, tcp) and by query type."), 8, 8)  # fmt: skip
    layout.add(series("Query latency", [
        target(f"histogram_quantile({q}, sum by (le) "
               f"(rate(gslb_query_duration_seconds_bucket{{{SEL}}}[{RATE}])))", f"p{p}", ref)
        for q, p, ref in ((0.5, 50, "A"), (0.9, 90, "B"), (0.99, 99, "C"))
    ], "s", "Quantiles of the time from a query's arrival to its reply."), 8, 8)  # fmt: skip
    layout.add({
        "type": "heatmap", "title": "Query latency distribution",
        "description": "Queries per latency bucket (gslb_query_duration_seconds).",
        "targets": [target(f"sum by (le) (increase(gslb_query_duration_seconds_bucket{{{SEL}}}"
                           f"[{RATE}]))", "{{le}}", format="heatmap")],
        "options": {"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1},
        "fieldConfig": {"defaults": {}, "overrides": []},
    }, 12, 8)  # fmt: skip
    layout.add(series("EDNS Client Subnet", [target(
        f"sum by (family, scope) (rate(gslb_ecs_queries_total{{{SEL}}}[{RATE}]))",
        "{{family}} /{{scope}}")],
        "reqps", "Queries carrying ECS, by family and the scope returned."), 12, 8)  # fmt: skip


def answers(layout: Layout) -> None:
    layout.row("GSLB answers")
    layout.add(series("Answer share by target", [target(
        f'sum by (record, target) (rate(gslb_answers_total{{{SEL}, record=~"$record"}}[{RATE}]))',
        "{{record}} → {{target}}")],
        "reqps", "Where each record's answers went: stacked to 100 %.", "percent"),
        12, 9)  # fmt: skip
    layout.add(series("Answers by reason", [target(
        f'sum by (record, reason) (rate(gslb_answers_total{{{SEL}, record=~"$record"}}[{RATE}]))',
        "{{record}} {{reason}}")],
        "reqps", "Why each answer was chosen: rule, pool, fallback, origin, fail-open, forced, "
        "exhausted.", "normal"), 12, 9)  # fmt: skip


def health(layout: Layout) -> None:
    layout.row("Health")
    layout.add({
        "type": "state-timeline", "title": "Health per check and instance",
        "description": "gslb_target_up per check, as each instance (vantage point) sees it.",
        "targets": [target(f"gslb_target_up{{{SEL}}}", "{{check}} @ {{instance}}")],
        "fieldConfig": {"defaults": {
            "mappings": [{"type": "value", "options": {
                "0": {"text": "down", "color": "red", "index": 0},
                "1": {"text": "up", "color": "green", "index": 1}}}],
            "thresholds": {"mode": "absolute", "steps": [{"color": "red", "value": None},
                                                         {"color": "green", "value": 1}]},
        }, "overrides": []},
        "options": {"showValue": "auto", "mergeValues": True, "rowHeight": 0.8},
    }, 24, 8)  # fmt: skip
    layout.add(series("Probe results", [target(
        f"sum by (check, outcome) (rate(gslb_probe_results_total{{{SEL}}}[{RATE}]))",
        "{{check}} {{outcome}}")],
        "ops", "Health probes per second by check and outcome (success, status, timeout, "
        "refused, tls, ...).", "normal"), 8, 8)  # fmt: skip
    layout.add(series("Probe duration p90", [target(
        "histogram_quantile(0.9, sum by (check, le) "
        f"(rate(gslb_probe_duration_seconds_bucket{{{SEL}}}[{RATE}])))", "{{check}}")],
        "s", "90th percentile of probe duration per check."), 8, 8)  # fmt: skip
    layout.add(series("Health transitions", [target(
        f"sum by (check, to) (increase(gslb_health_transitions_total{{{SEL}}}[{RATE}]))",
        "{{check}} → {{to}}")],
        "none", "State changes of each check (up, down, drained...).", "normal"),
        8, 8)  # fmt: skip


def configuration(layout: Layout) -> None:
    layout.row("Configuration")
    layout.add(series("Reloads", [target(
        f"sum by (result) (increase(gslb_config_reloads_total{{{SEL}}}[{RATE}]))", "{{result}}")],
        "none", "Zone reload attempts by result.", "normal"), 8, 8)  # fmt: skip
    layout.add(series("Config age", [target(
        f"time() - gslb_config_last_reload_success_timestamp_seconds{{{SEL}}}", "{{instance}}")],
        "s", "Seconds since each instance loaded the configuration it serves."), 8, 8)  # fmt: skip
    layout.add(table("Zone serials", f"gslb_zone_serial{{{SEL}}}",
                     "SOA serial of every zone on every instance."), 8, 8)  # fmt: skip
    layout.add(table("Config digest and version",
                     f"gslb_config_info{{{SEL}}} * on (job, instance) group_left (version) "
                     f"gslb_build_info{{{SEL}}}",
                     "The digest of the zone files each instance serves, and its version."),
               24, 6)  # fmt: skip


def dnssec(layout: Layout) -> None:
    layout.row("DNSSEC")
    layout.add(series("Signatures", [
        target(f"sum by (zone) (rate(gslb_dnssec_signatures_total{{{SEL}}}[{RATE}]))",
               "computed {{zone}}"),
        target(f"sum by (zone) (rate(gslb_dnssec_signature_cache_hits_total{{{SEL}}}[{RATE}]))",
               "from cache {{zone}}", "B"),
    ], "ops", "Signatures computed per second, and those taken from the signature cache."),
        8, 8)  # fmt: skip
    layout.add(series("Denials rationed", [target(
        f"sum by (zone) (rate(gslb_dnssec_budget_dropped_total{{{SEL}}}[{RATE}]))", "{{zone}}")],
        "ops", "Denials answered SERVFAIL because the zone's per-second ration of fresh "
        "signatures was spent (random-name floods)."), 8, 8)  # fmt: skip
    layout.add(series("Signature validity left", [target(
        f"gslb_dnssec_signature_expiry_days{{{SEL}}}", "{{zone}} @ {{instance}}")],
        "d", "Days until the signatures served now expire: 3 to 4 normally."), 8, 8)  # fmt: skip


def fleet(layout: Layout) -> None:
    layout.row("Fleet")
    layout.add({
        "type": "state-timeline", "title": "Verdict per check and region",
        "description": "gslb_fleet_target_up: each region's verdict from its vantage points, "
                       "and region=global, the whole fleet's.",
        "targets": [target(f"max by (check, region) (gslb_fleet_target_up{{{SEL}}})",
                           "{{check}} @ {{region}}")],
        "fieldConfig": {"defaults": {
            "mappings": [{"type": "value", "options": {
                "0": {"text": "down", "color": "red", "index": 0},
                "1": {"text": "up", "color": "green", "index": 1}}}],
        }, "overrides": []},
        "options": {"showValue": "auto", "mergeValues": True, "rowHeight": 0.8},
    }, 24, 8)  # fmt: skip
    layout.add(series("Engine and nodes", [
        target(f"gslb_fleet_engine_connected{{{SEL}}}", "engine connected {{instance}}"),
        target(f"gslb_fleet_nodes_seen{{{SEL}}}", "nodes seen by {{instance}}", "B"),
    ], "none", "1 while NATS JetStream is usable; fleet nodes with a live heartbeat."),
        8, 8)  # fmt: skip
    layout.add(series("Peer observation age", [target(
        f"max by (node) (gslb_fleet_observation_age_seconds{{{SEL}}})", "{{node}}")],
        "s", "Seconds since each peer's newest observation arrived."), 8, 8)  # fmt: skip
    layout.add(series("Overrides and rejections", [
        target(f"sum(increase(gslb_fleet_override_changes_total{{{SEL}}}[{RATE}]))",
               "override changes"),
        target(f"sum(gslb_fleet_overrides_matching_nothing{{{SEL}}})",
               "overrides matching nothing", "B"),
        target(f"sum by (kind, reason) (increase(gslb_fleet_rejected_total{{{SEL}}}[{RATE}]))",
               "rejected {{kind}} {{reason}}", "C"),
        target(f"sum(increase(gslb_fleet_fallbacks_to_local_total{{{SEL}}}[{RATE}]))",
               "fallbacks to local", "D"),
    ], "none", "Operator overrides set or expired, engine values ignored, local-only decisions."),
        8, 8)  # fmt: skip


def commit(layout: Layout) -> None:
    layout.row("Commits")
    sel = f'{SEL}, record=~"$record"'
    layout.add(series("Commit progress", [
        target(f"max by (record, target) (gslb_commit_progress_ratio{{{sel}}})",
               "{{record}} {{target}}")],
        "percentunit", "Delivered over the commit, this period."), 8, 8)  # fmt: skip
    layout.add(series("Pacing error", [
        target(f"max by (record, target) (gslb_commit_pacing_error_ratio{{{sel}}})",
               "{{record}} {{target}}")],
        "percentunit", "(delivered - pace) / commit: 0 is on pace."), 8, 8)  # fmt: skip
    layout.add(series("Share aimed at and handed out", [
        target(f"max by (record, target) (gslb_commit_target_share{{{sel}}})",
               "aim {{target}}"),
        target(f"max by (record, target) (gslb_commit_answer_share{{{sel}}})",
               "answers {{target}}", "B"),
    ], "percentunit", "Delivered share the controller aims at, and the answer weight it gives."),
        8, 8)  # fmt: skip
    layout.add(series("Projected shortfall (commit-infeasible)", [target(
        f"max by (record, target) (gslb_commit_infeasible_bytes{{{sel}}})",
        "{{record}} {{target}}")],
        "bytes", "Bytes a commit is projected to miss without hurting users."), 8, 8)  # fmt: skip
    layout.add(series("Usage feed", [
        target(f"sum by (result) (increase(gslb_commit_usage_items_total{{{SEL}}}[{RATE}]))",
               "{{result}}"),
        target(f"max by (target) (gslb_commit_feed_age_seconds{{{sel}}})", "age {{target}}", "B"),
    ], "none", "Usage feed items by result, and how old each target's last report is."),
        8, 8)  # fmt: skip
    layout.add(series("Controller events", [target(
        f"sum by (record, reason) (increase(gslb_commit_events_total{{{sel}}}[{RATE}]))",
        "{{record}} {{reason}}")],
        "none", "period-rollover, commit-infeasible and other controller events."),
        8, 8)  # fmt: skip


def rum(layout: Layout) -> None:
    layout.row("Real-user measurements")
    layout.add(series("Beacons and samples", [
        target(f"sum by (result) (rate(gslb_rum_beacons_total{{{SEL}}}[{RATE}]))",
               "beacons {{result}}"),
        target(f"sum by (result) (rate(gslb_rum_samples_total{{{SEL}}}[{RATE}]))",
               "samples {{result}}", "B"),
        target(f"sum by (result) (rate(gslb_rum_bulk_samples_total{{{SEL}}}[{RATE}]))",
               "bulk {{result}}", "C"),
    ], "ops", "RUM beacons, their measurements and bulk-feed samples, accepted or why not."),
        8, 8)  # fmt: skip
    layout.add(series("Keys deciding per level", [target(
        f'sum by (record, level) (gslb_rum_decisions{{{SEL}, record=~"$record"}})',
        "{{record}} {{level}}")],
        "none", "Level keys (/24, ASN, country, continent, global) with their own decision.",
        "normal"), 8, 8)  # fmt: skip
    layout.add(series("Kept-set changes and decision rounds", [
        target(f'sum by (record) (increase(gslb_rum_set_changes_total{{{SEL}, '
               f'record=~"$record"}}[{RATE}]))', "set changes {{record}}"),
        target(f"max(gslb_rum_round_seconds{{{SEL}}})", "round seconds", "B"),
        target(f"sum(increase(gslb_rum_evicted_networks_total{{{SEL}}}[{RATE}]))",
               "networks evicted", "C"),
    ], "none", "Flaps of the kept CDN sets, the cost of a decision round, memory evictions."),
        8, 8)  # fmt: skip


def limits(layout: Layout) -> None:
    layout.row("Limits and abuse")
    layout.add(series("TCP", [
        target(f"sum(rate(gslb_tcp_connections_total{{{SEL}}}[{RATE}]))", "accepted"),
        target(f"sum(rate(gslb_tcp_refused_total{{{SEL}}}[{RATE}]))", "refused", "B"),
        target(f"sum by (reason) (rate(gslb_tcp_closed_total{{{SEL}}}[{RATE}]))",
               "closed: {{reason}}", "C"),
    ], "ops", "TCP connections accepted, refused by the limits, and cut (idle, timeouts, "
       "oversize)."), 8, 8)  # fmt: skip
    layout.add(series("Response rate limiting", [
        target(f"sum by (kind) (rate(gslb_rrl_dropped_total{{{SEL}}}[{RATE}]))",
               "dropped {{kind}}"),
        target(f"sum by (kind) (rate(gslb_rrl_slipped_total{{{SEL}}}[{RATE}]))",
               "slipped {{kind}}", "B"),
    ], "ops", "UDP responses dropped or sent truncated by RRL (off by default)."),
        8, 8)  # fmt: skip
    layout.add(series("Malformed and truncated", [
        target(f"sum by (transport) (rate(gslb_malformed_total{{{SEL}}}[{RATE}]))",
               "malformed {{transport}}"),
        target(f"sum by (transport) (rate(gslb_truncated_total{{{SEL}}}[{RATE}]))",
               "truncated {{transport}}", "B"),
    ], "ops", "Unparseable messages, and replies truncated to fit."), 8, 8)  # fmt: skip


def variable(name: str, label: str, query: str, include_all: bool = True) -> dict:
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"}, "definition": query,
        "refresh": 2, "includeAll": include_all, "multi": True, "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "sort": 1,
    }  # fmt: skip


def dashboard(panels: list[dict]) -> dict:
    return {
        "uid": "gslb", "title": "gslb", "tags": ["gslb", "dns"], "timezone": "utc",
        "description": "gslb: queries, GSLB answers per target and reason, health per check "
                       "and instance, reloads, limits (contrib/grafana/build_dashboard.py).",
        "editable": True, "graphTooltip": 1, "refresh": "30s", "schemaVersion": 39,
        "version": 1, "time": {"from": "now-3h", "to": "now"},
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            variable("job", "Job", "label_values(gslb_build_info, job)"),
            variable("instance", "Instance",
                     'label_values(gslb_build_info{job=~"$job"}, instance)'),
            variable("record", "Record", 'label_values(gslb_answers_total{job=~"$job"}, record)'),
        ]},
        "annotations": {"list": [{
            "name": "Reloads", "datasource": DS, "enable": True, "iconColor": "orange",
            "expr": f"changes(gslb_config_info{{{SEL}}}[1m]) > 0", "step": "60s",
            "titleFormat": "config changed on {{instance}}",
        }]},
        "panels": panels,
    }  # fmt: skip


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
