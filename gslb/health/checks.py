"""One probe: http, https or tcp, returning a ``ProbeResult`` and never raising.

The probe goes through the CDN the way a user's request does: it connects to ``spec.address``
(the CDN edge name or address, or an explicit override) on ``spec.port`` but presents the
served name (``spec.host``) as Host header and TLS SNI, and verifies the certificate for that
name. Every failure (hang, reset, garbage, huge body, bad certificate, unresolvable name) is a
clean "down" with a short exact reason, and costs at most ``spec.timeout``.

Reasons: ``ok 200 in 12 ms``, ``ok connected in 3 ms``, ``status 503``,
``timeout after 2.0 s``, ``TLS error: certificate has expired``, ``connection refused``,
``connection reset``, ``connection closed``, ``name does not resolve``,
``body does not match``, ``bad response: <parser message>``,
``connect error: <os message>`` (e.g. ``connect error: network unreachable``),
``error: <exception type>: <message>`` (anything unforeseen).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import re
import ssl
import time
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver

from .spec import CheckSpec, body_pattern

BODY_LIMIT = 64 * 1024  # bytes of body read at most, whatever the target sends
USER_AGENT = "gslb-healthcheck/0.1"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str  # short and exact, e.g. "status 503", "timeout after 2.0 s"
    latency: float  # seconds the probe took (until the verdict)
    status: int | None = None  # HTTP status when one was received


def make_session(
    *, limit: int = 64, resolver: AbstractResolver | None = None, source: str | None = None
) -> aiohttp.ClientSession:
    """The one session a prober reuses.

    ``force_close`` opens a fresh connection per probe: a kept-alive connection would hide a
    refused port or a broken TLS setup. No cookies, no proxy from the environment (a probe
    through a proxy tests the proxy), no DNS cache beyond a few seconds.
    """
    connector = aiohttp.TCPConnector(
        limit=limit, force_close=True, resolver=resolver, ttl_dns_cache=5,
        local_addr=(source, 0) if source else None,
    )  # fmt: skip
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),  # run_check bounds every probe itself
        headers={"User-Agent": USER_AGENT},
    )


async def run_check(
    spec: CheckSpec,
    session: aiohttp.ClientSession,
    *,
    ssl_context: ssl.SSLContext | None = None,
    resolver: AbstractResolver | None = None,
    source: str | None = None,
) -> ProbeResult:
    """Probe once. ``ssl_context`` replaces the system trust store (private CAs, tests);
    ``resolver`` resolves tcp targets (http ones use the session connector's resolver);
    ``source`` is the local address tcp probes connect from (http: the session's)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(spec.timeout):
            if spec.kind == "tcp":
                return await _tcp(spec, resolver, started, source)
            return await _http(spec, session, ssl_context, started)
    except TimeoutError:
        return _down(f"timeout after {seconds(spec.timeout)} s", started)
    except Exception as exc:  # every failure is a reason, never an exception
        return _down(describe(exc), started)


def seconds(value: float) -> str:
    """``2.0``, ``0.25``: one decimal unless the value needs more."""
    return f"{value:.1f}" if round(value, 1) == value else f"{value:g}"


def _down(reason: str, started: float, status: int | None = None) -> ProbeResult:
    return ProbeResult(False, reason, time.perf_counter() - started, status)


def _elapsed_ms(started: float) -> str:
    return f"{(time.perf_counter() - started) * 1000:.0f} ms"


async def _http(
    spec: CheckSpec,
    session: aiohttp.ClientSession,
    ssl_context: ssl.SSLContext | None,
    started: float,
) -> ProbeResult:
    name = spec.server_name
    headers = {"Host": _host_header(name, spec), **dict(spec.headers)}
    async with session.request(
        spec.method,
        _url(spec),
        headers=headers,
        server_hostname=name if spec.kind == "https" else None,
        ssl=_ssl_option(spec, ssl_context),
        allow_redirects=False,  # a redirect elsewhere would probe something else
    ) as response:
        status = response.status
        if not _status_ok(spec, status):
            return _down(f"status {status}", started, status)
        if spec.body is not None:
            body = await _read_bounded(response)
            if not _body_matches(spec.body, body):
                return _down("body does not match", started, status)
        return ProbeResult(True, f"ok {status} in {_elapsed_ms(started)}", _since(started), status)


def _since(started: float) -> float:
    return time.perf_counter() - started


def _url(spec: CheckSpec) -> str:
    host = spec.address
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{spec.kind}://{host}:{spec.port}{spec.path}"


def _host_header(name: str, spec: CheckSpec) -> str:
    """RFC 9110: the port is part of Host unless it is the scheme's default."""
    default = 443 if spec.kind == "https" else 80
    if ":" in name:
        name = f"[{name}]"
    return name if spec.port == default else f"{name}:{spec.port}"


def _ssl_option(spec: CheckSpec, context: ssl.SSLContext | None) -> ssl.SSLContext | bool:
    if spec.kind != "https":
        return True  # unused for plain http
    if not spec.verify_tls:
        return False
    return context if context is not None else True


def _status_ok(spec: CheckSpec, status: int) -> bool:
    if any(low <= status <= high for low, high in spec.fail_status):
        return False
    return any(low <= status <= high for low, high in spec.expect)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """At most ``BODY_LIMIT`` bytes, even when the target announces or sends gigabytes."""
    chunks: list[bytes] = []
    size = 0
    while size < BODY_LIMIT:
        chunk = await response.content.read(BODY_LIMIT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _body_matches(expected: str, body: bytes) -> bool:
    text = body.decode("utf-8", "replace")
    pattern = body_pattern(expected)
    if pattern is None:
        return expected in text
    return _compile(pattern).search(text) is not None


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


async def _tcp(
    spec: CheckSpec, resolver: AbstractResolver | None, started: float, source: str | None
) -> ProbeResult:
    """Connect, then close at once: the port accepts connections or it does not."""
    addresses = await _resolve(spec.address, spec.port, resolver)
    last: Exception | None = None
    local = (source, 0) if source else None
    for address in addresses:
        try:
            _, writer = await asyncio.open_connection(address, spec.port, local_addr=local)
        except OSError as exc:
            last = exc
            continue
        writer.transport.abort()
        return ProbeResult(True, f"ok connected in {_elapsed_ms(started)}", _since(started))
    raise last if last is not None else OSError(errno.EHOSTUNREACH, "no address")


async def _resolve(host: str, port: int, resolver: AbstractResolver | None) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        if resolver is None:
            resolver = aiohttp.ThreadedResolver()
        results = await resolver.resolve(host, port, family=0)  # type: ignore[arg-type]
    except OSError as exc:
        raise _NoName(str(exc)) from exc
    return [result["host"] for result in results]


class _NoName(Exception):
    """The target's name did not resolve (tcp path; aiohttp has its own for http)."""


_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection reset",
    errno.EPIPE: "connection reset",
    errno.EHOSTUNREACH: "connect error: host unreachable",
    errno.ENETUNREACH: "connect error: network unreachable",
}
_SSL_REASON = re.compile(r"^\[[^\]]*\]\s*(.*?)\s*(\(_ssl\.c:\d+\))?$")


def describe(exc: BaseException) -> str:
    """The short reason for a failed probe, from whatever aiohttp, ssl or asyncio raised."""
    if isinstance(exc, _NoName | aiohttp.ClientConnectorDNSError):
        return "name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS error: {_cert_message(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | ssl.SSLError):
        return f"TLS error: {_ssl_message(exc)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection closed"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"bad response: {_first_line(str(exc.message or exc.status))}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "bad response: body cut short"
    if isinstance(exc, OSError):
        return _os_message(exc)
    if isinstance(exc, aiohttp.ClientError):
        return f"error: {exc}"
    return f"error: {type(exc).__name__}: {exc}"


def _first_line(text: str) -> str:
    """Parser messages quote the offending bytes over several lines; keep the gist."""
    line = text.strip().splitlines()[0].rstrip(":") if text.strip() else "unparsable"
    return line[:1].lower() + line[1:80]


def _os_message(exc: OSError) -> str:
    inner = getattr(exc, "os_error", None)
    if isinstance(inner, ssl.SSLError):
        return f"TLS error: {_ssl_message(inner)}"
    code = exc.errno if exc.errno is not None else getattr(inner, "errno", None)
    if code in _ERRNO_REASONS:
        return _ERRNO_REASONS[code]
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    text = getattr(inner, "strerror", None) or exc.strerror or str(exc) or type(exc).__name__
    return f"connect error: {text[:1].lower()}{text[1:]}"


def _cert_message(error: BaseException) -> str:
    message = getattr(error, "verify_message", None) or str(error)
    return str(message).rstrip(".")


def _ssl_message(exc: BaseException) -> str:
    error = getattr(exc, "os_error", exc)
    if isinstance(error, ssl.SSLCertVerificationError):
        return _cert_message(error)
    reason = getattr(error, "reason", None)
    if reason:
        return str(reason).lower().replace("_", " ")
    match = _SSL_REASON.match(str(error))
    return match.group(1) if match else str(error)
