"""``gslb dnssec keygen`` and ``gslb dnssec ds``: what an operator does by hand, offline."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from gslb.config.names import to_wire
from gslb.dnssec.keys import ALGORITHM_NAMES, SigningKey, generate
from gslb.dnssec.settings import SUFFIXES, ZoneSigning


class ToolError(Exception):
    """Something the operator must fix; the message says what."""


def sidecar_path(zones: Path, fqdn: str) -> Path:
    return zones / f"{fqdn.rstrip('.')}{SUFFIXES[0]}"


def keygen(zones: Path, zone: str, algorithm: int, key_dir: Path | None = None) -> list[str]:
    """Write a new CSK (mode 0600) and, for a zone not yet signed, its sidecar. Returns the
    lines to show: where things went, the DNSKEY and the DS for the parent."""
    fqdn = zone.lower().rstrip(".") + "."
    origin = to_wire(fqdn)
    key_dir = key_dir or zones / "keys"
    key_dir.mkdir(parents=True, exist_ok=True)
    pem = generate(algorithm)
    key = SigningKey.from_pem(pem)
    path = key_dir / f"{fqdn.rstrip('.')}+{algorithm:03d}+{key.tag:05d}.pem"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ToolError(f"{path} exists already; run keygen again for another key") from None
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    lines = [f"; key {key.tag}, {ALGORITHM_NAMES[algorithm].upper()}, written to {path}"]
    sidecar = sidecar_path(zones, fqdn)
    relative = os.path.relpath(path, zones)
    if sidecar.exists():
        lines.append(f"; {sidecar} exists: for a rollover add {relative} under publish:")
    else:
        sidecar.write_text(
            "# DNSSEC for this zone (see README, DNSSEC). Keep key files out of version control.\n"
            f"dnssec:\n  algorithm: {ALGORITHM_NAMES[algorithm].upper()}\n  key: {relative}\n"
        )
        lines.append(f"; signing enabled in {sidecar}; reload or restart gslb to serve it")
    lines.append(dnskey_line(fqdn, key))
    lines.append(ds_line(fqdn, origin, key))
    return lines


def dnskey_line(fqdn: str, key: SigningKey, ttl: int = 3600) -> str:
    public = base64.b64encode(key.public).decode()
    return f"{fqdn} {ttl} IN DNSKEY 257 3 {key.algorithm} {public}"


def ds_line(fqdn: str, origin: bytes, key: SigningKey, ttl: int = 3600) -> str:
    digest = key.ds_digest(origin).hex().upper()
    return f"{fqdn} {ttl} IN DS {key.tag} {key.algorithm} 2 {digest}"


def ds_lines(settings: ZoneSigning) -> list[str]:
    """The DS records the parent should hold: the keys announced in CDS (else the active);
    none when the zone announces CDS delete (RFC 8078: the parent removes its DS)."""
    return [ds_line(settings.fqdn, settings.origin, key) for key in settings.parent_keys]
