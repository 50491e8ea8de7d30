"""95th-percentile contracts: the rate's share of current traffic, the free top 5 % of the
period's 5-minute samples spent on the busiest hours up to the ceiling, and the billed p95 and
free-slot budget reported as they are spent."""

from __future__ import annotations

import pytest

from gslb.commit.record import RecordController
from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME
from gslb.config.names import to_wire

A, B = "cdn-a.example.net.", "cdn-b.example.net."
START = 1_764_547_200.0
SLOT = 300
GBPS = 1e9 / 8 * SLOT  # bytes per slot at 1 Gbit/s


def controller(days: int = 30) -> RecordController:
    data = {
        "type": "CNAME", "ttl": 60, "value": "origin.example.com.",
        "dynamic": {"pools": {"all": {"values": [{"value": A, "weight": 50},
                                                 {"value": B, "weight": 50}]}},
                    "rules": [{"pool": "all"}]},
        "gslb": {
            "commit": {"interval": SLOT, "max_step": 0.2},
            "targets": {
                A: {"commit": {"p95": "4Gbps", "ceiling": "8Gbps", "period": f"{days}d",
                               "start": START, "price": 0.9, "overage": 2.0}},
                B: {"cost": 0.001},
            },
        },
    }  # fmt: skip
    errors: list[str] = []
    fqdn = "content.example.com."
    record, _ = parse_dynamic(fqdn, to_wire(fqdn), CNAME, 60, data, "test", errors)
    assert errors == []
    return RecordController(record)


def feed(ctl: RecordController, slot: int, a_gbps: float, b_gbps: float) -> None:
    start = START + slot * SLOT
    ctl.add_feed(A, start, start + SLOT, a_gbps * GBPS, start + SLOT)
    ctl.add_feed(B, start, start + SLOT, b_gbps * GBPS, start + SLOT)


def test_free_slots_are_spent_up_to_the_ceiling_then_the_rate_caps():
    ctl = controller(days=2)  # 576 samples, 28 free
    budget = int(576 * 0.05)
    slot = 0
    while True:
        feed(ctl, slot, 8.0, 2.0)  # a above its 4 Gbps commit: each sample spends a free slot
        ctl.tick(START + (slot + 1) * SLOT)
        state = ctl.state[A]
        slot += 1
        if state["free_slots_left"] == 0 or slot > budget + 5:
            break
    assert slot == budget, "one free sample spent per slot above the commit"
    assert state["p95_bps"] == 0, "every sample so far above the commit was a free one"
    assert state["kind"] == "p95"
    # Budget gone: a gets its commit's share of the 10 Gbps and no more (overage costs 2.0,
    # b costs 0.001 at the margin).
    assert state["target_share"] == pytest.approx(0.4, abs=1e-6)
    feed(ctl, slot, 8.0, 2.0)  # one more above the commit: now it is billed
    ctl.tick(START + (slot + 1) * SLOT)
    assert ctl.state[A]["p95_bps"] == pytest.approx(8e9)
    assert ctl.state[A]["progress"] == pytest.approx(2.0)


def test_in_a_free_slot_the_p95_cdn_takes_traffic_up_to_its_ceiling():
    ctl = controller()
    for slot in range(12):
        feed(ctl, slot, 5.0, 5.0)
    ctl.tick(START + 12 * SLOT)
    # Flat profile: this hour is as busy as any, and the budget is untouched: spend a slot.
    assert ctl.state[A]["target_share"] == pytest.approx(0.8, abs=1e-6)
    assert ctl.state[A]["free_slots_left"] == int(8640 * 0.05) - 12


def test_the_aim_leaves_headroom_for_how_far_delivery_misses_it():
    """Delivery that lands 10 % above the aimed share in every slot would bill 10 % over the
    commit if the controller aimed at the commit itself: after two hours of such slots it
    aims at the commit / 1.1, and says so."""
    ctl = controller(days=2)
    slot = 0
    while slot == 0 or ctl.state[A]["free_slots_left"] > 0:  # spend the free budget first
        feed(ctl, slot, 8.0, 2.0)
        slot += 1
        ctl.tick(START + slot * SLOT)
    assert ctl.state[A]["headroom"] == 1.0  # nothing learned yet: aim at the commit
    for _ in range(30):
        aimed = ctl.state[A]["target_share"]
        feed(ctl, slot, 10 * aimed * 1.1, 10 * (1 - aimed * 1.1))
        slot += 1
        ctl.tick(START + slot * SLOT)
    assert ctl.state[A]["headroom"] == pytest.approx(1 / 1.1, abs=0.005)
    assert ctl.state[A]["target_share"] == pytest.approx(0.4 / 1.1, rel=0.02)


def test_a_p95_cdn_short_of_its_share_is_not_called_infeasible():
    """The rate is a cap billed at the 95th percentile, not a volume to fill: a p95 CDN that
    the networks cannot give its share (here it never gets past 1 Gbps of 10) misses
    nothing, so the controller does not report commit-infeasible for it."""
    ctl = controller(days=2)
    slot = 0
    while slot == 0 or ctl.state[A]["free_slots_left"] > 0:
        feed(ctl, slot, 8.0, 2.0)
        slot += 1
        ctl.tick(START + slot * SLOT)
    for _ in range(40):
        feed(ctl, slot, 1.0, 9.0)
        slot += 1
        ctl.tick(START + slot * SLOT)
    assert ctl.loop.weights[A] > 0.9  # every answer it can get, and still short of 0.4
    assert "infeasible" not in ctl.state[A]
    assert ctl.events["commit-infeasible"] == 0
