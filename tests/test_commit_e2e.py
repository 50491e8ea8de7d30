"""End to end: a usage feed posted over HTTP moves live DNS answers toward a CDN's commit,
bad feed items are refused with reasons and counted, and explain, /status, /commit and the
metrics show the controller's state (labelled as measured or estimated)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
import re
import time
import uuid

import dns.message
import pytest

from tests.commit_zones import A, B, commit_zone
from tests.server import ServerThread
from tests.test_web import http, metric, scrape

pytestmark = pytest.mark.timeout(60)
TOKEN = f"tok-{uuid.uuid4().hex}"


def zone(start: float) -> str:
    return commit_zone(start, "interval: 3600, max_step: 0.5, gain: 1.0", "100PB", "30d")


@pytest.fixture(scope="module")
def server(tmp_path_factory, geo_db):
    zones = tmp_path_factory.mktemp("zones")
    (zones / "example.com.yaml").write_text(zone(time.time() - 15 * 86400))
    state = tmp_path_factory.mktemp("state")
    token_file = tmp_path_factory.mktemp("secret") / "token"
    token_file.write_text(TOKEN)
    with ServerThread(zones, geo_db, admin_token_file=token_file, state_dir=state) as server:
        yield server


def targets(server: ServerThread, count: int) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for _ in range(count):
        reply = server.udp(dns.message.make_query("content.example.com", "CNAME"))
        seen.update(str(rr.target) for rrset in reply.answer for rr in rrset)
    return seen


def usage(server: ServerThread, items: list[dict], token: str | None = TOKEN):
    return http(server, "/admin/usage", "POST", token=token, body={"usage": items})


def slots(count: int, end: float | None = None) -> list[tuple[float, float]]:
    """``count`` 5-minute feed intervals ending at the last 5-minute boundary before ``end``
    (now), all inside the calendar month of ``end``: cdn-b has no contract, so it is
    accounted per calendar month and an interval of the month before would be refused (as it
    should). Early in a month the intervals shrink to fit between its start and that
    boundary (so the ledger counts them whole); when a month began at that very boundary (its
    first 5 minutes, or ``end`` there) they stay whole 5-minute slots of the month before."""
    end = end or time.time()
    last = math.floor(end / 300) * 300
    moment = dt.datetime.fromtimestamp(end, dt.UTC)
    month = dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC).timestamp()
    width = 300.0
    if last - width * count < month <= last - count:  # shrink to fit when there is room
        width = math.floor((last - month) / count)
    return [(last - width * (i + 1), last - width * i) for i in reversed(range(count))]


def test_feed_moves_answers_toward_the_commit(server):
    before = targets(server, 40)
    assert before[A] > 0 and before[B] > 0, "static 50/50 weights before any feed"
    items = [{"target": t, "start": s, "end": e, "bytes": 1e9}
             for s, e in slots(6) for t in (A, B)]  # fmt: skip
    reply = usage(server, items)
    assert reply.status == 200, reply.text
    body = reply.json()
    assert body["accepted"] == 12
    assert body["results"][0]["ticked"] == ["content.example.com./CNAME"]
    # 100 PB is more than all the traffic left this period: cdn-a needs everything, so
    # the controller gives it all the weight it can (one step of 0.5 reaches it here).
    after = targets(server, 40)
    assert after[A] >= 38, after
    status = http(server, "/commit").json()["records"]["content.example.com./CNAME"]
    a_state = status["targets"][A]
    assert a_state["answer_share"] > 0.99
    assert a_state["infeasible"]["reason"] == "commit-infeasible"
    assert a_state["infeasible"]["short_bytes"] > 0
    assert a_state["delivered_bytes"] == pytest.approx(6e9, rel=0.01)
    assert a_state["kind"] == "volume" and a_state["commit"] == 1e17


def test_bad_feed_items_are_refused_with_reasons_and_counted(server):
    first = slots(1, time.time() - 7200)[0]
    assert (
        usage(server, [{"target": A, "start": first[0], "end": first[1], "bytes": 5e8}]).status
        == 200
    )
    cases = {
        "duplicate": {"target": A, "start": first[0], "end": first[1], "bytes": 5e8},
        "overlap": {"target": A, "start": first[0] + 60, "end": first[1] + 60, "bytes": 1},
        "unknown-target": {"target": "cdn-z.example.net.", "start": 0, "end": 300, "bytes": 1},
        "future": {"target": A, "start": time.time() + 3600, "end": time.time() + 3900,
                   "bytes": 1},
        "previous-period": {"target": A, "start": time.time() - 40 * 86400,
                            "end": time.time() - 40 * 86400 + 300, "bytes": 1},
        "invalid": {"target": A, "start": first[1], "end": first[0], "bytes": 1},
    }  # fmt: skip
    before = scrape(server)
    reply = usage(server, list(cases.values()))
    assert reply.status == 200
    results = [r["result"] for r in reply.json()["results"]]
    assert results == list(cases)
    after = scrape(server)
    for reason in cases:
        grew = metric(after, "gslb_commit_usage_items_total", result=reason) - metric(
            before, "gslb_commit_usage_items_total", result=reason
        )
        assert grew == 1, reason


def test_malformed_feed_is_400_and_needs_the_token(server):
    assert usage(server, [{"target": A}]).status == 400
    assert http(server, "/admin/usage", "POST", token=TOKEN, body=b"not json").status == 400
    assert usage(server, [], token=None).status == 401
    assert usage(server, [], token="wrong").status == 403


def test_explain_status_and_metrics_show_the_controller(server):
    trace = http(server, "/explain?name=content.example.com&client=192.0.2.1&qtype=CNAME").json()
    (step,) = [s for s in trace["steps"] if s["step"] == "commit"]
    controller = step["notes"]["controller"]
    assert controller["mode"] == "commit"
    assert set(controller["targets"]) == {A, B}
    assert "projected_bytes" in controller["targets"][A]
    assert controller["estimate"] == (controller["origin"] != "feed")
    status = http(server, "/status").json()["commit"]
    assert status["records"]["content.example.com./CNAME"]["ticks"] >= 1
    samples = scrape(server)
    record = "content.example.com./CNAME"
    assert metric(samples, "gslb_commit_progress_ratio", record=record, target=A) > 0
    assert metric(samples, "gslb_commit_answer_share", record=record, target=A) > 0.99


def test_state_survives_a_restart(server, tmp_path_factory, geo_db):
    saved = json.loads((server.settings.state_dir / "commit.json").read_text())
    weights = saved["records"]["content.example.com./CNAME"]["loop"]["weights"]
    assert weights[A] > 0.99
    with ServerThread(server.settings.zones, geo_db, state_dir=server.settings.state_dir) as again:
        assert targets(again, 20)[A] >= 19, "restored weights answer at once, no swing back"
        status = http(again, "/commit").json()["records"]["content.example.com./CNAME"]
        assert status["origin"] == "restored"


def test_status_page_has_a_commits_panel(server):
    start, end = slots(1, time.time() - 2 * 86400)[0]
    assert usage(server, [{"target": B, "start": start, "end": end, "bytes": 1e6}]).status == 200
    reply = http(server, "/?refresh=0")
    assert reply.status == 200 and 'href="#commit"' in reply.text
    section = reply.text[reply.text.index('<section id="commit"') :]
    text = " ".join(re.sub(r"<[^>]+>", " ", section[: section.index("</section>")]).split())
    assert "content.example.com./CNAME cdn-a.example.net." in text
    assert "100000.0 TB" in text and "commit-infeasible" in text
    assert "Usage feed:" in text and "refused" in text
