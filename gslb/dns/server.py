"""UDP and TCP transports on asyncio. All DNS logic lives in the responder.

Sockets are opened with SO_REUSEPORT so several worker processes can share one port. TCP
follows RFC 7766: 2-byte length prefix, pipelined queries, an idle timeout, a connection cap.

TCP clients are untrusted too, so every resource a connection holds is bounded: connections in
total and per client address, time without a complete query (idle), time to finish a message
once its first byte arrived (slowloris), message size, and replies queued for a client that does
not read them (reading stops, and the connection is cut if it does not catch up in time). UDP
responses can go through response rate limiting (``gslb.dns.rrl``); TCP never does.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from gslb.dns import udpbatch
from gslb.dns.responder import Responder
from gslb.dns.rrl import RateLimiter, RrlConfig

log = logging.getLogger("gslb.dns")
LENGTH = struct.Struct("!H")
COMPILE_SLICE = 0.003  # seconds of table building between two turns of the event loop
COMPILE_POLL = 0.1  # seconds between looks for new work (a reload asks for new tables)


@dataclass(slots=True)
class TcpLimits:
    max_connections: int = 1024
    per_client: int = 32
    idle_timeout: float = 10.0  # seconds without a complete query (covers slow writers too)
    # A query fits in one segment; 3 s leaves room for two retransmissions (initial RTO 1 s)
    # and cuts a client dribbling a message byte by byte long before the idle timeout.
    read_timeout: float = 3.0
    # Replies may wait in our buffer for a client that does not read; past this many (or
    # past the transport's byte high-water mark) reading stops until they drain...
    max_in_flight: int = 64
    write_timeout: float = 5.0  # ...and a client that has not drained them by then is cut
    # Queries are a few hundred bytes (question <= 259, OPT with ECS/cookie/padding well under
    # 1 KiB); nothing we answer needs more, so a bigger length prefix closes the connection.
    max_message: int = 4096


def parse_endpoint(text: str, default_port: int) -> tuple[str, int]:
    """``127.0.0.1:5300``, ``[::1]:5300``, ``::1`` or ``127.0.0.1`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def _socket(host: str, port: int, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def bind_udp(host: str, port: int) -> socket.socket:
    sock = _socket(host, port, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return sock


# Linux: a classic BPF program choosing the member of a port's SO_REUSEPORT group per packet.
SO_ATTACH_REUSEPORT_CBPF = 51
SKF_AD_RANDOM = (-0x1000 + 56) & 0xFFFFFFFF  # the "random u32" ancillary load
BPF_LD_ABS_W, BPF_MOD_K, BPF_RET_A = 0x20, 0x94, 0x16


def spread_evenly(sock: socket.socket, members: int) -> bool:
    """Hand each datagram to a random member of the port's SO_REUSEPORT group (the worker
    processes) instead of the member a hash of the client's address and port picks.

    With the hash, all of one client socket's queries go to one worker: a resolver that
    sends from few ports (or a load generator: dnsperf uses 4 sockets) loads one worker
    and leaves another idle; measured, the same benchmark swung by 40 % between runs with
    how dnsperf's sockets happened to hash. UDP queries are independent, so any worker may
    answer any of them. An index past the group's size (a worker restarting) makes the kernel
    fall back to the hash. Returns False where the kernel refuses the program."""
    program = ((BPF_LD_ABS_W, 0, 0, SKF_AD_RANDOM), (BPF_MOD_K, 0, 0, members),
               (BPF_RET_A, 0, 0, 0))  # fmt: skip
    code = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *i) for i in program))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(code))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        log.warning("cannot spread UDP queries over the workers evenly: %s", exc)
        return False
    return True


def bind_tcp(host: str, port: int) -> socket.socket:
    sock = _socket(host, port, socket.SOCK_STREAM)
    sock.listen(1024)
    return sock


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, rrl: RateLimiter | None = None) -> None:
        self.responder = responder
        self.rrl = rrl
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        started = time.perf_counter()
        try:
            reply = self.answer(data, addr[0])
        except Exception:  # the server must keep answering whatever one packet does
            log.exception("unexpected error answering %d bytes over UDP", len(data))
            return
        if reply is not None:
            self.transport.sendto(reply, addr)
        self.responder.stats.observe_latency(time.perf_counter() - started)

    def answer(self, data: bytes, client: str) -> bytes | None:
        """The reply to send, after response rate limiting; None: stay silent."""
        reply = self.responder.handle(data, client, "udp")
        if reply is not None and self.rrl is not None:
            reply = self.rrl.limit(reply, client)
        return reply

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)


class TcpConnections:
    """Shared bookkeeping of open TCP connections for the caps."""

    def __init__(self, limits: TcpLimits) -> None:
        self.limits = limits
        self.total = 0
        self.per_client: Counter[str] = Counter()

    def admit(self, client: str) -> bool:
        if self.total >= self.limits.max_connections:
            return False
        if self.per_client[client] >= self.limits.per_client:
            return False
        self.total += 1
        self.per_client[client] += 1
        return True

    def release(self, client: str) -> None:
        self.total -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


class TcpProtocol(asyncio.Protocol):
    """One DNS-over-TCP connection: pipelined queries answered in order, every resource capped.

    Timers: ``idle`` (re-armed by each complete query), ``deadline`` (armed when a partial
    message waits, not re-armed by more bytes of it) and ``stall`` (armed while replies wait
    for a client that does not read). Each one, firing, cuts the connection and is counted.
    """

    def __init__(self, responder: Responder, connections: TcpConnections) -> None:
        self.responder = responder
        self.connections = connections
        self.limits = connections.limits
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.admitted = False
        self.blocked = False  # replies waiting for the client: not reading, not answering
        self.queued = 0  # replies written while our write buffer was not empty
        self.idle: asyncio.TimerHandle | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.client = peer[0] if peer else ""
        stats = self.responder.stats
        if not self.connections.admit(self.client):
            stats.tcp_refused += 1
            transport.abort()
            return
        self.admitted = True
        stats.tcp_connections += 1
        self.arm_idle()

    def arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.limits.idle_timeout, self.cut, "idle")

    def cut(self, reason: str) -> None:
        """Close for ``reason`` (counted); abort when replies are still queued, since a
        graceful close would wait for a client that may never read them."""
        transport = self.transport
        if transport is None:
            return
        self.responder.stats.tcp_closed[reason] += 1
        if transport.is_closing() or transport.get_write_buffer_size():
            transport.abort()
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        self.buffer += data
        self.process()

    def process(self) -> None:
        """Answer every complete message in the buffer, unless replies are backing up."""
        transport = self.transport
        answered = 0
        while not self.blocked and len(self.buffer) >= 2 and not transport.is_closing():
            (length,) = LENGTH.unpack_from(self.buffer)
            if length > self.limits.max_message:
                self.cut("oversize")
                return
            if len(self.buffer) < 2 + length:
                break
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            self.answer(message)
            answered += 1
        if answered:
            self.arm_idle()  # only complete queries keep a connection alive (slowloris)
        self.watch_partial(restart=bool(answered))

    def watch_partial(self, *, restart: bool) -> None:
        """A partial message must be complete within ``read_timeout`` of being first seen;
        more bytes of the same message do not extend it."""
        waiting = bool(self.buffer) and not self.blocked
        if self.deadline is not None and (restart or not waiting):
            self.deadline.cancel()
            self.deadline = None
        if waiting and self.deadline is None:
            loop = asyncio.get_running_loop()
            self.deadline = loop.call_later(self.limits.read_timeout, self.cut, "read_timeout")

    def answer(self, message: bytes) -> None:
        started = time.perf_counter()
        try:
            reply = self.responder.handle(message, self.client, "tcp")
        except Exception:
            log.exception("unexpected error answering %d bytes over TCP", len(message))
            self.transport.close()
            return
        if reply is None:
            self.transport.close()  # unparseable: nothing sane to say on this stream
            return
        self.transport.write(LENGTH.pack(len(reply)) + reply)
        self.responder.stats.observe_latency(time.perf_counter() - started)
        if not self.transport.get_write_buffer_size():
            self.queued = 0
            return
        self.queued += 1
        if self.queued >= self.limits.max_in_flight:
            self.block()

    def block(self) -> None:
        """Stop reading and answering until every queued reply is gone (or cut after
        ``write_timeout``). A zero high-water mark makes the transport call ``pause_writing``
        now and ``resume_writing`` once its buffer is empty."""
        if self.blocked or self.transport.is_closing():
            return
        self.blocked = True
        self.transport.pause_reading()
        self.transport.set_write_buffer_limits(high=0, low=0)
        loop = asyncio.get_running_loop()
        self.stall = loop.call_later(self.limits.write_timeout, self.cut, "write_timeout")
        self.watch_partial(restart=False)

    def pause_writing(self) -> None:
        """The transport's buffer passed its high-water mark: same as too many replies."""
        self.block()

    def resume_writing(self) -> None:
        if not self.blocked:
            return
        self.blocked = False
        self.queued = 0
        if self.stall is not None:
            self.stall.cancel()
            self.stall = None
        self.transport.set_write_buffer_limits()  # back to the defaults
        self.transport.resume_reading()
        asyncio.get_running_loop().call_soon(self.resume)

    def resume(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.process()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.idle, self.deadline, self.stall):
            if timer is not None:
                timer.cancel()
        self.transport = None
        if self.admitted:
            self.connections.release(self.client)
            self.admitted = False


class DnsServer:
    """Listeners for one process: each endpoint gets a UDP and a TCP socket."""

    def __init__(
        self,
        responder: Responder,
        limits: TcpLimits | None = None,
        rrl: RrlConfig | None = None,
        *,
        batched: bool = True,
    ) -> None:
        self.responder = responder
        self.batched = batched  # recvmmsg/sendmmsg where libc has them (gslb.dns.udpbatch)
        self.connections = TcpConnections(limits or TcpLimits())
        self.rrl = None
        if rrl is not None and rrl.enabled:
            self.rrl = RateLimiter(rrl, self.zone_origin, responder.stats)
        self.closers: list[Callable[[], None]] = []
        self.bound: list[tuple[str, int]] = []
        self.compiling: asyncio.Task | None = None

    def start_compiling(self) -> None:
        """Start the task (owned here, cancelled by ``close``) that builds the engine's
        address tables between answers, in slices of COMPILE_SLICE seconds."""
        compiler = getattr(self.responder.engine, "compiler", None)
        if self.compiling is None and compiler is not None:
            self.compiling = asyncio.get_running_loop().create_task(self.compile_loop(compiler))

    async def compile_loop(self, compiler) -> None:
        while True:
            if not compiler.pending:
                await asyncio.sleep(COMPILE_POLL)
                continue
            try:
                compiler.work(COMPILE_SLICE)
            except Exception:  # the step-by-step path keeps answering; say why once
                log.exception("compiling address tables failed; answering step by step")
                compiler.abandon()
            await asyncio.sleep(0)  # answers waiting on the sockets go first

    async def listen(self, host: str, port: int, sockets: tuple | None = None) -> tuple[str, int]:
        """Listen on host:port (port 0 = any free port, same for UDP and TCP)."""
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = sockets or self.bind_pair(host, port)
        if self.batched and udpbatch.available():
            self.closers.append(self.listen_batched(loop, udp_sock))
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(self.responder, self.rrl), sock=udp_sock
            )
            self.closers.append(transport.close)
        server = await loop.create_server(
            lambda: TcpProtocol(self.responder, self.connections), sock=tcp_sock
        )
        self.closers.append(server.close)
        self.start_compiling()
        address = udp_sock.getsockname()[:2]
        self.bound.append(address)
        return address

    def listen_batched(self, loop: asyncio.AbstractEventLoop, sock: socket.socket):
        """recvmmsg/sendmmsg on the loop's reader callback; returns the closer."""
        protocol = UdpProtocol(self.responder, self.rrl)
        batch = udpbatch.BatchedUdp(sock, protocol.answer, self.responder.stats.observe_latency)
        loop.add_reader(sock.fileno(), batch.on_readable)

        def close() -> None:
            loop.remove_reader(sock.fileno())
            sock.close()

        return close

    def zone_origin(self, qname: bytes) -> bytes:
        """Origin of the zone of ``qname`` in the configuration in force (RRL buckets)."""
        zone = self.responder.config.zone_for(qname)
        return zone.origin if zone is not None else b""

    @staticmethod
    def bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
        """Bind UDP and TCP on the same port; with port 0, retry until both get the same one."""
        for _ in range(20):
            udp = bind_udp(host, port)
            try:
                tcp = bind_tcp(host, udp.getsockname()[1])
            except OSError:
                udp.close()
                if port:
                    raise
                continue
            return udp, tcp
        raise OSError(f"no free port pair on {host}")

    def close(self) -> None:
        for close in self.closers:
            close()
        self.closers.clear()
        if self.compiling is not None:
            self.compiling.cancel()
            self.compiling = None
