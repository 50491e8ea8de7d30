"""``make failover-bench``: how long after an edge fails do DNS answers stop sending users to it?

Three local HTTP edges stand in for three CDNs, a fourth for the origin. The zone's dynamic A
record answers all healthy values at once (127.0.0.11, .12, .13; ``answers: 3``), each probed
on its own edge (per-target check ``address`` + ``port``), so one answer shows the whole
health view. gslb runs as in production (``gslb serve``, worker processes), and a poller asks
over UDP every POLL seconds.

Each run fails one edge (rotating; modes: 503, connection refused, hang past the timeout),
records the time until answers no longer contain it, heals it and records the time until it is
back. Median and max per mode, with the check settings, go to bench/results/failover.json.

What to expect: the first failing probe comes up to one interval after the failure, then
``fall - 1`` more intervals, plus the probe's own time (the timeout when the edge hangs):
detection lies between (fall - 1) x interval and fall x interval (+ timeout), plus a few ms
to reach the workers and the poll period. Recovery is the same with ``rise``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import benchlib as bl

VALUES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
NAME = "content.failover.example."
MODES = ("503", "refuse", "hang")
CHAIN = ("rules", "health", "performance", "proximity", "cost", "weighted")
LIMIT = 15.0  # seconds: a transition slower than this is reported as a failure

ZONE = """\
'':
  - type: NS
    values: [ns1.failover.example.]
ns1:
  type: A
  value: 192.0.2.53
content:
  type: A
  ttl: 5
  value: 192.0.2.10
  dynamic:
    pools:
      cdns:
        values:
{values}
    rules:
      - pool: cdns
  gslb:
    answers: 3
    chain: [{chain}]
    degraded_ttl: 5
    check: {{type: http, path: /health, {timing}}}
    origin_check: {{type: http, address: 127.0.0.1, port: {origin_port}, path: /health,
                   {timing}}}
    targets:
{targets}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=6, help="runs per failure mode")
    parser.add_argument("--interval", type=float, default=0.5, help="check interval, s")
    parser.add_argument("--timeout", type=float, default=0.3, help="check timeout, s")
    parser.add_argument("--fall", type=int, default=2)
    parser.add_argument("--rise", type=int, default=2)
    parser.add_argument("--jitter", type=float, default=0.1, help="fraction of the interval")
    parser.add_argument("--poll", type=float, default=0.02, help="DNS poll period, s")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--chain",
        nargs="+",
        default=list(CHAIN),
        help="policy chain (default: all steps, as a record without 'chain')",
    )
    parser.add_argument("--workers", type=int, help="gslb --workers (default: its own, cores)")
    parser.add_argument("--out", default="failover.json")
    return parser.parse_args()


def zone_text(args: argparse.Namespace, ports: dict[str, int], origin_port: int) -> str:
    timing = (f"interval: {args.interval}, timeout: {args.timeout}, fall: {args.fall}, "
              f"rise: {args.rise}, jitter: {args.jitter}")  # fmt: skip
    values = "\n".join(f"          - {{value: {v}}}" for v in VALUES)
    targets = "\n".join(
        f"      {v}:\n        check: {{address: 127.0.0.1, port: {ports[v]}}}" for v in VALUES
    )
    return ZONE.format(
        values=values,
        targets=targets,
        timing=timing,
        origin_port=origin_port,
        chain=", ".join(args.chain),
    )


class Poller:
    """Asks the server every ``period`` seconds; keeps the latest answer and when it came."""

    def __init__(self, port: int, period: float) -> None:
        self.port, self.period = port, period
        self.answer: frozenset[str] = frozenset()
        self.changed = asyncio.Condition()
        self.queries = self.errors = 0

    async def run(self) -> None:
        import dns.asyncquery
        import dns.exception
        import dns.message

        query = dns.message.make_query(NAME, "A")
        while True:
            started = time.monotonic()
            try:
                reply = await dns.asyncquery.udp(query, bl.LOOPBACK, port=self.port, timeout=0.5)
                answer = frozenset(rr.address for rrset in reply.answer for rr in rrset)
                async with self.changed:
                    self.answer = answer
                    self.changed.notify_all()
            except (dns.exception.Timeout, OSError):
                self.errors += 1
            self.queries += 1
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))

    async def wait_for(self, predicate, limit: float = LIMIT) -> float | None:
        """Seconds until an answer satisfies ``predicate``; None when ``limit`` passes."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit), self.changed:
                await self.changed.wait_for(lambda: predicate(self.answer))
        except TimeoutError:
            return None
        return time.monotonic() - started


def fail(edge, mode: str) -> None:
    if mode == "503":
        edge.status(503)
    elif mode == "refuse":
        edge.refuse()
    else:
        edge.slow(3600.0)  # hangs: every probe runs into its timeout


async def one_run(edge, value: str, mode: str, poller: Poller, args) -> dict:
    """Fail one edge, time its removal from answers; heal it, time its return."""
    await poller.wait_for(lambda a: set(VALUES) <= a)  # start from a fully healthy view
    await asyncio.sleep(random.uniform(0, args.interval))  # any phase of the probe schedule
    fail(edge, mode)
    gone = await poller.wait_for(lambda a: value not in a and bool(a))
    await asyncio.sleep(random.uniform(0.1, args.interval))
    edge.healthy()
    back = await poller.wait_for(lambda a: value in a)
    return {"mode": mode, "value": value, "down_s": rnd(gone), "up_s": rnd(back)}


def rnd(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(runs: list[dict], modes: list[str]) -> dict:
    out = {}
    for mode in modes:
        for key in ("down_s", "up_s"):
            values = [r[key] for r in runs if r["mode"] == mode and r[key] is not None]
            missed = sum(1 for r in runs if r["mode"] == mode and r[key] is None)
            out.setdefault(mode, {})[key] = {
                "median": rnd(statistics.median(values)) if values else None,
                "min": rnd(min(values)) if values else None,
                "max": rnd(max(values)) if values else None,
                "runs": len(values),
                "missed": missed,
            }
    return out


async def bench(args: argparse.Namespace, workdir: Path) -> dict:
    from tests.edges import Edge

    edges = {value: await Edge().start() for value in VALUES}
    origin = await Edge().start()
    server = None
    try:
        zones = workdir / "zones"
        zones.mkdir()
        ports = {value: edge.port for value, edge in edges.items()}
        (zones / "failover.example.yaml").write_text(zone_text(args, ports, origin.port))
        db, _ = bl.geoip_db(workdir)
        server = bl.Gslb(zones, db, workdir, workers=args.workers).start()
        await asyncio.to_thread(server.wait_ready)
        poller = Poller(server.dns_port, args.poll)
        polling = asyncio.create_task(poller.run())
        runs = []
        for index in range(args.runs * len(args.modes)):
            mode = args.modes[index % len(args.modes)]
            value = VALUES[index % len(VALUES)]
            run = await one_run(edges[value], value, mode, poller, args)
            print(f"  {mode:<7} {value}: gone after {run['down_s']} s, back after "
                  f"{run['up_s']} s", flush=True)  # fmt: skip
            runs.append(run)
        polling.cancel()
        return {"runs": runs, "polls": poller.queries, "poll_errors": poller.errors}
    finally:
        if server is not None:
            server.stop()
        for edge in (*edges.values(), origin):
            await edge.stop()


def expected(args: argparse.Namespace) -> dict:
    """The window the check settings predict (before worker push and poll period)."""
    low = (args.fall - 1) * args.interval * (1 - args.jitter)
    high = args.fall * args.interval * (1 + args.jitter)
    rise_low = (args.rise - 1) * args.interval * (1 - args.jitter)
    rise_high = args.rise * args.interval * (1 + args.jitter)
    return {
        "down_fast_s": [round(low, 3), round(high, 3)],
        "down_hang_s": [round(low + args.timeout, 3), round(high + args.timeout, 3)],
        "up_s": [round(rise_low, 3), round(rise_high, 3)],
    }


def main() -> int:
    args = parse_args()
    settings = {k: getattr(args, k) for k in ("interval", "timeout", "fall", "rise", "jitter",
                                              "poll", "runs", "modes", "chain")}  # fmt: skip
    print(f"machine: {bl.uptime_line()}", flush=True)
    print(f"check: interval {args.interval} s, timeout {args.timeout} s, fall {args.fall}, "
          f"rise {args.rise}, jitter {args.jitter}; DNS polled every {args.poll * 1000:g} ms",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gslb-failover-") as tmp:
        result = asyncio.run(bench(args, Path(tmp)))
    summary = summarize(result["runs"], args.modes)
    print(f"\n{'mode':<8} {'down median':>12} {'down max':>9} {'up median':>10} {'up max':>7}")
    for mode, s in summary.items():
        print(f"{mode:<8} {s['down_s']['median']!s:>12} {s['down_s']['max']!s:>9} "
              f"{s['up_s']['median']!s:>10} {s['up_s']['max']!s:>7}")  # fmt: skip
    window = expected(args)
    print(
        f"expected from the settings: down {window['down_fast_s']} s "
        f"({window['down_hang_s']} s when the edge hangs), up {window['up_s']} s"
    )
    report = {"machine": bl.machine(), "settings": settings, "expected": window,
              "summary": summary, **result}  # fmt: skip
    print(f"wrote {bl.write_json(args.out, report)}")
    missed = sum(s[k]["missed"] for s in summary.values() for k in ("down_s", "up_s"))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
