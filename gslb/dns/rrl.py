"""Response rate limiting (RRL) for UDP, in the sense of BIND 9's ``rate-limit``.

A spoofed-source flood makes an authoritative server reflect answers at a victim. RRL counts
the *responses* each client network receives, per kind of response, and stops answering a
bucket that goes over ``rate`` responses per second: most limited responses are dropped,
every ``slip``-th is sent as a tiny TC=1 reply instead. A real resolver behind the limited
network retries such a reply over TCP (which is never rate limited: its handshake proves the
source address), so it keeps getting answers; a spoofed victim gets a few dozen bytes.

Buckets are keyed by (client network, kind, name), as BIND does:

* client network: the source address cut to ``ipv4_prefix`` (24) or ``ipv6_prefix`` (56) bits,
  so one attacker cannot spread a flood over the addresses of one network;
* ``answer`` (NOERROR with data): per query name and type;
* ``nodata`` (NOERROR, no data): per query name;
* ``nxdomain``: per zone, so random-subdomain floods share one bucket;
* ``referral`` (delegation): per zone (BIND uses the delegation point; the zone is a cheap and
  slightly stricter stand-in);
* ``error`` (FORMERR, SERVFAIL, NOTIMP, REFUSED, BADVERS): per client network only.

Each bucket is a token bucket: it starts with ``rate`` tokens, earns ``rate`` per second up to
``rate``, and every response costs one. Limited responses keep costing, down to a debt of
``window`` seconds' worth: a client that keeps flooding stays limited, and one that stops is
forgiven within ``window`` seconds (BIND averages over the same window).

Default: off (``rate`` 0), as in BIND. RRL trades availability for reflection safety, and the
right rate depends on the traffic: a large public resolver sends many legitimate queries for one
GSLB name from one /24 (short TTLs make that worse), and a fixed default would drop its answers.
Operators who enable it commonly use 5-20 responses/s with ``slip`` 2 (BIND's default) and
``window`` 15 s; those are the defaults of the other knobs here.

Cost per response: one dict lookup for the client network (cached per address), one
``OrderedDict`` lookup and move for the bucket, a few float operations; the table is bounded
(``max_buckets``, least recently used evicted first, buckets idle for longer than the window
dropped as met). The limiter lives in one process: with N worker processes sharing a port,
SO_REUSEPORT spreads one client's queries over them, so the effective limit is up to N times
``rate``.
"""

from __future__ import annotations

import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gslb.dns.wire import AA, TC

ANSWER, NODATA, NXDOMAIN, REFERRAL, ERROR = "answer", "nodata", "nxdomain", "referral", "error"
KINDS = (ANSWER, NODATA, NXDOMAIN, REFERRAL, ERROR)
MAX_CLIENT_CACHE = 65536
V6_TAG = 1 << 128  # keeps IPv6 networks apart from IPv4 ones with the same integer value


@dataclass(frozen=True, slots=True)
class RrlConfig:
    rate: int = 0  # responses per second per bucket; 0: rate limiting off
    slip: int = 2  # every Nth limited response goes out as TC=1; 0: drop them all
    window: float = 15.0  # seconds of debt a flooding bucket can accumulate
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    max_buckets: int = 20_000  # BIND's max-table-size default

    @property
    def enabled(self) -> bool:
        return self.rate > 0


class RateLimiter:
    """Decides, per UDP response, whether it goes out whole, as a TC=1 slip, or not at all."""

    def __init__(
        self,
        config: RrlConfig,
        zone_of: Callable[[bytes], bytes],
        stats: object,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.zone_of = zone_of  # lower-case wire qname -> origin of the zone we serve, or b""
        self.stats = stats  # gslb.stats.Stats: rrl_dropped / rrl_slipped by kind
        self.clock = clock
        self.rate = float(config.rate)
        self.floor = -config.window * config.rate
        self.idle = config.window + 1.0  # a bucket idle this long is back to full credit
        self.buckets: OrderedDict[tuple, list] = OrderedDict()
        self.networks: dict[str, int] = {}

    def limit(self, reply: bytes, client: str) -> bytes | None:
        """The bytes to send for ``reply`` to ``client``: itself, a TC=1 slip, or None."""
        key = self.key(reply, client)
        if key is None:
            return reply  # not a reply we can classify (never produced by the responder)
        bucket = self.bucket(key)
        bucket[0] -= 1.0
        if bucket[0] >= 0.0:
            return reply
        if bucket[0] < self.floor:
            bucket[0] = self.floor
        bucket[2] += 1
        slip = self.config.slip
        if slip and bucket[2] % slip == 0:
            self.stats.rrl_slipped[key[1]] += 1
            return slip_reply(reply)
        self.stats.rrl_dropped[key[1]] += 1
        return None

    def bucket(self, key: tuple) -> list:
        """[tokens, last update, limited count] for ``key``, credited for the time elapsed."""
        now = self.clock()
        buckets = self.buckets
        bucket = buckets.get(key)
        if bucket is None:
            self.evict(now)
            bucket = buckets[key] = [self.rate, now, 0]
            return bucket
        buckets.move_to_end(key)
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        bucket[0] = tokens if tokens < self.rate else self.rate
        bucket[1] = now
        return bucket

    def evict(self, now: float) -> None:
        """Drop buckets idle past the window (they hold nothing), then the oldest if full."""
        buckets = self.buckets
        while buckets:
            oldest = next(iter(buckets.values()))
            if now - oldest[1] < self.idle and len(buckets) < self.config.max_buckets:
                return
            buckets.popitem(last=False)

    def key(self, reply: bytes, client: str) -> tuple | None:
        network = self.networks.get(client)
        if network is None:
            network = self.network(client)
        kind, name = classify(reply, self.zone_of)
        if kind is None:
            return None
        return (network, kind, name)

    def network(self, client: str) -> int:
        """The client's network as an integer (cached: one dict hit per repeat client)."""
        if len(self.networks) >= MAX_CLIENT_CACHE:
            self.networks.clear()
        if ":" in client:
            address = client.partition("%")[0]  # a link-local scope is not part of it
            raw = int.from_bytes(socket.inet_pton(socket.AF_INET6, address), "big")
            network = V6_TAG | raw >> (128 - self.config.ipv6_prefix)
        else:
            raw = int.from_bytes(socket.inet_aton(client), "big")
            network = raw >> (32 - self.config.ipv4_prefix)
        self.networks[client] = network
        return network


def classify(reply: bytes, zone_of: Callable[[bytes], bytes]) -> tuple[str | None, bytes]:
    """(kind, name) of a reply from its header and question; (None, b"") if unreadable."""
    if len(reply) < 12:
        return None, b""
    rcode = reply[3] & 0x0F
    if rcode not in (0, 3):
        return ERROR, b""
    qname = question_name(reply)
    if qname is None:
        return ERROR, b""
    ancount = (reply[6] << 8) | reply[7]
    if rcode == 3:
        return NXDOMAIN, zone_of(qname) or qname
    if ancount:
        end = 12 + len(qname)
        return ANSWER, qname + reply[end : end + 2]  # the name and the query type
    nscount = (reply[8] << 8) | reply[9]
    if nscount and not (reply[2] << 8) & AA:
        return REFERRAL, zone_of(qname) or qname
    return NODATA, qname


def question_name(reply: bytes) -> bytes | None:
    """Lower-cased wire name of the question (never compressed), or None if there is none."""
    if reply[4] == 0 and reply[5] == 0:
        return None
    pos, end = 12, len(reply)
    while pos < end:
        length = reply[pos]
        if length == 0:
            if pos + 5 > end:
                return None
            return reply[12 : pos + 1].lower()
        if length > 63:
            return None
        pos += 1 + length
    return None


def slip_reply(reply: bytes) -> bytes:
    """Header and question only, TC=1: tells a real resolver to ask again over TCP."""
    qdcount = (reply[4] << 8) | reply[5]
    flags = ((reply[2] << 8) | reply[3]) | TC
    name = question_name(reply) if qdcount else None
    question = reply[12 : 12 + len(name) + 4] if name is not None else b""
    counts = b"\x00\x01" if question else b"\x00\x00"
    return reply[:2] + flags.to_bytes(2, "big") + counts + bytes(6) + question
