"""SQLite catalog (WAL): roots, images with status/errors, vector rows, user decisions.

Every multi-row change runs in one transaction, so a killed process leaves either
the old or the new state. One connection per thread (SQLite's rule), all in WAL
mode, so the GUI thread can read while the indexing worker writes.

File names the OS allows but that are not valid UTF-8 (bytes from another locale, a
camera's card) are stored losslessly: such a path is bound as its `os.fsencode` bytes
(a BLOB) and read back with surrogateescape, Python's own way to carry them in a str
(see `path_to_db` / `path_from_db`). `display_path` makes one readable.

The catalog checks itself at open (a zero-byte file or a failed `PRAGMA quick_check`
is damage, raised as `CatalogDamagedError`); `recover_catalog` moves a damaged file
aside (never deletes it), rebuilds from what can still be read and restores the folders
and duplicate decisions from `catalog-backup.json`, a small snapshot written atomically
after every change of folders or decisions (`Catalog.write_backup`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgfinder.atomic import atomic_write_bytes
from imgfinder.errors import CatalogDamagedError, CatalogError

log = logging.getLogger(__name__)

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


# -- file names that are not UTF-8 ---------------------------------------------------------------
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


def _image_row(r) -> ImageRow:
    return ImageRow(r[0], path_from_db(r[1]), *r[2:])


_COLS = "id, path, root_id, size, mtime_ns, hash, width, height, status, error, vec_row, model_id"


class Catalog:
    """The library's catalog file; cheap to share between threads."""

    def __init__(self, path: str | Path, *, check: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        existed = self.path.exists()
        if not existed:
            existed = not _create_atomically(self.path)
        if existed and self.path.stat().st_size == 0:
            raise CatalogDamagedError(self.path, "the file is empty (0 bytes)")
        try:
            if existed and check:
                self._quick_check()
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
            self.close()
            if _is_locked_error(exc):
                raise CatalogError(f"cannot open catalog {self.path}: {exc}") from None
            raise CatalogDamagedError(self.path, str(exc)) from None
        self.created = not existed

    def _quick_check(self) -> None:
        """Raise CatalogDamagedError unless SQLite's quick_check passes (cost: benchmarks/faults)."""
        rows = [r[0] for r in self._conn().execute("PRAGMA quick_check")]
        if rows != ["ok"]:
            self.close()
            raise CatalogDamagedError(self.path, "; ".join(map(str, rows[:3])))

    @property
    def backup_path(self) -> Path:
        return self.path.with_name(self.path.stem + "-backup.json")

    def write_backup(self) -> None:
        """Snapshot folders and duplicate decisions to catalog-backup.json (atomic, small).

        Called after every change of either; a failure (disk full) is logged, not raised:
        the change itself is already committed in the catalog.
        """
        try:
            snap = {
                "format": "imgfinder-catalog-backup",
                "version": 1,
                "written_at": time.time(),
                "roots": [p for _, p in self.roots()],
                "decisions": [
                    [path_from_db(a), path_from_db(b), d, at]
                    for a, b, d, at in self.execute(
                        "SELECT hash_a, hash_b, decision, at FROM decisions ORDER BY hash_a, hash_b"
                    )
                ],
            }
            data = json.dumps(snap, indent=1).encode("utf-8", "surrogateescape")
            atomic_write_bytes(self.backup_path, data)
        except (OSError, sqlite3.Error) as exc:
            log.warning("could not write the catalog backup %s: %s", self.backup_path, exc)

    def data_version(self) -> int:
        """Changes when another connection (another process, or thread) commits: poll this."""
        return int(self._conn().execute("PRAGMA data_version").fetchone()[0])

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
        return [
            (int(i), path_from_db(p))
            for i, p in self.execute("SELECT id, path FROM roots ORDER BY path")
        ]

    def add_root(self, path: str) -> int:
        with self.transaction() as c:
            row = c.execute("SELECT id FROM roots WHERE path=?", (path,)).fetchone()
            if row:
                return int(row[0])
            cur = c.execute("INSERT INTO roots (path, added_at) VALUES (?, ?)", (path, time.time()))
            new_id = int(cur.lastrowid)
        self.write_backup()
        return new_id

    def remove_root(self, path: str) -> list[int]:
        """Forget a root and its images; returns the removed image ids (for the index)."""
        with self.transaction() as c:
            row = c.execute("SELECT id FROM roots WHERE path=?", (path,)).fetchone()
            if not row:
                return []
            ids = [r[0] for r in c.execute("SELECT id FROM images WHERE root_id=?", (row[0],))]
            c.execute("DELETE FROM images WHERE root_id=?", (row[0],))
            c.execute("DELETE FROM roots WHERE id=?", (row[0],))
        self.write_backup()
        return ids

    # -- images ----------------------------------------------------------------------
    def images_under(self, root_id: int) -> dict[str, ImageRow]:
        cur = self.execute(f"SELECT {_COLS} FROM images WHERE root_id=?", (root_id,))
        rows = (_image_row(r) for r in cur)
        return {r.path: r for r in rows}

    def image(self, image_id: int) -> ImageRow | None:
        r = self.execute(f"SELECT {_COLS} FROM images WHERE id=?", (image_id,)).fetchone()
        return _image_row(r) if r else None

    def image_by_path(self, path: str) -> ImageRow | None:
        r = self.execute(f"SELECT {_COLS} FROM images WHERE path=?", (path,)).fetchone()
        return _image_row(r) if r else None

    def images(self, ids: Iterable[int]) -> dict[int, ImageRow]:
        ids = [int(i) for i in ids]
        out: dict[int, ImageRow] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT {_COLS} FROM images WHERE id IN ({','.join('?' * len(chunk))})"
            out.update((r[0], _image_row(r)) for r in self.execute(q, chunk))
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
        return [(path_from_db(p), e or "") for p, e in cur]

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "failed": 0}
        for status, n in self.execute("SELECT status, COUNT(*) FROM images GROUP BY status"):
            out[status] = n
        return out

    def model_counts(self) -> dict[str, int]:
        cur = self.execute(
            "SELECT model_id, COUNT(*) FROM images WHERE status='ok' AND model_id IS NOT NULL "
            "GROUP BY model_id"
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

    def awaiting_vectors(self) -> int:
        """Images whose vector was found damaged or missing and that the next index re-extracts."""
        row = self.execute(
            "SELECT COUNT(*) FROM images WHERE status='ok' AND model_id IS NULL"
        ).fetchone()
        return int(row[0])

    # -- signatures-only rows (core/dupes/sigindex.py: `index --signatures-only`) -----------
    def write_signed(self, root_id: int, records: list[tuple]) -> list[int | None]:
        """Upsert files read for their duplicate signature only, in one transaction.

        records: (path, size, mtime_ns, hash, width, height, status, error) with status
        SIGNED (hash known, no vector yet) or 'failed'. A row of either kind has no vector
        and no model, so the next full `index` extracts it. Returns each row's id (None for
        'failed')."""
        now = time.time()
        ids: list[int | None] = []
        with self.transaction() as c:
            for path, size, mtime_ns, h, w, ht, status, error in records:
                c.execute(
                    """INSERT INTO images (path, root_id, size, mtime_ns, hash, width, height,
                           status, error, vec_row, model_id, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)
                       ON CONFLICT(path) DO UPDATE SET root_id=excluded.root_id,
                           size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash,
                           width=COALESCE(excluded.width, images.width),
                           height=COALESCE(excluded.height, images.height),
                           status=excluded.status, error=excluded.error,
                           vec_row=NULL, model_id=NULL, updated_at=excluded.updated_at""",
                    (path, root_id, size, mtime_ns, h, w, ht, status, error, now),
                )
                (image_id,) = c.execute("SELECT id FROM images WHERE path=?", (path,)).fetchone()
                ids.append(int(image_id) if status == SIGNED else None)
        return ids

    def signed_rows(self) -> list[int]:
        """Ids of images that have a content hash and a duplicate signature but no vector yet."""
        cur = self.execute(
            "SELECT id FROM images WHERE status=? AND hash IS NOT NULL ORDER BY id", (SIGNED,)
        )
        return [int(i) for (i,) in cur]

    def dupe_scan_rows(self, model_id: str | None) -> list[tuple[int, str, str, bool]]:
        """(id, path, hash, has a vector of model_id) of every photo a duplicate scan covers:
        those with a vector of model_id (None: none) and those with a signature only, by id.
        One query: at 100k photos building ImageRows for this took most of a cached scan."""
        cur = self.execute(
            "SELECT id, path, hash, (status='ok' AND model_id=?) FROM images "
            "WHERE hash IS NOT NULL AND ((status='ok' AND model_id=?) OR status=?) "
            "ORDER BY id",
            (model_id or "", model_id or "", SIGNED),
        )
        return [(int(i), path_from_db(p), h, bool(v)) for i, p, h, v in cur]

    def delete_image_paths(self, paths: Iterable[str]) -> list[int]:
        """Forget these files (gone from disk); returns the removed image ids."""
        ids: list[int] = []
        with self.transaction() as c:
            for p in paths:
                row = c.execute("SELECT id FROM images WHERE path=?", (p,)).fetchone()
                if row:
                    ids.append(int(row[0]))
                    c.execute("DELETE FROM images WHERE id=?", (row[0],))
        return ids

    def absorb_roots_below(self, new_id: int, path: str) -> None:
        """A new parent folder takes over the roots inside it, keeping their images."""
        with self.transaction() as c:
            for rid, existing in self.roots():
                if rid != new_id and Path(existing).is_relative_to(path):
                    c.execute("UPDATE images SET root_id=? WHERE root_id=?", (new_id, rid))
                    c.execute("DELETE FROM roots WHERE id=?", (rid,))


def _create_atomically(path: Path) -> bool:
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


def _is_locked_error(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


# -- recovery of a damaged catalog ---------------------------------------------------------------
# Tables worth salvaging, parents first (images reference roots). The verified-pair cache is
# recomputed on demand and is not copied.
_SALVAGE_TABLES = ("roots", "images", "decisions", "meta", "dupe_signatures")


@dataclass
class Recovery:
    """What `recover_catalog` did, for one message to the user."""

    reason: str
    moved_to: Path | None
    salvaged: dict[str, int]
    restored_roots: int = 0
    restored_decisions: int = 0

    def message(self) -> str:
        kept = (
            f"kept {self.salvaged.get('roots', 0)} folders, {self.salvaged.get('images', 0)} "
            f"images and {self.salvaged.get('decisions', 0)} duplicate decisions from it"
        )
        where = f"moved it aside to {display_path(self.moved_to)}; " if self.moved_to else ""
        backup = ""
        if self.restored_roots or self.restored_decisions:
            backup = (
                f"; restored {self.restored_roots} folders and {self.restored_decisions} "
                "decisions from the backup"
            )
        return (
            f"the catalog was damaged ({self.reason}): {where}{kept}{backup}. "
            "Run `imgfinder index` to re-index what was lost."
        )


def _move_aside(path: Path) -> Path | None:
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
        n += 1
    os.replace(path, aside)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():
            os.replace(side, Path(f"{aside}{suffix}"))
    from imgfinder.atomic import fsync_dir

    fsync_dir(path.parent)
    return aside


def _salvage_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> int:
    """Copy every readable row of `table` (skipping unreadable pages); returns rows copied."""
    try:
        src_cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return 0
    dst_cols = {r[1] for r in dst.execute(f"PRAGMA table_info({table})")}
    cols = [c for c in src_cols if c in dst_cols]
    if not cols:
        return 0
    names = ", ".join(cols)
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(cols))})"
    last, skip, failures, copied = -(2**63), 1, 0, 0
    while failures < 64:
        try:
            rows = src.execute(
                f"SELECT rowid, {names} FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 256",
                (last,),
            ).fetchall()
        except sqlite3.DatabaseError:
            failures += 1
            last, skip = last + skip, skip * 4  # jump over the unreadable page(s)
            continue
        if not rows:
            break
        skip = 1
        for r in rows:
            last = r[0]
            if table == "meta" and r[1] == "schema_version":
                continue
            try:
                cur = dst.execute(insert, r[1:])
                copied += cur.rowcount
            except sqlite3.Error:
                pass  # e.g. an image whose folder was not readable
    return copied


def _salvage(damaged: Path, fresh: Catalog) -> dict[str, int]:
    """Read what can be read from a (copy of a) damaged catalog into `fresh`."""
    import tempfile

    out: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix=".salvage-", dir=fresh.path.parent) as tmp:
        copy = Path(tmp) / "damaged.sqlite"
        shutil.copyfile(damaged, copy)
        wal = Path(f"{damaged}-wal")
        if wal.exists():
            shutil.copyfile(wal, Path(f"{copy}-wal"))
        try:
            src = sqlite3.connect(copy, isolation_level=None)
        except sqlite3.Error:
            return out
        try:
            with fresh.transaction() as dst:
                for table in _SALVAGE_TABLES:
                    out[table] = _salvage_table(src, dst, table)
                # vector rows are only usable if the catalog still names their file
                if not dst.execute("SELECT 1 FROM meta WHERE key LIKE 'vectors:%'").fetchone():
                    dst.execute("UPDATE images SET vec_row=NULL, model_id=NULL, mtime_ns=-1")
        except sqlite3.Error as exc:
            log.warning("salvage of %s stopped: %s", damaged, exc)
        finally:
            src.close()
    return out


def _restore_backup(fresh: Catalog) -> tuple[int, int]:
    """Folders and decisions from catalog-backup.json that `fresh` lacks; returns (roots, dec)."""
    try:
        snap = json.loads(fresh.backup_path.read_bytes().decode("utf-8", "surrogateescape"))
    except FileNotFoundError:
        return 0, 0
    except (OSError, ValueError) as exc:
        log.warning("catalog backup %s unreadable: %s", fresh.backup_path, exc)
        return 0, 0
    if not isinstance(snap, dict) or snap.get("format") != "imgfinder-catalog-backup":
        log.warning("%s is not an imgfinder catalog backup", fresh.backup_path)
        return 0, 0
    roots = decisions = 0
    with fresh.transaction() as c:
        for p in snap.get("roots", []):
            if isinstance(p, str):
                cur = c.execute(
                    "INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)", (p, time.time())
                )
                roots += cur.rowcount
        for item in snap.get("decisions", []):
            if isinstance(item, list) and len(item) == 4:
                cur = c.execute(
                    "INSERT OR IGNORE INTO decisions (hash_a, hash_b, decision, at) "
                    "VALUES (?, ?, ?, ?)",
                    item,
                )
                decisions += cur.rowcount
    return roots, decisions


def recover_catalog(path: str | Path, reason: str) -> Recovery:
    """Move a damaged catalog aside, rebuild it from what can be read and from the backup.

    The caller holds the library's writer lock. The damaged file is never deleted.
    """
    path = Path(path)
    moved = _move_aside(path)
    fresh = Catalog(path, check=False)
    try:
        salvaged = {}
        if moved is not None and moved.stat().st_size:
            try:
                salvaged = _salvage(moved, fresh)
            except (OSError, sqlite3.Error) as exc:  # e.g. no room for the salvage copy
                log.warning("could not read the damaged catalog %s: %s", moved, exc)
        roots, decisions = _restore_backup(fresh)
        fresh.write_backup()
    finally:
        fresh.close()
    rec = Recovery(reason, moved, salvaged, roots, decisions)
    log.info("%s", rec.message())
    return rec


def restore_missing_catalog(fresh: Catalog) -> Recovery | None:
    """A new, empty catalog whose backup remains (the file was deleted): bring back the
    folders and decisions from the backup. The caller holds the writer lock."""
    if fresh.roots() or not fresh.backup_path.exists():
        return None
    roots, decisions = _restore_backup(fresh)
    if not roots and not decisions:
        return None
    why = "the file was missing" if fresh.created else "it had lost its folders"
    rec = Recovery(why, None, {}, roots, decisions)
    log.info("%s", rec.message())
    return rec
