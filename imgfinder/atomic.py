"""Crash-safe file writes: temp file in the same directory, fsync, os.replace, fsync dir.

On any error (disk full included) the temp file is removed and the old file is untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename durable (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it atomically replaces `path`, else is discarded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's PID is in the name, so a later open can tell a dead writer's leftover
    # (removed) from a live one's file in progress (kept): see library.remove_stale_temp_files
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # "disk full: cannot write (<this file>)"
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path) as fh:
        fh.write(data)


def atomic_write_npz(path: str | os.PathLike, **arrays) -> Path:
    """An uncompressed .npz of `arrays`, written crash-safe (numpy imported only here)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
