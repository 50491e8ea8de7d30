"""Several DNS worker processes on the same ports (SO_REUSEPORT), fed by one supervisor.

The supervisor (the main process) loads and validates zones, runs the prober and the HTTP side
once; workers only answer DNS. Over one pipe per worker it pushes every new configuration and
every health view, and pulls counter snapshots when ``/metrics`` is scraped. A health change
reaches every worker within milliseconds, well inside one probe interval.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import pickle
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection

from gslb.config.load import Config, gc_paused
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
    udp_batch: bool = True
    query_log_sample: int = 0  # log one query in N (gslb.metrics.install_query_log)
    commit_demand_sample: int = 16  # --commit-demand-sample (gslb.dns.demand)
    log_format: str = "plain"  # a spawned worker starts with no logging set up
    log_level: str = "info"
    asn_db: str | None = None  # --asn-db: the RUM ASN level (gslb.rum.network.AsnDB)
    rum_resolver_name: str | None = None  # --rum-resolver-name (gslb.rum.resolvers)
    workers: int = 1  # processes sharing the ports (UDP queries are spread over them evenly)


def pickle_config(config: Config) -> bytes:
    """Pickled once for all workers (100k records: seconds of work, not to be done N times)."""
    return pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)


def unpickle_config(blob: bytes) -> Config:
    with gc_paused():  # millions of new objects, no garbage: see gslb.config.load
        return pickle.loads(blob)


def health_message(view: HealthView) -> tuple:
    return ("health", view.to_wire())


class Worker:
    """The supervisor's handle on one worker process.

    Two one-way pipes, each read by a plain thread: no pipe is ever polled by the event loop,
    whose poller (uvloop) would make it non-blocking and break multi-megabyte config pushes.
    """

    def __init__(
        self, process: multiprocessing.Process, commands: Connection, replies: Connection,
        index: int,
    ) -> None:  # fmt: skip
        self.process, self.commands, self.replies, self.index = process, commands, replies, index
        self.pending: dict[int, asyncio.Future] = {}
        self.lock = threading.Lock()  # sends come from the loop and from to_thread()

    def send(self, message: tuple) -> bool:
        try:
            with self.lock:
                self.commands.send(message)
            return True
        except (BrokenPipeError, OSError):
            log.error("worker %d (pid %s) is gone", self.index, self.process.pid)
            return False


class WorkerPool:
    def __init__(self, count: int) -> None:
        self.count = count
        self.workers: list[Worker] = []
        self.ids = itertools.count(1)
        self.ready: asyncio.Queue = asyncio.Queue()
        self.on_rum_resolver: Callable[[str, str], None] | None = None  # (sid, resolver)
        self.loop: asyncio.AbstractEventLoop | None = None

    async def start(self, spec: WorkerSpec, config: Config, view: HealthView) -> None:
        context = multiprocessing.get_context("spawn")
        self.loop = asyncio.get_running_loop()
        blob = await asyncio.to_thread(pickle_config, config)
        for index in range(self.count):
            commands_in, commands_out = context.Pipe(duplex=False)
            replies_in, replies_out = context.Pipe(duplex=False)
            process = context.Process(
                target=worker_main,
                args=(commands_in, replies_out, replace(spec, index=index)),
                name=f"gslb-worker-{index}",
            )
            process.daemon = True
            process.start()
            commands_in.close()
            replies_out.close()
            worker = Worker(process, commands_out, replies_in, index)
            self.workers.append(worker)
            threading.Thread(target=self.read_replies, args=(worker,), daemon=True).start()
            await asyncio.to_thread(worker.send, ("config", blob))
            worker.send(health_message(view))
        for _ in range(self.count):
            message = await asyncio.wait_for(self.ready.get(), START_TIMEOUT)
            if message[0] == "failed":
                raise OSError(f"worker failed to start: {message[1]}")

    def read_replies(self, worker: Worker) -> None:
        """Thread: hand every reply of one worker to the event loop."""
        while True:
            try:
                message = worker.replies.recv()
            except (EOFError, OSError):
                self.loop.call_soon_threadsafe(self.gone, worker)
                return
            self.loop.call_soon_threadsafe(self.dispatch, worker, message)

    def gone(self, worker: Worker) -> None:
        worker.process.join(0)
        if worker.process.exitcode not in (None, 0):
            log.error("worker %d exited with %s", worker.index, worker.process.exitcode)
            self.ready.put_nowait(("failed", f"worker {worker.index} exited"))

    def dispatch(self, worker: Worker, message: tuple) -> None:
        kind = message[0]
        if kind in ("ready", "failed"):
            self.ready.put_nowait(message)
        elif kind == "rum-resolvers" and self.on_rum_resolver is not None:
            for sid, client in message[1]:
                self.on_rum_resolver(sid, client)
        elif kind in ("stats", "applied"):
            future = worker.pending.pop(message[1], None)
            if future is not None and not future.done():
                future.set_result(message[2] if kind == "stats" else True)

    def push_health(self, view: HealthView) -> None:
        message = health_message(view)
        for worker in self.workers:
            worker.send(message)

    async def push_config(self, config: Config) -> None:
        """Send to every worker and wait until each serves it, so a finished reload means
        every answer comes from the new zones. Pickling takes a while: off the event loop."""
        futures = []
        blob = await asyncio.to_thread(pickle_config, config)
        for worker in self.workers:
            request, future = self.request(worker)
            if await asyncio.to_thread(worker.send, ("config", blob, request)):
                futures.append(future)
        if futures:
            await asyncio.wait(futures, timeout=START_TIMEOUT)

    def request(self, worker: Worker) -> tuple[int, asyncio.Future]:
        request = next(self.ids)
        future = worker.pending[request] = self.loop.create_future()
        return request, future

    async def stats(self) -> list[dict]:
        """Counter snapshots from every live worker (a stuck one is skipped, not waited on)."""
        futures = []
        for worker in self.workers:
            request, future = self.request(worker)
            if worker.send(("stats", request)):
                futures.append(future)
        done, _ = await asyncio.wait(futures, timeout=STATS_TIMEOUT) if futures else (set(), None)
        return [f.result() for f in done]

    async def stop(self) -> None:
        for worker in self.workers:
            worker.send(("stop",))
        for worker in self.workers:
            await asyncio.to_thread(worker.process.join, 5)
            if worker.process.is_alive():
                worker.process.kill()
            worker.commands.close()
        self.workers.clear()


# -- inside a worker process -------------------------------------------------------------


def worker_main(commands: Connection, replies: Connection, spec: WorkerSpec) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when we stop
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from gslb.logs import setup_logging

    setup_logging(spec.log_format, spec.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(WorkerProcess(commands, replies, spec).run())


class WorkerProcess:
    def __init__(self, commands: Connection, replies: Connection, spec: WorkerSpec) -> None:
        self.commands, self.replies, self.spec = commands, replies, spec
        self.done = asyncio.Event()

    async def run(self) -> None:
        from gslb.dns.responder import Options, Responder
        from gslb.dns.server import DnsServer, spread_evenly
        from gslb.dnssec.window import WindowClock
        from gslb.geo import GeoDB
        from gslb.metrics import install_query_log
        from gslb.policy.chain import Engine
        from gslb.policy.compile import COMPILE_AT_START
        from gslb.privileges import drop_privileges

        message = self.commands.recv()
        config = unpickle_config(message[1])
        try:
            geo = GeoDB.open(self.spec.geoip)
            engine = Engine(geo)
            if self.spec.asn_db is not None:
                from gslb.rum.network import AsnDB

                engine.asn = AsnDB.open(self.spec.asn_db)
            options = Options(self.spec.identity, self.spec.version_string,
                              self.spec.commit_demand_sample, self.spec.workers)  # fmt: skip
            self.responder = Responder(config, engine, options)
            engine.compiler.finish(COMPILE_AT_START)  # the rest in the background
            install_query_log(self.responder, self.spec.query_log_sample)
            self.apply(self.commands.recv())
            server = DnsServer(self.responder, self.spec.tcp, self.spec.rrl,
                               batched=self.spec.udp_batch)  # fmt: skip
            pairs = [DnsServer.bind_pair(host, port) for host, port in self.spec.endpoints]
            if self.spec.workers > 1:
                for udp, _tcp in pairs:
                    spread_evenly(udp, self.spec.workers)
            if self.spec.user is not None:  # bound as root; not one query read as root
                drop_privileges(self.spec.user)
            for (host, port), pair in zip(self.spec.endpoints, pairs, strict=True):
                await server.listen(host, port, pair)
        except Exception as exc:  # report, do not hang the supervisor
            self.replies.send(("failed", f"{type(exc).__name__}: {exc}"))
            return
        loop = asyncio.get_running_loop()
        self.watch_rum_resolvers(loop)
        threading.Thread(target=self.read_commands, args=(loop,), daemon=True).start()
        window_clock = WindowClock(self.responder)  # new signature window at midnight
        window_clock.start()
        self.replies.send(("ready", os.getpid()))
        await self.done.wait()
        await window_clock.stop()
        server.close()
        geo.close()

    def watch_rum_resolvers(self, loop: asyncio.AbstractEventLoop) -> None:
        """``--rum-resolver-name``: sightings go to the supervisor in bounded batches."""
        if self.spec.rum_resolver_name is None:
            return
        from gslb.rum.resolvers import Batch, watcher

        batch = Batch(lambda items: self.replies.send(("rum-resolvers", items)))
        self.responder.rum_watch = watcher(self.spec.rum_resolver_name, batch.add)

        def flush() -> None:
            batch.flush()
            if not self.done.is_set():
                loop.call_later(0.2, flush)

        loop.call_later(0.2, flush)

    def apply(self, message: tuple) -> None:
        kind = message[0]
        if kind == "health":
            self.responder.set_health(HealthView.from_wire(message[1]))
        elif kind == "config":
            self.responder.set_config(unpickle_config(message[1]))
            if len(message) > 2:
                self.replies.send(("applied", message[2]))
        elif kind == "stats":
            self.replies.send(("stats", message[1], self.responder.stats.snapshot()))
        elif kind == "stop":
            self.done.set()

    def read_commands(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: blocking reads, applied on the event loop in arrival order."""
        while True:
            try:
                message = self.commands.recv()
            except (EOFError, OSError):
                loop.call_soon_threadsafe(self.done.set)  # the supervisor is gone: stop
                return
            loop.call_soon_threadsafe(self.apply, message)
