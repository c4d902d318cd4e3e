"""The catalog database: one SQLite file (WAL) of roots, images with status/errors, vector
rows, photo metadata and user decisions. Every SQL statement of imgfinder is in this package
(a rule test checks it); callers use the named methods.

Every multi-row change runs in one transaction, so a killed process leaves either the old or
the new state. One connection per thread (SQLite's rule), all in WAL mode, so the GUI thread
can read while the indexing worker writes.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgfinder.atomic import atomic_write_bytes
from imgfinder.core.catalog import photo_meta
from imgfinder.core.catalog.dupes import DupeTables
from imgfinder.core.catalog.schema import (
    _SCHEMA,
    SCHEMA_VERSION,
    SIGNED,
    create_atomically,
    is_locked_error,
    migrate_photo_meta,
)
from imgfinder.core.catalog.text import path_from_db
from imgfinder.errors import CatalogDamagedError, CatalogError, ImgfinderError

log = logging.getLogger(__name__)


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


@dataclass
class ImageWrite:
    """One file's outcome of an index run, as `Catalog.write_images` records it."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    hash: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None  # set: the file failed (status 'failed'), else status 'ok'
    vec_row: int | None = None
    meta: object = None  # photometa.PhotoMeta, or None
    decode_source: str | None = None
    same_content: bool = False  # not decoded: takes the metadata of its catalogued twin


def _image_row(r) -> ImageRow:
    return ImageRow(r[0], path_from_db(r[1]), *r[2:])


_COLS = "id, path, root_id, size, mtime_ns, hash, width, height, status, error, vec_row, model_id"


class Catalog:
    """The library's catalog file; cheap to share between threads."""

    def __init__(self, path: str | Path, *, check: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.dupes = DupeTables(self)  # the duplicate finder's tables (catalog/dupes.py)
        existed = self.path.exists()
        if not existed:
            existed = not create_atomically(self.path)
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
                migrate_photo_meta(conn)
        except sqlite3.DatabaseError as exc:
            self.close()
            if is_locked_error(exc):
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
                    for a, b, d, at in self.dupes.decision_rows()
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

    def add_folder(self, path: str | os.PathLike) -> str:
        """Add a library folder by the library's rules and return it resolved: it must exist
        and be a folder, a folder inside an existing one is refused, and a new parent takes
        over the folders below it with their images (and vectors)."""
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise ImgfinderError(f"no such folder: {p}")
        if not p.is_dir():
            raise ImgfinderError(f"not a folder: {p}")
        sp = str(p)
        for _, existing in self.roots():
            if sp == existing:
                return sp
            if Path(sp).is_relative_to(existing):
                raise ImgfinderError(f"{sp} is already inside the library folder {existing}")
        self.absorb_roots_below(self.add_root(sp), sp)
        return sp

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

    def model_prefixes_present(self, prefixes: Iterable[str]) -> set[str]:
        """Which model-id prefixes ("fused-eca-lite0") have photos with a vector: one
        range probe of the (model_id, status) index each, not a scan of every image (the
        CLI asks this before each command)."""
        found = set()
        for p in prefixes:
            row = self.execute(
                "SELECT 1 FROM images WHERE model_id >= ? AND model_id < ? AND status='ok' LIMIT 1",
                (p + "/", p + "0"),  # '0' is the character after '/'
            ).fetchone()
            if row:
                found.add(p)
        return found

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

    # -- image writes (index runs, folder changes, vector repairs) -------------------
    def write_images(
        self, root_id: int, model_id: str, writes: Iterable[ImageWrite]
    ) -> list[int | None]:
        """Insert or update one batch of files in one transaction; returns each file's image
        id, None for a failed file (it stays catalogued with its error, outside the index)."""
        now = time.time()
        ids: list[int | None] = []
        with self.transaction() as c:
            for w in writes:
                ok = w.error is None
                c.execute(
                    """INSERT INTO images (path, root_id, size, mtime_ns, hash, width, height,
                           status, error, vec_row, model_id, updated_at)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(path) DO UPDATE SET root_id=excluded.root_id,
                           size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash,
                           width=COALESCE(excluded.width, images.width),
                           height=COALESCE(excluded.height, images.height),
                           status=excluded.status, error=excluded.error,
                           vec_row=excluded.vec_row, model_id=excluded.model_id,
                           updated_at=excluded.updated_at""",
                    (
                        w.path,
                        root_id,
                        w.size,
                        w.mtime_ns,
                        w.hash or None,
                        w.width or None,
                        w.height or None,
                        "ok" if ok else "failed",
                        w.error,
                        w.vec_row,
                        model_id if ok else None,
                        now,
                    ),
                )
                (image_id,) = c.execute("SELECT id FROM images WHERE path=?", (w.path,)).fetchone()
                ids.append(int(image_id) if ok else None)
                if not ok:
                    continue
                if w.same_content:  # same bytes, same EXIF as the twin already catalogued
                    photo_meta.copy_from_same_content(c, int(image_id), w.hash)
                else:
                    photo_meta.store(c, int(image_id), w.meta, w.decode_source)
        return ids

    def delete_paths(self, paths: Iterable[str]) -> list[int]:
        """Forget these files (gone from disk); returns the ids that were catalogued."""
        ids = []
        with self.transaction() as c:
            for p in paths:
                row = c.execute("SELECT id FROM images WHERE path=?", (p,)).fetchone()
                if row:
                    ids.append(int(row[0]))
                    c.execute("DELETE FROM images WHERE id=?", (row[0],))
        return ids

    def absorb_roots_below(self, root_id: int, path: str) -> None:
        """A new parent folder takes over the roots below it, keeping their images (and
        vectors): their images move to `root_id`, the old roots go."""
        with self.transaction() as c:
            for rid, existing in self.roots():
                if rid != root_id and Path(existing).is_relative_to(path):
                    c.execute("UPDATE images SET root_id=? WHERE root_id=?", (root_id, rid))
                    c.execute("DELETE FROM roots WHERE id=?", (rid,))

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

    def hashed_rows(self) -> list[tuple[int, str, str]]:
        """(id, path, content hash) of every catalogued photo (indexed or signed only), by id:
        all the exact tier needs."""
        cur = self.execute(
            "SELECT id, path, hash FROM images WHERE hash IS NOT NULL AND status IN ('ok', ?) "
            "ORDER BY id",
            (SIGNED,),
        )
        return [(int(i), path_from_db(p), h) for i, p, h in cur]

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

    # -- vector files and rows -----------------------------------------------------
    def vector_file(self, model_id: str) -> str | None:
        """The name of the vector file holding `model_id`'s rows (None: not made yet)."""
        return self.get_meta(f"vectors:{model_id}")

    def set_vector_file(self, model_id: str, name: str) -> None:
        self.set_meta(f"vectors:{model_id}", name)

    def vector_files(self) -> set[str]:
        """Every vector file name the catalog names (any model)."""
        return {v for (v,) in self.execute("SELECT value FROM meta WHERE key LIKE 'vectors:%'")}

    def forget_vectors(self, image_ids: Iterable[int]) -> None:
        """These images lost their vector row (missing or damaged): model id and row are
        cleared and the mtime forgotten, so the next index run re-extracts them."""
        with self.transaction() as c:
            c.executemany(
                "UPDATE images SET vec_row=NULL, model_id=NULL, mtime_ns=-1 WHERE id=?",
                [(int(i),) for i in image_ids],
            )

    def move_vector_rows(self, model_id: str, mapping: Mapping[int, int], new_file: str) -> None:
        """After a compaction: old row -> new row for `model_id`'s images, and the new file
        name, in one transaction (a crash leaves the old file and rows, or the new ones)."""
        with self.transaction() as c:
            for old, new in mapping.items():
                c.execute(
                    "UPDATE images SET vec_row=? WHERE vec_row=? AND model_id=?",
                    (-1 - new, old, model_id),
                )
            c.execute(
                "UPDATE images SET vec_row=-1-vec_row WHERE vec_row<0 AND model_id=?",
                (model_id,),
            )
            c.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"vectors:{model_id}", new_file)
            )

    # -- photo metadata (columns of core/photometa.py) ------------------------------
    def photo_meta(self, image_ids: Iterable[int]) -> dict:
        """image id -> photometa.PhotoMeta for the ids whose metadata has been read."""
        return photo_meta.load(self.execute, image_ids)

    def decode_sources(self, image_ids: Iterable[int]) -> dict[int, str]:
        """image id -> how it was decoded for the model ("full", "dct-draft", ...)."""
        return photo_meta.decode_sources(self.execute, image_ids)

    def meta_unread(self, root_id: int) -> list[tuple[int, str]]:
        """(id, path) of a root's indexed photos whose metadata was never read (older
        catalogs, or an older metadata version)."""
        return photo_meta.unread(self.execute, root_id)

    def store_photo_meta(self, metas: Iterable[tuple[int, object]]) -> None:
        """(image id, PhotoMeta) read from the files' headers, in one transaction."""
        with self.transaction() as c:
            for image_id, meta in metas:
                photo_meta.store(c, image_id, meta, None)

    # -- RAW+JPEG companions -------------------------------------------------------
    def ok_images_glob(self, pattern: str) -> list[tuple[int, str]]:
        """(id, path) of indexed images whose path matches a GLOB pattern."""
        cur = self.execute(
            "SELECT id, path FROM images WHERE status='ok' AND path GLOB ?", (pattern,)
        )
        return [(int(i), path_from_db(p)) for i, p in cur]

    def ok_images_taken(self, lo: str, hi: str) -> list[tuple[int, str]]:
        """(id, path) of indexed images whose capture date text lies in [lo, hi)."""
        cur = self.execute(
            "SELECT id, path FROM images WHERE status='ok' AND taken >= ? AND taken < ?", (lo, hi)
        )
        return [(int(i), path_from_db(p)) for i, p in cur]
