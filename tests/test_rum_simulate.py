"""``gslb simulate rum``: the figures the README states, asserted on a seeded world.

Beacons go through the real ingestion, decisions through the real decider, answers through the
real engine; only the users and the clock are synthetic. The bars: users' latency within 10 %
of an oracle that always knows the fastest CDN and clearly better than no RUM; a CDN that gets
200 ms slower for one carrier leaves that carrier's answers within one window; answer sets
change rarely, several times less often than without hysteresis and hold.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gslb.cli import main
from gslb.rum.simulate import Scenario, run

WORLD = Scenario(networks=60, carriers=12, hours=1.0, seed=3)


@pytest.fixture(scope="module")
def reports() -> tuple[dict, dict]:
    return run(WORLD), run(replace(WORLD, hysteresis=0.0, hold=0.0))


def test_users_get_close_to_the_oracle_and_far_better_than_without_rum(reports) -> None:
    latency = reports[0]["latency_ms"]
    assert latency["rum_over_oracle"] <= 1.10
    assert latency["no_rum_over_oracle"] - latency["rum_over_oracle"] >= 0.15


def test_a_degraded_cdn_leaves_the_carriers_answers_within_one_window(reports) -> None:
    reaction = reports[0]["reaction_s"]
    assert reaction is not None and reaction <= WORLD.window


def test_hysteresis_and_hold_keep_answer_sets_steady(reports) -> None:
    steady, jumpy = reports
    assert steady["flaps_per_network_hour"] <= 5
    assert steady["flaps_per_network_hour"] * 3 <= jumpy["flaps_per_network_hour"]
    assert steady["flaps_per_network_hour_near_equal"] <= 3600 / WORLD.hold / 4


def test_every_synthetic_beacon_went_through_ingestion(reports) -> None:
    beacons = reports[0]["beacons"]
    assert set(beacons) == {"accepted"} and beacons["accepted"] > 1000


def test_the_same_seed_gives_the_same_figures(reports) -> None:
    again = run(replace(WORLD, hours=0.25))
    assert again == run(replace(WORLD, hours=0.25))


def test_the_command_prints_both_variants(capsys) -> None:
    argv = ["simulate", "rum", "--networks", "12", "--carriers", "3", "--hours", "0.25",
            "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"rum", "rum_without_hysteresis"}
    assert out["rum"]["scenario"]["networks"] == 12
