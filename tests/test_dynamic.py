"""Parsing and validation of octoDNS ``dynamic`` records and our ``gslb:`` block.

Every validation reason has a case below with its exact message, so a reworded or lost message
fails a test. The base records are valid; each case changes one field.
"""

from __future__ import annotations

import copy
import ipaddress
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from gslb.config.dynamic import GSLB_KEYS, STEPS, TARGET_KEYS, parse_dynamic
from gslb.config.model import AAAA, CNAME, A, DynamicRecord
from gslb.health.spec import CheckSpec

WHERE = 'zones/example.com.yaml: record "content"'
FQDN = "content.example.com."
NAME = b"\x07content\x07example\x03com\x00"

CNAME_RECORD: dict[str, Any] = {
    "type": "CNAME",
    "ttl": 60,
    "value": "origin.example.net.",
    "dynamic": {
        "pools": {
            "eu": {
                "fallback": "global",
                "values": [
                    {"value": "a.cdn.net.", "weight": 70},
                    {"value": "b.cdn.net.", "weight": 30},
                ],
            },
            "global": {"values": [{"value": "a.cdn.net."}, {"value": "b.cdn.net."}]},
        },
        "rules": [{"geos": ["EU"], "pool": "eu"}, {"pool": "global"}],
    },
}

A_RECORD: dict[str, Any] = {
    "type": "A",
    "ttl": 60,
    "values": ["192.0.2.1", "192.0.2.2"],
    "dynamic": {
        "pools": {"cdn": {"values": [{"value": "198.51.100.1"}, {"value": "198.51.100.2"}]}},
        "rules": [{"pool": "cdn"}],
    },
}


def changed(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with the dotted ``path`` set (``None`` value deletes the key)."""
    data = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return data


def parse(
    data: dict[str, Any], rtype: int = CNAME
) -> tuple[DynamicRecord | None, dict[str, CheckSpec], list[str]]:
    errors: list[str] = []
    record, checks = parse_dynamic(FQDN, NAME, rtype, data.get("ttl", 60), data, WHERE, errors)
    return record, checks, errors


def errors_of(data: dict[str, Any], rtype: int = CNAME) -> list[str]:
    record, checks, errors = parse(data, rtype)
    assert record is None and checks == {}, "an invalid record must not be returned"
    return errors


def from_yaml(text: str) -> dict[str, Any]:
    return yaml.safe_load(textwrap.dedent(text))


# -- octoDNS compatibility ---------------------------------------------------------------


OCTODNS_FILE = """
    type: CNAME
    ttl: 60
    value: origin.example.net.
    dynamic:
      pools:
        cdn-eu:
          fallback: cdn-global
          values:
            - value: example.cdn-a.net.
              weight: 70
            - value: example.cdn-b.net.
              weight: 30
        cdn-asia:
          fallback: cdn-global
          values:
            - value: example.cdn-c.net.
        cdn-global:
          fallback: origin
          values:
            - value: example.cdn-a.net.
              weight: 50
            - value: example.cdn-b.net.
              weight: 50
              status: obey
        origin:
          fallback: default
          values:
            - value: origin.example.net.
      rules:
        - subnets: [198.51.100.0/24]
          pool: origin
        - geos: [EU, AF-ZA]
          pool: cdn-eu
        - geos: [AS, OC]
          pool: cdn-asia
        - pool: cdn-global
    octodns:
      healthcheck: {host: content.example.com, path: /healthz, port: 443, protocol: HTTPS}
      route53: {healthcheck: {measure_latency: false}}
"""


def test_octodns_file_loads_with_its_pools_rules_and_checks() -> None:
    record, checks, errors = parse(from_yaml(OCTODNS_FILE))
    assert errors == []
    assert record is not None
    assert record.origin == ("origin.example.net.",)
    assert record.pools["cdn-eu"].fallback == "cdn-global"
    assert record.pools["origin"].fallback is None  # "default" = the record's own value
    assert [(t.value, t.weight) for t in record.pools["cdn-eu"].targets] == [
        ("example.cdn-a.net.", 70),
        ("example.cdn-b.net.", 30),
    ]
    assert record.rules[0].subnets == (ipaddress.ip_network("198.51.100.0/24"),)
    assert record.rules[1].geos == ("EU", "AF-ZA")
    assert record.rules[-1].catch_all
    # One check per distinct value, probing through the CDN with our Host header.
    cdn_a = record.pools["cdn-eu"].targets[0]
    spec = checks[cdn_a.check]
    assert (spec.kind, spec.address, spec.host, spec.path) == (
        "https",
        "example.cdn-a.net",
        "content.example.com",
        "/healthz",
    )
    assert record.pools["cdn-global"].targets[0].check == cdn_a.check
    assert len(checks) == 4  # a, b, c, and origin.example.net. as a pool value
    assert record.origin_targets[0].check is None  # octoDNS never checks the record's value


def test_without_any_healthcheck_values_have_no_checks() -> None:
    record, checks, errors = parse(CNAME_RECORD)
    assert errors == [] and checks == {}
    assert record is not None
    assert all(t.check is None for pool in record.pools.values() for t in pool.targets)
    assert record.options.chain == (
        "rules",
        "health",
        "performance",
        "proximity",
        "cost",
        "weighted",
    )


def test_addresses_are_normalised_and_hostnames_lowercased() -> None:
    data = {
        "type": "AAAA",
        "values": ["2001:DB8::0:1"],
        "dynamic": {
            "pools": {"p": {"values": [{"value": "2001:0db8::2"}]}},
            "rules": [{"pool": "p"}],
        },
    }
    record, _, errors = parse(data, AAAA)
    assert errors == []
    assert record is not None
    assert record.origin == ("2001:db8::1",)
    assert record.pools["p"].targets[0].value == "2001:db8::2"
    cname = changed(CNAME_RECORD, "dynamic.pools.global.values.0.value", "A.CDN.net.")
    record, _, errors = parse(cname)
    assert errors == [] and record is not None
    assert record.pools["global"].targets[0].value == "a.cdn.net."


# -- the gslb block ------------------------------------------------------------------------


def test_gslb_options_are_parsed() -> None:
    data = changed(
        A_RECORD,
        "gslb",
        {
            "chain": ["rules", "health", "weighted"],
            "answers": 2,
            "sticky": True,
            "ecs": False,
            "degraded_ttl": 10,
            "fail_open": False,
            "proximity": {"km": 1500},
            "cost": {"tolerance": 0.1},
            "performance": {"latency_tolerance": 0.3, "success_floor": 0.8},
        },
    )
    record, _, errors = parse(data, A)
    assert errors == [] and record is not None
    o = record.options
    assert o.chain == ("rules", "health", "weighted")
    assert (o.answers, o.sticky, o.ecs, o.degraded_ttl, o.fail_open) == (2, True, False, 10, False)
    assert (o.proximity_km, o.proximity_ratio) == (1500.0, None)
    assert (o.cost_tolerance, o.latency_tolerance, o.success_floor) == (0.1, 0.3, 0.8)
    ratio = changed(A_RECORD, "gslb", {"proximity": {"ratio": 2, "min_km": 100}})
    record, _, _ = parse(ratio, A)
    assert record is not None
    assert (record.options.proximity_ratio, record.options.proximity_min_km) == (2.0, 100.0)


def test_targets_cost_location_and_pops() -> None:
    data = changed(
        A_RECORD,
        "gslb",
        {
            "check": {"type": "https", "path": "/healthz"},
            "targets": {
                "198.51.100.1": {"cost": 1.5, "lat": 50.1, "lon": 8.7},
                "198.51.100.2": {
                    "pops": [
                        {"name": "fra", "lat": 50.1, "lon": 8.7, "addresses": ["192.0.2.10"]},
                        {"name": "sin", "lat": 1.35, "lon": 103.8},
                    ]
                },
            },
        },
    )
    record, checks, errors = parse(data, A)
    assert errors == [] and record is not None
    first, second = record.pools["cdn"].targets
    assert first.cost == 1.5
    assert [(p.lat, p.lon) for p in first.pops] == [(50.1, 8.7)]
    fra, sin = second.pops
    assert fra.addresses == ("192.0.2.10",)
    assert checks[fra.check].address == "192.0.2.10"  # a PoP is probed on its own address
    assert sin.check is None  # no addresses: the target's check covers it
    assert checks[second.check].address == "198.51.100.2"


def test_gslb_check_wins_over_octodns_and_targets_override_or_disable() -> None:
    data = from_yaml(OCTODNS_FILE)
    data["gslb"] = {
        "check": {"type": "https", "path": "/gslb"},
        "targets": {
            "example.cdn-b.net.": {"check": {"path": "/b"}},
            "example.cdn-c.net.": {"check": False},
        },
    }
    record, checks, errors = parse(data)
    assert errors == [] and record is not None
    a, b = record.pools["cdn-eu"].targets
    c = record.pools["cdn-asia"].targets[0]
    assert checks[a.check].path == "/gslb"
    assert checks[b.check].path == "/b"
    assert checks[b.check].kind == "https"  # merged over gslb.check
    assert c.check is None
    data["gslb"] = {"check": False}
    record, checks, errors = parse(data)
    assert errors == [] and checks == {}


def test_origin_check_probes_each_origin_value() -> None:
    data = changed(A_RECORD, "gslb", {"origin_check": {"type": "tcp", "port": 80}})
    record, checks, errors = parse(data, A)
    assert errors == [] and record is not None
    assert [checks[t.check].address for t in record.origin_targets] == ["192.0.2.1", "192.0.2.2"]
    assert record.options.origin_check == record.origin_targets[0].check
    assert all(t.check is None for t in record.pools["cdn"].targets)


def test_loader_reads_a_zone_file_with_a_dynamic_record(tmp_path: Path) -> None:
    from gslb.config.load import load_config

    body = textwrap.indent(textwrap.dedent(OCTODNS_FILE), "  ")
    (tmp_path / "example.com.yaml").write_text(f"content:\n{body}")
    config, errors = load_config(tmp_path)
    assert errors == []
    assert config is not None
    record = config.zones[b"\x07example\x03com\x00"].nodes[NAME].dynamic[CNAME]
    assert record.fqdn == FQDN and set(record.pools) == {
        "cdn-eu",
        "cdn-asia",
        "cdn-global",
        "origin",
    }
    assert len(config.checks) == 4


# -- every validation reason ---------------------------------------------------------------

C = CNAME_RECORD
CASES: list[tuple[dict[str, Any], str]] = [
    # the record's own value (the origin)
    (
        changed(C, "value", None),
        "missing value: the record's own value(s) are the last-resort answer",
    ),
    (changed(C, "values", ["a.example.net."]), "give value or values, not both"),
    (
        changed(C, "value", "origin.example.net"),
        'value: hostname "origin.example.net" must end with a dot',
    ),
    (changed(C, "value", "192.0.2.1"), 'value: hostname "192.0.2.1" must end with a dot'),
    (
        changed(C, "value", "content.example.com."),
        'value: CNAME "content.example.com." points to the record itself',
    ),
    # dynamic and pools
    (changed(C, "dynamic", ["x"]), "dynamic must be a mapping with pools and rules"),
    (
        changed(C, "dynamic.pool", {}),
        'dynamic: unknown key "pool" (did you mean "pools"?); expected pools, rules',
    ),
    (changed(changed(C, "dynamic.pools", None), "dynamic.rules", None), "dynamic: missing pools"),
    (
        changed(C, "dynamic.pools", {}),
        "dynamic.pools must be a non-empty mapping of pool id -> pool",
    ),
    (changed(C, "dynamic.pools.eu", ["a.cdn.net."]), 'pool "eu": must be a mapping with values'),
    (
        changed(C, "dynamic.pools.eu.fallbak", "global"),
        'pool "eu": unknown key "fallbak" (did you mean "fallback"?); expected values, fallback',
    ),
    (changed(C, "dynamic.pools.eu.values", None), 'pool "eu": missing values'),
    (changed(C, "dynamic.pools.eu.values", []), 'pool "eu": values must be a non-empty list'),
    (
        changed(C, "dynamic.pools.eu.values.0", "a.cdn.net."),
        'pool "eu" value 1: must be a mapping with value, weight, status',
    ),
    (changed(C, "dynamic.pools.eu.values.1", {"weight": 3}), 'pool "eu" value 2: missing value'),
    (
        changed(C, "dynamic.pools.eu.values.1.weight", 0),
        'pool "eu" value 2: invalid weight "0" (expected an integer 1..100)',
    ),
    (
        changed(C, "dynamic.pools.eu.values.1.weight", 101),
        'pool "eu" value 2: invalid weight "101" (expected an integer 1..100)',
    ),
    (
        changed(C, "dynamic.pools.eu.values.1.weight", "5"),
        'pool "eu" value 2: invalid weight "5" (expected an integer 1..100)',
    ),
    (
        changed(C, "dynamic.pools.eu.values.1.weight", True),
        'pool "eu" value 2: invalid weight "True" (expected an integer 1..100)',
    ),
    (
        changed(C, "dynamic.pools.eu.values.1.status", "off"),
        'pool "eu" value 2: invalid status "off" (expected up, down or obey)',
    ),
    (
        changed(C, "dynamic.pools.eu.values.1.wieght", 3),
        (
            'pool "eu" value 2: unknown key "wieght" (did you mean "weight"?); expected value, '
            "weight, status"
        ),
    ),
    (
        changed(C, "dynamic.pools.eu.values.1.value", "192.0.2.1"),
        'pool "eu" value 2: hostname "192.0.2.1" must end with a dot',
    ),
    (
        changed(C, "dynamic.pools.eu.values.1.value", "a.cdn.net."),
        'pool "eu" value 2: duplicate value "a.cdn.net." (also value 1)',
    ),
    (
        changed(C, "dynamic.pools.eu.values", [{"value": "a.cdn.net.", "weight": 5}]),
        'pool "eu": single value with weight != 1 (octoDNS rejects it too)',
    ),
    (
        changed(C, "dynamic.pools.eu.fallback", ["global"]),
        """pool "eu": invalid fallback "['global']" (expected a pool id)""",
    ),
    (changed(C, "dynamic.pools.eu.fallback", "nowhere"), 'pool "eu": undefined fallback "nowhere"'),
    (
        changed(C, "dynamic.pools.global.fallback", "eu"),
        "loop in pool fallbacks: eu -> global -> eu",
    ),
    (changed(C, "dynamic.pools.eu.fallback", "eu"), "loop in pool fallbacks: eu -> eu"),
    (
        changed(C, "dynamic.pools.spare", {"values": [{"value": "c.cdn.net."}]}),
        'pool "spare": unused (no rule or fallback targets it)',
    ),
    # rules
    (changed(C, "dynamic.rules", None), "dynamic: missing rules"),
    (changed(C, "dynamic.rules", []), "dynamic.rules must be a non-empty list"),
    (
        changed(C, "dynamic.rules.0", "eu"),
        "rule 1: must be a mapping with pool (and geos and/or subnets)",
    ),
    (
        changed(C, "dynamic.rules.0.geo", ["EU"]),
        'rule 1: unknown key "geo" (did you mean "geos"?); expected pool, geos, subnets',
    ),
    (changed(C, "dynamic.rules.0", {"geos": ["EU"]}), "rule 1: missing pool"),
    (changed(C, "dynamic.rules.0.pool", "asia"), 'rule 1: undefined pool "asia"'),
    (
        changed(
            C,
            "dynamic.rules",
            [{"geos": ["EU"], "pool": "eu"}, {"geos": ["AS"], "pool": "eu"}, {"pool": "global"}],
        ),
        (
            'rule 2: pool "eu" is already targeted by rule 1 (only the catch-all rule may reuse a '
            "pool; merge the geos/subnets instead)"
        ),
    ),
    (
        changed(C, "dynamic.rules", [{"geos": ["EU"], "pool": "eu"}]),
        "missing catch-all rule: the last rule must have only a pool",
    ),
    (
        changed(C, "dynamic.rules", [{"pool": "global"}, {"geos": ["EU"], "pool": "eu"}]),
        "rule 2: comes after the catch-all rule 1, never used",
    ),
    (
        changed(
            C,
            "dynamic.rules",
            [{"geos": ["EU"], "pool": "eu"}, {"pool": "global"}, {"pool": "global"}],
        ),
        "rule 3: a second catch-all rule (rule 2 is one)",
    ),
    (
        changed(
            C,
            "dynamic.rules",
            [
                {"geos": ["EU"], "pool": "global"},
                {"subnets": ["10.0.0.0/8"], "pool": "eu"},
                {"pool": "global"},
            ],
        ),
        (
            "rule 2: subnet-only rules must come before geo-only rules (order: subnet-only, "
            "subnet+geo, geo-only, catch-all last)"
        ),
    ),
    (
        changed(
            C,
            "dynamic.rules",
            [
                {"geos": ["EU"], "pool": "global"},
                {"subnets": ["10.0.0.0/8"], "geos": ["AS"], "pool": "eu"},
                {"pool": "global"},
            ],
        ),
        (
            "rule 2: subnet+geo rules must come before geo-only rules (order: subnet-only, "
            "subnet+geo, geo-only, catch-all last)"
        ),
    ),
    # geos
    (changed(C, "dynamic.rules.0.geos", "EU"), "rule 1: geos must be a list"),
    (
        changed(C, "dynamic.rules.0.geos", ["eu"]),
        (
            'rule 1: invalid geo "eu" (expected CONTINENT[-COUNTRY[-SUBDIVISION]] in capitals, '
            "e.g. EU, NA-US, NA-US-CA)"
        ),
    ),
    (
        changed(C, "dynamic.rules.0.geos", ["EUR"]),
        (
            'rule 1: invalid geo "EUR" (expected CONTINENT[-COUNTRY[-SUBDIVISION]] in capitals, '
            "e.g. EU, NA-US, NA-US-CA)"
        ),
    ),
    (
        changed(C, "dynamic.rules.0.geos", ["XX"]),
        'rule 1: unknown continent code "XX" in geo "XX" (AF AN AS EU NA OC SA)',
    ),
    (
        changed(C, "dynamic.rules.0.geos", ["EU-UK"]),
        'rule 1: unknown country code "UK" in geo "EU-UK"',
    ),
    (
        changed(C, "dynamic.rules.0.geos", ["NA-DE"]),
        'rule 1: unknown country code "DE" in geo "NA-DE"; DE is in EU',
    ),
    (
        changed(C, "dynamic.rules.0.geos", ["NA-US-XX"]),
        'rule 1: unknown subdivision code "XX" in geo "NA-US-XX"',
    ),
    (changed(C, "dynamic.rules.0.geos", ["EU", "EU"]), 'rule 1: geo "EU" listed twice in one rule'),
    (
        changed(C, "dynamic.rules.0.geos", ["EU", "EU-DE"]),
        (
            'rule 1: geo "EU-DE" is more specific than "EU" of rule 1 and would never match (list '
            "it before its parent)"
        ),
    ),
    (
        changed(
            C,
            "dynamic.rules",
            [
                {"geos": ["NA"], "pool": "eu"},
                {"geos": ["NA-US"], "pool": "global"},
                {"pool": "global"},
            ],
        ),
        (
            'rule 2: geo "NA-US" is more specific than "NA" of rule 1 and would never match (list '
            "it before its parent)"
        ),
    ),
    (
        changed(
            C,
            "dynamic.rules",
            [
                {"geos": ["AS"], "pool": "eu"},
                {"geos": ["AS"], "pool": "global"},
                {"pool": "global"},
            ],
        ),
        'rule 2: geo "AS" listed twice (rules 1 and 2)',
    ),
    # subnets
    (changed(C, "dynamic.rules.0.subnets", "10.0.0.0/8"), "rule 1: subnets must be a list"),
    (
        changed(C, "dynamic.rules.0.subnets", ["10.0.0.1/8"]),
        'rule 1: invalid subnet "10.0.0.1/8" (host bits set)',
    ),
    (
        changed(C, "dynamic.rules.0.subnets", ["10.0.0.0/33"]),
        'rule 1: invalid subnet "10.0.0.0/33" (not a network)',
    ),
    (
        changed(C, "dynamic.rules.0.subnets", ["10.0.0.0/8", "10.0.0.0/8"]),
        'rule 1: subnet "10.0.0.0/8" listed twice in one rule',
    ),
    (
        changed(
            C,
            "dynamic.rules",
            [
                {"subnets": ["10.0.0.0/8"], "pool": "eu"},
                {"subnets": ["10.1.0.0/16"], "pool": "global"},
                {"pool": "global"},
            ],
        ),
        (
            'rule 2: subnet "10.1.0.0/16" is more specific than "10.0.0.0/8" of rule 1 and would '
            "never match (list it before its parent)"
        ),
    ),
    (
        changed(
            C,
            "dynamic.rules",
            [
                {"subnets": ["2001:db8::/32"], "pool": "eu"},
                {"subnets": ["2001:db8::/32"], "pool": "global"},
                {"pool": "global"},
            ],
        ),
        'rule 2: subnet "2001:db8::/32" listed twice (rules 1 and 2)',
    ),
    # the gslb block
    (changed(C, "gslb", ["sticky"]), "gslb must be a mapping"),
    (
        changed(C, "gslb", {"stickey": True}),
        ('gslb: unknown key "stickey" (did you mean "sticky"?); expected ' + ", ".join(GSLB_KEYS)),
    ),
    (
        changed(C, "gslb", {"chain": []}),
        (f"gslb.chain: expected a non-empty list of steps ({', '.join(STEPS)})"),
    ),
    (
        changed(C, "gslb", {"chain": ["rules", "geo", "weighted"]}),
        (f'gslb.chain: unknown step "geo" (expected {", ".join(STEPS)})'),
    ),
    (
        changed(C, "gslb", {"chain": ["rules", "health", "health"]}),
        'gslb.chain: step "health" listed twice',
    ),
    (
        changed(C, "gslb", {"chain": ["health", "rules"]}),
        'gslb.chain: "rules" must be the first step (it picks the pool)',
    ),
    (
        changed(C, "gslb", {"chain": ["rules", "weighted", "cost"]}),
        'gslb.chain: "weighted" must be the last step (it picks the answer)',
    ),
    (
        changed(C, "gslb", {"answers": 9}),
        'gslb.answers: invalid value "9" (expected an integer 1..8)',
    ),
    (
        changed(C, "gslb", {"answers": 0}),
        'gslb.answers: invalid value "0" (expected an integer 1..8)',
    ),
    (changed(C, "gslb", {"answers": 2}), "gslb.answers: a CNAME answer holds exactly one value"),
    (
        changed(C, "gslb", {"sticky": "yes"}),
        'gslb.sticky: invalid value "yes" (expected true or false)',
    ),
    (changed(C, "gslb", {"ecs": 1}), 'gslb.ecs: invalid value "1" (expected true or false)'),
    (
        changed(C, "gslb", {"fail_open": None}),
        'gslb.fail_open: invalid value "None" (expected true or false)',
    ),
    (
        changed(C, "gslb", {"degraded_ttl": -1}),
        'gslb.degraded_ttl: invalid value "-1" (expected an integer 0..2147483647)',
    ),
    (
        changed(C, "gslb", {"proximity": 1500}),
        "gslb.proximity: expected a mapping with km, or ratio and min_km",
    ),
    (
        changed(C, "gslb", {"proximity": {"km": 1, "ratio": 2}}),
        "gslb.proximity: give km, or ratio (and min_km), not both",
    ),
    (
        changed(C, "gslb", {"proximity": {"km": -1}}),
        'gslb.proximity.km: invalid value "-1" (expected >= 0)',
    ),
    (
        changed(C, "gslb", {"proximity": {"ratio": 0.5}}),
        'gslb.proximity.ratio: invalid value "0.5" (expected >= 1)',
    ),
    (
        changed(C, "gslb", {"proximity": {"miles": 5}}),
        'gslb.proximity: unknown key "miles"; expected km, ratio, min_km',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"cost": float("nan")}}}),
        'gslb.targets "a.cdn.net.".cost: invalid value "nan" (expected a number)',
    ),
    (
        changed(C, "gslb", {"cost": {"tolerance": -0.1}}),
        'gslb.cost.tolerance: invalid value "-0.1" (expected >= 0)',
    ),
    (changed(C, "gslb", {"cost": 0.2}), "gslb.cost: expected a mapping with tolerance"),
    (
        changed(C, "gslb", {"performance": {"success_floor": 1.5}}),
        'gslb.performance.success_floor: invalid value "1.5" (expected 0..1)',
    ),
    (
        changed(C, "gslb", {"performance": {"latency_tolerance": "x"}}),
        'gslb.performance.latency_tolerance: invalid value "x" (expected a number)',
    ),
    (
        changed(C, "gslb", {"check": True}),
        "gslb.check: expected a mapping of check settings or false",
    ),
    (
        changed(C, "gslb", {"origin_check": "tcp"}),
        "gslb.origin_check: expected a mapping of check settings or false",
    ),
    (
        changed(C, "gslb", {"targets": ["a.cdn.net."]}),
        "gslb.targets: expected a mapping of value -> cost/check/lat/lon/pops",
    ),
    (
        changed(C, "gslb", {"targets": {"c.cdn.net.": {"cost": 1}}}),
        'gslb.targets "c.cdn.net.": not a value of any pool nor of the record (a typo?)',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net": {"cost": 1}}}),
        'gslb.targets "a.cdn.net": hostname "a.cdn.net" must end with a dot',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": 1}}),
        'gslb.targets "a.cdn.net.": expected a mapping with cost, check, lat/lon or pops',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"costs": 1}}}),
        (
            'gslb.targets "a.cdn.net.": unknown key "costs" (did you mean "cost"?); expected '
            + ", ".join(TARGET_KEYS)
        ),
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"cost": -1}}}),
        'gslb.targets "a.cdn.net.".cost: invalid value "-1" (expected >= 0)',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"lat": 95, "lon": 0}}}),
        'gslb.targets "a.cdn.net.".lat: invalid value "95" (expected -90..90)',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"lat": 0, "lon": 181}}}),
        'gslb.targets "a.cdn.net.".lon: invalid value "181" (expected -180..180)',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"lat": 50}}}),
        'gslb.targets "a.cdn.net.": lat and lon go together',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"lat": 1, "lon": 1, "pops": []}}}),
        'gslb.targets "a.cdn.net.": give lat/lon (one location) or pops, not both',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"pops": []}}}),
        'gslb.targets "a.cdn.net.".pops: expected a non-empty list of PoPs',
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"pops": [{"lat": 1, "lon": 1}]}}}),
        'gslb.targets "a.cdn.net.".pops 1: missing name',
    ),
    (
        changed(
            C,
            "gslb",
            {
                "targets": {
                    "a.cdn.net.": {
                        "pops": [
                            {"name": "x", "lat": 1, "lon": 1},
                            {"name": "x", "lat": 2, "lon": 2},
                        ]
                    }
                }
            },
        ),
        'gslb.targets "a.cdn.net.".pops 2: PoP name "x" listed twice',
    ),
    (
        changed(
            C,
            "gslb",
            {
                "targets": {
                    "a.cdn.net.": {
                        "pops": [{"name": "x", "lat": 1, "lon": 1, "addresses": ["192.0.2.1"]}]
                    }
                }
            },
        ),
        (
            'gslb.targets "a.cdn.net.".pops 1.addresses: a CNAME record answers with the name, not '
            "addresses"
        ),
    ),
    (
        changed(C, "gslb", {"targets": {"a.cdn.net.": {"check": "none"}}}),
        'gslb.targets "a.cdn.net.".check: expected a mapping of check settings or false',
    ),
    (
        changed(C, "gslb", {"targets": {"origin.example.net.": {"check": {"path": "/"}}}}),
        'gslb.targets "origin.example.net.".check: the origin is probed by gslb.origin_check',
    ),
    (changed(C, "octodns", "healthcheck"), "octodns must be a mapping"),
    (
        changed(C, "octodns", {"healthcheck": "/_dns"}),
        "octodns.healthcheck: expected a mapping (host, path, port, protocol)",
    ),
]


@pytest.mark.parametrize(("data", "message"), CASES, ids=[m[:60] for _, m in CASES])
def test_every_validation_reason(data: dict[str, Any], message: str) -> None:
    errors = errors_of(data)
    assert f"{WHERE}: {message}" in errors, errors


A_CASES: list[tuple[dict[str, Any], str]] = [
    (
        changed(A_RECORD, "values", ["192.0.2.1", "cdn.example.net."]),
        'value 2: invalid IPv4 address "cdn.example.net."',
    ),
    (
        changed(A_RECORD, "values", ["192.0.2.1", "192.0.2.1"]),
        'value 2: duplicate value "192.0.2.1"',
    ),
    (
        changed(A_RECORD, "dynamic.pools.cdn.values.0.value", "2001:db8::1"),
        'pool "cdn" value 1: invalid IPv4 address "2001:db8::1"',
    ),
    (
        changed(
            A_RECORD,
            "gslb",
            {
                "targets": {
                    "198.51.100.1": {
                        "pops": [{"name": "fra", "lat": 1, "lon": 1, "addresses": ["2001:db8::1"]}]
                    }
                }
            },
        ),
        'gslb.targets "198.51.100.1".pops 1.addresses: invalid IPv4 address "2001:db8::1"',
    ),
    (
        changed(
            A_RECORD,
            "gslb",
            {
                "targets": {
                    "198.51.100.1": {"pops": [{"name": "fra", "lat": 1, "lon": 1, "addresses": []}]}
                }
            },
        ),
        'gslb.targets "198.51.100.1".pops 1.addresses: expected a non-empty list of IPv4 addresses',
    ),
]


@pytest.mark.parametrize(("data", "message"), A_CASES, ids=[m[:60] for _, m in A_CASES])
def test_address_records_reject_values_of_another_type(data: dict[str, Any], message: str) -> None:
    assert f"{WHERE}: {message}" in errors_of(data, A)


def test_cname_must_have_exactly_one_value() -> None:
    data = changed(changed(C, "value", None), "values", ["a.example.net.", "b.example.net."])
    assert f"{WHERE}: CNAME takes exactly one value" in errors_of(data)


def test_a_bad_default_check_is_reported_once_not_per_value() -> None:
    errors = errors_of(changed(C, "gslb", {"check": {"type": "icmp"}}))
    bad = [e for e in errors if "icmp" in e]
    assert len(bad) == 1 and bad[0].startswith(f"{WHERE}: gslb.check")


def test_all_reasons_are_reported_at_once() -> None:
    data = changed(C, "dynamic.pools.eu.values.1.weight", 0)
    data = changed(data, "dynamic.pools.eu.fallback", "nowhere")
    data = changed(data, "dynamic.rules.0.geos", ["EU-UK"])
    data = changed(data, "gslb", {"answers": 3, "stickey": True})
    errors = errors_of(data)
    expected = [
        'pool "eu" value 2: invalid weight "0"',
        'pool "eu": undefined fallback "nowhere"',
        'unknown country code "UK"',
        "gslb.answers",
        'unknown key "stickey"',
    ]
    for part in expected:
        assert any(part in e for e in errors), (part, errors)
    assert all(e.startswith(f"{WHERE}: ") for e in errors)


def test_errors_from_the_loader_before_this_record_are_kept() -> None:
    errors = ["zones/other.yaml: something else"]
    record, _ = parse_dynamic(FQDN, NAME, CNAME, 60, CNAME_RECORD, WHERE, errors)
    assert record is not None
    assert errors == ["zones/other.yaml: something else"]
