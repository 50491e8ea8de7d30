"""The controller as pure functions: pacing arithmetic, margin filling, infeasibility, and the
inner loop's properties (bounded steps, convergence, no oscillation) checked with hypothesis
against a plant whose delivered shares are answer shares times an unknown bias."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.commit.contract import Contract, Period
from gslb.commit.controller import MIN_OBSERVED, Loop, TargetInput, plan

PERIOD = Period(0.0, 30 * 86400)


def volume(amount: float, overage: float = 0.006, ceiling: float | None = None) -> Contract:
    return Contract("volume", amount, PERIOD, 0.004, overage, ceiling)


def test_commit_share_is_what_is_left_over_what_is_left_of_the_traffic():
    result = plan("commit", {
        "a": TargetInput(0.5, volume(100.0), delivered=40.0, remaining=300.0),
        "b": TargetInput(0.5, None, price=0.001, remaining=300.0),
    }, rate_bps=1.0)  # fmt: skip
    assert result.shares["a"] == pytest.approx(60 / 300)
    assert result.shares["b"] == pytest.approx(1 - 60 / 300)
    assert result.infeasible == {}


def test_the_rest_goes_to_the_cheapest_at_the_margin_within_ceilings():
    result = plan("commit", {
        "a": TargetInput(0.4, volume(10.0, overage=0.002, ceiling=30.0), remaining=100.0),
        "b": TargetInput(0.3, volume(10.0, overage=0.009), remaining=100.0),
        "c": TargetInput(0.3, None, price=0.005, remaining=100.0),
    }, rate_bps=1.0)  # fmt: skip
    # a: 10 % for its commit, then the cheapest margin up to its ceiling (30 %);
    # b: its commit only (overage is dearest); c: everything else.
    assert result.shares["a"] == pytest.approx(0.30)
    assert result.shares["b"] == pytest.approx(0.10)
    assert result.shares["c"] == pytest.approx(0.60)


def test_commits_beyond_all_traffic_are_infeasible_by_the_shortfall():
    result = plan("commit", {
        "a": TargetInput(0.5, volume(300.0), remaining=200.0),
        "b": TargetInput(0.5, volume(100.0), remaining=200.0),
    }, rate_bps=1.0)  # fmt: skip
    # Needs 150 % + 50 % = 200 % of the remaining traffic: each is scaled to its part.
    assert result.shares == pytest.approx({"a": 0.75, "b": 0.25})
    assert result.infeasible["a"] == pytest.approx(300.0 - 150.0)
    assert result.infeasible["b"] == pytest.approx(100.0 - 50.0)
    assert "commits need 200% of the remaining traffic" in result.notes


def test_no_profile_yet_holds_the_static_weights():
    result = plan("commit", {"a": TargetInput(0.7, volume(1.0)), "b": TargetInput(0.3)}, 1.0)
    assert result.shares == pytest.approx({"a": 0.7, "b": 0.3})


def test_p95_contract_takes_its_rate_and_up_to_its_ceiling_in_free_slots():
    contract = Contract("p95", 4e9, PERIOD, 1.0, 2.0, ceiling=8e9)
    cheap = TargetInput(0.5, None, price=0.001, remaining=1.0)
    normal = plan("commit", {"a": TargetInput(0.5, contract, remaining=1.0), "b": cheap}, 10e9)
    assert normal.shares["a"] == pytest.approx(0.4)
    free = TargetInput(0.5, contract, remaining=1.0, free_slot=True)
    spent = plan("commit", {"a": free, "b": cheap}, 10e9)
    assert spent.shares["a"] == pytest.approx(0.8)


def test_delivered_mode_aims_at_the_operator_weights():
    result = plan("delivered", {"a": TargetInput(0.9), "b": TargetInput(0.1)}, 0.0)
    assert result.shares == pytest.approx({"a": 0.9, "b": 0.1})


# -- the inner loop ---------------------------------------------------------------------------


def deliver(weights: dict[str, float], bias: dict[str, float]) -> dict[str, float]:
    """The plant: answer shares -> delivered shares under a fixed per-target bias."""
    raw = {t: w * bias[t] for t, w in weights.items()}
    total = sum(raw.values())
    return {t: v / total for t, v in raw.items()}


shares_st = st.lists(st.floats(0.05, 1.0), min_size=2, max_size=5)
bias_st = st.lists(st.floats(0.1, 10.0), min_size=5, max_size=5)


@settings(max_examples=60, deadline=None)
@given(shares_st, bias_st, st.floats(0.01, 0.3), st.floats(0.1, 1.0))
def test_loop_steps_are_bounded_monotone_and_converge(raw, biases, max_step, gain):
    names = [f"t{i}" for i in range(len(raw))]
    want = {n: v / sum(raw) for n, v in zip(names, raw, strict=False)}
    bias = dict(zip(names, biases, strict=False))
    loop = Loop({n: 1 / len(names) for n in names}, max_step=max_step, gain=gain)
    ideal_weights = {n: want[n] / bias[n] for n in names}
    total = sum(ideal_weights.values())
    ideal_weights = {n: v / total for n, v in ideal_weights.items()}
    distance = math.inf
    for _ in range(300):
        before = dict(loop.weights)
        loop.observe(before, deliver(before, bias))
        after = loop.step(want)
        assert max(abs(after[n] - before[n]) for n in names) <= max_step + 1e-9
        assert sum(after.values()) == pytest.approx(1.0)
        now = max(abs(after[n] - ideal_weights[n]) for n in names)
        # A target whose share falls under MIN_OBSERVED stops teaching its bias, so the loop's
        # own fixed point may drift by that much; an oscillation would be max_step-sized.
        assert now <= distance + MIN_OBSERVED, "never moves away from the fixed point"
        distance = now
    delivered = deliver(loop.weights, bias)
    assert max(abs(delivered[n] - want[n]) for n in names) < 0.01


@settings(max_examples=60, deadline=None)
@given(st.floats(0.3, 0.9), st.floats(0.05, 0.2))
def test_a_target_capped_by_its_allowed_set_is_flagged_not_forced(eligible, max_step):
    """``a`` may serve only ``eligible`` of the traffic (the earlier steps keep it out of the
    rest), yet the plan wants more: the loop saturates it and reports the gap."""

    def plant(weights):
        a, b = weights["a"], weights["b"]
        share_a = eligible * a / (a + b)  # where a is allowed it competes with b
        return {"a": share_a, "b": 1 - share_a}

    loop = Loop({"a": 0.5, "b": 0.5}, max_step=max_step, gain=0.5)
    want = {"a": min(1.0, eligible + 0.08), "b": max(0.0, 1 - eligible - 0.08)}
    for _ in range(300):
        before = dict(loop.weights)
        loop.observe(before, plant(before))
        loop.step(want)
        assert max(abs(loop.weights[t] - before[t]) for t in before) <= max_step + 1e-9
    short = loop.saturated_short(want, plant(loop.weights))
    assert short["a"] == pytest.approx(want["a"] - plant(loop.weights)["a"])
    assert plant(loop.weights)["a"] <= eligible + 1e-9


def test_a_measurement_of_zero_does_not_blow_up_the_bias():
    loop = Loop({"a": 0.5, "b": 0.5}, max_step=0.05)
    loop.observe({"a": 0.5, "b": 0.5}, {"a": 0.0, "b": 1.0})
    weights = loop.step({"a": 0.5, "b": 0.5})
    assert all(math.isfinite(w) for w in weights.values())
    assert weights["a"] - 0.5 == pytest.approx(0.05)  # one bounded step toward a
