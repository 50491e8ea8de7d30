"""Zone YAML (octoDNS convention) -> immutable configuration snapshot.

``load_config`` never stops at the first problem: it returns every reason, each naming file,
record and field, so ``gslb check`` and a failed reload show everything an operator must fix.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnslib import SOA as SOARD
from dnslib import DNSBuffer

from gslb.config import model
from gslb.config.dynamic import parse_dynamic
from gslb.config.model import AAAA, CNAME, A, DynamicRecord, Node, RRset, Zone
from gslb.config.names import NameError_, is_below, parent, relative_to_fqdn, to_wire
from gslb.config.records import MAX_TTL, PARSERS, SINGLE_VALUE, hostname
from gslb.config.safeyaml import YamlError, load_yaml
from gslb.dnssec.settings import ZoneSigning, is_sidecar, load_signing
from gslb.health.spec import CheckSpec

DEFAULT_TTL = 3600  # octoDNS default
DYNAMIC_TYPES = {"A", "AAAA", "CNAME"}
RECORD_KEYS = {"type", "ttl", "value", "values", "dynamic", "octodns", "gslb"}
SOA_TIMERS = {"refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 300}
ZONE_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server answers from; replaced as a whole on reload."""

    zones: dict[bytes, Zone]
    checks: dict[str, CheckSpec]
    digest: str  # sha256 over every zone file, for the config info metric
    loaded_at: float = field(default_factory=time.time)
    # zones signed online, from their ``<zone>.dnssec.yaml`` (gslb.dnssec.settings)
    signing: dict[bytes, ZoneSigning] = field(default_factory=dict)

    def zone_for(self, qname: bytes) -> Zone | None:
        """The closest enclosing zone we serve, or None (answer REFUSED)."""
        zones = self.zones
        name = qname
        while True:
            zone = zones.get(name)
            if zone is not None:
                return zone
            if name == b"\x00":
                return None
            name = name[1 + name[0] :]


def find_record(config: Config, name: str, qtype: str) -> DynamicRecord | None:
    """The dynamic record answering ``name`` for ``qtype`` (A, AAAA or CNAME), if any."""
    wire = to_wire(name if name.endswith(".") else name + ".")
    zone = config.zone_for(wire)
    node = zone.nodes.get(wire) if zone else None
    if node is None:
        return None
    rtype = {"A": A, "AAAA": AAAA, "CNAME": CNAME}[qtype]
    return node.dynamic.get(rtype) or node.dynamic.get(CNAME)


class SerialClock:
    """Serials for synthesized SOAs: unix time, strictly increasing across loads."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last = max(int(time.time()), self.last + 1) % 2**32
        return self.last


SERIALS = SerialClock()


def zone_files(directory: Path) -> list[Path]:
    """Every ``<zone>.yaml``; a zone's DNSSEC sidecar ``<zone>.dnssec.yaml`` is not a zone."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in ZONE_SUFFIXES and p.is_file() and not is_sidecar(p)
    )


@contextmanager
def gc_paused() -> Iterator[None]:
    """Loading creates millions of objects and no garbage cycles; the collector's repeated
    full passes over that growing heap took 60 % of loading 100,000 records (7.6 s -> 3.0 s
    for the YAML alone without them)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_config(directory: str | Path) -> tuple[Config | None, list[str]]:
    """Load every ``<zone>.yaml`` in ``directory``; on any error return (None, reasons)."""
    with gc_paused():
        return _load_config(Path(directory))


def _load_config(directory: Path) -> tuple[Config | None, list[str]]:
    errors: list[str] = []
    if not directory.is_dir():
        return None, [f"{directory}: not a directory"]
    files = zone_files(directory)
    if not files:
        return None, [f"{directory}: no zone files (<zone>.yaml)"]
    zones: dict[bytes, Zone] = {}
    checks: dict[str, CheckSpec] = {}
    digest = hashlib.sha256()
    for path in files:
        raw = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + raw)
        zone = load_zone(path, raw, checks, errors)
        if zone is not None:
            if zone.origin in zones:
                errors.append(f"{path}: zone {zone.fqdn} defined twice")
            zones[zone.origin] = zone
    signing = load_signing(directory, zones, errors)
    for settings in signing.values():
        digest.update(settings.fqdn.encode() + b"".join(k.dnskey_rdata for k in settings.keys))
    if errors:
        return None, errors
    return Config(zones=zones, checks=checks, digest=digest.hexdigest(), signing=signing), []


def load_zone(
    path: Path, raw: bytes, checks: dict[str, CheckSpec], errors: list[str]
) -> Zone | None:
    fqdn = path.name[: -len(path.suffix)].lower().rstrip(".") + "."
    try:
        origin = to_wire(fqdn)
    except NameError_ as exc:
        errors.append(f"{path}: file name is not a zone name: {exc}")
        return None
    try:
        data = load_yaml(raw)
    except YamlError as exc:
        errors.append(f"{path}: {exc}")
        return None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        errors.append(f"{path}: top level must be a mapping of record names")
        return None
    before = len(errors)
    builder = ZoneBuilder(path, fqdn, origin, checks, errors)
    for key, value in data.items():
        builder.add_name(key, value)
    zone = builder.finish()
    return zone if len(errors) == before else None


class ZoneBuilder:
    """Collects the records of one file into nodes, then checks the zone as a whole."""

    def __init__(
        self,
        path: Path,
        fqdn: str,
        origin: bytes,
        checks: dict[str, CheckSpec],
        errors: list[str],
    ) -> None:
        self.path, self.fqdn, self.origin = path, fqdn, origin
        self.checks, self.errors = checks, errors
        self.nodes: dict[bytes, Node] = {}
        self.labels: dict[bytes, str] = {}  # wire name -> key as written, for messages

    def error(self, key: str, message: str) -> None:
        self.errors.append(f'{self.path}: record "{key}": {message}')

    def add_name(self, key: Any, value: Any) -> None:
        key = "" if key is None else str(key)
        if key.endswith(".") or key.startswith("."):
            self.error(key, "names are relative to the zone: no leading or trailing dot")
            return
        if "*" in key and not (key == "*" or key.startswith("*.")) or key.count("*") > 1:
            self.error(key, "a wildcard must be the whole leftmost label ('*' or '*.sub')")
            return
        try:
            name = to_wire(relative_to_fqdn(key, self.fqdn))
        except NameError_ as exc:
            self.error(key, str(exc))
            return
        if name in self.nodes:
            self.error(key, "name listed twice (letter case does not make names distinct)")
            return
        self.labels[name] = key
        node = self.nodes[name] = Node(name)
        records = value if isinstance(value, list) else [value]
        for index, record in enumerate(records):
            where = key if len(records) == 1 else f"{key}[{index}]"
            self.add_record(node, key, where, record)

    def add_record(self, node: Node, key: str, where: str, record: Any) -> None:
        if not isinstance(record, Mapping):
            self.error(where, "a record must be a mapping with type and value(s)")
            return
        unknown = sorted(set(map(str, record)) - RECORD_KEYS)
        if unknown:
            self.error(where, f"unknown key {', '.join(unknown)}")
        rtype_name = str(record.get("type", "")).upper()
        if rtype_name not in PARSERS:
            self.error(where, f'unknown type "{record.get("type")}"')
            return
        rtype = PARSERS[rtype_name][0]
        if rtype in node.rrsets or rtype in node.dynamic:
            self.error(where, f"duplicate {rtype_name} record (merge the values into one)")
            return
        ttl = self.ttl(where, record)
        if "dynamic" in record:
            self.add_dynamic(node, key, where, rtype_name, rtype, ttl, record)
            return
        if "gslb" in record:
            self.error(where, "the gslb block only applies to dynamic records")
        rdatas = self.values(where, rtype_name, record)
        if rdatas is not None and ttl is not None:
            node.rrsets[rtype] = RRset(node.name, rtype, ttl, rdatas)

    def ttl(self, where: str, record: Mapping) -> int | None:
        ttl = record.get("ttl", DEFAULT_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= MAX_TTL:
            self.error(where, f'TTL "{ttl}" out of range 0..{MAX_TTL}')
            return None
        return ttl

    def values(self, where: str, rtype_name: str, record: Mapping) -> tuple | None:
        if "value" in record and "values" in record:
            self.error(where, "give value or values, not both")
            return None
        raw = record.get("values", record.get("value"))
        if raw is None or raw == []:
            self.error(where, "missing value")
            return None
        items = raw if isinstance(raw, list) else [raw]
        if rtype_name in SINGLE_VALUE and len(items) != 1:
            self.error(where, f"{rtype_name} takes exactly one value")
            return None
        parse = PARSERS[rtype_name][1]
        rdatas, seen, ok = [], set(), True
        for index, item in enumerate(items):
            label = "value" if len(items) == 1 else f"value {index + 1}"
            try:
                rdata = parse(item)
            except ValueError as exc:
                self.error(where, f"{label}: {exc}")
                ok = False
                continue
            packed = rdata_bytes(rdata) if len(items) > 1 else b""  # one value: no twin
            if packed in seen:
                self.error(where, f"{label}: duplicate value {item!r}")
                ok = False
            seen.add(packed)
            rdatas.append(rdata)
        return tuple(rdatas) if ok else None

    def add_dynamic(
        self,
        node: Node,
        key: str,
        where: str,
        rtype_name: str,
        rtype: int,
        ttl: int | None,
        record: Mapping,
    ) -> None:
        if rtype_name not in DYNAMIC_TYPES:
            self.error(where, f"dynamic is only supported on A, AAAA and CNAME, not {rtype_name}")
            return
        if ttl is None:
            return
        fqdn = relative_to_fqdn(key, self.fqdn)
        dyn, specs = parse_dynamic(
            fqdn, node.name, rtype, ttl, record, f'{self.path}: record "{where}"', self.errors
        )
        if dyn is not None:
            node.dynamic[rtype] = dyn
            self.checks.update(specs)

    def finish(self) -> Zone | None:
        apex = self.nodes.setdefault(self.origin, Node(self.origin))
        self.check_cnames()
        cuts = self.check_delegations()
        soa = self.soa(apex)
        if soa is None:
            return None
        existing = set()
        for name in self.nodes:
            while is_below(name, self.origin) and name not in existing:
                existing.add(name)
                if name == self.origin:
                    break
                name = parent(name)
        return Zone(
            origin=self.origin,
            fqdn=self.fqdn,
            source=str(self.path),
            soa=soa,
            nodes=self.nodes,
            existing=frozenset(existing),
            cuts=frozenset(cuts),
            wildcards=any(name.startswith(b"\x01*") for name in self.nodes),
        )

    def check_cnames(self) -> None:
        for name, node in self.nodes.items():
            if not node.has_cname:
                continue
            others = (set(node.rrsets) | set(node.dynamic)) - {model.CNAME}
            if name == self.origin:
                self.error(self.labels.get(name, ""), "CNAME is not allowed at the zone apex")
            elif others:
                self.error(self.labels[name], "CNAME must be the only record at its name")

    def check_delegations(self) -> set[bytes]:
        cuts = {
            name
            for name, node in self.nodes.items()
            if name != self.origin and model.NS in node.rrsets
        }
        glue_types = {model.A, model.AAAA}
        for name, node in self.nodes.items():
            for cut in cuts:
                if name == cut:
                    extra = set(node.rrsets) - {model.NS, model.A, model.AAAA} or node.dynamic
                    if extra:
                        self.error(self.labels[name], "a delegation point holds only NS and glue")
                elif is_below(name, cut) and (set(node.rrsets) - glue_types or node.dynamic):
                    cut_key = self.labels[cut]
                    self.error(
                        self.labels[name],
                        f'below the delegation "{cut_key}" only A/AAAA glue is allowed',
                    )
        return cuts

    def soa(self, apex: Node) -> RRset | None:
        if model.SOA in apex.rrsets:
            return apex.rrsets[model.SOA]
        ns = apex.rrsets.get(model.NS)
        mname = str(ns.rdatas[0].label) if ns else f"ns1.{self.fqdn}"
        times = (SERIALS.next(), *SOA_TIMERS.values())
        rdata = SOARD(hostname(mname), hostname(f"hostmaster.{self.fqdn}"), times)
        soa = RRset(self.origin, model.SOA, DEFAULT_TTL, (rdata,))
        apex.rrsets[model.SOA] = soa
        return soa


def serial_after(new: int, old: int) -> bool:
    """RFC 1982 serial number arithmetic: is ``new`` later than ``old``?"""
    return 0 < (new - old) % 2**32 < 2**31


def keep_serials_increasing(old: Config, new: Config) -> list[str]:
    """Every reload must change every zone's serial (secondaries and caches key on it). A
    serial set in a file is kept when it moved forward; otherwise the previous one plus 1 is
    served instead, and the returned notes say so."""
    notes = []
    for origin, zone in new.zones.items():
        previous = old.zones.get(origin)
        if previous is None or serial_after(zone.serial, previous.serial):
            continue
        soa = zone.soa.rdatas[0]
        serial = (previous.serial + 1) % 2**32
        rdata = SOARD(soa.mname, soa.rname, (serial, *soa.times[1:]))
        zone.soa = RRset(zone.soa.name, zone.soa.rtype, zone.soa.ttl, (rdata,))
        zone.nodes[origin].rrsets[model.SOA] = zone.soa
        notes.append(
            f"{zone.source}: SOA serial {soa.times[0]} does not follow {previous.serial}; "
            f"serving {serial}"
        )
    return notes


def rdata_bytes(rdata: Any) -> bytes:
    """Uncompressed rdata bytes, used to find duplicate values."""
    buffer = DNSBuffer()
    rdata.pack(buffer)
    return bytes(buffer.data)
