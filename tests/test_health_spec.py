"""Parsing of health check options: every option, every problem reported, never an exception."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gslb.health.spec import OPTIONS, CheckSpec, from_octodns, parse_check

WHERE = 'zones/example.com.yaml: record "content": gslb.check'
TARGET = "Example.CDN-A.net."
HOST = "content.example.com."


def parse(data: Any, **kw: Any) -> tuple[CheckSpec | None, list[str]]:
    errors: list[str] = []
    options = {"target": TARGET, "default_host": HOST, "where": WHERE, "errors": errors, **kw}
    return parse_check(data, **options), errors


def octo(data: Any, **kw: Any) -> tuple[CheckSpec | None, list[str]]:
    errors: list[str] = []
    options = {"target": TARGET, "default_host": HOST, "where": WHERE, "errors": errors, **kw}
    return from_octodns(data, **options), errors


def test_defaults_probe_the_target_with_the_served_name() -> None:
    spec, errors = parse({})
    assert errors == []
    assert spec == CheckSpec(
        kind="https",
        address="example.cdn-a.net",
        port=443,
        host="content.example.com",
        path="/",
        timeout=2.0,
        interval=5.0,
    )


def test_every_option() -> None:
    spec, errors = parse(
        {
            "type": "HTTP",
            "path": "/healthz?deep=1",
            "port": "8080",
            "address": "192.0.2.10",
            "host": "WWW.Example.com.",
            "method": "head",
            "headers": {"X-Probe": 1, "Accept": "text/plain"},
            "expect": "200-299 301",
            "fail_status": "500 503:504",
            "verify_tls": False,
            "interval": "500ms",
            "timeout": 0.2,
            "rise": 1,
            "fall": 5,
            "jitter": 0.2,
        }
    )
    assert errors == []
    assert spec == CheckSpec(
        kind="http",
        address="192.0.2.10",
        port=8080,
        host="www.example.com",
        path="/healthz?deep=1",
        method="HEAD",
        headers=(("X-Probe", "1"), ("Accept", "text/plain")),
        expect=((200, 299), (301, 301)),
        fail_status=((500, 500), (503, 504)),
        verify_tls=False,
        interval=0.5,
        timeout=0.2,
        rise=1,
        fall=5,
        jitter=0.2,
    )


@pytest.mark.parametrize(
    ("value", "ranges"),
    [
        (200, ((200, 200),)),
        ("200", ((200, 200),)),
        ("200-399", ((200, 399),)),
        ("200-299 302", ((200, 299), (302, 302))),
        ("200,204", ((200, 200), (204, 204))),
        (["200-299", 302], ((200, 299), (302, 302))),
        ("200:204", ((200, 204),)),
    ],
)
def test_expect_forms(value: Any, ranges: tuple[tuple[int, int], ...]) -> None:
    spec, errors = parse({"expect": value})
    assert errors == []
    assert spec is not None and spec.expect == ranges


def test_url_sets_type_host_port_and_path() -> None:
    spec, errors = parse({"url": "http://WWW.Example.com:8080/ping?x=1"})
    assert errors == []
    assert spec is not None
    assert (spec.kind, spec.host, spec.port, spec.path) == (
        "http",
        "www.example.com",
        8080,
        "/ping?x=1",
    )
    assert spec.address == "example.cdn-a.net"  # still connects to the answer value


@pytest.mark.parametrize("other", ["path", "host", "type"])
def test_url_with_a_field_it_already_sets_is_an_error(other: str) -> None:
    value = {"path": "/x", "host": "a.example", "type": "https"}[other]
    spec, errors = parse({"url": "https://a.example/x", other: value})
    assert spec is None
    assert errors == [f'{WHERE}: "url" and "{other}" both given (the url already sets it)']


def test_bad_values_are_all_reported_with_where_and_reject_the_check() -> None:
    spec, errors = parse(
        {
            "type": "https",
            "timeout": 0,
            "port": 70000,
            "expect": "99 200-100",
            "body": "/(/",
            "verify_tls": "yes",
            "rise": True,
            "fall": 0,
            "jitter": 2,
            "interval": "soon",
            "method": "BREW",
            "headers": {"Host": "x", "X-Bad": "a\r\nb"},
            "address": "not a host",
            "intervall": 5,
        }
    )
    assert spec is None
    assert all(e.startswith(f"{WHERE}: ") for e in errors)
    text = "\n".join(errors)
    expected = [
        f'{WHERE}: invalid timeout "0"',
        'invalid port "70000"',
        'invalid expect "99"',
        'invalid expect "200-100"',
        'invalid body "/(/" (bad regex',
        'invalid verify_tls "yes"',
        'invalid rise "true"',
        'invalid fall "0"',
        'invalid jitter "2"',
        'invalid interval "soon"',
        'invalid method "BREW"',
        'header "Host" is set with the "host" option',
        'invalid header X-Bad "a\r\nb"',
        'invalid address "not a host"',
        'unknown option "intervall"',
    ]
    for fragment in expected:
        assert fragment in text
    assert len(errors) == len(expected)


def test_timeout_must_be_below_interval_and_defaults_below_it() -> None:
    spec, errors = parse({"interval": 1, "timeout": 1})
    assert spec is None
    assert errors == [f'{WHERE}: invalid timeout "1" (seconds, > 0 and < interval 1)']
    spec, errors = parse({"interval": 1})
    assert errors == [] and spec is not None and spec.timeout == 0.5
    spec, errors = parse({"interval": "1m"})
    assert errors == [] and spec is not None and (spec.interval, spec.timeout) == (60.0, 2.0)


def test_body_substring_and_regex() -> None:
    spec, errors = parse({"body": "/^ok$/"})
    assert errors == [] and spec is not None and spec.body_regex == "^ok$"
    spec, errors = parse({"body": "ok"})
    assert errors == [] and spec is not None and spec.body_regex is None
    spec, errors = parse({"body": "ok", "method": "HEAD"})
    assert spec is None and errors == [f'{WHERE}: "body" cannot be matched with method HEAD']


def test_tcp_needs_a_port_and_refuses_http_options() -> None:
    spec, errors = parse({"type": "tcp"})
    assert spec is None and errors == [f'{WHERE}: tcp check needs a "port"']
    spec, errors = parse({"type": "tcp", "port": 25, "path": "/", "expect": 200})
    assert spec is None
    assert errors == [
        f'{WHERE}: "path" does not apply to a tcp check',
        f'{WHERE}: "expect" does not apply to a tcp check',
    ]


def test_tcp_checks_of_one_target_share_a_key_whatever_the_served_name() -> None:
    first, _ = parse({"type": "tcp", "port": 443}, default_host="a.example.com")
    second, _ = parse({"type": "tcp", "port": 443}, default_host="b.example.com")
    assert first is not None and second is not None
    assert first.key == second.key
    assert first.key.startswith("tcp://example.cdn-a.net:443#")


def test_keys_are_shared_by_equal_checks_and_differ_otherwise() -> None:
    one, _ = parse({"path": "/h"})
    same, _ = parse({"path": "/h"})
    other_name, _ = parse({"path": "/h"}, default_host="other.example.com")
    other_interval, _ = parse({"path": "/h", "interval": 10})
    assert one is not None and same is not None
    assert one.key == same.key
    assert one.key.startswith("https://example.cdn-a.net:443/h#")
    assert other_name is not None and other_interval is not None
    assert len({one.key, other_name.key, other_interval.key}) == 3


def test_not_a_mapping() -> None:
    spec, errors = parse(["type", "http"])
    assert spec is None and errors == [f"{WHERE}: check must be a mapping"]


WEIRD = [None, True, -1, 0, 1e309, "", "x", [], {}, [None], {"a": None}, 3.5]


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_weird_values_never_raise(option: str) -> None:
    """Bad values are errors, never exceptions (every option, every odd YAML value)."""
    for value, kind in itertools.product(WEIRD, ("https", "tcp")):
        spec, errors = parse({"type": kind, "port": 443, option: value})
        assert spec is not None or errors, (option, value)


def test_octodns_defaults() -> None:
    spec, errors = octo({})
    assert errors == []
    assert spec is not None
    assert (spec.kind, spec.path, spec.port, spec.host, spec.address) == (
        "https",
        "/_dns",
        443,
        "content.example.com",
        "example.cdn-a.net",
    )


def test_octodns_fields_and_quirks() -> None:
    spec, errors = octo({"protocol": "HTTP", "path": "/ping", "host": "x.example.com"})
    assert errors == [] and spec is not None
    assert (spec.kind, spec.path, spec.port, spec.host) == ("http", "/ping", 443, "x.example.com")
    spec, errors = octo({"host": None})  # octoDNS: no host means the value itself
    assert errors == [] and spec is not None and spec.host == "example.cdn-a.net"
    spec, errors = octo({"protocol": "TCP", "path": "/ignored", "port": 8443})
    assert errors == [] and spec is not None
    assert (spec.kind, spec.port, spec.host) == ("tcp", 8443, "")


def test_octodns_errors() -> None:
    spec, errors = octo({"protocol": "ICMP", "port": "x"})
    assert spec is None
    assert errors == [
        f'{WHERE}: unknown check type "ICMP" (expected one of http, https, tcp)',
        f'{WHERE}: invalid port "x" (expected 1-65535)',
    ]
    spec, errors = octo("https")
    assert spec is None and errors == [f"{WHERE}: octodns.healthcheck must be a mapping"]
