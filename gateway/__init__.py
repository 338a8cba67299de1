"""The Litestar app, its routes, services, settings and command line.

Importing it makes every time zone follow the `tzdata` package's rules, not the host's
(`gateway.timezones`): decisions depend on them.
"""

from gateway.timezones import use_packaged_zones

use_packaged_zones()
