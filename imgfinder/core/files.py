"""Files around a library: reading a query image without ever blocking, and removing the temp
files of interrupted saves."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import stat
import time
from pathlib import Path

from imgfinder.errors import DecodeError
from imgfinder.lock import pid_alive

log = logging.getLogger(__name__)

_NOT_REGULAR = "not a regular file (a FIFO, device or socket cannot be a query)"


def read_query_file(path: str | os.PathLike) -> bytes:
    """Read a query image without ever blocking: FIFOs, devices and sockets are refused."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DecodeError(path, "file not found") from None
    except IsADirectoryError:
        raise DecodeError(path, "is a directory") from None
    except PermissionError:
        raise DecodeError(path, "permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket
            raise DecodeError(path, _NOT_REGULAR) from None
        raise DecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        mode = 0
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise DecodeError(path, "is a directory" if stat.S_ISDIR(mode) else _NOT_REGULAR)
    with os.fdopen(fd, "rb") as fh:
        try:
            data = fh.read()
        except OSError as exc:
            raise DecodeError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise DecodeError(path, "file is empty")
    return data


TEMP_MAX_AGE_S = 24 * 3600  # a temp file older than this is garbage whatever its name says
_TEMP_GLOBS = (".*.tmp", "*/.*.tmp", "*/*.annoy.tmp", ".salvage-*")


def _temp_owner(name: str) -> int | None:
    """The writer PID atomic_write puts in its temp names (`.NAME.pPID.XXXX.tmp`)."""
    for part in name.split("."):
        if part.startswith("p") and part[1:].isdigit():
            return int(part[1:])
    return None


def remove_stale_temp_files(data_dir: Path, *, min_age_s: float = 600.0) -> list[Path]:
    """Remove temp files of interrupted saves (index, vectors, models, backup).

    A temp file is removed when the process that wrote it is gone (its PID is in the name)
    or, for one without a PID, when it has not changed for `min_age_s`; a live writer's
    file is never touched. Returns what was removed.
    """
    removed: list[Path] = []
    now = time.time()
    for pattern in _TEMP_GLOBS:
        for f in data_dir.glob(pattern):
            try:
                age = now - f.lstat().st_mtime
            except OSError:
                continue
            pid = _temp_owner(f.name)
            if pid is not None:
                stale = not pid_alive(pid) or age > TEMP_MAX_AGE_S
            else:
                stale = age > min_age_s
            if not stale:
                continue
            with contextlib.suppress(OSError):
                if f.is_dir():
                    shutil.rmtree(f)
                else:
                    f.unlink()
                removed.append(f)
                log.info("removed temp file of an interrupted save: %s", f)
    return removed
