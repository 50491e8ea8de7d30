"""CDN contracts from the zone file: what each target's commit is, and the controller's knobs.

A record opts in with ``gslb.commit`` (the controller for this record) and gives each CDN's
contract under ``gslb.targets.<value>.commit``. Validation is octoDNS-style: every problem is
reported at once, each naming the field, and nothing here raises.

Two billing kinds exist (see ``README``, "Commits"): ``volume`` (bytes per period, take-or-pay,
overage per GB above it) and ``p95`` (a rate in bits per second at the 95th percentile of the
period's 5-minute samples; the top 5 % of samples are free).
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

RECORD_KEYS = ("mode", "interval", "max_step", "gain", "bytes_per_answer", "feed_stale")
CONTRACT_KEYS = ("volume", "p95", "period", "start", "price", "overage", "ceiling")
MODES = ("commit", "delivered")
SAMPLE_SECONDS = 300  # 95th-percentile billing: 5-minute samples
FREE_FRACTION = 0.05  # ... and the top 5 % of them are not billed


def billed_p95(samples: list[float], period_slots: int) -> float:
    """The rate a 95th-percentile contract bills: the highest sample once the period's free
    top 5 % are set aside (0 while there are no more samples than free ones)."""
    free = int(period_slots * FREE_FRACTION)
    if len(samples) <= free:
        return 0.0
    return sorted(samples)[len(samples) - 1 - free]


_BYTE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40, "PIB": 2**50}  # fmt: skip
_RATE_UNITS = {"BPS": 1, "KBPS": 10**3, "MBPS": 10**6, "GBPS": 10**9, "TBPS": 10**12}
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_AMOUNT_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True, slots=True)
class Period:
    """A billing period: calendar months from ``start`` (``month``) or fixed ``seconds``."""

    start: float  # epoch seconds of one period boundary (the anchor)
    seconds: int | None = None  # None = calendar month anchored on ``start``'s day and time

    def bounds(self, now: float) -> tuple[float, float]:
        """``(start, end)`` epoch seconds of the period that contains ``now``."""
        if self.seconds is not None:
            index = math.floor((now - self.start) / self.seconds)
            begin = self.start + index * self.seconds
            return begin, begin + self.seconds
        anchor = dt.datetime.fromtimestamp(self.start, dt.UTC)
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        months = (moment.year - anchor.year) * 12 + moment.month - anchor.month
        begin = _add_months(anchor, months)
        if begin > moment:
            months -= 1
            begin = _add_months(anchor, months)
        return begin.timestamp(), _add_months(anchor, months + 1).timestamp()


def _add_months(anchor: dt.datetime, months: int) -> dt.datetime:
    year, month = divmod(anchor.month - 1 + months, 12)
    year += anchor.year
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


@dataclass(frozen=True, slots=True)
class Contract:
    """One CDN's commit. ``amount`` is bytes per period (volume) or bits/s (p95)."""

    kind: str  # "volume" | "p95"
    amount: float
    period: Period
    price: float = 0.0  # per GB of commit (volume) or per Mbps (p95), paid whatever is used
    overage: float = 0.0  # per GB (volume) or per Mbps (p95) above the commit
    ceiling: float | None = None  # hard limit, same unit as ``amount``

    def cost(self, delivered_bytes: float, p95_bps: float = 0.0) -> float:
        """What the period costs for this delivery: the commit is paid even when unused."""
        if self.kind == "volume":
            over = max(0.0, delivered_bytes - self.amount)
            return self.price * self.amount / 1e9 + self.overage * over / 1e9
        over = max(0.0, p95_bps - self.amount)
        return self.price * self.amount / 1e6 + self.overage * over / 1e6


@dataclass(frozen=True, slots=True)
class CommitSpec:
    """The controller settings of one record plus its targets' contracts."""

    mode: str = "commit"  # commit: fill contracts; delivered: weights are delivered shares
    interval: float = 60.0  # seconds between controller ticks
    max_step: float = 0.05  # largest change of a target's weight share per tick
    gain: float = 0.5  # fraction of the remaining correction applied per tick (damping)
    bytes_per_answer: float = 1e6  # estimate without a feed: bytes one answer stands for
    feed_stale: float = 900.0  # seconds without feed data before the estimate takes over
    contracts: Mapping[str, Contract] = field(default_factory=dict)  # target value -> contract


ErrorSink = Callable[[str], None]
Normalise = Callable[[Any], str]


def parse_commit(
    gslb: Mapping, normalise: Normalise, in_pools: set[str], error: ErrorSink
) -> CommitSpec | None:
    """``gslb.commit`` plus every ``gslb.targets.<value>.commit``; None when neither is given.

    ``normalise`` turns a target key into the value text the pools use (raises ValueError);
    problems with the keys themselves are the targets parser's to report, so skipped here.
    """
    contracts = _contracts(gslb.get("targets"), normalise, in_pools, error)
    raw = gslb.get("commit")
    if raw is None and not contracts:
        return None
    values = _record_options({} if raw is None else raw, error)
    if values is None:
        return None
    if values.get("mode", "commit") == "commit" and not contracts:
        error("gslb.commit: mode commit needs at least one target with a commit "
              "(gslb.targets.<value>.commit), or use mode: delivered")  # fmt: skip
    return CommitSpec(**values, contracts=contracts)


def chain_with_commit(
    options: Any, spec: CommitSpec | None, explicit: bool, error: ErrorSink
) -> Any:
    """The record's chain with the ``commit`` step where it belongs.

    A record with contracts and the default chain gets ``commit`` just before ``weighted``;
    an explicit chain must list it, after every step that drops values (so cost never
    overrides what rules, health, RUM, performance or proximity kept)."""
    chain = tuple(options.chain)
    if spec is None:
        if "commit" in chain:
            error("gslb.chain: step commit needs gslb.commit or a target with a commit")
        return options
    if "commit" not in chain:
        if explicit:
            error('gslb.chain: the record has contracts; list "commit" before "weighted"')
            return options
        at = chain.index("weighted") if "weighted" in chain else len(chain)
        return replace(options, chain=(*chain[:at], "commit", *chain[at:]))
    later = [s for s in chain[chain.index("commit") + 1 :] if s != "weighted"]
    if later:
        error(f'gslb.chain: "commit" must come after every filtering step ({", ".join(later)} '
              "follow it); it only moves weights among the values the others kept")  # fmt: skip
    return options


def _record_options(raw: Any, error: ErrorSink) -> dict[str, Any] | None:
    if not isinstance(raw, Mapping):
        error(f"gslb.commit: expected a mapping with {', '.join(RECORD_KEYS)}")
        return None
    _unknown(raw, RECORD_KEYS, "gslb.commit: ", error)
    out: dict[str, Any] = {}
    if "mode" in raw:
        if raw["mode"] in MODES:
            out["mode"] = raw["mode"]
        else:
            error(
                f'gslb.commit.mode: invalid value "{raw["mode"]}" (expected {" or ".join(MODES)})'
            )
    bounds = {"interval": (1.0, 86400.0), "max_step": (0.001, 1.0), "gain": (0.01, 1.0),
              "feed_stale": (1.0, 31 * 86400.0)}  # fmt: skip
    for key, (low, high) in bounds.items():
        if key in raw:
            parse = duration if key in ("interval", "feed_stale") else _plain_number
            value = _checked(parse, raw[key], f"gslb.commit.{key}", error)
            if value is not None and not low <= value <= high:
                error(f'gslb.commit.{key}: invalid value "{raw[key]}" (expected {low:g}..{high:g})')
            elif value is not None:
                out[key] = value
    if "bytes_per_answer" in raw:
        value = _checked(
            byte_amount, raw["bytes_per_answer"], "gslb.commit.bytes_per_answer", error
        )
        if value is not None and value <= 0:
            error("gslb.commit.bytes_per_answer: must be > 0")
        elif value is not None:
            out["bytes_per_answer"] = value
    return out


def _contracts(
    targets: Any, normalise: Normalise, in_pools: set[str], error: ErrorSink
) -> dict[str, Contract]:
    if not isinstance(targets, Mapping):
        return {}
    out: dict[str, Contract] = {}
    for key, item in targets.items():
        if not isinstance(item, Mapping) or "commit" not in item:
            continue
        try:
            value = normalise(key)
        except ValueError:
            continue  # reported by the targets parser
        where = f'gslb.targets "{key}".commit'
        if value not in in_pools:
            error(f"{where}: only pool values carry traffic to commit (not the origin)")
            continue
        contract = parse_contract(item["commit"], where, error)
        if contract is not None:
            out[value] = contract
    return out


def parse_contract(raw: Any, where: str, error: ErrorSink) -> Contract | None:
    """One target's contract; None (with errors appended) when anything is wrong."""
    if not isinstance(raw, Mapping):
        error(f"{where}: expected a mapping with volume or p95, period, start, price, overage")
        return None
    failed = [False]

    def fail(message: str) -> None:
        failed[0] = True
        error(message)

    _unknown(raw, CONTRACT_KEYS, f"{where}: ", fail)
    kind, amount = _amount(raw, where, fail)
    period = _period(raw, where, fail)
    prices = {}
    for key in ("price", "overage"):
        if key in raw:
            prices[key] = _checked(_plain_number, raw[key], f"{where}.{key}", fail)
            if prices[key] is not None and prices[key] < 0:
                fail(f'{where}.{key}: invalid value "{raw[key]}" (expected >= 0)')
    ceiling = None
    if "ceiling" in raw and kind is not None:
        parse = byte_amount if kind == "volume" else bit_rate
        ceiling = _checked(parse, raw["ceiling"], f"{where}.ceiling", fail)
        if ceiling is not None and amount is not None and ceiling < amount:
            fail(f"{where}.ceiling: below the commit ({raw['ceiling']} < {raw[kind]})")
    if failed[0] or kind is None or amount is None or period is None:
        return None
    return Contract(kind, amount, period, prices.get("price") or 0.0,
                    prices.get("overage") or 0.0, ceiling)  # fmt: skip


def _amount(raw: Mapping, where: str, fail: ErrorSink) -> tuple[str | None, float | None]:
    if ("volume" in raw) == ("p95" in raw):
        fail(f"{where}: give volume (bytes per period) or p95 (a rate such as 40Gbps), one of them")
        return None, None
    kind = "volume" if "volume" in raw else "p95"
    parse = byte_amount if kind == "volume" else bit_rate
    amount = _checked(parse, raw[kind], f"{where}.{kind}", fail)
    if amount is not None and amount <= 0:
        fail(f"{where}.{kind}: must be > 0")
        amount = None
    return kind, amount


def _period(raw: Mapping, where: str, fail: ErrorSink) -> Period | None:
    if "start" not in raw:
        fail(f"{where}: missing start (the first day of a billing period, e.g. 2026-11-01)")
        return None
    start = _checked(timestamp, raw["start"], f"{where}.start", fail)
    text = raw.get("period", "month")
    seconds = None
    if text != "month":
        seconds = _checked(duration, text, f"{where}.period", fail)
        if seconds is not None and seconds < 3600:
            fail(f'{where}.period: invalid value "{text}" (expected month or at least 1h)')
            return None
    if start is None or (text != "month" and seconds is None):
        return None
    return Period(start, None if seconds is None else int(seconds))


# -- units --------------------------------------------------------------------------------


def byte_amount(raw: Any) -> float:
    """``500TB``, ``1.5PiB``, ``1000000`` -> bytes (SI units are powers of 10, as CDNs bill)."""
    return _with_unit(raw, _BYTE_UNITS, "bytes such as 500TB or 2PiB")


def bit_rate(raw: Any) -> float:
    """``40Gbps``, ``800Mbps`` -> bits per second."""
    if isinstance(raw, str) and raw.strip().upper().endswith("BPS"):
        return _with_unit(raw, _RATE_UNITS, "a rate such as 40Gbps")
    raise ValueError(f'invalid value "{raw}" (expected a rate such as 40Gbps)')


def duration(raw: Any) -> float:
    """``60``, ``90s``, ``5m``, ``30d``, ``1w`` -> seconds."""
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    match = _AMOUNT_RE.match(raw) if isinstance(raw, str) else None
    if match is None or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f'invalid value "{raw}" (expected seconds or 30s, 5m, 2h, 30d, 1w)')
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def timestamp(raw: Any) -> float:
    """A date or time (YAML timestamp, ISO text, epoch seconds) -> epoch seconds; UTC unless
    the value says otherwise."""
    if isinstance(raw, dt.datetime):
        moment = raw
    elif isinstance(raw, dt.date):
        moment = dt.datetime(raw.year, raw.month, raw.day)
    elif isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    elif isinstance(raw, str):
        try:
            moment = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            raise ValueError(
                f'invalid value "{raw}" (expected a date such as 2026-11-01)'
            ) from None
    else:
        raise ValueError(f'invalid value "{raw}" (expected a date such as 2026-11-01)')
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _with_unit(raw: Any, units: Mapping[str, float], expected: str) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        if "" in units:
            return float(raw)
        raise ValueError(f'invalid value "{raw}" (expected {expected})')
    match = _AMOUNT_RE.match(raw) if isinstance(raw, str) else None
    unit = match.group(2).upper() if match else None
    if match is None or unit not in units:
        raise ValueError(f'invalid value "{raw}" (expected {expected})')
    return float(match.group(1)) * units[unit]


def _plain_number(raw: Any) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        return float(raw)
    raise ValueError(f'invalid value "{raw}" (expected a number)')


def _checked(parse: Callable[[Any], float], raw: Any, where: str, error: ErrorSink) -> float | None:
    try:
        return parse(raw)
    except ValueError as exc:
        error(f"{where}: {exc}")
        return None


def _unknown(data: Mapping, allowed: tuple[str, ...], prefix: str, error: ErrorSink) -> None:
    for key in data:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f' (did you mean "{hint[0]}"?)' if hint else ""
            error(f'{prefix}unknown key "{key}"{suggestion}; expected {", ".join(allowed)}')
