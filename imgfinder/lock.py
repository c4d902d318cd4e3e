"""One writer per data directory: an advisory lock file that names its holder.

`<data dir>/writer.lock` is locked with flock (LockFileEx through msvcrt on Windows) by the
process that writes the vector store, the index file or the folders: `imgfinder index`, the
app while it indexes, `roots add/remove`. The file holds the holder's PID, what it is doing
and since when, so a second writer is told "indexing in progress in process N" instead of
racing it. The kernel drops the lock when its holder dies (kill -9 included), so a lock
left by a dead process is simply taken over: the stale PID in the file is only reported in
the log. Where the file system cannot lock (some network shares), the PID in the file is
checked instead, and a PID that no longer runs is a stale lock, broken by rewriting it.

The lock is re-entrant inside one process (the app's indexing thread and its GUI thread
share it), counted per data directory.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from imgfinder.errors import LibraryBusyError

log = logging.getLogger(__name__)

LOCK_NAME = "writer.lock"

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise  # ENOLCK / EOPNOTSUPP: no locking here, fall back to the PID check

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # pragma: no cover
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)
        if handle:
            ctypes.windll.kernel32.CloseHandle(handle)
            return True
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(path: str | os.PathLike) -> dict | None:
    """The holder recorded in a lock file ({"pid", "what", "since", "host"}), or None."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    try:
        info = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def busy_message(info: dict | None) -> str:
    if not info:
        return "the library is being written by another process; try again when it has finished"
    what = info.get("what") or "writing"
    since = info.get("since")
    when = f" since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else ""
    return (
        f"{what} in progress in process {info['pid']}{when}; "
        "wait for it to finish (or stop it) and try again"
    )


class _Held:
    def __init__(self, fd: int | None, what: str):
        self.fd = fd
        self.what = what
        self.count = 0


_held: dict[str, _Held] = {}
_held_guard = threading.Lock()


class WriterLock:
    """The writer lock of one data directory."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / LOCK_NAME
        self._key = os.path.normcase(os.path.abspath(self.path))

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        with _held_guard:
            return self._key in _held

    def holder(self) -> dict | None:
        """Who holds the lock now (None when nobody, or only a dead process, does).

        Read-only: the lock is never tried here (a reader must not make a writer fail). The
        holder empties the file on release, so a recorded PID that still runs is the holder.
        """
        info = read_holder(self.path)
        if info is None or not pid_alive(info["pid"]):
            return None
        return info

    def acquire(self, what: str, timeout: float = 0.0) -> None:
        """Take the lock for `what` ("indexing", ...) or raise LibraryBusyError naming the holder."""
        with _held_guard:
            h = _held.get(self._key)
            if h is not None:
                h.count += 1
                return
        deadline = time.monotonic() + timeout
        while True:
            fd = self._try_acquire()
            if fd is not False:
                break
            if time.monotonic() >= deadline:
                info = read_holder(self.path)
                raise LibraryBusyError(busy_message(info), pid=info and info.get("pid"))
            time.sleep(0.1)
        stale = read_holder(self.path)
        if stale and stale.get("pid") != os.getpid():
            log.info("taking over the writer lock left by process %s (%s)", stale["pid"], stale)
        self._write_holder(fd, what)
        with _held_guard:
            h = _Held(fd, what)
            h.count = 1
            _held[self._key] = h

    def _try_acquire(self):
        """An fd holding the lock, None when held without OS locking, or False when busy."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if _try_lock(fd):
                return fd
        except OSError:
            # no OS locks on this file system: fall back to the PID written in the file
            info = read_holder(self.path)
            if info and info.get("pid") != os.getpid() and pid_alive(info["pid"]):
                os.close(fd)
                return False
            return fd
        os.close(fd)
        return False

    def _write_holder(self, fd: int, what: str) -> None:
        info = {
            "pid": os.getpid(),
            "what": what,
            "since": time.time(),
            "host": socket.gethostname(),
        }
        data = json.dumps(info).encode()
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, data)
        except OSError as exc:  # disk full: the OS lock still holds, only the name is missing
            log.warning("cannot record the writer lock holder in %s: %s", self.path, exc)

    def release(self) -> None:
        with _held_guard:
            h = _held.get(self._key)
            if h is None:
                return
            h.count -= 1
            if h.count > 0:
                return
            del _held[self._key]
        with contextlib.suppress(OSError):
            os.ftruncate(h.fd, 0)
        _unlock(h.fd)
        with contextlib.suppress(OSError):
            os.close(h.fd)

    @contextlib.contextmanager
    def hold(self, what: str, timeout: float = 0.0) -> Iterator[None]:
        self.acquire(what, timeout)
        try:
            yield
        finally:
            self.release()
