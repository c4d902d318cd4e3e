"""The catalog's schema: its tables, the additive migrations, and the atomic creation of a new
catalog file. The duplicate finder's own tables (signatures, verified pairs) are created on
first use (`DUPE_TABLES`), so the catalog schema version does not change for them."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

SCHEMA_VERSION = 1
SIGNED = "signed"  # images.status of a file read for its duplicate signature only (no vector)

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


DUPE_TABLES = """
CREATE TABLE IF NOT EXISTS dupe_signatures (
    hash TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    sig BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dupe_verified (
    hash_a TEXT NOT NULL,
    hash_b TEXT NOT NULL,
    version INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (hash_a, hash_b)
);
CREATE TABLE IF NOT EXISTS dupe_facts (
    hash TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    facts TEXT NOT NULL
);
"""


def migrate_photo_meta(conn: sqlite3.Connection) -> None:
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


def create_atomically(path: Path) -> bool:
    """Create an empty catalog (schema, WAL mode) under a temp name and link it into place, so
    `path` never exists as a zero-byte or half-made file: a zero-byte catalog is always damage,
    never a catalog another process is creating. False if another process created it first."""
    tmp = path.with_name(f".{path.name}.p{os.getpid()}.{threading.get_ident()}.new.tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    for side in ("-wal", "-shm"):
        Path(f"{tmp}{side}").unlink(missing_ok=True)
    try:
        try:
            os.link(tmp, path)  # atomic, and fails if the catalog appeared meanwhile
        except FileExistsError:
            return False
        except OSError:  # no hard links here (FAT, some shares): rename if still free
            if path.exists():
                return False
            os.replace(tmp, path)
        from imgfinder.atomic import fsync_dir

        fsync_dir(path.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def is_locked_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text
