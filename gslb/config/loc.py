"""LOC values (RFC 1876) in octoDNS form -> rdata bytes.

octoDNS keeps a location as twelve fields: degrees, minutes, seconds and direction for
latitude and longitude, then altitude, size and the two precisions in metres. The wire form
counts thousandths of an arc second from the equator and the prime meridian (offset by 2^31),
altitude in centimetres above 100 km below the WGS 84 spheroid, and each of size and
precisions as one byte: a digit and a power of ten of centimetres. The arithmetic follows what
resolvers and dnspython do with the same presentation text, so the bytes are the ones any
tool derives from what octoDNS holds.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from gslb.config.values import Fields, as_int

KEYS = (
    "lat_degrees", "lat_minutes", "lat_seconds", "lat_direction",
    "long_degrees", "long_minutes", "long_seconds", "long_direction",
    "altitude", "size", "precision_horz", "precision_vert",
)  # fmt: skip
EQUATOR = 2**31
ALTITUDE_BASE = 10_000_000  # centimetres: 100 km below the spheroid is 0
MAX_METRES = 90_000_000.0  # 9e9 cm, the largest digit-and-exponent value


def parse_loc_value(value: Any) -> bytes:
    f = Fields("LOC", value, KEYS)
    lat = angle(f, "lat", 90, ("N", "S"))
    lon = angle(f, "long", 180, ("E", "W"))
    altitude = number(f, "altitude", -100_000.0, 42_849_672.95)
    sizes = [encode_size(number(f, key, 0.0, MAX_METRES)) for key in KEYS[9:]]
    f.done()
    altitude_cm = int(altitude * 100.0) + ALTITUDE_BASE
    return struct.pack("!BBBBIII", 0, *sizes, lat, lon, altitude_cm)


def angle(f: Fields, prefix: str, max_degrees: int, directions: tuple[str, str]) -> int:
    """Degrees/minutes/seconds/direction -> thousandths of an arc second, offset by 2^31."""
    degrees = integer(f, f"{prefix}_degrees", max_degrees)
    minutes = integer(f, f"{prefix}_minutes", 59)
    seconds = number(f, f"{prefix}_seconds", 0.0, 59.999)
    millis = round(seconds * 1000)
    if not math.isclose(seconds * 1000, millis, abs_tol=1e-6):
        f.fail(f'{prefix}_seconds "{seconds}" has more than 3 decimals (milliseconds)')
    key = f"{prefix}_direction"
    direction = str(f.data.get(key, directions[0])).upper()
    if direction not in directions:
        f.fail(f'invalid direction for {key} "{f.data.get(key)}"')
    total = (degrees * 3600 + minutes * 60) * 1000 + millis
    if total > max_degrees * 3_600_000:
        f.fail(f"{prefix} beyond {max_degrees} degrees")
    sign = -1 if direction == directions[1] else 1
    return EQUATOR + sign * total


def integer(f: Fields, key: str, high: int) -> int:
    if key not in f.data:
        return 0
    value = as_int(f.data[key])
    if value is None or not 0 <= value <= high:
        f.fail(f'invalid value for {key} "{f.data[key]}"')
        return 0
    return value


def number(f: Fields, key: str, low: float, high: float) -> float:
    if key not in f.data:
        return 0.0
    raw = f.data[key]
    try:
        value = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not low <= value <= high:  # NaN fails too
        f.fail(f'invalid value for {key} "{raw}"')
        return 0.0
    return value


def encode_size(metres: float) -> int:
    """Metres -> RFC 1876 size byte: high nibble a digit, low nibble a power of ten (cm)."""
    cm = int(metres * 100.0)
    if cm == 0:
        return 0
    exponent = len(str(cm)) - 1
    return (cm // 10**exponent) << 4 | exponent
