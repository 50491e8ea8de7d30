"""UDP and TCP transports on asyncio. All DNS logic lives in the responder.

Sockets are opened with SO_REUSEPORT so several worker processes can share one port. TCP
follows RFC 7766: 2-byte length prefix, pipelined queries, an idle timeout, a connection cap.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from gslb.dns.responder import Responder

log = logging.getLogger("gslb.dns")
LENGTH = struct.Struct("!H")


@dataclass(slots=True)
class TcpLimits:
    max_connections: int = 1024
    per_client: int = 32
    idle_timeout: float = 10.0  # seconds without a complete query (covers slow writers too)


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


def bind_tcp(host: str, port: int) -> socket.socket:
    sock = _socket(host, port, socket.SOCK_STREAM)
    sock.listen(1024)
    return sock


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        started = time.perf_counter()
        try:
            reply = self.responder.handle(data, addr[0], "udp")
        except Exception:  # the server must keep answering whatever one packet does
            log.exception("unexpected error answering %d bytes over UDP", len(data))
            return
        if reply is not None:
            self.transport.sendto(reply, addr)
        self.responder.stats.observe_latency(time.perf_counter() - started)

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
    def __init__(self, responder: Responder, connections: TcpConnections) -> None:
        self.responder = responder
        self.connections = connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.client = ""
        self.admitted = False
        self.idle: asyncio.TimerHandle | None = None

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
        self.idle = loop.call_later(self.connections.limits.idle_timeout, self.close_idle)

    def close_idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        self.buffer += data
        answered = 0
        while len(self.buffer) >= 2 and self.transport is not None:
            (length,) = LENGTH.unpack_from(self.buffer)
            if len(self.buffer) < 2 + length:
                break
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            self.answer(message)
            answered += 1
        if answered:
            self.arm_idle()  # only complete queries keep a connection alive (slowloris)

    def pause_writing(self) -> None:
        """A client that does not read its answers stops being read (bounded buffers)."""
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

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

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        if self.admitted:
            self.connections.release(self.client)
            self.admitted = False


class DnsServer:
    """Listeners for one process: each endpoint gets a UDP and a TCP socket."""

    def __init__(self, responder: Responder, limits: TcpLimits | None = None) -> None:
        self.responder = responder
        self.connections = TcpConnections(limits or TcpLimits())
        self.closers: list[Callable[[], None]] = []
        self.bound: list[tuple[str, int]] = []

    async def listen(self, host: str, port: int, sockets: tuple | None = None) -> tuple[str, int]:
        """Listen on host:port (port 0 = any free port, same for UDP and TCP)."""
        loop = asyncio.get_running_loop()
        udp_sock, tcp_sock = sockets or self.bind_pair(host, port)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpProtocol(self.responder), sock=udp_sock
        )
        server = await loop.create_server(
            lambda: TcpProtocol(self.responder, self.connections), sock=tcp_sock
        )
        self.closers += [transport.close, server.close]
        address = udp_sock.getsockname()[:2]
        self.bound.append(address)
        return address

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
