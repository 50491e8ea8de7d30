"""What the status page costs with many GSLB names: ``make bench-console``.

A real server (one process, so the page renders on the loop that also answers DNS) with
``--gslb`` dynamic records (bench/scale.py's, 3-4 targets each), its answer history filled for
a whole hour: every (record, target, reason) series gets answers in each of the 60 minutes,
filed by the real ``AnswerHistory.observe`` at simulated minutes (waiting an hour is not a
benchmark). Then: the time of one history sample, of ``GET /`` (the 30 records that need a
look) and of ``GET /?records=all``, the page sizes, and the history's memory. Figures:
bench/results/console.json.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path

import benchlib
from scale import gslb_record

from gslb.geo import default_db_path
from tests.server import ServerThread

REASONS = ("pool", "fallback")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gslb", type=int, default=1000, help="dynamic records (default 1000)")
    parser.add_argument("--rounds", type=int, default=10, help="page loads timed (default 10)")
    return parser.parse_args()


def write_zone(directory: Path, count: int) -> None:
    import random

    rng = random.Random(7)
    parts = ["'':\n  - type: NS\n    values: [ns1.example.net.]\n"]
    parts += [gslb_record(rng, i) for i in range(count)]
    (directory / "console.example.yaml").write_text("".join(parts))


def series_keys(app) -> list[tuple[str, str, str]]:
    from gslb.web.console import configured_targets, unique_records

    return [(record.fqdn, target.value, reason) for record in unique_records(app.config)
            for target in configured_targets(record) for reason in REASONS]  # fmt: skip


def fill_hour(app, keys: list) -> float:
    """60 simulated minutes of answers on every series, ending now; the history's bytes."""
    answers = app.history.answers
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    now = time.time()
    totals = dict.fromkeys(keys, 0)
    for minute in range(59, -1, -1):
        for key in keys:
            totals[key] += 7 + hash(key) % 13
        answers.observe(totals, now - 60 * minute)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    app.stats.answers.update(totals)  # the counters the sampler reads hold every series too
    return used


def timed_get(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - started, len(body)


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="gslb-console-bench-") as tmp:
        zones = Path(tmp)
        write_zone(zones, args.gslb)
        with ServerThread(zones, default_db_path(), uvloop=True) as server:
            app = server.app
            keys = series_keys(app)
            history_bytes = server.call(_fill(app, keys))
            sample = [server.call(_timed_sample(app)) for _ in range(args.rounds)]
            default = [timed_get(server.url("/?refresh=0")) for _ in range(args.rounds)]
            every = [timed_get(server.url("/?refresh=0&records=all")) for _ in range(3)]
    result = {
        "machine": benchlib.machine(),
        "load_average": benchlib.load_average(),
        "gslb_records": args.gslb,
        "series": len(keys),
        "history_bytes": history_bytes,
        "history_bytes_per_series": round(history_bytes / len(keys)),
        "sample_ms_median": round(statistics.median(sample) * 1000, 2),
        "page_ms_median": round(statistics.median(t for t, _ in default) * 1000, 1),
        "page_bytes": default[0][1],
        "page_all_ms_median": round(statistics.median(t for t, _ in every) * 1000, 1),
        "page_all_bytes": every[0][1],
    }
    path = benchlib.write_json("console.json", result)
    for key, value in result.items():
        if key != "machine":
            print(f"{key}: {value}")
    print(f"wrote {path}")
    return 0


async def _fill(app, keys) -> float:
    await app.sampler.stop()  # the simulated hour must not be mixed with live samples
    gc.collect()
    used = fill_hour(app, keys)
    await app.sampler.sample()  # the baseline: later samples see no increase, as at steady state
    return used


async def _timed_sample(app) -> float:
    started = time.perf_counter()
    await app.sampler.sample()
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
