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
from dnslib import DNSBuffer, DNSLabel

from gslb.config import model
from gslb.config.alias import resolve_aliases
from gslb.config.dynamic import parse_dynamic
from gslb.config.model import AAAA, CNAME, A, DynamicRecord, Node, RRset, Zone
from gslb.config.names import (
    NameError_,
    is_below,
    labels,
    parent,
    relative_to_fqdn,
    to_text,
    to_wire,
)
from gslb.config.octodns import RecordPolicy, check_geo, check_name, check_urlfwd, gslb_block
from gslb.config.records import MAX_TTL, TYPE_NAMES, TYPES, Invalid
from gslb.config.safeyaml import YamlError, load_yaml
from gslb.config.sources import SPLIT_EXTENSION, ZONE_SUFFIXES, ZoneSource, zone_sources
from gslb.config.values import as_int, name_wire
from gslb.dnssec.delegation import publish_child_ds
from gslb.dnssec.settings import ZoneSigning, load_signing
from gslb.health.spec import CheckSpec

DEFAULT_TTL = 3600  # octoDNS default
DYNAMIC_TYPES = {"A", "AAAA", "CNAME"}
RECORD_KEYS = {"type", "ttl", "value", "values", "dynamic", "octodns", "gslb", "geo"}
SOA_TIMERS = {"refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 300}
__all__ = ["Config", "load_config", "keep_serials_increasing", "ZONE_SUFFIXES"]


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the server answers from; replaced as a whole on reload."""

    zones: dict[bytes, Zone]
    checks: dict[str, CheckSpec]
    digest: str  # sha256 over every zone file, for the config info metric
    loaded_at: float = field(default_factory=time.time)
    # zones signed online, from their ``<zone>.dnssec.yaml`` (gslb.dnssec.settings)
    signing: dict[bytes, ZoneSigning] = field(default_factory=dict)
    # What loaded but deserves a look: skipped URLFWD records, ignored octoDNS geo blocks,
    # ALIAS targets gslb cannot answer for, data hidden below a delegation or DNAME.
    warnings: tuple[str, ...] = ()

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


def load_config(
    directory: str | Path,
    split_extension: str = SPLIT_EXTENSION,
    warnings: list[str] | None = None,
) -> tuple[Config | None, list[str]]:
    """Load every zone in ``directory`` (``<zone>.yaml`` files and ``<zone><split_extension>``
    directories, gslb.config.sources); on any error return (None, reasons). ``warnings``, when
    given, receives the warnings even when the load fails (``gslb check`` shows both)."""
    with gc_paused():
        return _load_config(Path(directory), split_extension, [] if warnings is None else warnings)


def _load_config(
    directory: Path, split_extension: str, warnings: list[str]
) -> tuple[Config | None, list[str]]:
    errors: list[str] = []
    if not directory.is_dir():
        return None, [f"{directory}: not a directory"]
    sources = zone_sources(directory, split_extension)
    if not sources:
        split = f" or a <zone>{split_extension} directory" if split_extension else ""
        return None, [f"{directory}: no zone files (<zone>.yaml{split})"]
    zones: dict[bytes, Zone] = {}
    checks: dict[str, CheckSpec] = {}
    digest = hashlib.sha256()
    for source in sources:
        zone = load_zone(source, directory, digest, checks, errors, warnings)
        if zone is not None:
            if zone.origin in zones:
                errors.append(f"{zone.source}: zone {zone.fqdn} defined twice")
            zones[zone.origin] = zone
    signing = load_signing(directory, zones, errors)
    publish_child_ds(zones, signing)
    for settings in signing.values():
        digest.update(settings.fqdn.encode() + b"".join(k.dnskey_rdata for k in settings.keys))
    if errors:
        return None, errors
    resolve_aliases(zones, warnings)
    config = Config(zones, checks, digest.hexdigest(), signing=signing, warnings=tuple(warnings))
    return config, []


def load_zone(
    source: ZoneSource,
    directory: Path,
    digest: Any,
    checks: dict[str, CheckSpec],
    errors: list[str],
    warnings: list[str],
) -> Zone | None:
    """One zone from its file, its split directory's files, or both (merged, as octoDNS)."""
    first = source.files[0]
    try:
        origin = to_wire(source.fqdn)
    except NameError_ as exc:
        errors.append(f"{first}: file name is not a zone name: {exc}")
        return None
    fqdn = to_text(origin)  # IDNA-encoded, lowercase: as resolvers ask for it
    singles = [p for p in source.files if p.parent == directory]
    if len(singles) > 1:
        errors.append(f"{singles[1]}: zone {fqdn} defined twice (also in {singles[0].name})")
        return None
    before = len(errors)
    builder = ZoneBuilder(first, fqdn, origin, checks, errors, warnings)
    for path in source.files:
        raw = path.read_bytes()
        digest.update(str(path.relative_to(directory)).encode() + b"\0" + raw)
        data = read_records(path, raw, errors)
        if data is None:
            continue
        builder.path = path
        builder.names_in_file = set()
        for key, value in data.items():
            builder.add_name(key, value)
    builder.path = singles[0] if singles else first.parent
    zone = builder.finish()
    return zone if len(errors) == before else None


def read_records(path: Path, raw: bytes, errors: list[str]) -> Mapping | None:
    try:
        data = load_yaml(raw)
    except YamlError as exc:
        errors.append(f"{path}: {exc}")
        return None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        errors.append(f"{path}: top level must be a mapping of record names")
        return None
    return data


class ZoneBuilder:
    """Collects the records of a zone's files into nodes, then checks the zone as a whole."""

    def __init__(
        self,
        path: Path,
        fqdn: str,
        origin: bytes,
        checks: dict[str, CheckSpec],
        errors: list[str],
        warnings: list[str],
    ) -> None:
        self.path, self.fqdn, self.origin = path, fqdn, origin
        self.checks, self.errors, self.warnings = checks, errors, warnings
        self.nodes: dict[bytes, Node] = {}
        self.labels: dict[bytes, str] = {}  # wire name -> key as written, for messages
        self.names_in_file: set[bytes] = set()  # a name may recur only in another split file
        self.alias: tuple[bytes, int, str] | None = None  # (target, ttl, where) of the apex

    def error(self, key: str, message: str) -> None:
        self.errors.append(f'{self.path}: record "{key}": {message}')

    def warn(self, key: str, message: str) -> None:
        self.warnings.append(f'{self.path}: record "{key}": {message}')

    def add_name(self, key: Any, value: Any) -> None:
        key = "" if key is None else str(key)
        if key == "@" or " " in key or "\t" in key:  # octoDNS refuses both, and says why
            self.error(key, 'invalid name: whitespace is not allowed, and the apex is "" not "@"')
            return
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
        if name in self.names_in_file:
            self.error(key, "name listed twice (letter case does not make names distinct)")
            return
        self.names_in_file.add(name)
        self.labels.setdefault(name, key)
        node = self.nodes.setdefault(name, Node(name))
        records = value if isinstance(value, list) else [value]
        for index, record in enumerate(records):
            where = key if len(records) == 1 else f"{key}[{index}]"
            self.add_record(node, key, where, record)

    def add_record(self, node: Node, key: str, where: str, record: Any) -> None:
        if not isinstance(record, Mapping):
            self.error(where, "a record must be a mapping with type and value(s)")
            return
        policy = RecordPolicy.read(record.get("octodns"))
        for note in policy.notes:
            self.warn(where, note)
        mark = len(self.errors)
        self.add_checked(node, key, where, record)
        if policy.lenient and len(self.errors) > mark:
            # octodns.lenient: octoDNS logs the record's problems instead of failing the zone.
            for line in self.errors[mark:]:
                self.warnings.append(f"{line} (octodns.lenient: loaded anyway)")
            del self.errors[mark:]
        for problem in policy.problems:
            self.error(where, problem)

    def add_checked(self, node: Node, key: str, where: str, record: Mapping) -> None:
        unknown = sorted(set(map(str, record)) - RECORD_KEYS)
        if unknown:
            self.error(where, f"unknown key {', '.join(unknown)}")
        rtype_name = str(record.get("type", "")).upper()
        if rtype_name == "URLFWD":
            for problem in check_urlfwd(record):
                self.error(where, problem)
            self.warn(where, "URLFWD is a DNS provider's HTTP redirect service, not a DNS "
                             "record type: no DNS server can serve it; skipped")  # fmt: skip
            return
        if rtype_name == "ALIAS":
            self.add_alias(node, key, where, record)
            return
        rtype = TYPES.get(rtype_name)
        if rtype is None:
            self.error(where, f'unknown type "{record.get("type")}"')
            return
        for problem in check_name(rtype_name, key):
            self.error(where, problem)
        if rtype.code in node.rrsets or rtype.code in node.dynamic:
            self.error(where, f"duplicate {rtype_name} record (merge the values into one)")
            return
        ttl = self.ttl(where, record)
        if "geo" in record:
            self.add_geo(where, rtype_name, record)
        if "dynamic" in record:
            self.add_dynamic(node, key, where, rtype_name, rtype.code, ttl, record)
            return
        if gslb_block(record)[0] is not None:
            self.error(where, "the gslb block only applies to dynamic records")
        rdatas = self.values(where, rtype_name, record)
        if rdatas is not None and ttl is not None:
            node.rrsets[rtype.code] = RRset(node.name, rtype.code, ttl, rdatas)

    def add_geo(self, where: str, rtype_name: str, record: Mapping) -> None:
        """octoDNS's deprecated ``geo`` block: checked as octoDNS checks it, then served the way
        every octoDNS target without GeoDNS support serves it: the record's own values to
        every client. ``dynamic`` is the supported way to answer by location."""
        problems = check_geo(rtype_name, record.get("geo"), TYPES[rtype_name].parse)
        for problem in problems:
            self.error(where, problem)
        if not problems:
            self.warn(where, "geo is octoDNS's deprecated GeoDNS block: gslb serves the "
                             "record's values to every client, as octoDNS targets without "
                             "geo support do; use dynamic to answer by location")  # fmt: skip

    def add_alias(self, node: Node, key: str, where: str, record: Mapping) -> None:
        """ALIAS at the apex (octoDNS refuses it elsewhere): resolved once every zone is
        loaded, into the A/AAAA of its target (gslb.config.alias)."""
        if key != "":
            self.error(where, "ALIAS is only allowed at the zone apex (octoDNS: non-root ALIAS)")
            return
        if self.alias is not None:
            self.error(where, "duplicate ALIAS record")
            return
        ttl = self.ttl(where, record)
        if "dynamic" in record or "gslb" in record:
            self.error(where, "ALIAS takes a target name; put dynamic on the target record")
        items = self.raw_values(where, "ALIAS", record, single=True)
        if items is None or ttl is None:
            return
        try:
            target = name_wire(items[0])
        except ValueError as exc:
            self.error(where, f"value: {exc}")
            return
        self.alias = (target, ttl, f'{self.path}: record "{where}"')

    def ttl(self, where: str, record: Mapping) -> int | None:
        raw = record.get("ttl", DEFAULT_TTL)
        ttl = as_int(raw)  # an int or a decimal string, as octoDNS reads it
        if ttl is None or not 0 <= ttl <= MAX_TTL:
            self.error(where, f'TTL "{raw}" out of range 0..{MAX_TTL}')
            return None
        return ttl

    def raw_values(self, where: str, rtype_name: str, record: Mapping, single: bool) -> list | None:
        if "value" in record and "values" in record:
            self.error(where, "give value or values, not both")
            return None
        raw = record.get("values", record.get("value"))
        if raw is None or raw == []:
            self.error(where, "missing value")
            return None
        items = raw if isinstance(raw, list) else [raw]
        if single and len(items) != 1:
            self.error(where, f"{rtype_name} takes exactly one value")
            return None
        return items

    def values(self, where: str, rtype_name: str, record: Mapping) -> tuple | None:
        rtype = TYPES[rtype_name]
        items = self.raw_values(where, rtype_name, record, rtype.single)
        if items is None:
            return None
        rdatas, seen, ok = [], set(), True
        for index, item in enumerate(items):
            label = "value" if len(items) == 1 else f"value {index + 1}"
            try:
                rdata = rtype.parse(item)
            except Invalid as exc:
                for reason in exc.reasons:
                    self.error(where, f"{label}: {reason}")
                ok = False
                continue
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
        # A name whose only records were skipped (URLFWD) holds nothing: NXDOMAIN, not NODATA.
        self.nodes = {
            name: node
            for name, node in self.nodes.items()
            if node.rrsets or node.dynamic or name == self.origin
        }
        self.labels.setdefault(self.origin, "")
        self.check_cnames()
        self.check_alias(apex)
        cuts = self.check_delegations()
        dnames = self.check_dnames(cuts)
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
            dnames=dnames,
            alias=self.alias,
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

    def check_alias(self, apex: Node) -> None:
        if self.alias is None:
            return
        clash = [t for t in (model.A, model.AAAA) if t in apex.rrsets or t in apex.dynamic]
        if clash:
            names = " and ".join(TYPE_NAMES[t] for t in clash)
            self.error("", f"ALIAS answers A and AAAA at the apex: remove the apex {names}")

    def check_delegations(self) -> set[bytes]:
        cuts = {
            name
            for name, node in self.nodes.items()
            if name != self.origin and model.NS in node.rrsets
        }
        at_cut = {model.NS, model.DS, model.A, model.AAAA}
        glue_types = {model.A, model.AAAA}
        for name, node in self.nodes.items():
            if name in cuts and (set(node.rrsets) - at_cut or node.dynamic):
                self.error(self.labels[name], "a delegation point holds only NS, DS and glue")
            cut = self.above(name, cuts)
            if cut is not None and (set(node.rrsets) - glue_types or node.dynamic):
                # RFC 1034 4.2.1: data below a cut is not ours; octoDNS loads it, and so do
                # we, but a resolver is sent to the delegation instead.
                self.warn(self.labels[name], f'below the delegation "{self.labels[cut]}": '
                                             "never answered (the delegation's servers are "
                                             "asked instead)")  # fmt: skip
        return cuts

    def check_dnames(self, cuts: set[bytes]) -> dict[bytes, bytes]:
        """RFC 6672: a DNAME redirects every name below its owner, so nothing may live there;
        data that does is loaded but never answered (the synthesized CNAME wins)."""
        dnames = {}
        for name, node in self.nodes.items():
            rrset = node.rrsets.get(model.DNAME)
            if rrset is not None:
                dnames[name] = rrset.rdatas[0].data
        if not dnames:
            return dnames
        for name in self.nodes:
            owner = self.above(name, dnames)
            if owner is not None:
                self.warn(self.labels[name], f'below the DNAME at "{self.labels[owner]}": '
                                             "never answered (the DNAME redirects every name "
                                             "below it)")  # fmt: skip
        return dnames

    def above(self, name: bytes, owners: set[bytes] | dict[bytes, bytes]) -> bytes | None:
        """The highest of ``owners`` strictly above ``name``: a walk up the name's labels, so
        checking every name costs its depth, not the number of cuts or DNAMEs."""
        found = None
        while owners and name != self.origin and name != b"\x00":
            name = parent(name)
            if name in owners:
                found = name
        return found

    def soa(self, apex: Node) -> RRset | None:
        if model.SOA in apex.rrsets:
            return apex.rrsets[model.SOA]
        ns = apex.rrsets.get(model.NS)
        mname = str(ns.rdatas[0].label) if ns else f"ns1.{self.fqdn}"
        times = (SERIALS.next(), *SOA_TIMERS.values())
        names = (name_wire(mname, syntax=False), name_wire(f"hostmaster.{self.fqdn}", syntax=False))
        rdata = SOARD(*(DNSLabel(labels(name)) for name in names), times)
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
