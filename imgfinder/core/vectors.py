"""Append-only float16 vector store, memory-mapped for reading.

Layout: a 64-byte header (magic, format version, dim, model-id digest) then rows
of `dim` float16. Crash safety comes from ordering: rows are appended and
fsync'ed *before* the catalog transaction that references them commits, so the
catalog never points at a row that is not fully on disk. A torn tail (killed
mid-append) is cut back to whole rows on open. Rows no longer referenced
(deleted or changed photos) are dropped by `compact_to`, which writes a new file
that the catalog switches to in one transaction.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path

import numpy as np

from imgfinder.atomic import atomic_write
from imgfinder.errors import IndexFormatError, ModelMismatchError

log = logging.getLogger(__name__)

MAGIC = b"IMGFVEC\x00"
VERSION = 1
HEADER = struct.Struct("<8sII16s")  # magic, version, dim, model digest
HEADER_SIZE = 64


def model_digest(model_id: str) -> bytes:
    return hashlib.blake2b(model_id.encode(), digest_size=16).digest()


class VectorStore:
    """Rows of float16 vectors for one model id."""

    def __init__(self, path: str | Path, dim: int, model_id: str):
        self.path = Path(path)
        self.dim = int(dim)
        self.model_id = model_id
        self.row_bytes = 2 * self.dim
        self._mm: np.memmap | None = None
        self._mm_rows = -1
        if not self.path.exists() or self.path.stat().st_size < HEADER_SIZE:
            self._write_header()
        self._check_header()
        self._trim_torn_tail()

    def _header_bytes(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self.dim, model_digest(self.model_id)).ljust(
            HEADER_SIZE, b"\x00"
        )

    def _write_header(self) -> None:
        with atomic_write(self.path) as fh:
            fh.write(self._header_bytes())

    def _check_header(self) -> None:
        with open(self.path, "rb") as fh:
            raw = fh.read(HEADER.size)
        magic, version, dim, digest = HEADER.unpack(raw)
        if magic != MAGIC:
            raise IndexFormatError(self.path, "not an imgfinder vector store")
        if version != VERSION:
            raise IndexFormatError(self.path, f"vector store version {version} unsupported")
        if dim != self.dim:
            raise IndexFormatError(self.path, f"dimension {dim}, expected {self.dim}")
        if digest != model_digest(self.model_id):
            raise ModelMismatchError(f"{self.path} holds vectors of another model")

    def _trim_torn_tail(self) -> None:
        size = self.path.stat().st_size
        extra = (size - HEADER_SIZE) % self.row_bytes
        if extra:
            log.warning("%s: cutting %d bytes of a torn append", self.path, extra)
            with open(self.path, "r+b") as fh:
                fh.truncate(size - extra)
                os.fsync(fh.fileno())

    def __len__(self) -> int:
        return (self.path.stat().st_size - HEADER_SIZE) // self.row_bytes

    def nbytes(self) -> int:
        return self.path.stat().st_size

    def append(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows durably; returns their row numbers."""
        v = np.ascontiguousarray(vectors, dtype=np.float16).reshape(-1, self.dim)
        if not np.isfinite(v).all():
            raise ValueError("refusing to store non-finite vectors")
        with open(self.path, "ab") as fh:
            start = (fh.tell() - HEADER_SIZE) // self.row_bytes
            fh.write(v.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        return np.arange(start, start + len(v), dtype=np.int64)

    def matrix(self) -> np.ndarray:
        """Read-only memory map of all rows (re-mapped when the file has grown)."""
        n = len(self)
        if self._mm is None or self._mm_rows != n:
            if n == 0:
                return np.zeros((0, self.dim), np.float16)
            self._mm = np.memmap(
                self.path, dtype=np.float16, mode="r", offset=HEADER_SIZE, shape=(n, self.dim)
            )
            self._mm_rows = n
        return self._mm

    def get(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        return np.asarray(self.matrix()[rows])

    def compact_to(self, new_path: str | Path, live_rows: np.ndarray) -> VectorStore:
        """Write `live_rows` (in that order) to a new file; row i there is live_rows[i].

        The caller switches the catalog to the new file and its row numbers in one
        transaction and only then deletes this file, so a crash at any point leaves
        the catalog consistent with a file that exists.
        """
        live_rows = np.asarray(live_rows, dtype=np.int64)
        src = self.matrix()
        with atomic_write(new_path) as fh:
            fh.write(self._header_bytes())
            for i in range(0, len(live_rows), 4096):
                fh.write(np.ascontiguousarray(src[live_rows[i : i + 4096]]).tobytes())
        return VectorStore(new_path, self.dim, self.model_id)

    def close(self) -> None:
        self._mm, self._mm_rows = None, -1
