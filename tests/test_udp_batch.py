"""Batched UDP (recvmmsg/sendmmsg) and the plain asyncio transport answer the same.

Bursts are sent from many sockets without waiting, so the server really reads several
datagrams per call; every reply must reach the socket that asked, with that query's ID.
"""

from __future__ import annotations

import select
import socket
import time

import dns.message
import dns.rdatatype
import pytest

from gslb.dns import udpbatch
from tests.conftest import ZONE_HEAD, write_zone
from tests.server import ServerThread

ZONE = ZONE_HEAD + "www:\n  type: A\n  value: 192.0.2.1\n"
SOCKETS, PER_SOCKET = 20, 15


@pytest.fixture(scope="module", params=[True, False], ids=["batched", "asyncio"])
def server(request, tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", ZONE)
    dns_listeners = [("127.0.0.1", 0), ("::1", 0)]
    with ServerThread(zones, geo_db, udp_batch=request.param, dns=dns_listeners) as thread:
        yield thread


Messages = dict[int, dns.message.Message]  # by query ID


def burst(host: str, port: int, family: int) -> tuple[list[Messages], list[Messages]]:
    """Send PER_SOCKET queries on each of SOCKETS sockets at once, then collect the replies:
    (queries per socket, replies per socket)."""
    sockets = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(SOCKETS)]
    sent: list[Messages] = []
    try:
        for sock in sockets:
            queries = [dns.message.make_query("www.example.com", "A") for _ in range(PER_SOCKET)]
            sent.append({query.id: query for query in queries})
            for query in queries:
                sock.sendto(query.to_wire(), (host, port))
        return sent, [collect(sock, PER_SOCKET) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def collect(sock: socket.socket, count: int) -> Messages:
    replies: Messages = {}
    deadline = time.monotonic() + 5
    while len(replies) < count and time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            reply = dns.message.from_wire(sock.recv(65535))
            replies[reply.id] = reply
    return replies


@pytest.mark.parametrize(("host", "family"), [("127.0.0.1", socket.AF_INET),
                                              ("::1", socket.AF_INET6)])  # fmt: skip
def test_every_reply_reaches_its_socket_with_its_id(server, host, family):
    port = next(p for h, p in server.app.dns_bound if h == host)
    sent, received = burst(host, port, family)
    for index, (queries, replies) in enumerate(zip(sent, received, strict=True)):
        assert set(replies) == set(queries), f"socket {index} got other IDs or too few"
        for reply in replies.values():
            (rrset,) = reply.answer
            assert rrset.rdtype == dns.rdatatype.A and rrset[0].address == "192.0.2.1"


def test_batched_path_available_on_linux():
    assert udpbatch.available(), "glibc on Linux has recvmmsg and sendmmsg"
