"""What commit pacing costs: ``make bench-commit``.

1. The answer path, in process, the same record with and without the ``commit`` step: a
   repeat client (the front cache: one lookup and a weighted pick, what most queries cost) and
   a cold decision (a new snapshot, so the whole chain runs: what every query costs right
   after a controller tick, once per rule and location).
2. One controller tick per record (ledger, profile, plan, loop, explain state), with a
   month's worth of feed in the ledger, and what a round over 1,000 such records costs.
3. ``gslb simulate commit`` with its defaults: the month's wall time.
4. The demand sampler (``gslb.dns.demand``) on the whole answer path: ``Responder.handle``
   for a record with a commit, sampling off, one answer in 16 (the default) and every answer,
   on repeated queries (the replay cache) and on cache-hostile ones (0x20 letter case, an
   own ECS /24 per query: query shapes), best of five passes over 20,000 queries.

Figures: bench/results/commit.json. There is no open-source peer to run side by side: NS1's
Cost filter is a static sort and Openmix apps ran in Cedexis' cloud.
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's gslb

from gslb.commit.record import RecordController  # noqa: E402
from gslb.commit.simulate import Scenario, build_record, run  # noqa: E402
from gslb.config.model import CNAME  # noqa: E402
from gslb.health.view import HealthView  # noqa: E402
from gslb.policy.chain import Engine  # noqa: E402

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


def sampling_costs(rounds: int = 5) -> dict[str, dict[str, float]]:
    import tempfile

    import dns.edns
    import dns.message

    from gslb.config.load import load_config
    from gslb.dns.responder import Options, Responder
    from tests.commit_zones import commit_zone  # the zone the commit tests share

    zones = Path(tempfile.mkdtemp(prefix="gslb-bench-"))
    start = time.time() - 86400
    (zones / "example.com.yaml").write_text(commit_zone(start, "interval: 300", "1PB", "30d"))
    config, errors = load_config(zones)
    assert config is not None, errors
    rng = random.Random(1)

    def hostile() -> bytes:
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in "content.example.com")
        subnet = f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        ecs = dns.edns.ECSOption(subnet, 24)
        return dns.message.make_query(name, "CNAME", use_edns=0, options=[ecs]).to_wire()

    traffic = {
        "repeated": [dns.message.make_query("content.example.com", "CNAME").to_wire()
                     for _ in range(20000)],
        "hostile": [hostile() for _ in range(20000)],
    }  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for kind, queries in traffic.items():
        for every in (0, 16, 1):
            responder = Responder(config, Engine(None), Options(demand_sample=every))
            for query in queries[:2000]:
                responder.handle(query, "192.0.2.1")
            best = math.inf
            for _ in range(rounds):
                began = time.perf_counter()
                for query in queries:
                    responder.handle(query, "192.0.2.1")
                best = min(best, (time.perf_counter() - began) / len(queries))
                responder.stats.snapshot()  # the samples are weighed when counters are read
            out.setdefault(kind, {})[f"sample_1_in_{every}_us" if every else "off_us"] = best * 1e6
    return out


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
        "demand_sampling": sampling_costs(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "commit.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
