"""Contracts in the zone file: what parses, what each wrong field says (all at once), and where
the ``commit`` step lands in the chain."""

from __future__ import annotations

import datetime as dt

import pytest

from gslb.commit.contract import Period, bit_rate, byte_amount, duration, timestamp
from gslb.config.dynamic import parse_dynamic
from gslb.config.model import CNAME

A, B = "a.cdn.net.", "b.cdn.net."


def record(gslb: dict, chain: list[str] | None = None) -> dict:
    block = dict(gslb)
    if chain is not None:
        block["chain"] = chain
    return {
        "type": "CNAME",
        "ttl": 60,
        "value": "origin.example.com.",
        "dynamic": {
            "pools": {"p": {"values": [{"value": A, "weight": 70}, {"value": B, "weight": 30}]}},
            "rules": [{"pool": "p"}],
        },
        "gslb": block,
    }


def parse(data: dict):
    errors: list[str] = []
    parsed, _ = parse_dynamic("www.example.com.", b"\x03www\x07example\x03com\x00", CNAME, 60,
                              data, "zone.yaml: record \"www\"", errors)  # fmt: skip
    return parsed, errors


def test_contracts_parse_with_units_and_defaults():
    parsed, errors = parse(record({
        "commit": {"interval": "5m", "max_step": 0.1},
        "targets": {
            A: {"cost": 1, "commit": {"volume": "500TB", "start": dt.date(2026, 11, 1),
                                      "price": 0.004, "overage": 0.006, "ceiling": "0.6PB"}},
            B: {"commit": {"p95": "40Gbps", "period": "30d", "start": "2026-11-01T00:00:00Z",
                           "overage": 1.5}},
        },
    }))  # fmt: skip
    assert errors == []
    spec = parsed.commit
    assert (spec.mode, spec.interval, spec.max_step, spec.gain) == ("commit", 300, 0.1, 0.5)
    a, b = spec.contracts[A], spec.contracts[B]
    assert (a.kind, a.amount, a.ceiling, a.period.seconds) == ("volume", 5e14, 6e14, None)
    assert (b.kind, b.amount, b.period.seconds, b.price) == ("p95", 4e10, 30 * 86400, 0.0)
    assert parsed.options.chain[-2:] == ("commit", "weighted")


def test_every_wrong_field_is_reported_at_once():
    _, errors = parse(record({
        "commit": {"mode": "fill", "max_step": 2, "intervall": 5},
        "targets": {
            A: {"commit": {"volume": "5 parsecs", "p95": "1Gbps", "start": "yesterday"}},
            B: {"commit": {"p95": "40GB", "start": "2026-11-01", "price": -1,
                           "period": "10m", "ceiling": "1Mbps"}},
        },
    }))  # fmt: skip
    text = "\n".join(errors)
    for expected in (
        'gslb.commit.mode: invalid value "fill"',
        'gslb.commit.max_step: invalid value "2"',
        'gslb.commit: unknown key "intervall" (did you mean "interval"?)',
        f'gslb.targets "{A}".commit: give volume (bytes per period) or p95',
        f'gslb.targets "{A}".commit.start: invalid value "yesterday"',
        f'gslb.targets "{B}".commit.p95: invalid value "40GB"',
        f'gslb.targets "{B}".commit.price: invalid value "-1"',
        f'gslb.targets "{B}".commit.period: invalid value "10m"',
    ):
        assert expected in text, expected
    assert all(line.startswith('zone.yaml: record "www": ') for line in errors)


def test_ceiling_below_commit_and_origin_contract_are_refused():
    data = record({"targets": {A: {"commit": {"volume": "2TB", "ceiling": "1TB",
                                              "start": "2026-11-01"}}}})  # fmt: skip
    data["gslb"]["targets"]["origin.example.com."] = {
        "commit": {"volume": "1TB", "start": "2026-11-01"}
    }
    _, errors = parse(data)
    assert any("ceiling: below the commit" in e for e in errors)
    assert any("only pool values carry traffic" in e for e in errors)


def test_chain_must_list_commit_after_the_filtering_steps():
    contract = {"targets": {A: {"commit": {"volume": "1TB", "start": "2026-11-01"}}}}
    _, errors = parse(record(contract, chain=["rules", "health", "weighted"]))
    assert any('list "commit" before "weighted"' in e for e in errors)
    _, errors = parse(record(contract, chain=["rules", "commit", "health", "weighted"]))
    assert any('"commit" must come after every filtering step (health' in e for e in errors)
    _, errors = parse(record({}, chain=["rules", "commit", "weighted"]))
    assert any("step commit needs gslb.commit" in e for e in errors)
    parsed, errors = parse(record({"commit": {"mode": "delivered"}}))
    assert errors == [] and parsed.commit.contracts == {}
    _, errors = parse(record({"commit": {}}))
    assert any("mode commit needs at least one target with a commit" in e for e in errors)


def test_units():
    assert byte_amount("1.5PiB") == 1.5 * 2**50 and byte_amount(10) == 10
    assert bit_rate("800Mbps") == 8e8
    assert duration("2h") == 7200 and duration(90) == 90
    with pytest.raises(ValueError):
        bit_rate(5)
    assert timestamp("2026-11-01") == dt.datetime(2026, 11, 1, tzinfo=dt.UTC).timestamp()


def test_calendar_month_periods_follow_the_anchor_day():
    start = dt.datetime(2026, 1, 31, tzinfo=dt.UTC).timestamp()
    period = Period(start)
    moment = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC).timestamp()
    begin, end = period.bounds(moment)
    assert dt.datetime.fromtimestamp(begin, dt.UTC) == dt.datetime(2026, 2, 28, tzinfo=dt.UTC)
    assert dt.datetime.fromtimestamp(end, dt.UTC) == dt.datetime(2026, 3, 31, tzinfo=dt.UTC)
    fixed = Period(0.0, 86400 * 30)
    assert fixed.bounds(86400 * 45) == (86400 * 30, 86400 * 60)
