"""``make bench-octodns``: loading the same octoDNS-written zone, octoDNS next to gslb.

Builds a zone with every record type octoDNS knows (the records of
tests/test_octodns_oracle.py, repeated under COPIES subnames), has octoDNS's YamlProvider write
it, then times, in one process and interleaved, octoDNS reading it back (YamlProvider.populate:
YAML plus octoDNS's validation, what every ``octodns-sync`` starts with) and gslb reading it
(``load_config``: YAML, validation, rdata packed for the wire, zone checks). Best of ROUNDS, CPU
time and wall time. Results: bench/results/octodns-load.json.
"""

from __future__ import annotations

import argparse
import copy
import logging
import tempfile
import time
from pathlib import Path

import benchlib as bl
from octodns.provider.yaml import YamlProvider
from octodns.record import Record
from octodns.zone import Zone

from gslb.config.load import load_config
from tests.test_octodns_oracle import RECORDS, ZONE


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=500, help="copies of the record set")
    parser.add_argument("--rounds", type=int, default=3)
    return parser.parse_args()


def build_zone(copies: int) -> Zone:
    zone = Zone(ZONE, [])
    for index in range(copies):
        for name, datas in RECORDS.items():
            owner = f"{name}.n{index}" if name else f"n{index}"
            for data in datas:
                if name == "" and data["type"] in ("ALIAS", "NS"):  # apex only
                    continue
                # a fresh copy per record: shared objects would be written as YAML aliases
                data = copy.deepcopy(data)
                zone.add_record(Record.new(zone, owner, {"ttl": 3600, **data}))
    return zone


def timed(action) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    args = parse_args()
    logging.disable(logging.WARNING)  # octoDNS logs every populate; not what is measured
    with tempfile.TemporaryDirectory(prefix="gslb-octodns-") as tmp:
        zone = build_zone(args.copies)
        values = sum(len(getattr(r, "values", [None])) for r in zone.records)
        writer = YamlProvider("gslb", tmp, escaped_semicolons=True)
        writer.apply(writer.plan(zone))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        reader = YamlProvider("config", tmp, escaped_semicolons=True)
        results: dict[str, list] = {"octodns": [], "gslb": []}
        loaded: list = []
        for _ in range(args.rounds):
            results["octodns"].append(timed(lambda: reader.populate(Zone(ZONE, []))))
            results["gslb"].append(timed(lambda: loaded.append(load_config(tmp))))
            assert loaded[-1][1] == [], loaded[-1][1][:3]
    best = {name: (min(w for w, _ in runs), min(c for _, c in runs))
            for name, runs in results.items()}  # fmt: skip
    data = {
        "records": len(zone.records),
        "values": values,
        "file_bytes": size,
        "rounds": args.rounds,
        "best_wall_s": {k: round(v[0], 3) for k, v in best.items()},
        "best_cpu_s": {k: round(v[1], 3) for k, v in best.items()},
        "gslb_cpu_vs_octodns": round(best["gslb"][1] / best["octodns"][1], 2),
        "load_average": bl.load_average(),
        "machine": bl.machine(),
    }
    path = bl.write_json("octodns-load.json", data)
    print(f"{len(zone.records)} records ({values} values, {size / 1e6:.1f} MB of YAML)")
    for name, (wall, cpu) in best.items():
        print(
            f"  {name:8} {wall:6.2f} s wall  {cpu:6.2f} s CPU  {len(zone.records) / cpu:8.0f} rec/s"
        )
    print(f"gslb / octoDNS CPU: {data['gslb_cpu_vs_octodns']}  -> {path}")


if __name__ == "__main__":
    main()
