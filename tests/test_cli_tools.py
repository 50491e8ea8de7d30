"""``gslb explain`` and ``gslb simulate`` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.geodb import CLIENTS


def run(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "gslb", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def tool_args(geo_db):
    return ["--zones", "zones", "--geoip", str(geo_db)]


def test_explain_text_names_rule_pool_and_answer(tool_args):
    result = run("explain", "content.example.com", "--client", "192.0.2.1",
                 "--ecs", f"{CLIENTS['DE']}/24", "--qtype", "CNAME", *tool_args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "pool europe" in result.stdout
    assert "example.cdn-a.net." in result.stdout or "example.cdn-b.net." in result.stdout


def test_explain_json_is_the_full_trace(tool_args):
    result = run("explain", "content.example.com", "--client", CLIENTS["JP"], "--json",
                 "--qtype", "CNAME", *tool_args)  # fmt: skip
    trace = json.loads(result.stdout)
    assert trace["rule"]["pool"] == "asia"
    assert trace["client"]["location"]["geos"][-1] == "AS"
    assert [s["step"] for s in trace["steps"]][0] == "rules"
    assert trace["answer"]["values"][0] in {"example.cdn-c.net.", "example.cdn-a.net."}


def test_explain_unknown_name_fails_clearly(tool_args):
    result = run("explain", "nothere.example.com", "--client", "192.0.2.1", *tool_args)
    assert result.returncode == 1 and "no dynamic A record" in result.stderr


def test_simulate_reports_shares_that_sum_to_one(tool_args, tmp_path):
    clients = tmp_path / "clients.txt"
    clients.write_text("\n".join(CLIENTS.values()) + "\n")
    result = run("simulate", "content.example.com", "--qtype", "CNAME", "--clients",
                 str(clients), "--json", *tool_args)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (record,) = data["records"]
    assert data["clients"] == len(CLIENTS)
    assert abs(sum(record["targets"].values()) - 1.0) < 1e-9
    assert {"EU", "AS"} <= set(record["continents"])
    assert record["expected_cost_per_gb"] > 0
