"""Append-only float16 vector store, memory-mapped for reading.

Layout: a 64-byte header (magic, format version, dim, model-id digest) then rows.
Version 2 (written now) stores each row as `dim` float16 followed by the CRC-32 of those
bytes, so a damaged row (overwritten bytes, NaNs written over it) is detected when it is
read; version 1 (rows without a checksum) is still read, and the library rewrites such a
file to version 2 the next time it writes (`VectorFiles.open_writer`).

Crash safety comes from ordering: rows are appended and fsync'ed *before* the catalog
transaction that references them commits, so the catalog never points at a row that is
not fully on disk. A torn tail (killed mid-append) is cut back to whole rows when a
writer opens the store; a reader (`writable=False`) never changes the file, it ignores
the partial row, which may be a live writer's append in flight. Rows no longer
referenced (deleted or changed photos) are dropped by `compact_to`, which writes a new
file that the catalog switches to in one transaction.

`VectorFiles` owns a library's `vectors/` folder: the file names (`<digest>-<generation>.f16`,
recorded in the catalog per model id), opening, migration, compaction and orphan removal.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from imgfinder.atomic import atomic_write
from imgfinder.errors import IndexFormatError, ModelMismatchError

log = logging.getLogger(__name__)

MAGIC = b"IMGFVEC\x00"
VERSION = 2  # rows carry a CRC-32; version 1 files (no checksum) are read and migrated
READ_VERSIONS = (1, 2)
HEADER = struct.Struct("<8sII16s")  # magic, version, dim, model digest
HEADER_SIZE = 64


def model_digest(model_id: str) -> bytes:
    return hashlib.blake2b(model_id.encode(), digest_size=16).digest()


def row_dtype(dim: int, version: int = VERSION) -> np.dtype:
    """One stored row: the vector, plus its CRC-32 from version 2 on."""
    if version == 1:
        return np.dtype([("v", "<f2", (dim,))])
    return np.dtype([("v", "<f2", (dim,)), ("crc", "<u4")])


def row_crcs(vectors: np.ndarray) -> np.ndarray:
    """CRC-32 of each row's float16 bytes."""
    v = np.ascontiguousarray(vectors, dtype=np.float16)
    return np.fromiter((zlib.crc32(row) for row in v), dtype=np.uint32, count=len(v))


class VectorStore:
    """Rows of float16 vectors for one model id.

    `writable=False` opens for reading only: nothing is created, trimmed or rewritten, and
    a missing file reads as empty (`missing` is then True).
    """

    problem: str | None = None  # why a read-only store reads as empty (unreadable header)

    def __init__(self, path: str | Path, dim: int, model_id: str, *, writable: bool = True):
        self.path = Path(path)
        self.dim = int(dim)
        self.model_id = model_id
        self.writable = writable
        self._mm: np.memmap | None = None
        self._mm_rows = -1
        self.missing = False
        self.bad_rows: set[int] = set()  # rows found damaged when read
        # rows whose checksum already passed in this process: append-only rows do not change,
        # so each is checked once (an exact search reads every row on every query)
        self._checked = np.zeros(0, dtype=bool)
        self.version = VERSION
        if not self.path.exists() or (writable and self.path.stat().st_size < HEADER_SIZE):
            if not writable:
                self.missing = True
                self._set_version(VERSION)
                return
            self._write_header()
        self._check_header()
        if writable:
            self._trim_torn_tail()

    def _set_version(self, version: int) -> None:
        self.version = version
        self.dtype = row_dtype(self.dim, version)
        self.row_bytes = self.dtype.itemsize

    def _header_bytes(self, version: int = VERSION) -> bytes:
        return HEADER.pack(MAGIC, version, self.dim, model_digest(self.model_id)).ljust(
            HEADER_SIZE, b"\x00"
        )

    def _write_header(self) -> None:
        with atomic_write(self.path) as fh:
            fh.write(self._header_bytes())

    def _check_header(self) -> None:
        with open(self.path, "rb") as fh:
            raw = fh.read(HEADER.size)
        if len(raw) < HEADER.size:
            raise IndexFormatError(self.path, "vector store header is truncated")
        magic, version, dim, digest = HEADER.unpack(raw)
        if magic != MAGIC:
            raise IndexFormatError(self.path, "not an imgfinder vector store")
        if version not in READ_VERSIONS:
            raise IndexFormatError(self.path, f"vector store version {version} unsupported")
        if dim != self.dim:
            raise IndexFormatError(self.path, f"dimension {dim}, expected {self.dim}")
        if digest != model_digest(self.model_id):
            raise ModelMismatchError(f"{self.path} holds vectors of another model")
        self._set_version(version)

    def _trim_torn_tail(self) -> None:
        size = self.path.stat().st_size
        extra = (size - HEADER_SIZE) % self.row_bytes
        if extra:
            log.warning("%s: cutting %d bytes of a torn append", self.path, extra)
            with open(self.path, "r+b") as fh:
                fh.truncate(size - extra)
                os.fsync(fh.fileno())

    def __len__(self) -> int:
        if self.missing:
            return 0
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        return max(0, size - HEADER_SIZE) // self.row_bytes

    def nbytes(self) -> int:
        return 0 if self.missing else self.path.stat().st_size

    def append(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows durably; returns their row numbers (the caller holds the writer lock)."""
        if not self.writable:
            raise RuntimeError("vector store opened read-only")
        v = np.ascontiguousarray(vectors, dtype=np.float16).reshape(-1, self.dim)
        if not np.isfinite(v).all():
            raise ValueError("refusing to store non-finite vectors")
        rec = np.empty(len(v), dtype=self.dtype)
        rec["v"] = v
        if self.version >= 2:
            rec["crc"] = row_crcs(v)
        with open(self.path, "ab") as fh:
            end = fh.seek(0, os.SEEK_END)
            start = (end - HEADER_SIZE) // self.row_bytes
            try:
                fh.write(rec.tobytes())
                fh.flush()
                os.fsync(fh.fileno())
            except OSError:
                # disk full half-way: cut the partial rows so the file stays whole rows
                fh.truncate(end)
                raise
        return np.arange(start, start + len(v), dtype=np.int64)

    def _records(self) -> np.ndarray:
        n = len(self)
        if self._mm is None or self._mm_rows != n:
            if n == 0:
                return np.zeros(0, self.dtype)
            self._mm = np.memmap(
                self.path, dtype=self.dtype, mode="r", offset=HEADER_SIZE, shape=(n,)
            )
            self._mm_rows = n
        return self._mm

    def matrix(self) -> np.ndarray:
        """Read-only (N, dim) view of all rows, memory-mapped (re-mapped when the file grew).

        Not verified; `get` and `verify` check the rows' checksums.
        """
        return self._records()["v"]

    def verify(self, rows: np.ndarray | None = None, *, chunk: int = 4096) -> np.ndarray:
        """Row numbers among `rows` (default all) that are missing, damaged or non-finite."""
        n = len(self)
        rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        bad = [rows[(rows >= n) | (rows < 0)]]
        inside = np.unique(rows[(rows < n) & (rows >= 0)])
        rec = self._records()
        for i in range(0, len(inside), chunk):
            part = inside[i : i + chunk]
            got = np.asarray(rec[part])
            mask = self._bad_mask(got)
            bad.append(part[mask])
            self._mark_checked(part[~mask])
        out = np.unique(np.concatenate(bad)) if bad else np.zeros(0, np.int64)
        self.bad_rows.update(out.tolist())
        return out

    def _mark_checked(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        need = int(rows.max()) + 1
        if need > len(self._checked):
            grown = np.zeros(max(need, 2 * len(self._checked)), dtype=bool)
            grown[: len(self._checked)] = self._checked
            self._checked = grown
        self._checked[rows] = True

    def _unchecked(self, rows: np.ndarray) -> np.ndarray:
        """Mask of `rows` (all inside the file) not yet checked in this process."""
        known = rows < len(self._checked)
        out = np.ones(len(rows), dtype=bool)
        out[known] = ~self._checked[rows[known]]
        return out

    def _bad_mask(self, got: np.ndarray) -> np.ndarray:
        v = got["v"]
        mask = ~np.isfinite(v).all(axis=1)
        if self.version >= 2:
            mask |= row_crcs(v) != got["crc"]
        return mask

    def get(self, rows: np.ndarray, *, verify: bool = True) -> np.ndarray:
        """Rows as a (k, dim) float16 array; damaged or missing rows read as zeros.

        Such rows are added to `bad_rows` (and logged once), so the caller can tell the user
        and leave them out; the next `imgfinder index` re-extracts them.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n = len(self)
        out = np.zeros((len(rows), self.dim), np.float16)
        ok = (rows < n) & (rows >= 0)
        if ok.any():
            inside = rows[ok]
            got = np.asarray(self._records()[inside])
            out[ok] = got["v"]
            todo = self._unchecked(inside) if verify else np.zeros(len(inside), dtype=bool)
            if todo.any():
                bad = np.zeros(len(inside), dtype=bool)
                bad[todo] = self._bad_mask(got[todo])
                self._mark_checked(inside[todo & ~bad])
                if bad.any():
                    idx = np.flatnonzero(ok)[bad]
                    out[idx] = 0
                    ok[idx] = False
        lost = rows[~ok]
        if len(lost):
            fresh = set(lost.tolist()) - self.bad_rows
            if fresh:
                log.warning(
                    "%s: %d damaged or missing vector rows (left out; `imgfinder index` "
                    "re-extracts them)",
                    self.path,
                    len(fresh),
                )
                self.bad_rows.update(fresh)
        return out

    def take(self, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`get` into a caller's (len(rows), dim) float16 buffer: rows already checked in this
        process are gathered straight from the mapped file's vector field, with no temporary
        record array (the index's exact re-rank reads a few thousand rows per block this way);
        any other row (unchecked, damaged or missing) goes through `get` and its checks."""
        rows = np.asarray(rows, dtype=np.int64)
        n = len(self)
        if len(rows) and (
            rows.min() < 0
            or rows.max() >= min(n, len(self._checked))
            or self._unchecked(rows).any()
        ):
            out[:] = self.get(rows)
            return out
        if len(rows):
            # whole records from a plain (rows, row_bytes / 2) uint16 view of the mapped file,
            # then their vector part: np.take of the strided "v" field would first copy the
            # whole field (numpy gathers from contiguous arrays only), ~15 ms per call at 8k rows
            rec = self._records()
            flat = rec.view(np.uint16).reshape(len(rec), self.row_bytes // 2)
            got = np.take(flat, rows, axis=0, mode="clip")  # range checked above
            np.copyto(out.view(np.uint16), got[:, : self.dim])
        return out

    def compact_to(self, new_path: str | Path, live_rows: np.ndarray) -> VectorStore:
        """Write `live_rows` (in that order) to a new file; row i there is live_rows[i].

        The caller switches the catalog to the new file and its row numbers in one
        transaction and only then deletes this file, so a crash at any point leaves
        the catalog consistent with a file that exists. The new file is version 2; rows
        are copied with their checksums recomputed only for version-1 sources.
        """
        live_rows = np.asarray(live_rows, dtype=np.int64)
        src = self._records()
        out_dtype = row_dtype(self.dim, VERSION)
        with atomic_write(new_path) as fh:
            fh.write(self._header_bytes(VERSION))
            for i in range(0, len(live_rows), 4096):
                got = np.asarray(src[live_rows[i : i + 4096]])
                rec = np.empty(len(got), out_dtype)
                rec["v"] = got["v"]
                rec["crc"] = got["crc"] if self.version >= 2 else row_crcs(got["v"])
                fh.write(rec.tobytes())
        return VectorStore(new_path, self.dim, self.model_id)

    def close(self) -> None:
        self._mm, self._mm_rows = None, -1


# -- a library's vector files -----------------------------------------------------------------
COMPACT_MIN_DEAD = 1000  # rewrite a vector file when this many rows are dead ...
COMPACT_DEAD_FRACTION = 0.3  # ... and they are this share of the file


def first_file_name(model_id: str) -> str:
    """`<digest>-0.f16`: the first file of a model's rows; the number counts rewrites."""
    return f"{model_digest(model_id).hex()[:20]}-0.f16"


def next_file_name(name: str) -> str:
    """The name of the file that replaces `name` (compaction, migration): generation + 1."""
    stem, _, gen = Path(name).stem.rpartition("-")
    return f"{stem}-{int(gen) + 1}.f16"


class VectorFiles:
    """The `vectors/` folder of a library: which file holds a model's rows (the catalog
    records the name, `Catalog.vector_file`), opening it to read or write, the migration
    of version-1 files, compaction, and removal of files no catalog entry names."""

    def __init__(self, folder: Path, catalog):
        self.folder = Path(folder)
        self.catalog = catalog

    def name(self, model_id: str, *, create: bool) -> str:
        """The file name of `model_id`'s rows; a new name is recorded only with `create`."""
        name = self.catalog.vector_file(model_id)
        if name is None:
            name = first_file_name(model_id)
            if create:
                self.catalog.set_vector_file(model_id, name)
        return name

    def _dir(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder

    def open_reader(self, model_id: str, dim: int) -> VectorStore:
        """Read-only (never changed on disk); an unreadable file reads as empty, with
        `problem` saying why (its images are re-extracted by the next index run)."""
        path = self._dir() / self.name(model_id, create=False)
        try:
            return VectorStore(path, dim, model_id, writable=False)
        except IndexFormatError as exc:
            log.warning("%s; its images are re-extracted by the next index", exc)
            store = VectorStore(
                path.with_name(path.name + ".unreadable"), dim, model_id, writable=False
            )
            store.problem = str(exc)
            return store

    def open_raw(self, model_id: str, dim: int) -> VectorStore:
        """Read-only, whatever the file's state (for reading another model id's rows)."""
        return VectorStore(
            self._dir() / self.name(model_id, create=False), dim, model_id, writable=False
        )

    def open_writer(self, model_id: str, dim: int) -> VectorStore:
        """For the writer (under the writer lock): an unreadable file is replaced (its images
        are re-extracted), a version-1 file is rewritten with checksummed rows, and files no
        catalog entry names are removed."""
        path = self._dir() / self.name(model_id, create=True)
        try:
            store = VectorStore(path, dim, model_id)
        except IndexFormatError as exc:
            log.warning("%s: replacing it; its images will be re-extracted", exc)
            path.unlink(missing_ok=True)
            store = VectorStore(path, dim, model_id)
        if store.version < VERSION:
            store = self._migrate(store)
        self.remove_orphans()
        return store

    def _migrate(self, store: VectorStore) -> VectorStore:
        """Rewrite a version-1 store (no checksums) as version 2, same row numbers."""
        old_name = store.path.name
        new_name = next_file_name(old_name)
        new_store = store.compact_to(self.folder / new_name, np.arange(len(store)))
        self.catalog.set_vector_file(store.model_id, new_name)
        store.close()
        (self.folder / old_name).unlink(missing_ok=True)
        log.info("vector store %s migrated to checksummed rows (%s)", old_name, new_name)
        return new_store

    def remove_orphans(self) -> None:
        """Delete vector files no catalog entry names (left by a crash during compaction)."""
        named = self.catalog.vector_files()
        for f in self._dir().glob("*.f16"):
            if f.name not in named:
                log.info("removing orphaned vector file %s", f)
                f.unlink(missing_ok=True)

    @staticmethod
    def worth_compacting(store: VectorStore, used_rows: int) -> bool:
        dead = len(store) - used_rows
        return dead >= COMPACT_MIN_DEAD and dead >= COMPACT_DEAD_FRACTION * len(store)

    def compact(self, store: VectorStore) -> VectorStore:
        """Drop the rows no image uses: a new file with the used rows, the catalog switched
        to it and its row numbers in one transaction, then the old file deleted (a crash
        at any point leaves the catalog naming a file that exists). Returns the new store."""
        model_id = store.model_id
        old_name = self.catalog.vector_file(model_id)
        new_name = next_file_name(old_name)
        used = sorted({r for _, r in self.catalog.vector_rows(model_id)})
        new_store = store.compact_to(self.folder / new_name, np.asarray(used, dtype=np.int64))
        self.catalog.move_vector_rows(
            model_id, {old: new for new, old in enumerate(used)}, new_name
        )
        old_rows = len(store)
        store.close()
        (self.folder / old_name).unlink(missing_ok=True)
        log.info("compacted vectors: %d -> %d rows", old_rows, len(used))
        return new_store
