"""Bad input and faults around the commit controller, on a virtual clock: a feed that stops,
a period rollover during a reload, a contract moved by a reload, a restart from the state
dir, a corrupt state file, and a hostile feed that can never swing weights by more than the
configured step."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gslb.commit.ledger import Ledger
from gslb.commit.record import ADOPT_WINDOW
from gslb.commit.service import CommitService
from gslb.config.load import load_config
from tests.commit_zones import A, B, commit_zone

KEY = ("content.example.com.", 5)
START = 1_764_547_200.0  # 2025-12-01, Monday


def zone(start: float = START, step: float = 0.05, commit: str = "300GB") -> str:
    controller = f"interval: 300, max_step: {step}, feed_stale: 900"
    return commit_zone(start, controller, commit, "7d")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def service(tmp_path, text: str | None = None, clock: Clock | None = None, state=None):
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    (zones / "example.com.yaml").write_text(text or zone())
    config, errors = load_config(zones)
    assert config is not None, errors
    published: list[dict] = []
    svc = CommitService(published.append, None, state, clock or Clock(START + 86400))
    svc.configure(config)
    return svc, published, zones


def feed_hours(svc: CommitService, clock: Clock, hours: float, a: float = 1e8, b: float = 1e8):
    """Feed 5-minute slots of usage as time passes, ticking like the service would."""
    for _ in range(int(hours * 12)):
        clock.now += 300
        start, end = clock.now - 300, clock.now
        svc.ingest([{"target": A, "start": start, "end": end, "bytes": a},
                    {"target": B, "start": start, "end": end, "bytes": b}])  # fmt: skip
        svc.tick(clock.now, list(svc.records))


def test_a_feed_that_stops_hands_over_to_the_calibrated_estimate(tmp_path):
    clock = Clock(START + 86400)
    svc, _, _ = service(tmp_path, clock=clock)
    controller = svc.records[KEY]
    for _ in range(12):  # an hour with both feed and answers: calibration
        controller.add_answers(clock.now + 1, {A: 10.0, B: 10.0})
        clock.now += 300
        svc.ingest([{"target": t, "start": clock.now - 300, "end": clock.now, "bytes": 1e8}
                    for t in (A, B)])  # fmt: skip
        svc.tick(clock.now, list(svc.records))
    assert controller.ledger.calibration == 1e7
    fed, origin = controller.ledger.delivered(A, clock.now)
    assert origin == "feed"
    for _ in range(12):  # the feed stops; answers go on
        controller.add_answers(clock.now + 1, {A: 10.0, B: 10.0})
        clock.now += 300
        svc.tick(clock.now, list(svc.records))
    total, origin = controller.ledger.delivered(A, clock.now)
    assert origin == "mixed" and math.isclose(total, fed + 12 * 1e8)
    state = svc.status()["records"]["content.example.com./CNAME"]
    assert state["targets"][A]["estimate"] is True
    assert state["targets"][A]["feed_age"] >= 3600


def test_period_rollover_during_a_reload_resets_the_ledger_not_the_weights(tmp_path):
    clock = Clock(START + 7 * 86400 - 7200)
    svc, published, zones = service(tmp_path, clock=clock)
    feed_hours(svc, clock, 1.5)
    controller = svc.records[KEY]
    weights = dict(controller.loop.weights)
    assert controller.ledger.delivered(A, clock.now)[0] > 0
    clock.now = START + 7 * 86400 + 60  # the period ended while we reloaded
    config, _ = load_config(zones)
    svc.configure(config)
    assert svc.records[KEY] is controller, "the controller survives the reload"
    svc.tick(clock.now, list(svc.records))
    assert controller.events["period-rollover"] >= 1
    assert controller.ledger.delivered(A, clock.now)[0] == 0
    moved = max(abs(controller.loop.weights[t] - weights[t]) for t in weights)
    assert moved <= 0.05 + 1e-9


def test_a_reload_that_moves_the_contract_says_so(tmp_path):
    clock = Clock(START + 86400)
    svc, _, zones = service(tmp_path, clock=clock)
    feed_hours(svc, clock, 0.5)
    (zones / "example.com.yaml").write_text(zone(start=START + 3600))
    config, _ = load_config(zones)
    svc.configure(config)
    svc.tick(clock.now + 300, list(svc.records))
    assert svc.records[KEY].events["period-changed"] == 1


def test_restart_resumes_from_the_state_dir_and_survives_a_corrupt_file(tmp_path):
    clock = Clock(START + 86400)
    state = tmp_path / "state"
    svc, _, _ = service(tmp_path, clock=clock, state=state)
    feed_hours(svc, clock, 2, a=1e8, b=3e8)
    before = svc.records[KEY]
    saved_weights, saved_bytes = dict(before.loop.weights), before.ledger.delivered(A, clock.now)
    again, published, _ = service(tmp_path, clock=clock, state=state)
    after = again.records[KEY]
    assert after.loop.weights == saved_weights
    assert after.ledger.delivered(A, clock.now) == saved_bytes
    steering = published[-1][KEY]
    assert steering.origin == "restored"
    assert dict(steering.weights) == {t: round(w * 10000) for t, w in saved_weights.items()}
    (state / "commit.json").write_text("{ not json")
    broken, published, _ = service(tmp_path, clock=clock, state=state)
    assert broken.problems["state-unreadable"] == 1
    assert broken.records[KEY].loop.weights == {A: 0.5, B: 0.5}
    assert published[-1] == {}, "nothing to publish until the first tick: static weights"


items = st.lists(
    st.tuples(
        st.sampled_from([A, B, "cdn-z.example.net."]),
        st.floats(-86400 * 3, 3600, allow_nan=False),
        st.floats(-600, 86400 * 2, allow_nan=False),
        st.one_of(st.floats(-1e15, 1e18, allow_nan=False, allow_infinity=False), st.just(0.0)),
    ),
    max_size=8,
)


@settings(max_examples=40, deadline=None)
@given(st.lists(items, min_size=1, max_size=12))
def test_a_hostile_feed_never_swings_more_than_one_step(tmp_path_factory, batches):
    clock = Clock(START + 2 * 86400)
    svc, _, _ = service(tmp_path_factory.mktemp("z"), zone(step=0.07), clock)
    controller = svc.records[KEY]
    for batch in batches:
        before = dict(controller.loop.weights)
        results = svc.ingest([{"target": t, "start": clock.now + s, "end": clock.now + s + d,
                               "bytes": b} for t, s, d, b in batch])  # fmt: skip
        for result in results:
            assert result["result"] in svc.feed
        clock.now += 300
        svc.tick(clock.now, list(svc.records))
        after = controller.loop.weights
        # ingest may tick once and the clock tick once more: two steps at most per batch
        assert max(abs(after[t] - before[t]) for t in after) <= 2 * 0.07 + 1e-9
        assert all(math.isfinite(w) and w >= 0 for w in after.values())
    json.dumps(svc.status())  # the state stays reportable whatever came in


def test_answer_counters_become_estimate_units_weighted_by_ttl(tmp_path):
    text = zone().replace(
        "    commit: {interval: 300", "    degraded_ttl: 15\n    commit: {interval: 300"
    )
    clock = Clock(START + 86400)
    svc, _, _ = service(tmp_path, text, clock)
    ledger = svc.records[KEY].ledger
    record = "content.example.com."
    svc.add_answers({"answers": {(record, A, "pool"): 10, (record, B, "fallback"): 10}}, clock.now)
    slot = int(clock.now // 300)
    assert ledger.targets[A].estimate[slot] == 10
    assert ledger.targets[B].estimate[slot] == 5, "a 15 s answer stands for half of a 30 s one"
    # Counters only grow between reads; a restarted worker's counter starts again from zero.
    svc.add_answers({"answers": {(record, A, "pool"): 14, (record, B, "fallback"): 4}}, clock.now)
    assert ledger.targets[A].estimate[slot] == 14
    assert ledger.targets[B].estimate[slot] == 7


def test_a_controller_that_stands_still_publishes_nothing_new(tmp_path):
    """A new snapshot empties the answer path's caches: publish only when weights move."""
    clock = Clock(START + 86400)
    svc, published, _ = service(tmp_path, clock=clock)
    feed_hours(svc, clock, 1, a=1e8, b=1e8)
    silent = 0
    for _ in range(60):  # the same inputs: bounded steps until the loop reaches its target
        before, count = svc.records[KEY].steering.weights, len(published)
        svc.tick(clock.now, list(svc.records), force=True)
        moved = svc.records[KEY].steering.weights != before
        assert len(published) == count + moved, "a snapshot exactly when the weights move"
        silent += not moved
    assert silent > 30, "a converged controller stands still"
    count = len(published)
    feed_hours(svc, clock, 0.25, a=9e8, b=1e8)  # new measurements that move the weights
    assert len(published) > count


@pytest.mark.parametrize("length", [0.0, 2.2e-309, 0.5, 86400.5])
def test_a_feed_interval_too_short_or_too_long_is_invalid(length):
    """A subnormal length once made the byte rate infinite (found by hypothesis)."""
    ledger = Ledger(bytes_per_unit=1.0, feed_stale=600.0)
    ledger.ensure("cdn-a", (0.0, 30 * 86400.0))
    start = 3600.0
    assert ledger.add_feed("cdn-a", start, start + length, 1e9, now=start + 90000.0) == "invalid"
    assert ledger.delivered("cdn-a", start + 90000.0)[0] == 0.0


@pytest.mark.parametrize("seconds, other", [(300, None), (86400, 1e9)])
def test_a_feed_of_a_few_denormal_bytes_leaves_every_figure_finite(tmp_path, seconds, other):
    """Found by the property test above: 1.67e-303 bytes made the traffic expected for the
    rest of the period so small that the commit's share, or the profile's level against a
    real slot beside it, overflowed to infinity, and the tick raised building the status."""
    clock = Clock(START + 2 * 86400)
    svc, _, _ = service(tmp_path, zone(step=0.07), clock)
    items = [{"target": A, "start": clock.now - seconds - 1, "end": clock.now - 1,
              "bytes": 1.67e-303}]  # fmt: skip
    if other is not None:
        items.append({"target": B, "start": clock.now - 600, "end": clock.now - 300,
                      "bytes": other})  # fmt: skip
    assert [r["result"] for r in svc.ingest(items)] == ["accepted"] * len(items)
    clock.now += 300
    svc.tick(clock.now, list(svc.records))
    weights = svc.records[KEY].loop.weights
    assert all(math.isfinite(w) and w >= 0 for w in weights.values())
    json.dumps(svc.status(), allow_nan=False)


def test_a_peers_estimate_is_checked_counted_and_replaced_not_added(tmp_path):
    """Fleet peers share their own estimate per target (period, total, recent slots). A
    malformed, negative or other-period one is refused and counted and changes nothing; a
    peer's new estimate replaces its old one, so a re-sent key is never counted twice."""
    svc, _, _ = service(tmp_path)
    ledger = svc.records[KEY].ledger
    svc.tick(START + 86400, [KEY], force=True)
    period = list(ledger.targets[A].period)
    slot = str(int((START + 86400) // 300))
    good = {"period": period, "total": 1000.0, "slots": {slot: 10.0}}
    bad = [
        {"record": KEY[0], "type": KEY[1], "target": A},  # no estimate at all: malformed
        {"record": KEY[0], "type": KEY[1], "target": A, "estimate": {"period": period}},
        {
            "record": KEY[0],
            "type": KEY[1],
            "target": A,
            "estimate": good | {"total": -5.0},
        },  # fmt: skip
        {
            "record": KEY[0],
            "type": KEY[1],
            "target": A,
            "estimate": good | {"total": math.inf},
        },  # fmt: skip
        {
            "record": KEY[0],
            "type": KEY[1],
            "target": A,
            "estimate": good | {"period": [period[0] - 604800, period[0]]},
        },  # fmt: skip
        {"record": KEY[0], "type": KEY[1], "target": "nobody.example.net.", "estimate": good},
    ]
    for data in bad:
        svc.on_peer("peer", "k", data)
    assert ledger.targets[A].estimate_sum() == 0
    assert sum(svc.peer_estimates.values()) == len(bad) - 1  # the first is a feed item
    assert set(svc.peer_estimates) == {"malformed", "invalid", "previous-period",
                                       "unknown-target"}  # fmt: skip
    for _ in range(3):  # re-sent: replaced, not added
        svc.on_peer("peer", "k", {"record": KEY[0], "type": KEY[1], "target": A,
                                  "estimate": good})  # fmt: skip
    assert ledger.targets[A].estimate_sum() == 1000.0
    assert ledger.targets[A].estimate_at(int(slot)) == 10.0


def test_a_peers_controller_state_is_checked_before_it_is_adopted(tmp_path):
    """A node without a state of its own adopts a peer's weights and profile, but only sane
    ones: NaN, negative weights, a learned slot in the future or not a number, malformed or
    another record's states are refused and counted, and change nothing. Biases are logs of
    ratios: negative ones are normal."""
    svc, _, _ = service(tmp_path)
    ctl = svc.records[KEY]
    before = dict(ctl.loop.weights)
    good = {"loop": {"weights": {A: 0.7, B: 0.3}, "bias": {A: -0.29, B: 0.18}},
            "profile": {"bins": [1e6] * 168}, "ticks": 500, "learned": 10,
            "since": START}  # fmt: skip
    bad = [
        good | {"loop": {"weights": {A: math.nan, B: 0.3}}},
        good | {"loop": {"weights": {A: -1.0, B: 2.0}}},
        good | {"learned": 10**30},  # past now: would stop learning for good
        good | {"learned": math.inf},
        good | {"ticks": "many"},
        good | {"since": START + 10 * 86400},  # began steering in the future
        good | {"loop": {"weights": [0.7, 0.3]}},
        {"profile": good["profile"]},
    ]
    for state in bad:
        svc.on_peer_state({"record": KEY[0], "type": KEY[1], "state": state})
    svc.on_peer_state({"record": "other.example.com.", "type": 5, "state": good})
    assert ctl.loop.weights == before and ctl.since is None
    assert svc.peer_states == {"invalid": 6, "malformed": 2, "unknown-record": 1}
    svc.on_peer_state({"record": KEY[0], "type": KEY[1], "state": good})
    assert ctl.loop.weights == pytest.approx({A: 0.7, B: 0.3})
    assert ctl.loop.bias == pytest.approx({A: -0.29, B: 0.18}) and ctl.ticks == 500
    younger = good | {"loop": {"weights": {A: 0.2, B: 0.8}}, "since": START + 3600}
    svc.on_peer_state({"record": KEY[0], "type": KEY[1], "state": younger})
    assert ctl.loop.weights == pytest.approx({A: 0.7, B: 0.3}), "a peer that began later"
    assert svc.peer_states["kept-own"] == 1


def test_the_oldest_peer_state_wins_and_only_at_first(tmp_path):
    """A node may see a peer that itself just started from the static weights before a
    mature one: it moves on to the state that began steering first. After ADOPT_WINDOW of
    steering in this process, or when it restored its own state dir, it keeps its own."""
    clock = Clock(START + 86400)
    svc, _, _ = service(tmp_path, clock=clock)
    ctl = svc.records[KEY]

    def offer(a: float, since: float) -> None:
        state = {"loop": {"weights": {A: a, B: 1 - a}}, "profile": {"bins": [None] * 168},
                 "ticks": 1, "learned": -1, "since": since}  # fmt: skip
        svc.on_peer_state({"record": KEY[0], "type": KEY[1], "state": state})

    offer(0.55, clock.now - 60)  # a peer that started a minute ago
    offer(0.8, START)  # the fleet's oldest
    offer(0.6, START + 3600)  # younger than what it has now
    assert ctl.loop.weights[A] == pytest.approx(0.8) and ctl.since == START
    assert svc.peer_states == {"adopted": 2, "kept-own": 1}
    clock.now += ADOPT_WINDOW + 1
    offer(0.1, START - 86400)
    assert ctl.loop.weights[A] == pytest.approx(0.8), "steering on its own by now"
    (tmp_path / "disk").mkdir()
    other, _, _ = service(tmp_path / "disk", clock=Clock(START + 86400))
    restored = other.records[KEY]
    restored.from_disk = True
    other.on_peer_state({"record": KEY[0], "type": KEY[1], "state": {
        "loop": {"weights": {A: 0.1, B: 0.9}}, "profile": {"bins": [None] * 168},
        "ticks": 1, "learned": -1, "since": START}})  # fmt: skip
    assert restored.loop.weights[A] == pytest.approx(0.5), "its own state dir wins"


def test_p95_aims_survive_a_restart(tmp_path):
    """The headroom is learned from a day of aimed shares: they are in the state file, so a
    restart does not aim at the bare commit again for two hours."""
    svc, _, _ = service(tmp_path, state=tmp_path)
    ctl = svc.records[KEY]
    ctl.remember_aim(START + 3000.0, {A: 0.4})
    ctl.remember_aim(START + 3100.0, {A: 0.5})  # same slot: the later one is in force after
    svc.save()
    again, _, _ = service(tmp_path, state=tmp_path)
    restored = again.records[KEY]
    assert restored.aimed == ctl.aimed
    slot = int((START + 3000.0) // 300)
    assert restored.aim_in(slot + 1) == {A: 0.5}


def test_a_peers_state_with_extreme_figures_changes_nothing(tmp_path):
    """Finite but absurd figures would make every later tick raise (exp overflow, NaN
    levels): a bias beyond +-10, a profile beyond 1e18 bytes per slot, a malformed pair, a
    learned slot that is now. Each is refused before anything changes."""
    clock = Clock(START + 86400)
    svc, _, _ = service(tmp_path, clock=clock)
    ctl = svc.records[KEY]
    before = dict(ctl.loop.weights)
    good = {"loop": {"weights": {A: 0.7, B: 0.3}}, "profile": {"bins": [1e6] * 168},
            "ticks": 5, "learned": 10, "since": START}  # fmt: skip
    for state in (
        good | {"loop": {"weights": {A: 0.7, B: 0.3}, "bias": {A: 1e300}}},
        good | {"profile": {"bins": [1e308] * 168}},
        good | {"profile": {"bins": [1e6] * 168, "recent": [[1.0]]}},
        good | {"profile": {"bins": [1e6] * 10}},
        good | {"learned": int(clock.now // 300)},  # the slot now: never learned otherwise
    ):
        svc.on_peer_state({"record": KEY[0], "type": KEY[1], "state": state})
    assert ctl.loop.weights == before and ctl.since is None
    assert svc.peer_states == {"invalid": 5}
    svc.tick(clock.now, [KEY], force=True)  # and ticks still work
    assert svc.problems == {}


def test_a_peer_feed_item_with_an_infinite_number_is_counted_malformed(tmp_path):
    svc, _, _ = service(tmp_path)
    svc.on_peer("peer", "k", {"record": KEY[0], "type": math.inf, "target": A,
                              "intervals": [[0, 300, 1e9]]})  # fmt: skip
    assert svc.peer_feed["malformed"] == 1


def test_with_one_minute_ticks_the_aim_in_force_mid_slot_is_used(tmp_path):
    svc, _, _ = service(tmp_path)
    ctl = svc.records[KEY]
    slot = int((START + 86400) // 300)
    for second in (0, 60, 120, 180, 240):
        ctl.remember_aim(slot * 300 + second, {A: second / 1000})
    assert ctl.aim_in(slot) == {A: 0.12}  # the tick at 120 s was in force at 150 s
    assert ctl.aim_in(slot + 1) == {A: 0.24}  # the slot's last tick, for the next slot
    assert len(ctl.aimed[slot]) == 2


def test_a_state_file_written_with_one_aim_per_slot_still_restores(tmp_path):
    svc, _, _ = service(tmp_path, state=tmp_path)
    svc.save()
    path = tmp_path / "commit.json"
    data = json.loads(path.read_text())
    (record,) = data["records"].values()
    record["aimed"] = {"100": [30000.0, {A: 0.4}]}  # the earlier form: one bare pair
    path.write_text(json.dumps(data))
    again, _, _ = service(tmp_path, state=tmp_path)
    assert again.records[KEY].aimed == {100: [(30000.0, {A: 0.4})]}
    assert again.problems == {}
