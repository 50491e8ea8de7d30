"""Per-zone DNSSEC settings: the sidecar ``<zone>.dnssec.yaml`` next to ``<zone>.yaml``.

The zone file stays a plain octoDNS file; signing is a property of how gslb serves the zone,
so it lives beside it::

    # zones/example.com.dnssec.yaml
    dnssec:
      algorithm: ECDSAP256SHA256         # default; ED25519 also accepted
      key: keys/example.com+013+31589.pem    # the CSK: signs every RRset
      publish: []                        # more DNSKEYs (rollover): sign only the apex key sets
      cds: [keys/example.com+013+31589.pem]  # keys announced in CDS/CDNSKEY (default: key);
                                         # "delete": ask the parent to remove the DS (RFC 8078)
      dnskey_ttl: 3600
      negative_signatures_per_second: 2000   # fresh denial signatures per second per process

Paths are relative to the sidecar. Every problem is collected, each naming the zone and file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dnslib import RD

from gslb.config import model
from gslb.config.model import RRset, Zone
from gslb.config.names import NameError_, to_wire
from gslb.config.safeyaml import YamlError, load_yaml
from gslb.dnssec.keys import ECDSAP256SHA256, KeyError_, SigningKey, load_key_file, parse_algorithm

SUFFIXES = (".dnssec.yaml", ".dnssec.yml")
DNSKEY, CDS, CDNSKEY = 48, 59, 60
KEYS = {"algorithm", "key", "publish", "cds", "dnskey_ttl", "negative_signatures_per_second"}
DEFAULT_DNSKEY_TTL = 3600
DEFAULT_BUDGET = 2000
CDS_DELETE = "delete"
# RFC 8078 section 4: the CDS "0 0 0 00" and CDNSKEY "0 3 0 AA==" that ask the parent to
# remove the DS (the way to go insecure without a window where resolvers call the zone bogus)
CDS_DELETE_RDATA = b"\x00\x00\x00\x00\x00"
CDNSKEY_DELETE_RDATA = b"\x00\x00\x03\x00\x00"


@dataclass(frozen=True, slots=True)
class ZoneSigning:
    """What one zone signs with; immutable, picklable, part of the configuration snapshot."""

    origin: bytes
    fqdn: str
    source: str  # the sidecar file
    algorithm: int
    active: SigningKey
    published: tuple[SigningKey, ...] = ()
    cds: tuple[SigningKey, ...] = ()
    dnskey_ttl: int = DEFAULT_DNSKEY_TTL
    budget: int = DEFAULT_BUDGET
    cds_delete: bool = False  # ``cds: delete``: CDS/CDNSKEY ask the parent to remove the DS

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        """Every key in the DNSKEY RRset, the active one first."""
        return (self.active, *self.published)

    def apex_rrsets(self) -> list[RRset]:
        """DNSKEY, and CDS/CDNSKEY (RFC 7344) when any key is announced."""
        out = [RRset(self.origin, DNSKEY, self.dnskey_ttl,
                     tuple(RD(k.dnskey_rdata) for k in self.keys))]  # fmt: skip
        if self.cds_delete:
            out.append(RRset(self.origin, CDS, self.dnskey_ttl, (RD(CDS_DELETE_RDATA),)))
            out.append(RRset(self.origin, CDNSKEY, self.dnskey_ttl, (RD(CDNSKEY_DELETE_RDATA),)))
        elif self.cds:
            out.append(RRset(self.origin, CDS, self.dnskey_ttl,
                             tuple(RD(k.ds_rdata(self.origin)) for k in self.cds)))  # fmt: skip
            out.append(RRset(self.origin, CDNSKEY, self.dnskey_ttl,
                             tuple(RD(k.dnskey_rdata) for k in self.cds)))  # fmt: skip
        return out

    @property
    def parent_keys(self) -> tuple[SigningKey, ...]:
        """The keys whose DS the parent should hold: those announced in CDS, else the active
        one; none once the zone asks for its DS to be removed."""
        if self.cds_delete:
            return ()
        return self.cds or (self.active,)

    def parent_ds(self) -> tuple[RD, ...]:
        return tuple(RD(key.ds_rdata(self.origin)) for key in self.parent_keys)


def newest_file_time(signing: Iterable[ZoneSigning]) -> float:
    """When the newest sidecar or key file was last written (0 when none can be read): a
    lower bound of the real time, for ``gslb.dnssec.window.clock_problem``."""
    newest = 0.0
    for settings in signing:
        for name in (settings.source, *(key.source for key in settings.keys)):
            try:
                newest = max(newest, Path(name).stat().st_mtime)
            except OSError:
                continue
    return newest


def is_sidecar(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def zone_name_of(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name.lower().rstrip(".") + "."


def load_signing(
    directory: Path, zones: dict[bytes, Zone], errors: list[str]
) -> dict[bytes, ZoneSigning]:
    """Read every sidecar in ``directory``; add DNSKEY/CDS/CDNSKEY to each signed apex."""
    signing: dict[bytes, ZoneSigning] = {}
    for path in sorted(p for p in directory.iterdir() if is_sidecar(p) and p.is_file()):
        fqdn = zone_name_of(path)
        try:
            origin = to_wire(fqdn)
        except NameError_ as exc:
            errors.append(f"{path}: file name is not a zone name: {exc}")
            continue
        zone = zones.get(origin)
        if zone is None:
            errors.append(f"{path}: DNSSEC settings for zone {fqdn}, which has no zone file")
            continue
        settings = parse_sidecar(path, zone, errors)
        if settings is not None:
            signing[origin] = settings
            publish_keys(zone, settings, errors)
    return signing


def parse_sidecar(path: Path, zone: Zone, errors: list[str]) -> ZoneSigning | None:
    where = f"{path}: zone {zone.fqdn}"
    try:
        data = load_yaml(path.read_bytes())
    except (OSError, YamlError) as exc:
        errors.append(f"{where}: {exc}")
        return None
    block = data.get("dnssec") if isinstance(data, Mapping) else None
    if not isinstance(block, Mapping):
        errors.append(f"{where}: expected a mapping under the key dnssec")
        return None
    before = len(errors)
    unknown = sorted(set(map(str, block)) - KEYS)
    if unknown:
        errors.append(f"{where}: unknown key {', '.join(unknown)}")
    try:
        algorithm = parse_algorithm(block.get("algorithm", ECDSAP256SHA256))
    except KeyError_ as exc:
        errors.append(f"{where}: {exc}")
        algorithm = None
    files = file_list(block, "key", where, errors, single=True)
    published = file_list(block, "publish", where, errors)
    cds_delete = block.get("cds") == CDS_DELETE
    cds = files if "cds" not in block else cds_files(block, where, errors, cds_delete)
    loaded = {}
    for name in dict.fromkeys(files + published + cds):
        key_path = Path(name) if Path(name).is_absolute() else path.parent / name
        try:
            loaded[name] = load_key_file(key_path, algorithm)
        except KeyError_ as exc:
            errors.append(f"{where}: key file {key_path}: {exc}")
    for name in cds:
        if name not in files + published:
            errors.append(f"{where}: cds lists {name}, which is neither key nor publish")
    ttl = positive(block, "dnskey_ttl", DEFAULT_DNSKEY_TTL, where, errors)
    budget = positive(block, "negative_signatures_per_second", DEFAULT_BUDGET, where, errors)
    if len(errors) != before or algorithm is None or not files:
        return None
    return ZoneSigning(
        zone.origin, zone.fqdn, str(path), algorithm, loaded[files[0]],
        tuple(loaded[n] for n in published if n != files[0]),
        tuple(loaded[n] for n in cds), ttl, budget, cds_delete,
    )  # fmt: skip


def file_list(
    block: Mapping, key: str, where: str, errors: list[str], *, single: bool = False
) -> list[str]:
    value = block.get(key)
    if value is None:
        if single:
            errors.append(f"{where}: missing key (the signing key file; `gslb dnssec keygen`)")
        return []
    items = [value] if single else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        shape = "a file name" if single else "a list of file names"
        if key == "cds":
            shape += f' or "{CDS_DELETE}"'
        errors.append(f"{where}: {key} must be {shape}")
        return []
    return list(items)


def cds_files(block: Mapping, where: str, errors: list[str], delete: bool) -> list[str]:
    return [] if delete else file_list(block, "cds", where, errors)


def positive(block: Mapping, key: str, default: int, where: str, errors: list[str]) -> int:
    value = block.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        errors.append(f'{where}: {key} "{value}" must be a positive whole number')
        return default
    return value


def publish_keys(zone: Zone, settings: ZoneSigning, errors: list[str]) -> None:
    """The key sets become ordinary apex RRsets, so lookup, ANY and NODATA bitmaps see them."""
    apex = zone.nodes.get(zone.origin)
    if apex is None:
        apex = zone.nodes[zone.origin] = model.Node(zone.origin)
    for rrset in settings.apex_rrsets():
        if rrset.rtype in apex.rrsets:
            errors.append(f"{settings.source}: zone {zone.fqdn}: the zone file has its own "
                          f"type {rrset.rtype} at the apex; DNSSEC publishes it")  # fmt: skip
            continue
        apex.rrsets[rrset.rtype] = rrset
