"""Which files make up which zone: octoDNS YamlProvider's layout of a zones directory.

A zone is ``<zone>.yaml`` (or ``.yml``), or a split directory ``<zone>.`` holding one file per
record (YamlProvider with ``split_extension: .``; the apex and wildcard records sit in a
catch-all file ``$<zone>.yaml``; every ``*.yaml`` in the directory is read, whatever its name,
as octoDNS does), or both: octoDNS merges them, and so does gslb. The watcher fingerprints
exactly these files (and the DNSSEC sidecars ``<zone>.dnssec.yaml``, which are not zones), so
an edit of any record file reloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from gslb.dnssec.settings import is_sidecar

ZONE_SUFFIXES = (".yaml", ".yml")
SPLIT_EXTENSION = "."  # YamlProvider's recommended split_extension


@dataclass(slots=True)
class ZoneSource:
    fqdn: str  # as written in the file or directory name, with a trailing dot
    files: list[Path] = field(default_factory=list)  # split files first, sorted, then the zone file


def zone_name(entry: str, split_extension: str) -> tuple[str, bool] | None:
    """``example.com.yaml`` -> ("example.com.", False); ``example.com.`` (a directory) ->
    ("example.com.", True). None for anything else."""
    for suffix in ZONE_SUFFIXES:
        if entry.endswith(suffix) and len(entry) > len(suffix):
            return entry[: -len(suffix)].rstrip(".") + ".", False
    if split_extension and entry.endswith(split_extension) and len(entry) > len(split_extension):
        return entry[: -len(split_extension)].rstrip(".") + ".", True
    return None


def zone_sources(directory: Path, split_extension: str = SPLIT_EXTENSION) -> list[ZoneSource]:
    """Every zone in ``directory`` with its files, in a stable order."""
    zones: dict[str, ZoneSource] = {}
    splits: dict[str, list[Path]] = {}
    singles: dict[str, list[Path]] = {}
    for entry in sorted(os.listdir(directory)):
        path = directory / entry
        if is_sidecar(path):
            continue  # <zone>.dnssec.yaml: the zone's signing settings, not a zone
        named = zone_name(entry, split_extension)
        if named is None:
            continue
        fqdn, split = named
        if split and path.is_dir():
            splits[fqdn] = split_files(path)
        elif not split and path.is_file():
            singles.setdefault(fqdn, []).append(path)
    for fqdn in sorted(set(splits) | set(singles)):
        zones[fqdn] = ZoneSource(fqdn, splits.get(fqdn, []) + singles.get(fqdn, []))
    return list(zones.values())


def split_files(directory: Path) -> list[Path]:
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [directory / n for n in names if n.endswith(ZONE_SUFFIXES) and (directory / n).is_file()]


def watched_files(directory: Path, split_extension: str = SPLIT_EXTENSION) -> list[Path]:
    """The files a reload would read (for the watcher's fingerprint)."""
    try:
        return [
            path for source in zone_sources(directory, split_extension) for path in source.files
        ]
    except OSError:
        return []
