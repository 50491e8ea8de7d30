"""What commit pacing costs: ``make bench-commit``.

1. The answer path, in process, the same record with and without the ``commit`` step: a
   repeat client (the front cache: one lookup and a weighted pick, what most queries cost) and
   a cold decision (a new snapshot, so the whole chain runs: what every query costs right
   after a controller tick, once per rule and location).
2. One controller tick per record (ledger, profile, plan, loop, explain state), with a
   month's worth of feed in the ledger, and what a round over 1,000 such records costs.
3. ``gslb simulate commit`` with its defaults: the month's wall time.

Figures: bench/results/commit.json. There is no open-source peer to run side by side: NS1's
Cost filter is a static sort and Openmix apps ran in Cedexis' cloud.
"""

from __future__ import annotations

import ipaddress
import json
import random
import statistics
import sys
import time
from pathlib import Path

from gslb.commit.record import RecordController
from gslb.commit.simulate import Scenario, build_record, run
from gslb.config.model import CNAME
from gslb.health.view import HealthView
from gslb.policy.chain import Engine

RESULTS = Path(__file__).parent / "results"


def answer_costs(with_commit: bool, rounds: int = 5) -> dict[str, float]:
    scenario = Scenario(days=30)
    record = build_record(scenario, 3e15)
    if not with_commit:
        from dataclasses import replace

        chain = tuple(s for s in record.options.chain if s != "commit")
        record = replace(record, options=replace(record.options, chain=chain), commit=None)
    steering = {}
    if with_commit:
        controller = RecordController(record)
        steering = {(record.fqdn, CNAME): controller.snapshot("feed")}
    engine = Engine(None, rng=random.Random(1))
    view = HealthView().with_steering(steering)
    clients = [ipaddress.ip_address(f"10.{1 + i % 3}.{i % 250}.53") for i in range(3000)]
    warm, cold = [], []
    for _ in range(rounds):
        for client in clients[:100]:
            engine.answer(record, client, None, view, client_key=int(client))
        start = time.perf_counter()
        for _ in range(20):
            for client in clients[:100]:
                engine.answer_cached(record, int(client), view)
        warm.append((time.perf_counter() - start) / 2000)
        start = time.perf_counter()
        for client in clients[:300]:
            fresh = HealthView(version=random.random()).with_steering(steering)
            engine.answer(record, client, None, fresh)
        cold.append((time.perf_counter() - start) / 300)
    return {"warm_us": statistics.median(warm) * 1e6, "cold_us": statistics.median(cold) * 1e6}


def tick_cost() -> dict[str, float]:
    record = build_record(Scenario(), 3e15)
    controller = RecordController(record)
    start_time = 1_764_547_200.0
    for slot in range(8640):
        moment = start_time + slot * 300
        for target in ("cdn-a.example.net.", "cdn-b.example.net.", "cdn-c.example.net."):
            controller.add_feed(target, moment, moment + 300, 1e11, moment + 300)
        if slot % 288 == 0:
            controller.tick(moment + 300)
    now = start_time + 8640 * 300 - 1
    times = []
    for _ in range(50):
        begin = time.perf_counter()
        controller.tick(now)
        times.append(time.perf_counter() - begin)
    tick = statistics.median(times)
    return {"tick_ms": tick * 1e3, "round_1000_records_s": tick * 1000}


def main() -> int:
    without, with_ = answer_costs(False), answer_costs(True)
    ticks = tick_cost()
    begin = time.perf_counter()
    report = run(Scenario())
    month = time.perf_counter() - begin
    result = {
        "answer_without_commit": without,
        "answer_with_commit": with_,
        "warm_ratio": with_["warm_us"] / without["warm_us"],
        "cold_ratio": with_["cold_us"] / without["cold_us"],
        "controller": ticks,
        "simulate_month_seconds": month,
        "simulate_costs": {p: r["cost"] for p, r in report["policies"].items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "commit.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
