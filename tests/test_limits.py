"""Every limit on untrusted clients, crossed by a real client on loopback: the offender is cut
(and counted), a well-behaved client is still served.

TCP: connection caps, slowloris read deadline, idle timeout, message size, a client that never
reads its answers. UDP: replies never above the size the client allowed, silence for anything
that is not a query, no amplification on errors. Each TCP test connects from its own loopback
address (127.0.0.x), so the per-client cap of one test never meets another test's sockets.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import pytest

from gslb.dns.server import TcpLimits
from tests.conftest import core_zone_text, write_zone
from tests.server import ServerThread, read_message, wait_until

pytestmark = pytest.mark.timeout(30)

LIMITS = TcpLimits(
    max_connections=8, per_client=3, idle_timeout=0.8, read_timeout=0.3, max_in_flight=4,
    write_timeout=0.5, max_message=1024,
)  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", core_zone_text())
    with ServerThread(zones, geo_db, tcp=LIMITS) as running:
        yield running


def closed(server: ServerThread, reason: str) -> int:
    return server.app.stats.tcp_closed.get(reason, 0)


def connect(server: ServerThread, source: str, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(3)
    sock.connect(("127.0.0.1", server.dns_port))
    return sock


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def ask(
    sock: socket.socket, name: str = "www.example.com", rdtype: str = "A"
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    sock.sendall(frame(query.to_wire()))
    reply = read_message(sock)
    assert reply is not None, "connection closed instead of an answer"
    message = dns.message.from_wire(reply)
    assert message.id == query.id
    return message


def is_closed(sock: socket.socket, wait: float = 0.0) -> bool:
    """True once the server closed or reset the connection (EOF readable)."""
    readable, _, _ = select.select([sock], [], [], wait)
    if not readable:
        return False
    try:
        return sock.recv(65535, socket.MSG_PEEK) == b""
    except ConnectionResetError:
        return True


def drained_until_closed(sock: socket.socket, timeout: float) -> bool:
    """Read and discard until the server closes or resets; False if still open at timeout."""
    deadline = time.monotonic() + timeout
    sock.setblocking(True)
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65535):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def well_behaved_client_is_served(server: ServerThread, source: str = "127.0.0.250") -> None:
    with connect(server, source) as sock:
        assert ask(sock).answer[0][0].address in ("192.0.2.1", "192.0.2.2")
    reply = server.udp(dns.message.make_query("www.example.com", "A"))
    assert len(reply.answer[0]) == 2


# -- TCP: time limits ------------------------------------------------------------------------


def test_slowloris_is_cut_at_the_read_deadline_although_bytes_keep_coming(server):
    before = closed(server, "read_timeout")
    with connect(server, "127.0.0.11") as sock:
        sock.sendall(struct.pack("!H", 200))  # announce 200 bytes, then dribble them
        started = time.monotonic()
        cut_after = None
        for _ in range(60):  # 60 x 0.05 s = 3 s: would reach the 0.8 s idle cut too
            try:
                sock.send(b"x")
            except (BrokenPipeError, ConnectionResetError):
                cut_after = time.monotonic() - started
                break
            if is_closed(sock, 0.05):
                cut_after = time.monotonic() - started
                break
    assert cut_after is not None, "a client dribbling bytes was never cut"
    assert 0.25 <= cut_after < 0.75, f"cut after {cut_after:.2f} s, read deadline is 0.3 s"
    assert closed(server, "read_timeout") == before + 1
    well_behaved_client_is_served(server)


def test_a_message_finished_within_the_deadline_is_answered(server):
    wire = frame(dns.message.make_query("www.example.com", "A").to_wire())
    with connect(server, "127.0.0.12") as sock:
        sock.sendall(wire[:7])
        assert not is_closed(sock, 0.1), "a short pause inside a message is allowed"
        sock.sendall(wire[7:])
        reply = read_message(sock)
        assert reply is not None and dns.message.from_wire(reply).answer
        # the deadline restarts per message: a second one, also split, is answered too
        sock.sendall(wire[:20])
        assert not is_closed(sock, 0.15)
        sock.sendall(wire[20:] + wire[:5])
        assert read_message(sock) is not None
        sock.sendall(wire[5:])
        assert read_message(sock) is not None


def test_idle_connection_is_closed_and_queries_keep_one_open(server):
    before = closed(server, "idle")
    with connect(server, "127.0.0.13") as idle, connect(server, "127.0.0.14") as busy:
        started = time.monotonic()
        for _ in range(6):  # 6 x 0.25 s: longer than the 0.8 s idle timeout
            ask(busy)
            if is_closed(idle, 0.25):
                break
        assert is_closed(idle, 2.0), "an idle connection stays open"
        assert 0.6 <= time.monotonic() - started < 1.6
        for _ in range(2):
            ask(busy)
            is_closed(busy, 0.25)
        assert ask(busy).answer, "complete queries reset the idle timer"
    assert closed(server, "idle") >= before + 1


# -- TCP: sizes and queued replies -----------------------------------------------------------


def padded_query(size: int) -> bytes:
    """A valid query of exactly ``size`` bytes (EDNS padding option, RFC 7830)."""
    base = dns.message.make_query("www.example.com", "A", use_edns=0).to_wire()
    padding = size - len(base) - 4
    option = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\x00" * padding)
    wire = dns.message.make_query("www.example.com", "A", use_edns=0, options=[option]).to_wire()
    assert len(wire) == size
    return wire


def test_message_size_cap(server):
    before = closed(server, "oversize")
    with connect(server, "127.0.0.15") as sock:
        sock.sendall(frame(padded_query(LIMITS.max_message)))
        reply = read_message(sock)
        assert reply is not None and dns.message.from_wire(reply).answer, "the cap itself is fine"
        sock.sendall(struct.pack("!H", LIMITS.max_message + 1))  # the length alone is enough
        assert is_closed(sock, 2.0), "an oversized message must close the connection"
    assert closed(server, "oversize") == before + 1
    well_behaved_client_is_served(server)


def test_client_that_never_reads_is_paused_then_cut(server):
    before = closed(server, "write_timeout")
    answered_before = tcp_answers(server)
    query = frame(dns.message.make_query("many.example.com", "A").to_wire())  # ~1.6 kB reply
    flood = query * 20_000
    with connect(server, "127.0.0.16", rcvbuf=4096) as sock:
        sock.setblocking(False)
        offset = 0
        deadline = time.monotonic() + 5
        while closed(server, "write_timeout") == before and time.monotonic() < deadline:
            try:
                offset += sock.send(flood[offset : offset + 65536])
            except BlockingIOError:  # the server stopped reading: every buffer is full
                well_behaved_client_is_served(server)  # while the offender is blocked
                select.select([], [sock], [], 0.05)
            except (BrokenPipeError, ConnectionResetError):
                break
        wait_until(lambda: closed(server, "write_timeout") > before, timeout=3,
                   what="the non-reading client to be cut")  # fmt: skip
        assert drained_until_closed(sock, 3.0)
    sent = offset // len(query)
    answered = tcp_answers(server) - answered_before
    assert 0 < answered < sent, f"reading must stop while answers pile up ({answered}/{sent})"
    wait_until(lambda: server.app.dns.connections.per_client.get("127.0.0.16") is None,
               what="the connection slot to be released")  # fmt: skip
    well_behaved_client_is_served(server)


def tcp_answers(server: ServerThread) -> int:
    queries = server.app.stats.queries
    return sum(count for key, count in list(queries.items()) if key[3] == "tcp")


def test_pipelined_reader_is_never_cut(server):
    """5 MB of answers to one write of pipelined queries: more than loopback's socket buffers
    hold, so the server blocks and resumes on the in-flight cap while the client reads; a
    client that reads is never cut, and every answer comes, in order."""
    before = closed(server, "write_timeout")
    query = dns.message.make_query("many.example.com", "A")
    count = 3200
    with connect(server, "127.0.0.17") as sock:
        sock.sendall(frame(query.to_wire()) * count)
        for _ in range(count):
            reply = read_message(sock)
            assert reply is not None and reply[:2] == query.to_wire()[:2]
    assert closed(server, "write_timeout") == before


# -- TCP: connection caps --------------------------------------------------------------------


def test_per_client_cap_refuses_the_excess_and_keeps_the_established(server):
    refused = server.app.stats.tcp_refused
    with contextlib.ExitStack() as stack:
        held = [stack.enter_context(connect(server, "127.0.0.21")) for _ in range(3)]
        for sock in held:
            ask(sock)  # admitted and answered
        extra = stack.enter_context(connect(server, "127.0.0.21"))
        assert is_closed(extra, 2.0), "a fourth connection from one client must be refused"
        for sock in held:
            assert ask(sock, "ns1.example.com").answer, "established connections keep working"
        well_behaved_client_is_served(server, "127.0.0.22")
    assert server.app.stats.tcp_refused == refused + 1


def test_total_cap_refuses_the_excess_and_frees_slots_on_close(server):
    connections = server.app.dns.connections
    wait_until(lambda: connections.total == 0, what="earlier tests' connections to go")
    with contextlib.ExitStack() as stack:
        held = [
            stack.enter_context(connect(server, f"127.0.0.{30 + i // 3}"))
            for i in range(LIMITS.max_connections)
        ]
        for sock in held:
            ask(sock)
        extra = stack.enter_context(connect(server, "127.0.0.40"))
        assert is_closed(extra, 2.0), "past the total cap, new connections are refused"
        assert all(ask(sock).answer for sock in held)
        held.pop().close()
        wait_until(lambda: connections.total < LIMITS.max_connections, what="a free slot")
        with connect(server, "127.0.0.41") as again:
            assert ask(again).answer, "a freed slot admits a new client"


# -- UDP: sizes, silence, amplification ------------------------------------------------------


@pytest.mark.parametrize(
    ("edns", "payload", "limit"),
    [
        (False, 0, 512), (True, 0, 512), (True, 100, 512), (True, 512, 512), (True, 600, 600),
        (True, 1232, 1232), (True, 1400, 1232), (True, 4096, 1232), (True, 65535, 1232),
    ],
)  # fmt: skip
@pytest.mark.parametrize(
    ("name", "rdtype"), [("many.example.com", "A"), ("long.example.com", "TXT")]
)
def test_udp_reply_never_exceeds_the_client_size(core_server, edns, payload, limit, name, rdtype):
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None, payload=payload)
    raw = core_server.raw_udp(query.to_wire())
    assert raw is not None and len(raw) <= limit
    reply = dns.message.from_wire(raw)
    assert reply.id == query.id
    full = core_server.tcp(query)
    if len(full.to_wire()) > limit:
        assert reply.flags & dns.flags.TC and not reply.answer
    else:
        assert not reply.flags & dns.flags.TC and reply.answer == full.answer


def test_the_answer_fits_exactly_at_the_client_size(core_server):
    """long.example.com TXT (~650 bytes) fits a 1232-byte buffer but not 512 bytes."""
    big = dns.message.make_query("long.example.com", "TXT", use_edns=0, payload=1232)
    small = dns.message.make_query("long.example.com", "TXT", use_edns=0, payload=512)
    assert core_server.udp(big).answer
    assert core_server.udp(small).flags & dns.flags.TC


def response_bytes() -> bytes:
    query = dns.message.make_query("www.example.com", "A")
    return dns.message.make_response(query).to_wire()


@pytest.mark.parametrize(
    "payload",
    [
        b"", b"\x12", b"\x12\x34\x00\x00\x00\x01\x00\x00\x00\x00\x00",  # shorter than a header
        response_bytes(),  # QR set: never answer a response (no reflection loops)
        response_bytes()[:12],
        bytes([0xAB, 0xCD, 0x80]) + b"\xff" * 40,  # QR set on garbage
    ],
    ids=["empty", "one-byte", "eleven-bytes", "response", "response-header", "qr-garbage"],
)  # fmt: skip
def test_no_reply_to_what_is_not_a_query(core_server, payload):
    assert core_server.raw_udp(payload, timeout=0.3) is None
    assert core_server.udp(dns.message.make_query("www.example.com", "A")).answer


def with_opt(wire: bytes, options: bytes) -> bytes:
    """``wire`` (no EDNS) with an OPT record carrying raw ``options`` appended."""
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, len(options)) + options
    return wire[:10] + b"\x00\x01" + wire[12:] + opt


def error_queries() -> dict[str, bytes]:
    """Queries answered with an error rcode, with and without EDNS."""
    out = {}
    for edns in (None, 0):
        tag = "edns" if edns is not None else "plain"
        ecs = [dns.edns.ECSOption("192.0.2.0", 24)] if edns is not None else []
        refused = dns.message.make_query("www.example.org", "A", use_edns=edns, options=ecs)
        out[f"refused-{tag}"] = refused.to_wire()
        notimp = dns.message.make_query("example.com", "SOA", use_edns=edns)
        notimp.set_opcode(dns.opcode.STATUS)
        out[f"notimp-{tag}"] = notimp.to_wire()
        axfr = dns.message.make_query("example.com", "AXFR", use_edns=edns)
        out[f"axfr-{tag}"] = axfr.to_wire()
        chaos = dns.message.make_query("version.bind", "TXT", "CH", use_edns=edns)
        out[f"chaos-{tag}"] = chaos.to_wire()
        wire = dns.message.make_query("www.example.com", "A", use_edns=edns).to_wire()
        out[f"trailing-{tag}"] = wire + b"\x00" * 7
        out[f"qdcount2-{tag}"] = wire[:4] + b"\x00\x02" + wire[6:]
    badvers = dns.message.make_query("www.example.com", "A", use_edns=1)
    out["badvers"] = badvers.to_wire()
    plain = dns.message.make_query("www.example.com", "A").to_wire()
    ecs = struct.pack("!HHHBB", 8, 8, 1, 33, 0) + b"\xc0\x00\x02\x00"  # /33: not IPv4
    out["bad-ecs"] = with_opt(plain, ecs)
    out["truncated-opt"] = with_opt(plain, b"\x00\x08\x00\x10\x00")
    out["header-only"] = plain[:4] + bytes(8)
    return out


@pytest.mark.parametrize(("kind", "wire"), error_queries().items(), ids=error_queries().keys())
def test_error_replies_are_never_larger_than_the_query(core_server, kind, wire):
    raw = core_server.raw_udp(wire)
    assert raw is not None, f"{kind}: an error is answered"
    reply = dns.message.from_wire(raw)
    assert reply.rcode() != dns.rcode.NOERROR and not reply.answer
    assert reply.id == struct.unpack("!H", wire[:2])[0]
    assert len(raw) <= len(wire), f"{kind}: {len(raw)} bytes answered to {len(wire)}"
