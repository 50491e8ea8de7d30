"""Response rate limiting: buckets, slip, recovery and bounds on a fake clock, then a real
server over UDP (limited, slipping to TC=1) and TCP (never limited)."""

from __future__ import annotations

import socket
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest

from gslb.dns.rrl import ANSWER, ERROR, NODATA, NXDOMAIN, REFERRAL, RateLimiter, RrlConfig
from gslb.stats import Stats
from tests.conftest import core_zone_text, write_zone
from tests.server import ServerThread
from tests.test_web import metric, scrape

pytestmark = pytest.mark.timeout(30)

ZONES = {b"\x07example\x03com\x00"}


def zone_of(qname: bytes) -> bytes:
    """Test stand-in for the responder's zone lookup: example.com. and below."""
    while qname != b"\x00":
        if qname in ZONES:
            return qname
        qname = qname[1 + qname[0] :]
    return b""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(**config) -> tuple[RateLimiter, Clock, Stats]:
    clock, stats = Clock(), Stats()
    return RateLimiter(RrlConfig(**config), zone_of, stats, clock), clock, stats


def reply(name: str = "www.example.com", rdtype: str = "A", rcode: int = 0, **kw) -> bytes:
    """A reply as the responder would send it (built with dnspython: independent bytes)."""
    query = dns.message.make_query(name, rdtype)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if kw.get("answer"):
        response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", rdtype, kw["answer"]))
    if kw.get("referral"):
        response.flags &= ~dns.flags.AA
        response.authority.append(dns.rrset.from_text("sub.example.com.", 300, "IN", "NS", "ns."))
    elif kw.get("aa", True):
        response.flags |= dns.flags.AA
    return response.to_wire()


ANSWER_REPLY = reply(answer="192.0.2.1")


def outcomes(rrl: RateLimiter, wire: bytes, client: str, count: int) -> list[str]:
    """'full', 'slip' or 'drop' for each of ``count`` identical replies."""
    out = []
    for _ in range(count):
        sent = rrl.limit(wire, client)
        out.append("drop" if sent is None else "full" if sent == wire else "slip")
    return out


# -- the limiter on a fake clock -------------------------------------------------------------


def test_under_the_rate_everything_goes_out():
    rrl, clock, stats = limiter(rate=10)
    for _ in range(50):  # 5 per second for 10 seconds
        assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 5) == ["full"] * 5
        clock.now += 1.0
    assert not stats.rrl_dropped and not stats.rrl_slipped


def test_over_the_rate_every_second_limited_response_slips():
    rrl, _, stats = limiter(rate=5, slip=2)
    seen = outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 15)
    assert seen == ["full"] * 5 + ["drop", "slip"] * 5
    assert stats.rrl_dropped[ANSWER] == 5 and stats.rrl_slipped[ANSWER] == 5


@pytest.mark.parametrize(("slip", "expected"), [(0, {"drop"}), (1, {"slip"}), (3, None)])
def test_slip_setting(slip, expected):
    rrl, _, _ = limiter(rate=2, slip=slip)
    limited = outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 32)[2:]
    if expected is None:
        assert limited.count("slip") == 10 and limited[2::3] == ["slip"] * 10
    else:
        assert set(limited) == expected


def test_slip_is_a_tiny_tc_reply_with_the_question_and_id():
    rrl, _, _ = limiter(rate=1, slip=1)
    wire = reply("WwW.Example.Com", answer="192.0.2.1")
    rrl.limit(wire, "192.0.2.10")
    slipped = rrl.limit(wire, "192.0.2.10")
    message = dns.message.from_wire(slipped)
    assert message.flags & dns.flags.TC and message.flags & dns.flags.QR
    assert message.id == dns.message.from_wire(wire).id
    assert str(message.question[0].name) == "WwW.Example.Com."
    assert not message.answer and not message.authority and not message.additional
    assert len(slipped) == 12 + len(b"\x03www\x07example\x03com\x00") + 4 < len(wire)


def test_tokens_come_back_with_time_and_a_flood_stays_limited_for_the_window():
    rrl, clock, _ = limiter(rate=10, slip=0, window=5)
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 10) == ["full"] * 10
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 1) == ["drop"]
    clock.now += 0.5  # 5 tokens earned, but the drop cost one: 4 go out
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 5) == ["full"] * 4 + ["drop"]
    for _ in range(20):  # flood at 10x the rate: debt reaches the window's worth
        outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 10)
        clock.now += 0.1
    clock.now += 4.0  # the flood stopped, not yet for the whole window
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 1) == ["drop"]
    clock.now += 2.2  # a window and a second after the flood: forgiven, full burst again
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 10) == ["full"] * 10


def test_one_network_shares_a_bucket_other_networks_do_not():
    rrl, _, _ = limiter(rate=3, slip=0)
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 3) == ["full"] * 3
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.200", 1) == ["drop"], "same /24"
    assert outcomes(rrl, ANSWER_REPLY, "192.0.3.10", 3) == ["full"] * 3, "another /24"
    assert outcomes(rrl, ANSWER_REPLY, "2001:db8:0:ff::1", 3) == ["full"] * 3
    assert outcomes(rrl, ANSWER_REPLY, "2001:db8:0:aa::2", 1) == ["drop"], "same /56"
    assert outcomes(rrl, ANSWER_REPLY, "2001:db8:0:100::1", 1) == ["full"], "another /56"


def test_prefix_lengths_are_configurable():
    rrl, _, _ = limiter(rate=1, slip=0, ipv4_prefix=32, ipv6_prefix=128)
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.10", 2) == ["full", "drop"]
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.11", 1) == ["full"]
    assert outcomes(rrl, ANSWER_REPLY, "2001:db8::1", 2) == ["full", "drop"]
    assert outcomes(rrl, ANSWER_REPLY, "2001:db8::2", 1) == ["full"]


def test_kinds_and_their_keys():
    rrl, _, stats = limiter(rate=1, slip=0)
    client = "192.0.2.10"
    # answers: per name and type
    assert outcomes(rrl, reply("a.example.com", answer="192.0.2.1"), client, 2) == ["full", "drop"]
    assert outcomes(rrl, reply("b.example.com", answer="192.0.2.1"), client, 1) == ["full"]
    assert outcomes(rrl, reply("a.example.com", "AAAA", answer="2001:db8::1"), client, 1) == [
        "full"
    ]
    # NXDOMAIN: per zone, so random subdomains share one bucket
    nx = [reply(f"r{i}.example.com", rcode=dns.rcode.NXDOMAIN) for i in range(3)]
    assert [outcomes(rrl, wire, client, 1)[0] for wire in nx] == ["full", "drop", "drop"]
    # NODATA: per name; referral: per zone
    assert outcomes(rrl, reply("a.example.com", "MX"), client, 2) == ["full", "drop"]
    ref = [reply(f"x{i}.sub.example.com", referral=True) for i in range(2)]
    assert [outcomes(rrl, wire, client, 1)[0] for wire in ref] == ["full", "drop"]
    # errors: per client network only, whatever the name or rcode
    errors = [reply("a.other.org", rcode=dns.rcode.REFUSED), reply(rcode=dns.rcode.FORMERR)]
    assert [outcomes(rrl, wire, client, 1)[0] for wire in errors] == ["full", "drop"]
    assert dict(stats.rrl_dropped) == {ANSWER: 1, NXDOMAIN: 2, NODATA: 1, REFERRAL: 1, ERROR: 1}


def test_the_table_is_bounded_and_idle_buckets_go_first():
    rrl, clock, _ = limiter(rate=5, max_buckets=100, window=2)
    for i in range(1000):
        rrl.limit(ANSWER_REPLY, f"10.{i // 256}.{i % 256}.1")
        assert len(rrl.buckets) <= 100
    clock.now += 3.5  # every bucket idle past the window
    rrl.limit(ANSWER_REPLY, "192.0.2.10")
    assert len(rrl.buckets) == 1


def test_a_full_table_of_active_buckets_evicts_the_least_recent():
    rrl, _, _ = limiter(rate=1, slip=0, max_buckets=2)
    outcomes(rrl, ANSWER_REPLY, "192.0.2.1", 2)  # bucket A in debt
    outcomes(rrl, ANSWER_REPLY, "192.0.3.1", 1)  # B
    outcomes(rrl, ANSWER_REPLY, "192.0.4.1", 1)  # C evicts A, the least recently used
    assert len(rrl.buckets) == 2
    assert outcomes(rrl, ANSWER_REPLY, "192.0.2.1", 1) == ["full"], "A started afresh"


def test_it_costs_microseconds():
    rrl, _, _ = limiter(rate=1_000_000)
    clients = [f"10.0.{i % 200}.{i % 250}" for i in range(1000)]
    started = time.perf_counter()
    for client in clients * 20:
        rrl.limit(ANSWER_REPLY, client)
    per_call = (time.perf_counter() - started) / 20_000
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} us per response"


# -- a real server ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rrl_server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    write_zone(zones, "example.com", core_zone_text())
    config = RrlConfig(rate=5, slip=2, window=2)
    with ServerThread(zones, geo_db, rrl=config) as server:
        yield server


def burst(server: ServerThread, name: str, count: int) -> list[dns.message.Message]:
    """Send ``count`` queries at once, collect what comes back (limited ones never do)."""
    wires = [dns.message.make_query(name, "A", id=i).to_wire() for i in range(count)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", server.dns_port))
        for wire in wires:
            sock.send(wire)
        replies = []
        sock.settimeout(0.5)  # the absence of replies is the point: bounded wait for stragglers
        while len(replies) < count:
            try:
                replies.append(dns.message.from_wire(sock.recv(4096)))
            except TimeoutError:
                break
    return replies


def test_udp_flood_is_limited_and_slips_tc(rrl_server):
    before = scrape(rrl_server)
    replies = burst(rrl_server, "www.example.com", 40)
    full = [r for r in replies if not r.flags & dns.flags.TC]
    slipped = [r for r in replies if r.flags & dns.flags.TC]
    assert 5 <= len(full) <= 8, "the burst allowance plus what accrues during the test"
    assert all(len(r.answer[0]) == 2 for r in full)
    assert all(not r.answer and r.question for r in slipped)
    limited = 40 - len(full)
    assert abs(len(slipped) - limited / 2) <= 1
    after = scrape(rrl_server)
    dropped = metric(after, "gslb_rrl_dropped_total", kind="answer") - metric(
        before, "gslb_rrl_dropped_total", kind="answer"
    )
    slips = metric(after, "gslb_rrl_slipped_total", kind="answer") - metric(
        before, "gslb_rrl_slipped_total", kind="answer"
    )
    assert (dropped, slips) == (limited - len(slipped), len(slipped))


def test_tcp_is_never_limited_and_a_slip_leads_a_resolver_there(rrl_server):
    burst(rrl_server, "alias.example.com", 40)  # this name's UDP bucket is now in debt
    query = dns.message.make_query("alias.example.com", "A")
    for _ in range(30):
        assert rrl_server.tcp(query).answer, "TCP proves the source: never rate limited"
    fell_back = []
    for _ in range(4):  # every second limited reply slips; a dropped one times out
        try:
            reply, used_tcp = dns.query.udp_with_fallback(
                query, "127.0.0.1", port=rrl_server.dns_port, timeout=0.3
            )
        except dns.exception.Timeout:
            continue
        fell_back.append(used_tcp)
        assert reply.answer and reply.answer[-1][0].address == "192.0.2.1"
    assert fell_back and all(fell_back), "each UDP answer came as TC=1, then over TCP"


def test_other_names_are_still_answered_during_a_flood(rrl_server):
    burst(rrl_server, "ns1.example.com", 40)
    reply = rrl_server.udp(dns.message.make_query("ns2.example.com", "AAAA"))
    assert reply.answer[0][0].address == "2001:db8::53"


def test_off_by_default(core_server):
    assert RrlConfig().rate == 0 and not RrlConfig().enabled
    replies = burst(core_server, "www.example.com", 100)
    assert len(replies) == 100 and not any(r.flags & dns.flags.TC for r in replies)
