"""octoDNS record conventions that are not record data: the ``octodns:`` block, the legacy
``geo`` block, URLFWD, and octoDNS's rules for SRV and URI owner names.

gslb reads a zones directory as a provider reads its own state: it serves what the files hold.
So octoDNS's sync-time filters (``ignored``, ``excluded``, ``included``: octodns-sync applies
them when it decides what to write to each provider) are reported, not applied; ``lenient``
is honoured as octoDNS honours it (the record's problems are logged, the zone loads);
``healthcheck`` drives the probes of dynamic records (gslb.config.dynamic). Other keys under
``octodns:`` belong to other providers and are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

HEALTHCHECK_PROTOCOLS = ("HTTP", "HTTPS", "ICMP", "TCP", "UDP")  # octoDNS's own list
SERVICE_NAME = re.compile(r"^(\*|_[^.]+)\.[^.]+")  # octoDNS: "_service._proto" or "*._proto"
GEO_CODE = re.compile(r"^\w\w(-\w\w(-\w\w)?)?$")
URLFWD_CHOICES = {"code": (301, 302), "masking": (0, 1, 2), "query": (0, 1)}


@dataclass(slots=True)
class RecordPolicy:
    """What a record's ``octodns:`` block asks of gslb."""

    lenient: bool = False
    notes: list[str] = field(default_factory=list)  # warnings naming the key
    problems: list[str] = field(default_factory=list)  # errors, as octoDNS would refuse them

    @classmethod
    def read(cls, block: Any) -> RecordPolicy:
        policy = cls()
        if block is None:
            return policy
        if not isinstance(block, Mapping):
            policy.problems.append("octodns must be a mapping")
            return policy
        lenient = block.get("lenient", False)
        if not isinstance(lenient, bool):
            policy.problems.append(f'octodns.lenient must be true or false, not "{lenient}"')
        policy.lenient = lenient is True
        ignored = block.get("ignored", False)
        if not isinstance(ignored, bool):
            policy.problems.append(f'octodns.ignored must be true or false, not "{ignored}"')
        elif ignored:
            policy.notes.append(
                "octodns.ignored: octodns-sync neither writes nor deletes this record in any "
                "provider; gslb serves it as the file holds it"
            )
        for key in ("excluded", "included"):
            if key in block:
                policy.filter(key, block[key])
        check = block.get("healthcheck")
        protocol = check.get("protocol", "HTTPS") if isinstance(check, Mapping) else "HTTPS"
        if protocol not in HEALTHCHECK_PROTOCOLS:
            policy.problems.append("octodns.healthcheck: invalid healthcheck protocol")
        return policy

    def filter(self, key: str, value: Any) -> None:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problems.append(f"octodns.{key} must be a list of provider ids")
            return
        ids = ", ".join(value)
        self.notes.append(
            f"octodns.{key} [{ids}]: a filter octodns-sync applies when it writes each "
            "provider; gslb serves the record as the file holds it"
        )


def check_name(rtype: str, key: str) -> list[str]:
    """octoDNS refuses SRV and URI records whose name is not ``_service._proto[...]``."""
    if rtype in ("SRV", "URI") and not SERVICE_NAME.match(key):
        return [f'invalid name for {rtype} record: expected "_service._proto" or "*._proto"']
    return []


def check_geo(rtype: str, geo: Any, parse: Callable[[Any], Any]) -> list[str]:
    """octoDNS's checks of the deprecated ``geo`` block (A and AAAA only; other types ignore
    it, as octoDNS does): geo codes well formed, every value a valid value of the type."""
    if rtype not in ("A", "AAAA"):
        return []
    if not isinstance(geo, Mapping):
        return ["geo must be a mapping of geo code to values"]
    problems = []
    for code, values in geo.items():
        if not GEO_CODE.match(str(code)):
            problems.append(f'invalid geo "{code}"')
        for item in values if isinstance(values, list) else [values]:
            try:
                parse(item)
            except ValueError as exc:
                problems.append(f"geo {code}: {exc}")
    return problems


def check_urlfwd(record: Mapping) -> list[str]:
    """URLFWD is skipped, but a broken one is still refused, as octoDNS refuses it."""
    raw = record.get("values", record.get("value"))
    items = raw if isinstance(raw, list) else [raw]
    problems = []
    for item in items:
        if not isinstance(item, Mapping):
            problems.append(
                "URLFWD value must be a mapping with code, masking, query, path, target"
            )
            continue
        for key, allowed in URLFWD_CHOICES.items():
            if key not in item:
                problems.append(f"missing {key}")
            elif item[key] not in allowed:
                problems.append(f'unrecognized {key} "{item[key]}"')
        problems += [f"missing {key}" for key in ("path", "target") if key not in item]
    return problems


def gslb_block(record: Mapping) -> tuple[Any, str | None]:
    """The record's ``gslb:`` block, written at the top level or as ``octodns: {gslb: ...}``.

    octoDNS drops record keys it does not know when it writes a provider, so a ``gslb:``
    block would not survive ``octodns-sync``; its ``octodns:`` block is kept whole (it holds
    every provider's own settings), so ``octodns.gslb`` does. Returns (block, problem)."""
    top = record.get("gslb")
    block = record.get("octodns")
    nested = block.get("gslb") if isinstance(block, Mapping) else None
    if top is not None and nested is not None:
        return top, "give the gslb block once: top-level gslb or octodns.gslb, not both"
    return (top if top is not None else nested), None
