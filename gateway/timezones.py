"""Which time-zone names we accept, IANA names only, and whose rules they follow: the `tzdata`
package's.

`zoneinfo` loads any file under its search path — `localtime` (the server's own zone),
`posixrules`, `right/*` leap-second clocks, and directories raise `IsADirectoryError` — so a
name is checked against the IANA set instead of by trying to load it.

`zoneinfo` also prefers the host's `/usr/share/zoneinfo` to the `tzdata` package, and a host's
copy may be older than the rules in force: one here was 2025b, from before British Columbia kept
UTC-7 all year (2026-11-01), so a Vancouver user's quiet hours began an hour late, and the daily
cap's day ended an hour off, every evening. The package, pinned by this project and updated with
it, decides (`use_packaged_zones`, run when `gateway` is imported).
"""

from __future__ import annotations

import functools
import zoneinfo

__all__ = ["is_iana_zone", "use_packaged_zones"]

_NOT_IANA = frozenset({"localtime", "posixrules", "Factory"})


@functools.cache
def _names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_IANA


def is_iana_zone(name: str) -> bool:
    return name in _names()


def use_packaged_zones() -> None:
    """Rules from the `tzdata` package only, for every `ZoneInfo` made from now on in this
    process (the policies' included); zones loaded before are dropped from `zoneinfo`'s cache."""
    zoneinfo.reset_tzpath(to=())
    zoneinfo.ZoneInfo.clear_cache()
    _names.cache_clear()
