"""The fleet decision as a pure function: policies, regional majorities, freshness, and what the
policy engine answers a client of each region from the resulting view (ECS scope included)."""

from __future__ import annotations

import ipaddress
from types import MappingProxyType

import pytest

from gslb.config.load import find_record, load_config
from gslb.fleet.decide import Policy, Vantage, decide, fresh, majority, matrix
from gslb.fleet.regions import RegionMap, parse_regions
from gslb.geo import GeoDB
from gslb.health.view import CheckState, HealthView
from gslb.policy.chain import Engine
from tests.geodb import CLIENTS
from tests.test_web import checked_zone

KEY = "http://127.0.0.1:1/health#abcdef01"


def votes(*spec: tuple[str, str, bool]) -> list[Vantage]:
    return [Vantage(n, region, up, "ok" if up else "status 503", 0.0) for n, region, up in spec]


@pytest.mark.parametrize(
    ("policy", "ups", "total", "up"),
    [
        (Policy("quorum"), 2, 3, True),
        (Policy("quorum"), 1, 3, False),
        (Policy("quorum"), 1, 2, True),  # a tie is not a majority down
        (Policy("all"), 2, 3, False),
        (Policy("all"), 3, 3, True),
        (Policy("any"), 1, 3, True),
        (Policy("any"), 0, 3, False),
        (Policy("threshold", 0.18), 1, 5, True),  # 20 % > 18 %: Route 53 keeps it
        (Policy("threshold", 0.18), 1, 6, False),  # 16.7 %
        (Policy("quorum"), 0, 0, True),  # nobody looked: obey
    ],
)
def test_policies(policy, ups, total, up):
    assert policy.verdict(ups, total) is up


def test_majority_ties_up():
    assert majority(1, 2) and not majority(1, 3) and majority(2, 3)


def test_fresh_by_local_receive_time():
    old = Vantage("n2", "EU", False, "x", received=10.0, sent=99999.0)  # sender clock ahead
    new = Vantage("n3", "EU", True, "ok", received=24.0, sent=1.0)  # sender clock behind
    assert fresh([old, new], now=30.0, window=15.0) == [new]


def test_regions_decide_by_majority_and_others_by_policy():
    local = HealthView(1, MappingProxyType({KEY: CheckState(True, "ok 200")}))
    observed = votes(("n1", "EU", True), ("n2", "AS", False), ("n3", "AS", False))
    view = decide(local, {KEY: observed}, {KEY: Policy()}, version=7, region_of=RegionMap())
    assert view.version == 7
    assert view.states[KEY].up is False  # quorum over all three: 2 of 3 say down
    assert view.for_region("EU").states[KEY].up is True
    assert view.for_region("AS").states[KEY].up is False
    assert view.for_region("OC") is view  # no vantage there: the global verdict
    assert KEY in view.varies
    assert "2 of 3 vantages" in view.states[KEY].reason
    any_view = decide(local, {KEY: observed}, {KEY: Policy("any")}, version=8)
    assert any_view.states[KEY].up is True


def test_an_override_travels_through_every_region():
    local = HealthView(1, MappingProxyType({KEY: CheckState(True, "drained", override="drained")}))
    observed = votes(("n1", "EU", True), ("n2", "AS", True))
    view = decide(local, {KEY: observed}, {KEY: Policy()}, version=2)
    assert {view.for_region(r).states[KEY].effective for r in ("EU", "AS", None)} == {"drained"}


def test_matrix_json_has_every_vantage_with_age():
    local = HealthView(1, MappingProxyType({KEY: CheckState(True, "ok")}))
    observed = [Vantage("n1", "EU", True, "ok 200 in 3 ms", 9.0),
                Vantage("n2", "AS", False, "status 503", 7.5)]  # fmt: skip
    view = decide(local, {KEY: observed}, {KEY: Policy("all")}, version=3)
    out = matrix({KEY: observed}, view, {KEY: Policy("all")}, now=10.0)
    assert out["regions"] == ["AS", "EU"]
    row = out["checks"][KEY]
    assert row["policy"] == "all" and row["global"]["up"] is False
    assert row["regions"]["AS"]["vantages"] == [
        {"node": "n2", "up": False, "reason": "status 503", "age": 2.5}
    ]
    assert row["regions"]["EU"]["up"] is True and row["varies_by_region"] is True


def test_region_map_most_specific_code_wins_and_problems_are_collected():
    errors: list[str] = []
    regions = parse_regions({"us-east": ["NA-US-NY"], "us": ["NA"], "bad name!": ["EU"],
                             "eu": ["EU", "europe"], "dup": ["NA"]}, errors)  # fmt: skip
    assert len(errors) == 3, errors

    class Loc:
        continent = "NA"

        @staticmethod
        def geos():
            return ("NA-US-NY", "NA-US", "NA")

    assert regions(Loc()) == "us-east"
    assert RegionMap()(Loc()) == "NA" and regions(None) is None


def test_engine_answers_each_region_from_its_own_verdict(tmp_path, geo_db):
    checked_zone(tmp_path, 1)
    config, errors = load_config(tmp_path)
    assert not errors
    (key,) = config.checks
    record = find_record(config, "dyn.example.com", "A")
    local = HealthView(1, MappingProxyType({key: CheckState(True, "ok")}))
    observed = votes(("eu-1", "EU", True), ("as-1", "AS", False), ("as-2", "AS", False))
    view = decide(local, {key: observed}, {key: Policy()}, version=2, region_of=RegionMap())
    engine = Engine(GeoDB.open(geo_db))
    resolver = ipaddress.ip_address("192.0.2.1")

    def ask(country: str):
        ecs = (ipaddress.ip_address(CLIENTS[country]), 24)
        return engine.answer(record, resolver, ecs, view)

    europe = {ask("DE").values for _ in range(50)}
    assert ("127.0.0.1",) in europe  # weight 100 vs 1, and up for European vantages
    asia = ask("JP")
    assert asia.values == ("127.0.0.2",)  # down for Asian vantages
    assert ask("DE").scope > 0 and asia.scope > 0, "the answer depends on the client's region"
    trace = engine.explain(record, resolver, (ipaddress.ip_address(CLIENTS["JP"]), 24), view)
    assert trace["region"] == {"client": "AS", "verdicts": "regional",
                               "regions_with_vantages": ["AS", "EU"]}  # fmt: skip
    brazil = ask("BR")  # no vantage in South America: the global quorum (2 of 3 down)
    assert brazil.values == ("127.0.0.2",)


def test_a_regional_view_reaches_worker_processes_whole():
    """Workers get the view pickled (gslb.workers): regions, overrides and the map survive."""
    import pickle

    local = HealthView(1, MappingProxyType({KEY: CheckState(True, "ok")}))
    observed = votes(("n1", "EU", True), ("n2", "AS", False))
    view = decide(local, {KEY: observed}, {KEY: Policy()}, version=4,
                  targets={("", "", "192.0.2.7"): "drained"},
                  region_of=RegionMap({"EU": "europe"}))  # fmt: skip
    copy = HealthView.from_wire(pickle.loads(pickle.dumps(view.to_wire())))
    assert copy.version == 4 and copy.varies == view.varies
    assert copy.for_region("AS").states[KEY].up is False
    assert copy.target_override("r.", "p", "192.0.2.7") == "drained"
    assert copy.region_of == RegionMap({"EU": "europe"})
