"""Health check specifications, parsed from zone YAML.

A check is identified by its ``key``: two values (or two records) whose checks have the same key
share one probe. Parsing never raises; every problem is appended to ``errors`` with ``where``, and
a check with any problem is rejected as a whole (``None``) so a typo never probes something else.

Accepted options (all optional)::

    type: https            # http | https | tcp (octoDNS spelling "protocol" is accepted too)
    url: https://name/path # sets type, host, port and path at once (PowerDNS ifurlup style)
    path: /healthz         # or url, not both
    port: 443              # default 443 for https, 80 for http; required for tcp
    address: 192.0.2.1     # probe this instead of the answer value (IP or hostname)
    host: www.example.com  # Host header and TLS SNI; default: the name being served
    method: GET            # GET | HEAD | POST | PUT | OPTIONS
    headers: {X-Probe: 1}
    expect: 200-399        # accepted statuses: "200", "200-299 301", [200, "300-399"]
    fail_status: 500 503:504   # statuses that always fail (site-failover form, ':' ranges)
    body: ok | /^ok$/      # substring, or /regex/, searched in the first 64 KiB
    verify_tls: true
    interval: 5            # seconds; "500ms", "5s", "1m" accepted
    timeout: 2             # seconds, less than interval; default min(2, interval / 2)
    rise: 2                # consecutive successes to come back up
    fall: 3                # consecutive failures to go down
    jitter: 0.1            # +- fraction of the interval, spreads probes over time
    policy: quorum         # fleet: how all vantage points make the global verdict:
                           # quorum | all | any | threshold (with threshold: 0.18)
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

KINDS = ("http", "https", "tcp")
METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS")
DEFAULT_PORTS = {"http": 80, "https": 443}
DEFAULT_INTERVAL = 5.0
DEFAULT_TIMEOUT = 2.0
MIN_INTERVAL = 0.01  # tests run at 0.05 s; production configs would use seconds
MAX_INTERVAL = 86400.0
MAX_THRESHOLD = 100
MAX_JITTER = 0.5

OPTIONS_ORDER = [
    "type",
    "url",
    "path",
    "port",
    "address",
    "host",
    "method",
    "headers",
    "expect",
    "fail_status",
    "body",
    "verify_tls",
    "interval",
    "timeout",
    "rise",
    "fall",
    "jitter",
    "policy",
    "threshold",
]
OPTIONS = frozenset(OPTIONS_ORDER) | {"protocol"}  # octoDNS spelling of "type"

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$"
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 header field name
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 0.001, "m": 60.0}


@dataclass(frozen=True, slots=True)
class CheckSpec:
    kind: str  # http | https | tcp
    address: str  # what to connect to: an IP, or a hostname (a CDN's name) without trailing dot
    port: int
    host: str = ""  # Host header and TLS SNI: the name being served
    path: str = "/"
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    expect: tuple[tuple[int, int], ...] = ((200, 399),)  # accepted status ranges
    fail_status: tuple[tuple[int, int], ...] = ()  # statuses that always fail
    body: str | None = None  # substring or /regex/ the body must contain
    verify_tls: bool = True
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    rise: int = 2
    fall: int = 3
    jitter: float = 0.1  # fraction of the interval
    extra: tuple[tuple[str, str], ...] = field(default=())
    policy: str = "quorum"  # fleet: quorum | all | any | threshold over every vantage point
    threshold: float = 0.5  # policy threshold: up when more than this fraction says up

    @property
    def key(self) -> str:
        """Stable identity: readable prefix plus a digest of every option (the fleet policy
        only when set, so keys stay what they were before it existed)."""
        options = asdict(self)
        if self.policy == "quorum":
            del options["policy"], options["threshold"]
        digest = hashlib.sha1(
            json.dumps(options, sort_keys=True, default=str).encode()
        ).hexdigest()[:8]
        if self.kind == "tcp":
            return f"tcp://{self.address}:{self.port}#{digest}"
        return f"{self.kind}://{self.address}:{self.port}{self.path}#{digest}"

    @property
    def server_name(self) -> str:
        """The name sent as Host and SNI: the served name, else the address itself."""
        return self.host or self.address

    @property
    def body_regex(self) -> str | None:
        """The pattern when ``body`` is written ``/regex/``, else None (a plain substring)."""
        return body_pattern(self.body)


def body_pattern(body: str | None) -> str | None:
    """``/regex/`` -> ``regex``; anything else is a plain substring (None)."""
    if body is not None and len(body) >= 2 and body.startswith("/") and body.endswith("/"):
        return body[1:-1]
    return None


class _Problems:
    """Collects problems of one check so every one is reported, not only the first."""

    def __init__(self, where: str, errors: list[str]) -> None:
        self.where = where
        self.errors = errors
        self.count = 0

    def add(self, message: str) -> None:
        self.errors.append(f"{self.where}: {message}")
        self.count += 1

    def invalid(self, name: str, value: Any, hint: str) -> None:
        self.add(f'invalid {name} "{_show(value)}" ({hint})')


def _show(value: Any) -> str:
    """YAML-ish rendering for messages: true/false/null rather than Python spellings."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_check(
    data: Mapping,
    *,
    target: str,
    default_host: str,
    where: str,
    errors: list[str],
) -> CheckSpec | None:
    """Build a check for ``target`` (an IP or hostname) from a ``gslb`` check mapping.

    ``target`` is the answer value the check vouches for; ``address`` in ``data`` probes
    something else on its behalf. ``default_host`` is the name being served, so by default the
    probe goes through the CDN exactly as a user's request would (same Host and SNI).
    """
    if not isinstance(data, Mapping):
        errors.append(f"{where}: check must be a mapping")
        return None
    problems = _Problems(where, errors)
    for name in data:
        if name not in OPTIONS:
            problems.add(
                f'unknown option "{_show(name)}" (expected one of {", ".join(OPTIONS_ORDER)})'
            )
    if "type" in data and "protocol" in data:
        problems.add('"type" and "protocol" both given (use one)')
    values = _location(data, target, default_host, problems)
    values.update(_http_options(data, values.get("kind"), problems))
    values.update(_timing(data, problems))
    values.update(_policy(data, problems))
    if problems.count or values.get("kind") is None:
        return None
    return CheckSpec(**values)


def _location(data: Mapping, target: str, default_host: str, problems: _Problems) -> dict[str, Any]:
    """Kind, address, port, host and path: where the probe connects and what it asks for."""
    kind = _kind(data.get("type", data.get("protocol", "https")), problems)
    host: str | None = None
    path: str | None = None
    port: int | None = None
    if "url" in data:
        parsed = _url(data["url"], data, problems)
        if parsed is None:
            return {"kind": None}
        url_kind, host, port, path = parsed
        kind = url_kind
    if "path" in data:
        path = _path(data["path"], problems)
    if "port" in data:
        port = _port(data["port"], problems)
    elif port is None and kind is not None:
        port = DEFAULT_PORTS.get(kind)
        if port is None:
            problems.add('tcp check needs a "port"')
    if "host" in data:
        host = _host("host", data["host"], problems)
    address = target
    if "address" in data:
        address = _host("address", data["address"], problems) or target
    if kind == "tcp":
        for name in ("path", "host"):
            if name in data:
                problems.add(f'"{name}" does not apply to a tcp check')
        host, path = "", None  # a tcp check is the same whatever name is served: one key
    elif host is None:
        host = default_host
    result: dict[str, Any] = {
        "kind": kind,
        "address": _strip(address),
        "port": port if port is not None else 0,
        "host": _strip(host or ""),
    }
    if path is not None:
        result["path"] = path
    return result


def _strip(name: str) -> str:
    """Lowercase, no trailing dot: the form used for connecting, Host and SNI."""
    return str(name).rstrip(".").lower()


def _kind(value: Any, problems: _Problems) -> str | None:
    kind = str(value).lower()
    if kind not in KINDS:
        problems.add(f'unknown check type "{_show(value)}" (expected one of {", ".join(KINDS)})')
        return None
    return kind


def _url(
    value: Any, data: Mapping, problems: _Problems
) -> tuple[str | None, str | None, int | None, str] | None:
    """``url`` fixes type, host, port and path; giving one of those again is ambiguous."""
    for other in ("type", "protocol", "host", "path"):
        if other in data:
            problems.add(f'"url" and "{other}" both given (the url already sets it)')
    try:
        parts = urlsplit(str(value)) if isinstance(value, str) else None
        port = parts.port if parts else None
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        problems.invalid("url", value, "expected http:// or https:// with a host name")
        return None
    if port is not None and "port" in data:
        problems.add('"url" and "port" both given (the url already sets it)')
    host = _host("url host", parts.hostname, problems)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


def _path(value: Any, problems: _Problems) -> str | None:
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in " \r\n"):
        problems.invalid("path", value, "expected an absolute path like /healthz")
        return None
    return value


def _port(value: Any, problems: _Problems) -> int | None:
    port = _integer(value)
    if port is None or not 0 < port < 65536:
        problems.invalid("port", value, "expected 1-65535")
        return None
    return port


def _integer(value: Any) -> int | None:
    """An int from YAML: integers and digit strings, never booleans or floats."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _host(name: str, value: Any, problems: _Problems) -> str | None:
    """A hostname or IP address; an empty value means "not set" (octoDNS ``host: null``)."""
    if value is None or value == "":
        return None
    text = str(value).rstrip(".")
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return str(ipaddress.ip_address(text.strip("[]")))
        except ValueError:
            if _HOSTNAME.match(text):
                return text.lower()
    problems.invalid(name, value, "expected a host name or an IP address")
    return None


def _http_options(data: Mapping, kind: str | None, problems: _Problems) -> dict[str, Any]:
    """Options that only make sense for HTTP(S); on a tcp check they are reported, not ignored."""
    names = ("method", "headers", "expect", "fail_status", "body", "verify_tls")
    if kind == "tcp":
        for name in names:
            if name in data:
                problems.add(f'"{name}" does not apply to a tcp check')
        return {}
    out: dict[str, Any] = {}
    if "method" in data:
        out["method"] = _method(data["method"], problems)
    if "headers" in data:
        out["headers"] = _headers(data["headers"], problems)
    if "expect" in data:
        out["expect"] = _statuses("expect", data["expect"], "200-399", problems)
    if "fail_status" in data:
        out["fail_status"] = _statuses("fail_status", data["fail_status"], "500 503:504", problems)
    if "body" in data:
        out["body"] = _body(data["body"], problems)
        if out.get("method") == "HEAD":
            problems.add('"body" cannot be matched with method HEAD')
    if "verify_tls" in data:
        if not isinstance(data["verify_tls"], bool):
            problems.invalid("verify_tls", data["verify_tls"], "expected true or false")
        else:
            out["verify_tls"] = data["verify_tls"]
    return {k: v for k, v in out.items() if v is not None}


def _method(value: Any, problems: _Problems) -> str | None:
    method = str(value).upper()
    if not isinstance(value, str) or method not in METHODS:
        problems.invalid("method", value, f"expected one of {', '.join(METHODS)}")
        return None
    return method


def _headers(value: Any, problems: _Problems) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(value, Mapping):
        problems.invalid("headers", value, "expected a mapping of header names to values")
        return None
    out = []
    for name, raw in value.items():
        text = _show(raw)
        if not isinstance(name, str) or not _TOKEN.match(name):
            problems.invalid("header name", name, "expected an HTTP token")
        elif name.lower() == "host":
            problems.add('header "Host" is set with the "host" option')
        elif isinstance(raw, Mapping | list) or any(c in text for c in "\r\n\0"):
            problems.invalid(f"header {name}", raw, "expected a single-line value")
        else:
            out.append((name, text))
    return tuple(out)


def _statuses(
    name: str, value: Any, example: str, problems: _Problems
) -> tuple[tuple[int, int], ...] | None:
    """Status ranges from ``200``, ``"200-399 404"``, ``"500 503:504"`` or a list of those."""
    items = value if isinstance(value, list) else [value]
    tokens: list[Any] = []
    for item in items:
        if isinstance(item, str):
            tokens.extend(item.replace(",", " ").split())
        else:
            tokens.append(item)
    ranges, bad = [], 0
    for token in tokens:
        parsed = _status_range(token)
        if parsed is None:
            problems.invalid(name, token, f"expected statuses 100-599 or ranges like {example}")
            bad += 1
        else:
            ranges.append(parsed)
    if not tokens:
        problems.invalid(name, value, "expected at least one status")
    return tuple(ranges) if ranges and not bad else None


def _status_range(token: Any) -> tuple[int, int] | None:
    """``200``, ``"200-399"`` or ``"503:504"`` (both range spellings are accepted)."""
    if isinstance(token, str) and ("-" in token or ":" in token):
        low_text, _, high_text = token.replace(":", "-").partition("-")
        low, high = _integer(low_text), _integer(high_text)
    else:
        low = high = _integer(token)
    if low is None or high is None or not 100 <= low <= high <= 599:
        return None
    return low, high


def _body(value: Any, problems: _Problems) -> str | None:
    if not isinstance(value, str) or not value:
        problems.invalid("body", value, "expected a non-empty substring or /regex/")
        return None
    pattern = body_pattern(value)
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.invalid("body", value, f"bad regex: {exc}")
            return None
    return value


def _timing(data: Mapping, problems: _Problems) -> dict[str, Any]:
    """interval, timeout, rise, fall, jitter; timeout defaults to min(2 s, interval / 2)."""
    out: dict[str, Any] = {}
    interval = DEFAULT_INTERVAL
    if "interval" in data:
        parsed = _duration(data["interval"])
        if parsed is None or not MIN_INTERVAL <= parsed <= MAX_INTERVAL:
            problems.invalid("interval", data["interval"], "seconds, 0.01 to 86400")
        else:
            interval = out["interval"] = parsed
    if "timeout" in data:
        timeout = _duration(data["timeout"])
        if timeout is None or not 0 < timeout < interval:
            problems.invalid(
                "timeout", data["timeout"], f"seconds, > 0 and < interval {interval:g}"
            )
        else:
            out["timeout"] = timeout
    else:
        out["timeout"] = min(DEFAULT_TIMEOUT, interval / 2)
    for name in ("rise", "fall"):
        if name in data:
            count = _integer(data[name])
            if count is None or not 1 <= count <= MAX_THRESHOLD:
                problems.invalid(name, data[name], f"expected 1-{MAX_THRESHOLD} probes in a row")
            else:
                out[name] = count
    if "jitter" in data:
        jitter = _number(data["jitter"])
        if jitter is None or not 0 <= jitter <= MAX_JITTER:
            problems.invalid(
                "jitter", data["jitter"], f"fraction of the interval, 0 to {MAX_JITTER}"
            )
        else:
            out["jitter"] = jitter
    return out


POLICIES = ("quorum", "all", "any", "threshold")


def _policy(data: Mapping, problems: _Problems) -> dict[str, Any]:
    """``policy: quorum | all | any | threshold`` and, with threshold, ``threshold: 0..1``."""
    out: dict[str, Any] = {}
    policy = data.get("policy", "quorum")
    if policy not in POLICIES:
        problems.invalid("policy", policy, f"expected one of {', '.join(POLICIES)}")
    else:
        out["policy"] = policy
    if "threshold" in data:
        threshold = _number(data["threshold"])
        if policy != "threshold":
            problems.add('"threshold" needs "policy: threshold"')
        elif threshold is None or not 0 <= threshold < 1:
            problems.invalid("threshold", data["threshold"], "fraction, 0 to below 1")
        else:
            out["threshold"] = threshold
    elif policy == "threshold":
        problems.add('"policy: threshold" needs "threshold" (e.g. 0.18, as Route 53)')
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _duration(value: Any) -> float | None:
    """Seconds from a number or a string with ``ms``, ``s`` or ``m``."""
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    return None


OCTODNS_KEYS = ("host", "path", "port", "protocol")


def from_octodns(
    healthcheck: Mapping,
    *,
    target: str,
    default_host: str,
    where: str,
    errors: list[str],
) -> CheckSpec | None:
    """octoDNS ``octodns.healthcheck`` (host, path, port, protocol) with octoDNS defaults.

    Mirrors octoDNS: protocol HTTPS, path ``/_dns``, port 443 whatever the protocol, host the
    record's name, and ``host: null`` (or empty) meaning the value itself. Our own options
    (interval, expect, ...) are accepted in the same mapping; unknown keys are errors.
    """
    if not isinstance(healthcheck, Mapping):
        errors.append(f"{where}: octodns.healthcheck must be a mapping")
        return None
    data = dict(healthcheck)
    data["type"] = data.pop("protocol", data.get("type", "HTTPS"))
    data.setdefault("port", 443)
    kind = str(data["type"]).lower()
    if kind == "tcp":
        data.pop("path", None)
        data.pop("host", None)
    else:
        data.setdefault("path", "/_dns")
        if "host" in data and not data["host"]:
            data["host"] = target
    return parse_check(data, target=target, default_host=default_host, where=where, errors=errors)
