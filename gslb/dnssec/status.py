"""What /status, /explain, ``gslb explain`` and the metrics say about a zone's signing."""

from __future__ import annotations

import time

from gslb.dnssec.keys import ALGORITHM_NAMES
from gslb.dnssec.settings import ZoneSigning
from gslb.dnssec.tools import ds_lines
from gslb.dnssec.window import window_at


def describe(settings: ZoneSigning | None, now: float | None = None) -> dict:
    """Signing state of one zone, JSON-ready."""
    if settings is None:
        return {"signed": False}
    now = time.time() if now is None else now
    window = window_at(now)
    return {
        "signed": True,
        "algorithm": ALGORITHM_NAMES[settings.algorithm].upper(),
        "key_tag": settings.active.tag,
        "key_file": settings.active.source,
        "published_key_tags": [key.tag for key in settings.published],
        "cds_key_tags": [key.tag for key in settings.cds],
        "cds_delete": settings.cds_delete,
        "ds_expected_at_parent": ds_lines(settings),
        "signature_inception": window.inception,
        "signature_expiration": window.expiration,
        "days_until_expiry": round(window.days_left(now), 3),
    }


def explain_line(settings: ZoneSigning | None) -> str:
    info = describe(settings)
    if not info["signed"]:
        return "DNSSEC: zone not signed"
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info["signature_expiration"]))
    return (f"DNSSEC: answers to DO queries signed with key {info['key_tag']} "
            f"({info['algorithm']}), signatures valid until {expires}")  # fmt: skip
