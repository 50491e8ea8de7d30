"""Controllable local HTTP/HTTPS servers standing in for CDN edges and the origin.

An ``Edge`` is a real server on 127.0.0.1 (random free port) whose behaviour can be switched
while probes run: healthy, a status, slow (hang), refuse, reset, garbage, huge body, a body
that stalls. It counts what reaches it (connections, requests, Host headers, TLS SNI, peak
concurrency) so tests can check what a prober really sent and how hard it hit.

TLS material is made at test time with the ``openssl`` command line tool (the ``cryptography``
package is not a dependency): a private CA, leaf certificates signed by it (valid or expired)
and self-signed ones. ``LocalPKI.shared().client_context()`` trusts the CA, so a prober given
that context verifies test edges like real ones.

``StaticResolver`` maps test names to loopback so hostname targets (``cdn-a.example.test``)
can be probed without touching the network; any other name does not resolve.

Usage from an async test::

    async with Edge() as edge:
        edge.status(503)
        ...
        await edge.wait_hits(3)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

LOOPBACK = "127.0.0.1"
DEFAULT_NAMES = ("localhost", "example.test", "*.example.test")
HUGE = 5 * 2**30  # what huge_body() claims to send by default: 5 GiB
CHUNK = 64 * 1024
TLS_MODES = ("valid", "expired", "self-signed")


class LocalPKI:
    """A throwaway CA and server certificates, made once per test process with openssl."""

    _shared: ClassVar[LocalPKI | None] = None

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_key = directory / "ca.key"
        self.ca_file = directory / "ca.pem"
        self._serial = 0
        self._leaves: dict[tuple[tuple[str, ...], str], tuple[Path, Path]] = {}
        self._make_ca()

    @classmethod
    def shared(cls) -> LocalPKI:
        """One PKI per process: key generation is the slow part, certificates are reused."""
        if cls._shared is None:
            directory = Path(tempfile.mkdtemp(prefix="gslb-test-pki-"))
            atexit.register(shutil.rmtree, directory, True)
            cls._shared = cls(directory)
        return cls._shared

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)

    def _make_ca(self) -> None:
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        (self.dir / "ca.cnf").write_text(_CA_CONFIG)
        self._openssl(
            "req", "-x509", "-new", "-nodes", *_EC_KEY, "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "30", "-subj", "/CN=gslb test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def leaf(self, names: Sequence[str] = DEFAULT_NAMES, mode: str = "valid") -> tuple[Path, Path]:
        """(certificate, key) for ``names`` plus 127.0.0.1; mode valid, expired or self-signed."""
        if mode not in TLS_MODES:
            raise ValueError(f"unknown TLS mode {mode!r}, expected one of {TLS_MODES}")
        cache_key = (tuple(names), mode)
        if cache_key not in self._leaves:
            self._leaves[cache_key] = self._make_leaf(tuple(names), mode)
        return self._leaves[cache_key]

    def _make_leaf(self, names: tuple[str, ...], mode: str) -> tuple[Path, Path]:
        self._serial += 1
        stem = f"leaf{self._serial}"
        cert, key = self.dir / f"{stem}.pem", self.dir / f"{stem}.key"
        san = ",".join([*(f"DNS:{name}" for name in names), f"IP:{LOOPBACK}"])
        subject = f"/CN={names[0]}"
        if mode == "self-signed":
            self._openssl(
                "req", "-x509", "-new", "-nodes", *_EC_KEY, "-keyout", key.name,
                "-out", cert.name, "-days", "30", "-subj", subject,
                "-addext", f"subjectAltName={san}",
            )  # fmt: skip
            return cert, key
        (self.dir / f"{stem}.ext").write_text(
            f"[leaf]\nsubjectAltName={san}\nbasicConstraints=CA:FALSE\n"
            "extendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n"
        )
        self._openssl(
            "req", "-new", "-nodes", *_EC_KEY, "-keyout", key.name,
            "-out", f"{stem}.csr", "-subj", subject,
        )  # fmt: skip
        dates = ("-startdate", "20200101000000Z", "-enddate", "20200201000000Z")
        self._openssl(
            "ca", "-config", "ca.cnf", "-batch", "-notext", "-in", f"{stem}.csr",
            "-out", cert.name, "-extfile", f"{stem}.ext", "-extensions", "leaf",
            *(dates if mode == "expired" else ("-days", "30")),
        )  # fmt: skip
        return cert, key

    def server_context(
        self, mode: str = "valid", names: Sequence[str] = DEFAULT_NAMES
    ) -> ssl.SSLContext:
        cert, key = self.leaf(names, mode)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))


_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")
_CA_CONFIG = """\
[ca]
default_ca = test_ca
[test_ca]
database = index.txt
new_certs_dir = .
serial = serial
certificate = ca.pem
private_key = ca.key
default_md = sha256
policy = policy_any
unique_subject = no
[policy_any]
commonName = supplied
"""


@dataclass(frozen=True, slots=True)
class Seen:
    """One HTTP request as the edge saw it."""

    method: str
    path: str
    host: str | None
    sni: str | None
    headers: Mapping[str, str]


class Edge:
    """A local server whose behaviour is switched live by the test (see module docstring)."""

    def __init__(
        self,
        *,
        tls: str | None = None,
        names: Sequence[str] = DEFAULT_NAMES,
        body: bytes = b"ok\n",
        pki: LocalPKI | None = None,
    ) -> None:
        if tls is not None and tls not in TLS_MODES:
            raise ValueError(f"unknown TLS mode {tls!r}, expected None or one of {TLS_MODES}")
        self.address = LOOPBACK
        self.port = 0
        self.tls = tls
        self._ssl = (pki or LocalPKI.shared()).server_context(tls, names) if tls else None
        if self._ssl is not None:
            self._ssl.sni_callback = self._on_sni
        self._body = body
        self.mode = "healthy"
        self._code = 200
        self._status_body = b""
        self._delay = 0.0
        self._huge = HUGE
        self.hits = 0  # requests that reached the edge (HTTP, or bytes in reset/garbage mode)
        self.connections = 0  # accepted TCP connections (what a tcp check makes)
        self.requests: list[Seen] = []
        self.sni: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.bytes_sent = 0
        self._failing: dict[str, int] = {}  # source address -> status answered to it only
        self.by_source: dict[str, int] = {}  # requests per source address (vantage points)
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._raw: set[asyncio.Transport] = set()
        self._sni_by_conn: dict[int, str | None] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._http: web.Server | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Edge:
        self._http = web.Server(self._handle, handler_cancellation=True, access_log=None)
        self._listen()
        return self

    async def stop(self) -> None:
        self._unlisten()
        for task in list(self._tasks):
            task.cancel()
        for transport in list(self._raw):
            transport.abort()
        if self._http is not None:
            await self._http.shutdown(0.1)
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Edge:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.address}:{self.port}/"

    # -- behaviour switches (take effect for the next connection or request) ------------------

    def healthy(self, body: bytes | None = None) -> None:
        """200 with the body (``ok\\n`` unless given)."""
        if body is not None:
            self._body = body
        self._set("healthy")

    def status(self, code: int, body: bytes = b"") -> None:
        self._code = code
        self._status_body = body
        self._set("status")

    def fail_for(self, source: str, code: int = 503) -> None:
        """Answer ``code`` to requests from ``source`` only (one vantage point's view of a
        regional outage); every other source gets the current mode."""
        self._failing[source] = code

    def heal_for(self, source: str | None = None) -> None:
        """Stop failing for ``source`` (None: for every source)."""
        if source is None:
            self._failing.clear()
        else:
            self._failing.pop(source, None)

    def slow(self, seconds: float) -> None:
        """Answer 200 only after ``seconds``: a hang when long, latency when short."""
        self._delay = seconds
        self._set("slow")

    def stall_body(self) -> None:
        """Send 200 and the headers at once, then never finish the body."""
        self._set("stall")

    def huge_body(self, size: int = HUGE) -> None:
        """200 announcing ``size`` bytes and streaming them: the body first, then zeros."""
        self._huge = size
        self._set("huge")

    def reset(self) -> None:
        """Accept, read the request, answer with a TCP RST."""
        self._set("reset")

    def garbage(self) -> None:
        """Accept, read the request, answer with bytes that are not HTTP, close."""
        self._set("garbage")

    def refuse(self) -> None:
        """Stop listening: connections are refused until another mode is set."""
        self.mode = "refuse"
        self._unlisten()

    def _set(self, mode: str) -> None:
        self.mode = mode
        if self._listener is None and self._http is not None:
            self._listen()

    async def wait_hits(self, count: int, timeout: float = 5.0) -> None:
        """Wait until ``hits`` reaches ``count`` (event driven, not polled)."""
        if self.hits >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((count, future))
        async with asyncio.timeout(timeout):
            await future

    # -- listening ---------------------------------------------------------------------------

    def _listen(self) -> None:
        """Bind (the same port again after ``refuse``) and listen synchronously, so no probe
        sent after a mode switch can race a listener that is not there yet."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.address, self.port))
        sock.listen(256)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._listener = sock
        self._accepting = asyncio.get_running_loop().create_task(self._accept(sock))

    def _unlisten(self) -> None:
        sock, self._listener = self._listener, None
        if sock is None:
            return
        asyncio.get_running_loop().remove_reader(sock.fileno())
        if self._accepting is not None:
            self._accepting.cancel()
        sock.close()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(sock)
            self.connections += 1
            task = loop.create_task(self._serve(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket) -> None:
        """Hand one accepted connection to aiohttp or to a raw misbehaving protocol."""
        loop = asyncio.get_running_loop()
        factory = self._http if self.mode not in ("reset", "garbage") else self._raw_protocol
        try:
            await loop.connect_accepted_socket(factory, conn, ssl=self._ssl)
        except (OSError, TimeoutError):
            conn.close()  # e.g. the client rejected our certificate: that is the point

    def _raw_protocol(self) -> asyncio.Protocol:
        return _Misbehave(self, self.mode)

    def _on_sni(self, ssl_object: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
        self.sni.append(name)
        self._sni_by_conn[id(ssl_object)] = name

    def _hit(self) -> None:
        self.hits += 1
        for count, future in list(self._waiters):
            if self.hits >= count and not future.done():
                future.set_result(None)
                self._waiters.remove((count, future))

    # -- HTTP behaviour ----------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        sni = self._sni_by_conn.get(id(ssl_object)) if ssl_object is not None else None
        self.requests.append(
            Seen(request.method, request.path_qs, request.headers.get("Host"), sni,
                 dict(request.headers))
        )  # fmt: skip
        self._hit()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._respond(request)
        finally:
            self.in_flight -= 1

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        mode = self.mode
        source = request.remote or ""
        self.by_source[source] = self.by_source.get(source, 0) + 1
        if source in self._failing:
            return self._count(web.Response(status=self._failing[source]))
        if mode == "status":
            return self._count(web.Response(status=self._code, body=self._status_body))
        if mode == "slow":
            await asyncio.sleep(self._delay)
        if mode in ("stall", "huge"):
            return await self._stream(request, mode)
        return self._count(web.Response(status=200, body=self._body))

    def _count(self, response: web.Response) -> web.Response:
        self.bytes_sent += len(response.body or b"")  # type: ignore[arg-type]
        return response

    async def _stream(self, request: web.BaseRequest, mode: str) -> web.StreamResponse:
        size = self._huge if mode == "huge" else len(self._body) + CHUNK
        response = web.StreamResponse(status=200)
        response.content_length = size
        await response.prepare(request)
        await response.write(self._body)
        self.bytes_sent += len(self._body)
        if mode == "stall":
            await asyncio.Event().wait()  # until the client gives up or the edge stops
        zeros, left = bytes(CHUNK), size - len(self._body)
        with contextlib.suppress(ConnectionError):
            while left > 0:
                await response.write(zeros[: min(CHUNK, left)])
                self.bytes_sent += min(CHUNK, left)
                left -= CHUNK
        return response


class _Misbehave(asyncio.Protocol):
    """reset: RST once the request arrives; garbage: answer bytes that are not HTTP."""

    def __init__(self, edge: Edge, mode: str) -> None:
        self.edge = edge
        self.mode = mode
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.edge._raw.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.edge._raw.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.edge._hit()
        if self.mode == "garbage":
            self.transport.write(b"\x00\xffSSH-2.0-garbage \x8f\x9e not http at all\r\n\r\n")
            self.edge.bytes_sent += 44
            self.transport.close()
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


class StaticResolver(AbstractResolver):
    """Resolves configured test names to loopback; every other name does not resolve.

    Keeps tests off the network (no DNS query ever leaves the machine) and lets a check
    target a hostname, as a CNAME answer's check does in production.
    """

    def __init__(self, names: Mapping[str, str] | None = None) -> None:
        self.names = {k.rstrip(".").lower(): v for k, v in (names or {}).items()}
        self.queries: list[str] = []

    def add(self, name: str, address: str = LOOPBACK) -> None:
        self.names[name.rstrip(".").lower()] = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.queries.append(host)
        address = self.names.get(host.rstrip(".").lower())
        if address is None:
            raise OSError(socket.EAI_NONAME, "Name or service not known")
        ip = ipaddress.ip_address(address)
        af = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [ResolveResult(hostname=host, host=address, port=port, family=af, proto=0, flags=0)]

    async def close(self) -> None:
        return None


class EdgeThread:
    """A tests.edges.Edge on its own event loop thread: it must answer the server's very
    first probe round, before the server thread even exists."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.edge: Edge = self.call(Edge().start())

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def switch(self, method: str, *args: Any) -> None:
        """Call a behaviour switch (healthy, status, refuse...) on the edge's loop."""

        async def run() -> None:
            getattr(self.edge, method)(*args)

        self.call(run())

    def stop(self) -> None:
        self.call(self.edge.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
