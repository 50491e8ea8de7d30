"""Beacons in, samples into the store: validation, network binding, limits, every reason counted.

Privacy: the client address is used for three things and then dropped, never stored nor
logged: the rate limit bucket of its /24 (/48), the session token check (the token is bound to
that network) and the levels of ``NetInfo``. Abuse: a body over ``max_body`` bytes, a flood from
one network or from everywhere, a token forged, expired, replayed or used from another network,
a record or target nobody configured, a timing that is negative or absurd: each is rejected
(or clamped) with a reason and counted. A beacon moves only its own network's keys and its
share of the coarser levels, and per-network rate limits cap that share.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import os
import random
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from gslb.config.dynamic import COUNTRIES
from gslb.rum.config import RumOptions
from gslb.rum.network import PREFIX, Address, AsnDB, NetInfo, asn_key, net_info, prefix_key
from gslb.rum.resolvers import ResolverLinks
from gslb.rum.sketch import MAX_MS
from gslb.rum.store import Store

TOKEN_TTL = 600.0  # s a recipe's token stays valid (a page view)
KINDS = ("cold", "warm")
BEACON_REASONS = (
    "too_large", "malformed", "unknown_record", "origin", "bad_token", "expired", "replayed",
    "rate_network", "rate_global",
)  # fmt: skip
SAMPLE_REASONS = ("unknown_target", "bad_timing", "duplicate", "too_many")
BULK_KEYS = ("record", "type", "target", "network", "kind", "ok", "ms", "count", "country", "asn")
TYPES = {"A": 1, "AAAA": 28, "CNAME": 5}
CONTINENT_OF = {country: continent for continent, codes in COUNTRIES.items() for country in codes}


@dataclass(slots=True)
class Limits:
    max_body: int = 16 * 1024  # bytes of one beacon (sendBeacon itself stops at 64 KiB)
    per_network: float = 12.0  # beacons per minute from one /24 or /48 ...
    network_burst: float = 24.0  # ... with this burst
    global_rate: float = 500.0  # beacons per second from everyone ...
    global_burst: float = 1000.0
    max_networks: int = 65536  # rate-limit buckets remembered (least recent dropped)
    max_tokens: int = 400_000  # spent tokens remembered for replay detection


class Rejected(Exception):
    """A beacon refused as a whole; ``reason`` is one of BEACON_REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class Buckets:
    """Token buckets per key, at most ``size`` keys (least recently used dropped: a key that
    comes back starts full, which only ever lets a quiet network through)."""

    def __init__(self, rate: float, burst: float, size: int) -> None:
        self.rate, self.burst, self.size = rate, burst, size
        self.buckets: OrderedDict[Any, list[float]] = OrderedDict()

    def allow(self, key: Any, now: float) -> bool:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.size:
                self.buckets.popitem(last=False)
            bucket = self.buckets[key] = [self.burst, now]
        else:
            self.buckets.move_to_end(key)
        tokens = min(self.burst, bucket[0] + max(0.0, now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True


class Tokens:
    """Session tokens: ``exp.sid.sig``, sig = HMAC(secret, exp.sid.record.network). Forging one
    needs the secret; one token counts once; it is only good from the network it was issued to."""

    def __init__(self, secret: bytes, max_spent: int) -> None:
        self.secret = secret
        self.spent: OrderedDict[str, float] = OrderedDict()  # sid -> expiry, oldest first
        self.max_spent = max_spent

    def issue(self, record: str, network: int, now: float) -> str:
        exp = int(now + TOKEN_TTL)
        sid = os.urandom(8).hex()  # also a DNS label: <sid>.<--rum-resolver-name>
        return f"{exp}.{sid}.{self._sign(exp, sid, record, network)}"

    def _sign(self, exp: int, sid: str, record: str, network: int) -> str:
        message = f"{exp}.{sid}.{record}.{network}".encode()
        digest = hmac.new(self.secret, message, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def spend(self, token: Any, record: str, network: int, now: float) -> None:
        """Raises Rejected unless the token is genuine, fresh, unused and from this network."""
        if not isinstance(token, str) or len(token) > 100 or token.count(".") != 2:
            raise Rejected("bad_token")
        exp_text, sid, sig = token.split(".")
        if not exp_text.isdigit():
            raise Rejected("bad_token")
        exp = int(exp_text)
        if not hmac.compare_digest(sig, self._sign(exp, sid, record, network)):
            raise Rejected("bad_token")  # forged, or issued to another network or record
        if exp < now or exp > now + TOKEN_TTL + 60:
            raise Rejected("expired")
        while self.spent and (next(iter(self.spent.values())) < now):
            self.spent.popitem(last=False)
        if sid in self.spent:
            raise Rejected("replayed")
        if len(self.spent) >= self.max_spent:
            self.spent.popitem(last=False)
        self.spent[sid] = exp


class Ingest:
    """Validates beacons and bulk samples and adds them to the store."""

    def __init__(
        self, store: Store, secret: bytes | None = None, limits: Limits | None = None,
        geo: Any = None, asn: AsnDB | None = None, rng: random.Random | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.rng = rng if rng is not None else random.Random()
        self.limits = limits or Limits()
        self.tokens = Tokens(secret or os.urandom(32), self.limits.max_tokens)
        self.per_network = Buckets(
            self.limits.per_network / 60.0, self.limits.network_burst, self.limits.max_networks
        )
        self.everyone = Buckets(self.limits.global_rate, self.limits.global_burst, 1)
        self.geo, self.asn = geo, asn
        self.records: dict[tuple[str, int], RumOptions] = {}
        self.targets: dict[tuple[str, int], frozenset[str]] = {}
        self.beacons: Counter[str] = Counter()  # accepted | reason
        self.samples: Counter[str] = Counter()  # accepted | clamped | reason
        self.bulk: Counter[str] = Counter()
        self.resolvers = ResolverLinks()
        self.resolver_name: str | None = None  # --rum-resolver-name: recipes ask to resolve

    def configure(self, records: dict[tuple[str, int], tuple[RumOptions, frozenset[str]]]) -> None:
        self.records = {key: options for key, (options, _) in records.items()}
        self.targets = {key: targets for key, (_, targets) in records.items()}

    def net(self, address: Address) -> NetInfo:
        location = self.geo.locate(address) if self.geo is not None else None
        return net_info(address, location, self.asn)

    # -- recipe ------------------------------------------------------------------------------

    def recipe(self, record: tuple[str, int], address: Address, wall: float) -> dict[str, Any]:
        """What the snippet measures for one page view: the probe URLs, shuffled (no target
        always goes first), and a token bound to the viewer's network."""
        options = self.records[record]
        targets = [{"t": target, "url": url} for target, url in options.probes]
        self.rng.shuffle(targets)
        token = self.tokens.issue(_record_text(record), prefix_key(address), wall)
        job = {"v": 1, "r": record[0], "y": record[1], "tok": token, "targets": targets}
        if self.resolver_name is not None:  # the browser's resolver asks gslb for this name
            job["resolve"] = f"//{token.split('.')[1]}.{self.resolver_name.rstrip('.')}/"
        return job

    # -- beacons -----------------------------------------------------------------------------

    def beacon(
        self, body: bytes, address: Address, origin: str | None, now: float, wall: float
    ) -> int:
        """Accept one beacon; returns the samples added. Raises Rejected (counted)."""
        try:
            added = self._beacon(body, address, origin, now, wall)
        except Rejected as exc:
            self.beacons[exc.reason] += 1
            raise
        self.beacons["accepted"] += 1
        return added

    def _beacon(
        self, body: bytes, address: Address, origin: str | None, now: float, wall: float
    ) -> int:
        if len(body) > self.limits.max_body:
            raise Rejected("too_large")
        if not self.everyone.allow(None, now):
            raise Rejected("rate_global")
        network = prefix_key(address)
        if not self.per_network.allow(network, now):
            raise Rejected("rate_network")
        data = _parse(body)
        record = (data["r"].lower(), data["y"])
        options = self.records.get(record)
        if options is None:
            raise Rejected("unknown_record")
        if options.origins and (origin or "").lower() not in options.origins:
            raise Rejected("origin")
        self.tokens.spend(data["tok"], _record_text(record), network, wall)
        net = self.net(address)
        resolver = self.resolvers.take(data["tok"].split(".")[1], wall)
        if resolver is not None:
            net = replace(net, resolver=resolver)
        return self._samples(record, net, data["m"], now)

    def _samples(self, record: tuple[str, int], net: NetInfo, items: list, now: float) -> int:
        known = self.targets[record]
        seen: set[tuple[str, str]] = set()
        added = 0
        for item in items:
            sample = self._sample(item, known, seen)
            if sample is None:
                continue
            target, kind, ok, ms = sample
            self.store.add(record, net, target, kind, ok, ms, now)
            added += 1
        return added

    def _sample(
        self, item: Any, known: frozenset[str], seen: set
    ) -> tuple[str, str, bool, float | None] | None:
        if len(seen) >= 2 * len(known):
            self.samples["too_many"] += 1
            return None
        if not isinstance(item, dict) or item.get("k") not in KINDS:
            self.samples["bad_timing"] += 1
            return None
        target = item.get("t")
        if target not in known:
            self.samples["unknown_target"] += 1
            return None
        if (target, item["k"]) in seen:
            self.samples["duplicate"] += 1
            return None
        seen.add((target, item["k"]))
        ok, ms = item.get("ok") in (1, True), item.get("ms")
        if not ok:
            self.samples["accepted"] += 1
            return target, item["k"], False, None
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms):
            self.samples["bad_timing"] += 1
            return None
        if ms < 0:
            self.samples["bad_timing"] += 1
            return None
        if ms > MAX_MS:  # a minute is a failed fetch, whatever the browser says
            self.samples["clamped"] += 1
            return target, item["k"], False, None
        self.samples["accepted"] += 1
        return target, item["k"], True, float(ms)

    # -- bulk feed ---------------------------------------------------------------------------

    def add_bulk(self, items: Any, now: float) -> tuple[int, list[dict[str, Any]]]:
        """Server-to-server samples (CDN logs, a RUM vendor) behind the admin token; each
        item ``{record, type, target, network, kind, ok, ms, count, country?, asn?}``.
        Returns (accepted, [{index, why}] for every item refused), all reasons at once."""
        if not isinstance(items, list):
            raise ValueError('body must be {"samples": [...]}')
        if len(items) > 10_000:
            raise ValueError("at most 10000 samples per request")
        problems: list[dict[str, Any]] = []
        accepted = 0
        for index, item in enumerate(items):
            why = self._bulk_item(item, now)
            if why is None:
                accepted += 1
                self.bulk["accepted"] += 1
            else:
                problems.append({"index": index, "why": why})
                self.bulk["rejected"] += 1
        return accepted, problems

    def _bulk_item(self, item: Any, now: float) -> str | None:
        if not isinstance(item, dict):
            return "expected an object"
        unknown = sorted(set(item) - set(BULK_KEYS))
        if unknown:
            return f"unknown field(s) {', '.join(map(str, unknown))}"
        name = str(item.get("record", "")).lower()
        record = (name if name.endswith(".") else name + ".", TYPES.get(item.get("type", "CNAME")))
        if record not in self.records:
            return f"unknown record {item.get('record')!r} type {item.get('type', 'CNAME')!r}"
        target = item.get("target")
        if target not in self.targets[record]:
            return f"unknown target {target!r}"
        kind = item.get("kind", self.records[record].metric)
        if kind not in KINDS:
            return f"invalid kind {kind!r} (expected cold or warm)"
        ok, ms, count = item.get("ok", True), item.get("ms"), item.get("count", 1)
        if not isinstance(ok, bool):
            return "invalid ok (expected true or false)"
        if ok and (not _number(ms) or not 0 <= ms <= MAX_MS):
            return f"invalid ms {ms!r} (expected 0..{MAX_MS:.0f} for a successful fetch)"
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 100_000:
            return f"invalid count {count!r} (expected an integer 1..100000)"
        try:
            net = self.bulk_net(item)
        except ValueError as exc:
            return str(exc)
        self.store.add(record, net, target, kind, ok, float(ms) if ok else None, now, count)
        return None

    def bulk_net(self, item: dict[str, Any]) -> NetInfo:
        """A bulk sample's network: a prefix (/24 or longer names a client network; shorter
        ones count for the coarser levels only), with optional country and ASN overrides."""
        try:
            network = ipaddress.ip_network(str(item.get("network")), strict=False)
        except ValueError:
            raise ValueError(f"invalid network {item.get('network')!r}") from None
        address = network.network_address
        location = self.geo.locate(address) if self.geo is not None else None
        country = item.get("country", getattr(location, "country", None))
        if country is not None and (not isinstance(country, str) or country not in CONTINENT_OF):
            raise ValueError(f"invalid country {country!r} (expected ISO 3166 alpha-2)")
        asn = item.get("asn")
        if asn is not None and (isinstance(asn, bool) or not isinstance(asn, int) or asn < 0):
            raise ValueError(f"invalid asn {asn!r}")
        if asn is None and self.asn is not None:
            found = self.asn.lookup(address)
            asn = found[0] if found is not None else None
        fine = network.prefixlen >= PREFIX[network.version]
        return NetInfo(
            prefix=prefix_key(address) if fine else None,
            asn=asn_key(asn, country) if asn is not None else None,
            country=country,
            continent=CONTINENT_OF.get(country) if country else None,
            source=str(network),
        )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _record_text(record: tuple[str, int]) -> str:
    return f"{record[0]}/{record[1]}"


def _parse(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Rejected("malformed", "not JSON") from None
    if not isinstance(data, dict) or data.get("v") != 1:
        raise Rejected("malformed", "expected a version 1 beacon object")
    if not isinstance(data.get("r"), str) or not isinstance(data.get("y"), int):
        raise Rejected("malformed", "r (record) and y (type) are required")
    if not isinstance(data.get("m"), list):
        raise Rejected("malformed", "m (measurements) must be a list")
    if not data["r"].endswith("."):
        data["r"] += "."
    return data
