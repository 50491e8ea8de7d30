"""Several DNS worker processes on the same ports (SO_REUSEPORT), fed by one supervisor.

The supervisor (the main process) loads and validates zones, runs the prober and the HTTP side
once; workers only answer DNS. Over one pipe per worker it pushes every new configuration and
every health view, and pulls counter snapshots when ``/metrics`` is scraped. A health change
reaches every worker within milliseconds, well inside one probe interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from types import MappingProxyType

from gslb.config.load import Config
from gslb.health.view import HealthView

log = logging.getLogger("gslb.workers")
START_TIMEOUT = 60.0
STATS_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker needs to start; everything here pickles."""

    index: int
    endpoints: tuple[tuple[str, int], ...]
    geoip: str
    identity: bytes | None
    version_string: str | None
    tcp: object  # gslb.dns.server.TcpLimits
    rrl: object = None  # gslb.dns.rrl.RrlConfig; None: off
    user: str | None = None  # drop to this user after binding (gslb.privileges)


def health_message(view: HealthView) -> tuple:
    return ("health", view.version, dict(view.states))


class Worker:
    """The supervisor's handle on one worker process."""

    def __init__(self, process: multiprocessing.Process, conn: Connection, index: int) -> None:
        self.process, self.conn, self.index = process, conn, index
        self.pending: dict[int, asyncio.Future] = {}

    def send(self, message: tuple) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, OSError):
            log.error("worker %d (pid %s) is gone", self.index, self.process.pid)


class WorkerPool:
    def __init__(self, count: int) -> None:
        self.count = count
        self.workers: list[Worker] = []
        self.ids = itertools.count(1)
        self.ready: asyncio.Queue = asyncio.Queue()

    async def start(self, spec: WorkerSpec, config: Config, view: HealthView) -> None:
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        for index in range(self.count):
            parent, child = context.Pipe()
            worker_spec = replace(spec, index=index)
            process = context.Process(
                target=worker_main, args=(child, worker_spec), name=f"gslb-worker-{index}"
            )
            process.daemon = True
            process.start()
            child.close()
            worker = Worker(process, parent, index)
            self.workers.append(worker)
            loop.add_reader(parent.fileno(), self.on_message, worker)
            worker.send(("config", config))
            worker.send(health_message(view))
        for _ in range(self.count):
            message = await asyncio.wait_for(self.ready.get(), START_TIMEOUT)
            if message[0] == "failed":
                raise OSError(f"worker failed to start: {message[1]}")

    def on_message(self, worker: Worker) -> None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(worker.conn.fileno())
            if worker.process.exitcode not in (None, 0):
                log.error("worker %d exited with %s", worker.index, worker.process.exitcode)
            return
        kind = message[0]
        if kind in ("ready", "failed"):
            self.ready.put_nowait(message)
        elif kind == "stats":
            future = worker.pending.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2])

    def push_health(self, view: HealthView) -> None:
        message = health_message(view)
        for worker in self.workers:
            worker.send(message)

    def push_config(self, config: Config) -> None:
        for worker in self.workers:
            worker.send(("config", config))

    async def stats(self) -> list[dict]:
        """Counter snapshots from every live worker (a stuck one is skipped, not waited on)."""
        loop = asyncio.get_running_loop()
        futures = []
        for worker in self.workers:
            request = next(self.ids)
            future = loop.create_future()
            worker.pending[request] = future
            worker.send(("stats", request))
            futures.append(future)
        done, _ = await asyncio.wait(futures, timeout=STATS_TIMEOUT) if futures else (set(), None)
        return [f.result() for f in done]

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            worker.send(("stop",))
        for worker in self.workers:
            await asyncio.to_thread(worker.process.join, 5)
            if worker.process.is_alive():
                worker.process.kill()
            with contextlib.suppress(Exception):
                loop.remove_reader(worker.conn.fileno())
            worker.conn.close()
        self.workers.clear()


# -- inside a worker process -------------------------------------------------------------


def worker_main(conn: Connection, spec: WorkerSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(WorkerProcess(conn, spec).run())


class WorkerProcess:
    def __init__(self, conn: Connection, spec: WorkerSpec) -> None:
        self.conn, self.spec = conn, spec
        self.done = asyncio.Event()

    async def run(self) -> None:
        from gslb.dns.responder import Options, Responder
        from gslb.dns.server import DnsServer
        from gslb.geo import GeoDB
        from gslb.policy.chain import Engine
        from gslb.privileges import drop_privileges

        message = self.conn.recv()
        config: Config = message[1]
        try:
            geo = GeoDB.open(self.spec.geoip)
            engine = Engine(geo)
            options = Options(self.spec.identity, self.spec.version_string)
            self.responder = Responder(config, engine, options)
            self.apply(self.conn.recv())
            server = DnsServer(self.responder, self.spec.tcp, self.spec.rrl)
            pairs = [DnsServer.bind_pair(host, port) for host, port in self.spec.endpoints]
            if self.spec.user is not None:  # bound as root; not one query read as root
                drop_privileges(self.spec.user)
            for (host, port), pair in zip(self.spec.endpoints, pairs, strict=True):
                await server.listen(host, port, pair)
        except Exception as exc:  # report, do not hang the supervisor
            self.conn.send(("failed", f"{type(exc).__name__}: {exc}"))
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self.on_message)
        self.conn.send(("ready", os.getpid()))
        await self.done.wait()
        server.close()
        geo.close()

    def apply(self, message: tuple) -> None:
        kind = message[0]
        if kind == "health":
            self.responder.set_health(HealthView(message[1], MappingProxyType(message[2])))
        elif kind == "config":
            self.responder.set_config(message[1])
        elif kind == "stats":
            self.conn.send(("stats", message[1], self.responder.stats.snapshot()))
        elif kind == "stop":
            self.done.set()

    def on_message(self) -> None:
        try:
            self.apply(self.conn.recv())
        except (EOFError, OSError):
            self.done.set()  # the supervisor is gone: stop serving
