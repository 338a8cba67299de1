"""Geohash (Niemeyer's base32 interleaving of longitude and latitude bits).

The gateway keeps a user's location only as a geohash of precision 6 and asks "is it
inside the target area" as a prefix test, so no coordinates are needed at decision time.
"""

BASE32 = "0123456789bcdefghjkmnpqrstuvwxyz"
_BASE32_SET = frozenset(BASE32)
MAX_PRECISION = 12


def encode(lat: float, lon: float, precision: int = 6) -> str:
    if not -90.0 <= lat <= 90.0 or not -180.0 <= lon <= 180.0:
        raise ValueError("latitude must be within -90..90 and longitude within -180..180")
    if not 1 <= precision <= MAX_PRECISION:
        raise ValueError(f"precision must be within 1..{MAX_PRECISION}")
    lat_range = [-90.0, 90.0]
    lon_range = [-180.0, 180.0]
    chars: list[str] = []
    bits = 0
    bit_count = 0
    even = True
    while len(chars) < precision:
        value, bounds = (lon, lon_range) if even else (lat, lat_range)
        middle = (bounds[0] + bounds[1]) / 2
        bits <<= 1
        if value >= middle:
            bits |= 1
            bounds[0] = middle
        else:
            bounds[1] = middle
        even = not even
        bit_count += 1
        if bit_count == 5:
            chars.append(BASE32[bits])
            bits = 0
            bit_count = 0
    return "".join(chars)


def is_valid(geohash: str) -> bool:
    return 1 <= len(geohash) <= MAX_PRECISION and set(geohash) <= _BASE32_SET
