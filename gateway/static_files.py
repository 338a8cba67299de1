"""The file lookups of the static routes (`/pages/`, `/schema/assets/`): a path no file can have
is not found. Litestar answers the `ValueError` of a NUL in a path, and the `OSError`s of a file
taken for a directory (`common.js/x`) or a name too long, with 500, to anyone, and each NUL was
logged as a defect. A directory is not found either: the routes serve files (no index pages), and
Litestar's 404 for a directory it found named its absolute path (`/pages/%2e` told anyone where
the gateway and its virtualenv are installed)."""

from __future__ import annotations

import errno
from typing import Any

from litestar.file_system import BaseLocalFileSystem
from litestar.types import PathType
from litestar.types.file_types import FileInfo

__all__ = ["STATIC_FILES"]

_NO_SUCH_PATH = frozenset({errno.ENOTDIR, errno.ENAMETOOLONG})


class _StaticFiles(BaseLocalFileSystem):
    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        try:
            found = await super().info(path, **kwargs)
        except ValueError:
            raise FileNotFoundError(errno.ENOENT, "no such file") from None
        except OSError as exc:
            if exc.errno in _NO_SUCH_PATH:
                raise FileNotFoundError(errno.ENOENT, "no such file") from None
            raise
        if found["type"] != "file":
            raise FileNotFoundError(errno.ENOENT, "no such file")
        return found


STATIC_FILES = _StaticFiles()
