"""File names as the catalog stores them: a path that is not valid UTF-8 (bytes from another
locale, a camera's card) is bound as its raw bytes (a BLOB) and read back with
surrogateescape, so it is stored losslessly; `display_path` makes one readable."""

from __future__ import annotations

import os
import sqlite3


def path_to_db(path: str) -> str | bytes:
    """A path as SQLite can store it: the str itself, or its raw bytes if it is not UTF-8."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape")


def path_from_db(value: str | bytes) -> str:
    """Inverse of `path_to_db`: bytes come back as a str with surrogate escapes (os.fsdecode)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def display_path(path: str | os.PathLike) -> str:
    """A path a user can read: undecodable bytes shown as \\xNN (the real name is kept)."""
    s = os.fspath(path)
    if isinstance(s, bytes):
        s = s.decode("utf-8", "surrogateescape")
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


# Every str bound to a statement goes through path_to_db, so any query that binds a path
# (this module's, the library's, another module's) stores and finds non-UTF-8 names.
sqlite3.register_adapter(str, path_to_db)
