"""The commit estimate's demand weights: how many users one answer stands for.

The model (gslb.dns.demand) and the re-weighting (gslb.commit.estimate) are pure functions of
counts and clocks, tested directly; the last tests run the real server, where a resolver that
re-asks at every TTL and ten that ask once each get the same number of answers but not the
same share of the estimate.
"""

from __future__ import annotations

import collections
import time

import dns.edns
import dns.message
import dns.query
import pytest

from gslb.commit.estimate import DemandWeights
from gslb.commit.ledger import Ledger
from gslb.dns.demand import SATURATION, DemandEstimator, DemandSampler, cache_key
from tests.conftest import ZONE_HEAD
from tests.server import ServerThread
from tests.test_web import http, metric, scrape

CAP = 1 / (1 - SATURATION)


# -- the model -----------------------------------------------------------------------------


def test_a_cache_first_answer_stands_for_one_user():
    estimator = DemandEstimator()
    assert estimator.weight(1, ttl=60, now=1000.0) == pytest.approx(1.0)


def test_a_cache_that_asks_once_per_ttl_is_saturated_and_capped():
    estimator = DemandEstimator()
    weights = [estimator.weight(7, ttl=60, now=1000.0 + 60 * i) for i in range(60)]
    assert weights[-1] == pytest.approx(CAP)  # qT reached 1: capped at 1 / (1 - SATURATION)
    assert weights == sorted(weights)  # more queries seen, more users per answer


def test_a_quiet_cache_weighs_about_one_over_one_minus_qt():
    estimator = DemandEstimator()
    for i in range(60):  # one query per 600 s for ten hours, TTL 60: qT = 0.1
        last = estimator.weight(3, ttl=60, now=1000.0 + 600 * i)
    assert last == pytest.approx(1 / (1 - 0.1), rel=0.08)


def test_sampling_and_workers_scale_the_rate():
    plain, sampled = DemandEstimator(), DemandEstimator(every=4, spread=2)
    for i in range(20):  # the sampled one sees an eighth of the same cache's queries
        a = plain.weight(9, ttl=30, now=5000.0 + 90 * i)
        b = sampled.weight(9, ttl=30, now=5000.0 + 90 * i)
    assert a == pytest.approx(1 / (1 - 30 / 90), rel=0.1)
    assert b == pytest.approx(CAP)  # eight times the rate: saturated


def test_the_window_forgets_a_cache_that_went_quiet():
    estimator = DemandEstimator(window=3600)
    for i in range(120):
        estimator.weight(5, ttl=60, now=1000.0 + 30 * i)
    assert estimator.weight(5, ttl=60, now=1000.0 + 30 * 120) == pytest.approx(CAP)
    assert estimator.weight(5, ttl=60, now=1000.0 + 3 * 3600 + 1) == pytest.approx(1.0)


def test_a_full_table_counts_new_caches_as_untracked_not_grown():
    estimator = DemandEstimator(limit=2)
    for cache in range(5):
        estimator.weight(cache, ttl=60, now=1000.0)
    assert estimator.caches() == 2 and estimator.untracked == 3


def query_bytes(subnet: str | None) -> bytes:
    options = [dns.edns.ECSOption.from_text(subnet)] if subnet else []
    return dns.message.make_query("content.example.com", "A", use_edns=0, options=options).to_wire()


def test_a_cache_is_the_resolver_plus_the_subnet_the_scope_covers():
    record = "content.example.com."
    one, two = query_bytes("198.51.100.0/24"), query_bytes("198.51.101.0/24")
    assert cache_key("192.0.2.1", one, 16, record) == cache_key("192.0.2.1", two, 16, record)
    assert cache_key("192.0.2.1", one, 24, record) != cache_key("192.0.2.1", two, 24, record)
    assert cache_key("192.0.2.1", one, 0, record) == cache_key("192.0.2.1", two, 0, record)
    assert cache_key("192.0.2.1", one, 0, record) == cache_key(
        "192.0.2.1", query_bytes(None), 0, record
    )
    assert cache_key("192.0.2.1", one, 24, record) != cache_key("192.0.2.2", one, 24, record)
    assert cache_key("192.0.2.1", b"\x00\x01junk", 24, record) is None


# -- the re-weighting ------------------------------------------------------------------------


def test_the_split_follows_the_users_and_the_total_stays_the_answers():
    weights = DemandWeights()
    units = weights.units({"a": 10, "b": 10}, {"a": 90, "b": 10}, now=100.0)
    assert units["a"] == pytest.approx(18.0) and units["b"] == pytest.approx(2.0)
    assert sum(units.values()) == pytest.approx(20)
    assert weights.relative("a") == pytest.approx(1.8)


def test_reads_without_samples_keep_the_learned_users_per_answer():
    weights = DemandWeights()
    weights.units({"a": 10, "b": 10}, {"a": 90, "b": 10}, now=100.0)
    later = weights.units({"a": 1}, {}, now=101.0)  # one answer, nothing sampled this read
    assert later["a"] > 1.5


def test_no_sample_at_all_is_the_plain_answer_count():
    assert DemandWeights().units({"a": 3, "b": 5}, {}, now=0.0) == {"a": 3, "b": 5}
    assert DemandWeights().relative("a") == 1.0


def test_old_reads_fade_with_the_half_life():
    weights = DemandWeights(half_life=60)
    weights.units({"a": 10, "b": 10}, {"a": 90, "b": 10}, now=0.0)
    weights.units({"a": 10, "b": 10}, {"a": 10, "b": 10}, now=3600.0)  # mixes changed
    assert weights.relative("a") == pytest.approx(1.0, abs=0.01)


# -- the real server -------------------------------------------------------------------------

A, B = "cdn-a.example.net.", "cdn-b.example.net."
BUSY = "127.0.0.2"  # one resolver that re-asks: many users behind one cache
QUIET = [f"127.0.0.{i}" for i in range(3, 13)]  # ten resolvers that ask once each


def zone(start: float) -> str:
    return (
        ZONE_HEAD
        + f"""\
content:
  type: CNAME
  ttl: 3600
  value: origin.example.com.
  dynamic:
    pools:
      busy: {{values: [{{value: {A}}}]}}
      rest: {{values: [{{value: {B}}}]}}
    rules:
      - {{subnets: [{BUSY}/32], pool: busy}}
      - pool: rest
  gslb:
    commit: {{interval: 3600}}
    targets:
      {A}:
        commit: {{volume: 1PB, period: 30d, start: {start}, price: 0.004, overage: 0.006}}
      {B}: {{cost: 0.002}}
"""
    )


def ask(server: ServerThread, source: str, times: int) -> None:
    for _ in range(times):
        query = dns.message.make_query("content.example.com", "CNAME")
        dns.query.udp(query, "127.0.0.1", port=server.dns_port, source=source, timeout=3)


def estimate(sample: int, tmp_path, geo_db) -> dict[str, float]:
    (tmp_path / "example.com.yaml").write_text(zone(time.time() - 86400))
    with ServerThread(tmp_path, geo_db, commit_demand_sample=sample) as server:
        ask(server, BUSY, 10)
        for source in QUIET:
            ask(server, source, 1)
        commit = server.app.commit
        server.call(commit.tick_due(force=True))
        (controller,) = commit.records.values()
        units = {t: controller.ledger.targets[t].estimate_total for t in (A, B)}
        (state,) = http(server, "/commit").json()["records"].values()
        relative = state["targets"][A]["users_per_answer"]
        assert metric(scrape(server), "gslb_commit_users_per_answer", target=A) == relative
        return units | {"relative": relative}


def test_busy_resolvers_answers_count_for_their_users(tmp_path, geo_db):
    got = estimate(1, tmp_path, geo_db)
    # ten answers each way; the busy cache's nine repeats each stand for ten users
    assert got[A] + got[B] == pytest.approx(20, rel=0.01)
    assert got[A] > 5 * got[B]
    assert got["relative"] > 1.5


def test_sampling_off_counts_answers_alone(tmp_path, geo_db):
    got = estimate(0, tmp_path, geo_db)
    assert got[A] == pytest.approx(got[B]) == pytest.approx(10)
    assert got["relative"] == 1.0


def test_an_ecs_of_source_zero_or_a_wider_scope_never_breaks_the_key():
    """ECS with source /0 does not decide (the resolver's own address does, maybe IPv6, with
    a /56 scope): the cache is the resolver's. A scope wider than the family is clamped."""
    record = "content.example.com."
    zero = query_bytes("0.0.0.0/0")
    assert cache_key("2001:db8::7", zero, 56, record) == cache_key(
        "2001:db8::7", query_bytes(None), 0, record
    )
    assert cache_key("192.0.2.1", query_bytes("198.51.100.0/24"), 56, record) is not None


def test_a_and_aaaa_are_two_caches():
    record = "content.example.com."
    a = dns.message.make_query("content.example.com", "A").to_wire()
    aaaa = dns.message.make_query("content.example.com", "AAAA").to_wire()
    assert cache_key("192.0.2.1", a, 0, record) != cache_key("192.0.2.1", aaaa, 0, record)


def test_a_read_weighs_samples_within_its_budget_and_leaves_the_rest():
    """Weighing runs on the DNS process's loop: one read stops at its budget (checked every
    64 samples), the next carries on, and nothing is lost or counted twice."""
    sampler = DemandSampler({("content.example.com.", False): 60}, every=1)
    data = dns.message.make_query("content.example.com", "A").to_wire()
    for i in range(200):
        sampler.see(f"192.0.2.{i}", data, ("content.example.com.", A, "pool"), 0)
    demand: collections.defaultdict = collections.defaultdict(float)
    sampler.flush(demand, 1000.0, budget=0.0)
    assert len(sampler.pending) == 136 and demand[("content.example.com.", A, "pool")] == 64
    while sampler.pending:
        sampler.flush(demand, 1000.0, budget=0.0)
    assert demand[("content.example.com.", A, "pool")] == 200  # 200 first answers: 1 each


def test_a_peers_estimate_keeps_its_older_slots_and_what_it_counted():
    """A peer re-sends only its last hours: older slots stay counted (p95 samples need the
    whole period); a peer restarted without its state (total from zero) takes nothing away:
    what it counts from then on adds to what it had counted."""
    ledger = Ledger(1e6, 900)
    ledger.ensure(A, (0.0, 30 * 86400.0))
    assert (
        ledger.set_peer_estimate(
            A, "b", {"period": [0, 30 * 86400], "total": 50.0, "slots": {"1": 10.0, "2": 20.0}}
        )
        == "accepted"
    )
    assert (
        ledger.set_peer_estimate(
            A, "b", {"period": [0, 30 * 86400], "total": 5.0, "slots": {"300": 5.0}}
        )
        == "accepted"
    )
    target = ledger.targets[A]
    assert target.estimate_at(1) == 10.0 and target.estimate_at(300) == 5.0
    assert target.estimate_sum() == 55.0  # 50, then 5 since a restart without its state
    outside = {"period": [0, 30 * 86400], "total": 1.0, "slots": {"99999999": 1.0}}
    assert ledger.set_peer_estimate(A, "b", outside) == "invalid"


def test_a_peer_restarted_without_its_state_adds_on_top_of_what_it_counted():
    ledger = Ledger(1e6, 900)
    ledger.ensure(A, (0.0, 30 * 86400.0))
    period = [0, 30 * 86400]
    for total in (1000.0, 600.0, 1200.0):  # 1000, restart from zero, then on to 1200
        ledger.set_peer_estimate(A, "b", {"period": period, "total": total, "slots": {}})
    assert ledger.targets[A].estimate_sum() == 2200.0
    huge = {"period": period, "total": 1e300, "slots": {}}
    assert ledger.set_peer_estimate(A, "b", huge) == "invalid"
    assert ledger.targets[A].estimate_sum() == 2200.0


def test_samples_dropped_from_a_full_backlog_are_stood_for_by_the_rest(monkeypatch):
    monkeypatch.setattr("gslb.dns.demand.PENDING", 10)
    sampler = DemandSampler({("content.example.com.", False): 60}, every=2)
    data = dns.message.make_query("content.example.com", "A").to_wire()
    for _ in range(40):  # 20 samples taken, 10 kept
        sampler.see("192.0.2.1", data, ("content.example.com.", A, "pool"), 0)
    demand: collections.defaultdict = collections.defaultdict(float)
    sampler.flush(demand, 1000.0)
    assert sampler.dropped == 10 and sampler.estimator.every == 4
