"""contrib/: the Prometheus rules and the Grafana dashboard query only what gslb exports.

A live server (in a fleet on a real nats-server, signing its zone, with health checks, GSLB
answers, TCP, ECS, a malformed packet and a failed reload behind it) is scraped, and every
metric name in the rules and in the dashboard must be among the names it exposes; the README's
Metrics table must list exactly the families it exposes.
``make test-rules`` runs promtool on the same rules; here the checks that need no promtool:
recording rules used are defined, every alert has a unit test that fires it and one that
does not, the dashboard JSON is what its builder writes.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import dns.message
import pytest
import yaml

from gslb.dnssec.tools import keygen
from gslb.fleet.config import FleetSettings
from tests.conftest import write_zone
from tests.natscluster import NatsCluster
from tests.server import ServerThread, wait_until
from tests.test_web import HEAD, checked_record, http

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "contrib" / "prometheus" / "gslb-rules.yml"
RULE_TESTS = sorted((ROOT / "contrib" / "prometheus" / "tests").glob("*.test.yml"))
DASHBOARD = ROOT / "contrib" / "grafana" / "gslb.json"
README = ROOT / "README.md"
BUILDER = ROOT / "contrib" / "grafana" / "build_dashboard.py"
# A gslb metric name, not part of a recording rule's level:metric:operation name.
METRIC = re.compile(r"(?<![\w:])(gslb_[a-z0-9_]+)(?![\w:])")
RECORDED = re.compile(r"(?<![\w:])([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)(?![\w:])")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def dashboard_exprs(board: dict) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    exprs += [a["expr"] for a in board["annotations"]["list"]]
    return exprs


def exported_names(text: str) -> set[str]:
    """Every series name a scrape can hold, including families with no sample yet."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            base = name.removesuffix("_total")
            names.update(base + suffix for suffix in SUFFIXES.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


@pytest.fixture(scope="module")
def scrape(tmp_path_factory, geo_db, edge_thread) -> str:
    """/metrics of a server in a fleet (one real nats-server) that signs its zone and has
    answered, probed, reloaded (once badly) and been sent a malformed packet."""
    zones = tmp_path_factory.mktemp("zones")
    text = HEAD + checked_record(edge_thread.edge.port)
    path = write_zone(zones, "example.com", text)
    keygen(zones, "example.com", 13)  # signed online: the DNSSEC series exist too
    state = tmp_path_factory.mktemp("state")
    with NatsCluster(tmp_path_factory.mktemp("nats"), size=1) as nats:
        fleet = FleetSettings(nats.urls, "a", "EU", refresh=0.5, replicas=1)
        with ServerThread(zones, geo_db, fleet=fleet, state_dir=state) as server:
            wait_until(lambda: http(server, "/fleet").json()["engine"]["connected"], 20,
                       "the fleet engine")  # fmt: skip
            exercise(server, path)
            reply = http(server, "/metrics")
            assert reply.status == 200
            return reply.text


def exercise(server: ServerThread, path: Path) -> None:
    query = dns.message.make_query("dyn.example.com", "A", use_edns=0, want_dnssec=True)
    server.udp(query)
    server.tcp(query)
    ecs = dns.edns.ECSOption("192.0.2.0", 24)
    server.udp(dns.message.make_query("dyn.example.com", "A", use_edns=0, options=[ecs]))
    server.raw_udp(b"\x12\x34\x01")  # too short to be a message: counted as malformed
    good = path.read_text()
    path.write_text(good + "bad:\n  type: A\n  value: 999.1.1.1\n")
    assert not server.call(server.app.reload()).ok


def test_every_metric_the_rules_use_is_exported(scrape):
    exported = exported_names(scrape)
    used = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert used, "the rules name gslb metrics"
    assert used <= exported, sorted(used - exported)


def test_every_metric_the_dashboard_queries_is_exported(scrape):
    exported = exported_names(scrape)
    board = json.loads(DASHBOARD.read_text())
    used = {name for expr in dashboard_exprs(board) for name in METRIC.findall(expr)}
    assert len(used) >= 15, sorted(used)
    assert used <= exported, sorted(used - exported)


def readme_metrics_table() -> set[str]:
    """The metric names in the README's "Metrics" table (its first column)."""
    section = README.read_text().split("\n### Metrics\n", 1)[1].split("\n### ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `gslb_")]
    return {name for cell in rows for name in re.findall(r"`(gslb_[a-z0-9_]+)`", cell)}


def test_the_readme_metrics_table_is_exactly_what_the_server_exports(scrape):
    """Every family a live server exports is documented, and the README names no other."""
    families = {line.split(" ")[2] for line in scrape.splitlines()
                if line.startswith("# TYPE gslb_")}  # fmt: skip
    documented = readme_metrics_table()
    assert len(documented) >= 40, sorted(documented)
    assert families - documented == set(), "exported but not in the README's Metrics table"
    assert documented - families == set(), "in the README's Metrics table but not exported"


def test_the_live_server_really_has_the_series_behind_the_alerts(scrape):
    """Not only declared: the families the alerts read carry samples on a running server."""
    samples = {line.split("{")[0].split(" ")[0] for line in scrape.splitlines()
               if line and not line.startswith("#")}  # fmt: skip
    for name in ("gslb_target_up", "gslb_answers_total", "gslb_config_info",
                 "gslb_config_last_reload_successful", "gslb_queries_total",
                 "gslb_query_duration_seconds_bucket", "gslb_dnssec_signature_expiry_days",
                 "gslb_dnssec_signatures_total", "gslb_fleet_engine_connected",
                 "gslb_fleet_target_up"):  # fmt: skip
        assert name in samples, name
    assert "gslb_config_last_reload_successful 0.0" in scrape  # the bad reload shows


def test_recording_rules_that_are_used_are_defined():
    defined = {rule["record"] for rule in rules() if "record" in rule}
    used = {name for rule in rules() for name in RECORDED.findall(rule["expr"])}
    assert used and used <= defined, sorted(used - defined)


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not():
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    fired, silent = set(), set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert len(alerts) >= 8
    assert alerts <= fired, sorted(alerts - fired)
    assert alerts <= silent, sorted(alerts - silent)


def test_dashboard_json_is_what_its_builder_writes():
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run python contrib/grafana/build_dashboard.py"


def test_dashboard_panels_are_importable_and_do_not_overlap():
    board = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
            assert panel["datasource"]["uid"] == "${datasource}"
