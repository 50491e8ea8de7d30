"""Property test of the whole packet path: whatever arrives, no exception escapes, silence only
for what is not a query, and every reply parses, carries the query's ID and fits the size the
client allowed. Inputs: random bytes, valid queries of every opcode/class/type with bogus OPT
and ECS, label and pointer loops, lying counts, then truncated and mutated.

Two layers: ``Responder.handle`` called directly (thousands of cases, fast), and a few hundred
sent to a real server over UDP and TCP, each followed by a normal query that must be answered.
``bench/fuzz.py`` (``make fuzz``) runs the same strategies and checks for minutes.
"""

from __future__ import annotations

import random
import socket
import struct

import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gslb.config.load import load_config
from gslb.dns.responder import Options, Responder
from gslb.dns.wire import FormatError, parse_query, udp_limit
from gslb.geo import GeoDB
from gslb.policy.chain import Engine
from tests.conftest import core_zone_text, write_zone
from tests.server import ServerThread, read_message

pytestmark = pytest.mark.timeout(120)

IDENTITY = b"fuzz-ns1"
DYNAMIC_ZONE = """\
'':
  - type: SOA
    value: {mname: ns1.example.com., rname: h.example.com., serial: 1, refresh: 7200,
            retry: 3600, expire: 1209600, minimum: 300}
  - type: NS
    values: [ns1.example.com.]
geo:
  type: CNAME
  ttl: 30
  value: origin.example.net.
  dynamic:
    pools:
      eu: {values: [{value: eu.cdn.test.}], fallback: world}
      world: {values: [{value: a.cdn.test., weight: 3}, {value: b.cdn.test.}]}
    rules:
      - {geos: [EU], pool: eu}
      - {pool: world}
weighted:
  type: A
  ttl: 20
  value: 192.0.2.99
  dynamic:
    pools:
      all: {values: [{value: 192.0.2.10, weight: 2}, {value: 192.0.2.20}]}
    rules:
      - {pool: all}
origin:
  type: A
  value: 192.0.2.50
chain:
  type: CNAME
  value: weighted.example.net.
"""
NAMES = [
    "", "example.com", "www.example.com", "many.example.com", "long.example.com",
    "alias.example.com", "external.example.com", "a.b.c.example.com", "x.wild.example.com",
    "exists.wild.example.com", "_sip._tcp.example.com", "sub.example.com", "x.sub.example.com",
    "nx.example.com", "ptr.example.com", "example.net", "geo.example.net", "weighted.example.net",
    "chain.example.net", "origin.example.net", "version.bind", "id.server", "hostname.bind",
    "example.org",
]  # fmt: skip
QTYPES = [1, 2, 5, 6, 12, 15, 16, 28, 33, 41, 43, 48, 65, 251, 252, 253, 254, 255, 257]
QCLASSES = [1, 3, 4, 254, 255, 0]
MAX_UDP, MIN_UDP, TCP_MAX = 1232, 512, 65535


# -- strategies ------------------------------------------------------------------------------


def wire_name(text: str) -> bytes:
    labels = [label.encode() for label in text.split(".") if label]
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def mixed_case(name: bytes, mask: int) -> bytes:
    """Flip the case of the letters whose bit is set in ``mask`` (0x20 resolvers do this)."""
    return bytes(
        b ^ 0x20 if mask >> (i % 64) & 1 and 0x61 <= (b | 0x20) <= 0x7A else b
        for i, b in enumerate(name)
    )


labels = st.binary(min_size=1, max_size=63)
random_names = st.lists(labels, max_size=6).map(
    lambda parts: b"".join(bytes((len(p),)) + p for p in parts) + b"\x00"
)
known_names = st.builds(
    mixed_case,
    st.sampled_from(NAMES).map(wire_name),
    st.sampled_from([0, 0, 0, 2**64 - 1]) | st.integers(0, 2**64 - 1),
)
weird_names = st.sampled_from(
    [
        b"\xc0\x0c",  # pointer to itself: a loop
        b"\x03www\xc0\x0c",  # label then a pointer back to the start
        b"\xc0\xff",  # pointer past the end
        b"\x40" + b"a" * 64 + b"\x00",  # label type 01
        b"\x80\x00",  # label type 10
        b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f" + b"d" * 63
        + b"\x00",  # 257 bytes: over the 255 limit
        b"\x05abc",  # runs off the end
    ]
)  # fmt: skip
names = st.one_of(known_names, known_names, random_names, weird_names)


@st.composite
def ecs_option(draw) -> bytes:
    family = draw(st.sampled_from([1, 2, 1, 2, 0, 3, 0xFFFF]))
    top = 32 if family == 1 else 128
    source = draw(st.one_of(st.integers(0, top), st.integers(0, 255)))
    scope = draw(st.sampled_from([0, 0, 0, 24, 255]))
    length = (source + 7) // 8
    address = draw(st.one_of(st.binary(min_size=length, max_size=length), st.binary(max_size=20)))
    payload = struct.pack("!HBB", family, source, scope) + address
    return struct.pack("!HH", 8, len(payload)) + payload


@st.composite
def edns_option(draw) -> bytes:
    kind = draw(st.sampled_from(["ecs", "ecs", "nsid", "cookie", "padding", "random", "liar"]))
    if kind == "ecs":
        return draw(ecs_option())
    if kind == "nsid":
        return struct.pack("!HH", 3, 0)
    if kind == "cookie":
        return struct.pack("!HH", 10, 8) + draw(st.binary(min_size=8, max_size=8))
    if kind == "padding":
        size = draw(st.integers(0, 300))
        return struct.pack("!HH", 12, size) + bytes(size)
    data = draw(st.binary(max_size=40))
    length = len(data) if kind == "random" else draw(st.integers(0, 0xFFFF))
    return struct.pack("!HH", draw(st.integers(0, 0xFFFF)), length) + data


@st.composite
def opt_record(draw) -> bytes:
    owner = draw(st.sampled_from([b"\x00"] * 6 + [b"\xc0\x0c", b"\x03foo\x00"]))
    size = draw(st.one_of(st.sampled_from([0, 100, 512, 600, 1232, 1400, 4096, 65535]),
                          st.integers(0, 0xFFFF)))  # fmt: skip
    version = draw(st.sampled_from([0, 0, 0, 0, 1, 255]))
    ttl = (draw(st.integers(0, 255)) << 24) | (version << 16) | draw(st.sampled_from([0, 0x8000]))
    rdata = b"".join(draw(st.lists(edns_option(), max_size=4)))
    length = draw(st.one_of(st.just(len(rdata)), st.just(len(rdata)), st.integers(0, 0xFFFF)))
    return owner + struct.pack("!HHIH", 41, size, ttl, length) + rdata


@st.composite
def other_record(draw) -> bytes:
    owner = draw(st.one_of(st.just(b"\xc0\x0c"), st.just(b"\x00"), names))
    rtype = draw(st.one_of(st.sampled_from(QTYPES), st.integers(0, 0xFFFF)))
    rdata = draw(st.binary(max_size=30))
    return owner + struct.pack("!HHIH", rtype, 1, 300, len(rdata)) + rdata


@st.composite
def structured_query(draw) -> bytes:
    """A query built field by field; counts true by default, sometimes lying."""
    ident = draw(st.integers(0, 0xFFFF))
    opcode = draw(st.one_of(st.just(0), st.just(0), st.integers(0, 15)))
    flags = draw(st.sampled_from([0x0000, 0x0100, 0x0110, 0x0020]))
    flags |= opcode << 11
    flags |= draw(st.sampled_from([0] * 10 + [0x8000, 0x0400, 0x0200, 0x0080, 0x0040, 0x000F]))
    questions = draw(st.lists(st.tuples(names, st.one_of(st.sampled_from(QTYPES),
                                                          st.integers(0, 0xFFFF)),
                                        st.one_of(st.sampled_from(QCLASSES),
                                                  st.integers(0, 0xFFFF))),
                              min_size=0, max_size=2).filter(lambda q: True))  # fmt: skip
    if draw(st.integers(0, 9)):
        questions = questions[:1] or [(draw(known_names), 1, 1)]
    body = b"".join(name + struct.pack("!HH", t, c) for name, t, c in questions)
    answers = draw(st.lists(other_record(), max_size=2)) if draw(st.integers(0, 7)) == 0 else []
    extra = draw(st.lists(st.one_of(opt_record(), other_record()), max_size=3))
    if not extra and draw(st.booleans()):
        extra = [draw(opt_record())]
    body += b"".join(answers) + b"".join(extra)
    counts = [len(questions), len(answers), 0, len(extra)]
    if draw(st.integers(0, 5)) == 0:
        counts[draw(st.integers(0, 3))] = draw(st.sampled_from([0, 1, 2, 0xFFFF]))
    return struct.pack("!HHHHHH", ident, flags, *counts) + body


@st.composite
def mutated(draw, base) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "count"]))
        position = draw(st.integers(0, max(0, len(data))))
        if action == "truncate":
            del data[position:]
        elif action == "flip" and data:
            index = min(position, len(data) - 1)
            data[index] ^= draw(st.integers(1, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "count" and len(data) >= 12:
            offset = 4 + 2 * draw(st.integers(0, 3))
            data[offset : offset + 2] = struct.pack("!H", draw(st.integers(0, 0xFFFF)))
    return bytes(data)


def variants(data: bytes, seed: int, count: int = 10) -> list[bytes]:
    """``data`` and cheap derived cases (truncations, byte flips, a lying count): many cases
    per hypothesis example, whose generation costs milliseconds."""
    rng = random.Random(seed)
    out = [data]
    for k in range(1, 4):
        out.append(data[: len(data) * k // 4])
    while len(out) < count and data:
        mutant = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutant[rng.randrange(len(mutant))] ^= rng.randint(1, 255)
        out.append(bytes(mutant))
    if len(data) >= 12:
        offset = rng.choice((4, 6, 8, 10))
        out.append(data[:offset] + rng.choice((b"\xff\xff", b"\x00\x00")) + data[offset + 2 :])
    return out


messages = st.one_of(
    structured_query(),
    structured_query(),
    mutated(structured_query()),
    st.binary(max_size=600),
    st.binary(min_size=12, max_size=64).map(lambda b: b[:2] + bytes([b[2] & 0x7F]) + b[3:]),
)


# -- the invariant ---------------------------------------------------------------------------


def allowed_size(data: bytes, transport: str) -> int:
    """What the client allowed: 512 without OPT, else its size clamped to [512, 1232].

    dnspython reads the query independently; where it refuses the message (our parser is
    stricter in some places, laxer in others), ours decides."""
    if transport == "tcp":
        return TCP_MAX
    try:
        query = dns.message.from_wire(data)
    except Exception:
        try:
            return udp_limit(parse_query(data).opt)
        except FormatError:
            return MIN_UDP
    return MIN_UDP if query.edns < 0 else min(max(query.payload, MIN_UDP), MAX_UDP)


def check(data: bytes, reply: bytes | None, transport: str) -> None:
    """Raise AssertionError if ``reply`` is not an acceptable answer to ``data``."""
    silent = len(data) < 12 or bool(data[2] & 0x80)
    if silent:
        assert reply is None, "answered something that is not a query"
        return
    assert reply is not None, "a query with a readable header must be answered"
    assert len(reply) >= 12 and reply[:2] == data[:2], "reply lacks the query's ID"
    assert reply[2] & 0x80, "reply without QR"
    assert len(reply) <= allowed_size(data, transport), f"{len(reply)} bytes: over the limit"
    if reply[3] & 0x0F not in (0, 3):  # errors never amplify (NSID may add our identity)
        assert len(reply) <= len(data) + len(IDENTITY), f"{len(reply)} bytes for {len(data)}"
    parse(reply)


def parse(reply: bytes) -> dns.message.Message:
    """dnspython's reading of ``reply`` (raises if a client could not parse it).

    An UPDATE (opcode 5) message must carry one SOA in its zone section; a NOTIMP reply echoes
    whatever zone section the query had, as for every opcode. So UPDATE replies are read with
    the opcode cleared: the bytes are what is checked, not RFC 2136 semantics."""
    if (reply[2] >> 3) & 0x0F == 5:
        reply = reply[:2] + bytes((reply[2] & 0x87,)) + reply[3:]
    return dns.message.from_wire(reply)


# -- layer 1: the responder, directly --------------------------------------------------------


def zones_dir(directory) -> object:
    write_zone(directory, "example.com", core_zone_text())
    write_zone(directory, "example.com".replace("com", "net"), DYNAMIC_ZONE)
    return directory


@pytest.fixture(scope="module")
def responder(tmp_path_factory, geo_db) -> Responder:
    config, errors = load_config(zones_dir(tmp_path_factory.mktemp("zones")))
    assert config is not None, errors
    options = Options(identity=IDENTITY, version="fuzz")
    return Responder(config, Engine(GeoDB.open(geo_db)), options)


CLIENTS = ["127.0.0.1", "46.4.1.10", "49.32.1.10", "2a01:4f8::1", "192.0.2.1"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=messages, seed=st.integers(0, 2**32), client=st.sampled_from(CLIENTS))
def test_responder_survives_anything(responder, data, seed, client):
    """400 examples x 11 variants x 2 transports: about 9,000 cases."""
    for case in variants(data, seed):
        for transport in ("udp", "tcp"):
            try:
                check(case, responder.handle(case, client, transport), transport)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{transport} case: {case!r}") from None


def test_known_nasty_inputs(responder):
    """Fixed cases, so they run on every run whatever hypothesis draws."""
    query = dns.message.make_query("many.example.com", "A").to_wire()
    cases = [
        query[:12] + b"\xc0\x0c\x00\x01\x00\x01",  # question name pointing at itself
        query[:4] + b"\xff\xff\xff\xff\xff\xff\xff\xff" + query[12:],  # every count 65535
        query[:10] + b"\x00\x01" + query[12:] + b"\xc0\x1b\x00\x29\x04\xd0" + bytes(6),  # loop
        query[:10] + b"\x00\x02" + query[12:] + (b"\x00\x00\x29\x04\xd0" + bytes(6)) * 2,
        query + b"\x00",
        query[:-1],
        b"\x00" * 12,
        b"\xff" * 12,
    ]
    for opcode in range(16):
        flags = struct.pack("!H", (opcode << 11) | 0x0100)
        cases.append(query[:2] + flags + query[4:])
    for qclass in (0, 2, 3, 4, 254, 255, 0xFFFF):
        cases.append(query[:-2] + struct.pack("!H", qclass))
    for data in cases:
        for transport in ("udp", "tcp"):
            check(data, responder.handle(data, "192.0.2.1", transport), transport)


# -- layer 2: a real server over UDP and TCP -------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db):
    zones = zones_dir(tmp_path_factory.mktemp("zones"))
    with ServerThread(zones, geo_db, identity=IDENTITY, version_string="fuzz") as running:
        yield running


class Client:
    """Each fuzz message is followed by a probe query with another ID. Replies come back in
    order, so the probe's reply marks the end of the fuzz reply (if any): no timeouts."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(3)

    def udp(self, data: bytes, probe: bytes) -> bytes | None:
        self.sock.send(data)
        self.sock.send(probe)
        replies = []
        while not replies or replies[-1][:2] != probe[:2]:
            replies.append(self.sock.recv(65535))
        assert_probe_answered(replies.pop())
        assert len(replies) <= 1, "more than one reply to one datagram"
        return replies[0] if replies else None

    def tcp(self, data: bytes, probe: bytes) -> bytes | None:
        """None when the server hung up instead of answering (then no probe reply either)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=3) as sock:
            sock.sendall(frame(data) + frame(probe))
            first = read_message(sock)
            if first is None:
                return None
            assert first[:2] != probe[:2], "the fuzz message was skipped"
            assert_probe_answered(read_message(sock))
            return first


def assert_probe_answered(raw: bytes | None) -> None:
    assert raw is not None, "no answer to a normal query after the fuzz message"
    assert len(dns.message.from_wire(raw).answer[0]) == 2


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.dns_port)


def probe_for(data: bytes) -> bytes:
    """A normal query whose ID differs from the fuzz message's."""
    probe = dns.message.make_query("www.example.com", "A")
    if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == probe.id:
        probe.id ^= 1
    return probe.to_wire()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=messages, seed=st.integers(0, 2**32))
def test_real_server_over_udp_and_tcp(server, client, data, seed):
    """120 examples x 3 variants, each over UDP and TCP: about 700 messages."""
    for case in variants(data, seed, count=3)[::2]:
        probe = probe_for(case)
        check(case, client.udp(case, probe), "udp")
        reply = client.tcp(case, probe)
        if reply is None:
            assert len(case) < 12 or case[2] & 0x80, f"a query got a hang-up over TCP: {case!r}"
            assert server.tcp(dns.message.make_query("www.example.com", "A")).answer
        else:
            check(case, reply, "tcp")


def test_server_still_answers_after_the_fuzzing(server):
    stats = server.app.stats
    assert sum(stats.malformed.values()) > 0, "the fuzzer reached the error paths"
    for transport in (server.udp, server.tcp):
        reply = transport(dns.message.make_query("www.example.com", "A"))
        assert sorted(rr.address for rr in reply.answer[0]) == ["192.0.2.1", "192.0.2.2"]
