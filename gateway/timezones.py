"""Which time-zone names we accept: IANA names only.

`zoneinfo` loads any file under its search path — `localtime` (the server's own zone),
`posixrules`, `right/*` leap-second clocks, and directories raise `IsADirectoryError` — so a
name is checked against the IANA set instead of by trying to load it.
"""

from __future__ import annotations

import functools
import zoneinfo

__all__ = ["is_iana_zone"]

_NOT_IANA = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_IANA


def is_iana_zone(name: str) -> bool:
    return name in _names()
