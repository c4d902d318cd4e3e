"""SQLite catalog (WAL): roots, images with status/errors, vector rows, user decisions.

Every multi-row change runs in one transaction, so a killed process leaves either
the old or the new state. One connection per thread (SQLite's rule), all in WAL
mode, so the GUI thread can read while the indexing worker writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgfinder.errors import CatalogError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT UNIQUE NOT NULL,
    root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
    size INTEGER NOT NULL DEFAULT 0,
    mtime_ns INTEGER NOT NULL DEFAULT 0,
    hash TEXT,
    width INTEGER,
    height INTEGER,
    status TEXT NOT NULL,            -- 'ok' or 'failed'
    error TEXT,
    vec_row INTEGER,                 -- row in the vector store of `model_id`
    model_id TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_hash ON images(hash);
CREATE INDEX IF NOT EXISTS images_root ON images(root_id);
CREATE INDEX IF NOT EXISTS images_model ON images(model_id, status);
CREATE TABLE IF NOT EXISTS decisions (
    hash_a TEXT NOT NULL,
    hash_b TEXT NOT NULL,
    decision TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (hash_a, hash_b)
);
"""


def _migrate_photo_meta(conn: sqlite3.Connection) -> None:
    """Additive migration (inside the opening transaction): the photo-metadata columns of
    core/photometa.py (capture date, camera, lens, exposure, GPS, decode source) on `images`.

    Older catalogs gain them with NULL values, which the next `index` run fills in from the
    files' EXIF headers; older imgfinder versions simply ignore the extra columns.
    """
    from imgfinder.core.photometa import COLUMNS  # noqa: PLC0415 - keeps catalog import-light

    have = {r[1] for r in conn.execute("PRAGMA table_info(images)")}
    for name, sql_type in COLUMNS:
        if name not in have:
            conn.execute(f"ALTER TABLE images ADD COLUMN {name} {sql_type}")
    conn.execute("CREATE INDEX IF NOT EXISTS images_taken ON images(taken)")
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('photo_meta_columns', '1')")


@dataclass(frozen=True)
class ImageRow:
    id: int
    path: str
    root_id: int
    size: int
    mtime_ns: int
    hash: str | None
    width: int | None
    height: int | None
    status: str
    error: str | None
    vec_row: int | None
    model_id: str | None


_COLS = "id, path, root_id, size, mtime_ns, hash, width, height, status, error, vec_row, model_id"


class Catalog:
    """The library's catalog file; cheap to share between threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            conn = self._conn()
            with conn:
                conn.executescript(_SCHEMA)
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                    )
                elif int(row[0]) > SCHEMA_VERSION:
                    raise CatalogError(
                        f"{self.path} was written by a newer imgfinder (schema {row[0]})"
                    )
                _migrate_photo_meta(conn)
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"cannot open catalog {self.path}: {exc}") from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def execute(self, sql: str, args: Iterable = ()) -> sqlite3.Cursor:
        return self._conn().execute(sql, tuple(args))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- meta ------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- roots -----------------------------------------------------------------------
    def roots(self) -> list[tuple[int, str]]:
        return [tuple(r) for r in self.execute("SELECT id, path FROM roots ORDER BY path")]

    def add_root(self, path: str) -> int:
        with self.transaction() as c:
            row = c.execute("SELECT id FROM roots WHERE path=?", (path,)).fetchone()
            if row:
                return int(row[0])
            cur = c.execute("INSERT INTO roots (path, added_at) VALUES (?, ?)", (path, time.time()))
            return int(cur.lastrowid)

    def remove_root(self, path: str) -> list[int]:
        """Forget a root and its images; returns the removed image ids (for the index)."""
        with self.transaction() as c:
            row = c.execute("SELECT id FROM roots WHERE path=?", (path,)).fetchone()
            if not row:
                return []
            ids = [r[0] for r in c.execute("SELECT id FROM images WHERE root_id=?", (row[0],))]
            c.execute("DELETE FROM images WHERE root_id=?", (row[0],))
            c.execute("DELETE FROM roots WHERE id=?", (row[0],))
        return ids

    # -- images ----------------------------------------------------------------------
    def images_under(self, root_id: int) -> dict[str, ImageRow]:
        cur = self.execute(f"SELECT {_COLS} FROM images WHERE root_id=?", (root_id,))
        return {r[1]: ImageRow(*r) for r in cur}

    def image(self, image_id: int) -> ImageRow | None:
        r = self.execute(f"SELECT {_COLS} FROM images WHERE id=?", (image_id,)).fetchone()
        return ImageRow(*r) if r else None

    def image_by_path(self, path: str) -> ImageRow | None:
        r = self.execute(f"SELECT {_COLS} FROM images WHERE path=?", (path,)).fetchone()
        return ImageRow(*r) if r else None

    def images(self, ids: Iterable[int]) -> dict[int, ImageRow]:
        ids = [int(i) for i in ids]
        out: dict[int, ImageRow] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT {_COLS} FROM images WHERE id IN ({','.join('?' * len(chunk))})"
            out.update((r[0], ImageRow(*r)) for r in self.execute(q, chunk))
        return out

    def vector_rows(self, model_id: str) -> list[tuple[int, int]]:
        """(image id, vector row) of every usable image of this model, by id."""
        cur = self.execute(
            "SELECT id, vec_row FROM images WHERE status='ok' AND model_id=? ORDER BY id",
            (model_id,),
        )
        return [(int(a), int(b)) for a, b in cur]

    def hash_rows(self, model_id: str) -> dict[str, int]:
        """content hash -> vector row, for reusing vectors of moved or copied files."""
        cur = self.execute(
            "SELECT hash, vec_row FROM images WHERE status='ok' AND model_id=? AND hash IS NOT NULL",
            (model_id,),
        )
        return {h: int(r) for h, r in cur}

    def failed(self) -> list[tuple[str, str]]:
        cur = self.execute("SELECT path, error FROM images WHERE status='failed' ORDER BY path")
        return [(p, e or "") for p, e in cur]

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0}
        for status, n in self.execute("SELECT status, COUNT(*) FROM images GROUP BY status"):
            out[status] = n
        return out

    def model_counts(self) -> dict[str, int]:
        cur = self.execute(
            "SELECT model_id, COUNT(*) FROM images WHERE status='ok' GROUP BY model_id"
        )
        return {m: n for m, n in cur}

    def root_counts(self) -> dict[int, tuple[int, int]]:
        """root id -> (ok, failed)."""
        out: dict[int, tuple[int, int]] = {}
        cur = self.execute(
            "SELECT root_id, SUM(status='ok'), SUM(status='failed') FROM images GROUP BY root_id"
        )
        for rid, ok, bad in cur:
            out[int(rid)] = (int(ok or 0), int(bad or 0))
        return out
