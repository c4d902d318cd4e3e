"""Row bookkeeping for the indexes: growable arrays, the id -> row map and float16 row storage."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


class GrowArray:
    """A 1-D or 2-D numpy array with amortised O(1) appends along axis 0."""

    def __init__(self, dtype: np.dtype | type, width: int | None = None, data=None):
        self._width = width
        shape = (0,) if width is None else (0, width)
        self._buf = np.empty(shape, dtype=dtype) if data is None else data
        self._n = 0 if data is None else len(data)

    def __len__(self) -> int:
        return self._n

    @property
    def view(self) -> np.ndarray:
        return self._buf[: self._n]

    def append(self, rows: np.ndarray) -> None:
        need = self._n + len(rows)
        if need > len(self._buf) or not self._buf.flags.writeable:
            cap = max(need, int(len(self._buf) * 1.5) + 16)
            shape = (cap,) if self._width is None else (cap, self._width)
            buf = np.empty(shape, dtype=self._buf.dtype)
            buf[: self._n] = self._buf[: self._n]
            self._buf = buf
        self._buf[self._n : need] = rows
        self._n = need

    def nbytes(self) -> int:
        return 0 if isinstance(self._buf, np.memmap) else int(self._buf.nbytes)


class RowStore:
    """Owned unit vectors as float16 rows: an optional read-only (memory-mapped) base block
    plus an in-RAM tail for rows appended after loading, so adding to a loaded index never
    copies the mapped part.

    Rounding to float16 moves a unit vector's norm off 1 by up to ~1e-3, so each row also
    keeps 1/||stored row|| (4 bytes, in RAM): scores are then the exact cosine of what is
    stored, identical across backends and never above 1.
    """

    def __init__(
        self, dim: int, base: np.ndarray | None = None, inv_norm: np.ndarray | None = None
    ):
        self.dim = dim
        self._base = base if base is not None else np.empty((0, dim), dtype=np.float16)
        self._tail = GrowArray(np.float16, dim)
        if inv_norm is None:
            inv_norm = np.empty(0, np.float32)
        if len(inv_norm) != len(self._base):
            raise ValueError("norm table does not match the vector rows")
        self._inv = GrowArray(np.float32, data=np.asarray(inv_norm, dtype=np.float32))

    def __len__(self) -> int:
        return len(self._base) + len(self._tail)

    @property
    def mapped(self) -> bool:
        return isinstance(self._base, np.memmap)

    @property
    def inv_norm(self) -> np.ndarray:
        """1 / norm of every stored row (float32)."""
        return self._inv.view

    def append(self, unit: np.ndarray) -> None:
        """Store float32 unit rows as float16 (and the exact norm of the rounded rows)."""
        from ._kernels import f16_to_f32, f32_to_f16

        rows = f32_to_f16(unit)
        back = f16_to_f32(rows)
        norms = np.sqrt(np.einsum("ij,ij->i", back, back, dtype=np.float64))
        norms[norms == 0] = 1.0
        self._tail.append(rows)
        self._inv.append((1.0 / norms).astype(np.float32))

    def take(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Gather rows (any order) as float16 (len(rows), dim)."""
        nb = len(self._base)
        if out is None:
            out = np.empty((len(rows), self.dim), dtype=np.float16)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        # mode="clip" (the range is checked above): with an `out` and the default mode,
        # np.take gathers into a temporary and copies it over (measured 2x slower)
        if len(self._tail) == 0:
            np.take(self._base, rows, axis=0, out=out, mode="clip")
        elif nb == 0:
            np.take(self._tail.view, rows, axis=0, out=out, mode="clip")
        else:
            in_base = rows < nb
            out[in_base] = self._base[rows[in_base]]
            out[~in_base] = self._tail.view[rows[~in_base] - nb]
        return out

    def block(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi as float16 (a view where possible)."""
        nb = len(self._base)
        if hi <= nb:
            return self._base[lo:hi]
        if lo >= nb:
            return self._tail.view[lo - nb : hi - nb]
        return np.concatenate([self._base[lo:nb], self._tail.view[: hi - nb]])

    def chunks(self) -> list[np.ndarray]:
        """The stored rows as a list of blocks (for saving without a big concatenation)."""
        return [a for a in (self._base, self._tail.view) if len(a)]

    def compacted(self, keep: np.ndarray) -> RowStore:
        """A new store holding only rows `keep` (in order), in RAM unless nothing changes."""
        if len(keep) == len(self):
            return self
        step = max(1, (1 << 24) // max(self.dim, 1))
        buf = np.empty((len(keep), self.dim), dtype=np.float16)
        for lo in range(0, len(keep), step):
            self.take(keep[lo : lo + step], out=buf[lo : lo + step])
        return RowStore(self.dim, base=buf, inv_norm=self.inv_norm[keep].copy())

    def ram_bytes(self) -> int:
        base = 0 if self.mapped else int(self._base.nbytes)
        return base + self._tail.nbytes()

    def norm_bytes(self) -> int:
        return self._inv.nbytes()


class IdMap:
    """Maps external int64 ids to rows without a Python dict per item.

    Rows covered by the last rebuild live in sorted numpy arrays (12 bytes per id, binary
    search); ids added since sit in a small dict that is folded in once it grows past
    ~3% of the map. A dict of a million ints would cost ~100 bytes per item.
    """

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)
        self._rows = np.empty(0, dtype=np.int32)
        self._recent: dict[int, int] = {}

    def rebuild(self, row_ids: np.ndarray, alive: np.ndarray) -> None:
        live = np.flatnonzero(alive)
        keys = row_ids[live]
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._rows = live[order].astype(np.int32)
        self._recent = {}

    def lookup(self, ids: np.ndarray, row_ids: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """Rows for `ids` (int64), -1 where the id is not (or no longer) present."""
        out = np.full(len(ids), -1, dtype=np.int64)
        if len(self._keys):
            pos = np.searchsorted(self._keys, ids)
            pos[pos >= len(self._keys)] = 0
            found = self._keys[pos] == ids
            out[found] = self._rows[pos[found]]
        if self._recent:
            for j, i in enumerate(ids.tolist()):
                r = self._recent.get(i)
                if r is not None:
                    out[j] = r
        ok = out >= 0
        ok[ok] = alive[out[ok]] & (row_ids[out[ok]] == ids[ok])
        out[~ok] = -1
        return out

    def added(self, ids: np.ndarray, rows: np.ndarray, row_ids: np.ndarray, alive: np.ndarray):
        if len(ids) + len(self._recent) > max(1024, len(self._keys) // 32):
            self.rebuild(row_ids, alive)
        else:
            self._recent.update(zip(ids.tolist(), rows.tolist(), strict=True))

    def removed(self, ids: np.ndarray) -> None:
        if self._recent:
            for i in ids.tolist():
                self._recent.pop(i, None)

    def nbytes(self) -> int:
        return int(self._keys.nbytes + self._rows.nbytes) + 100 * len(self._recent)


class MappedRows:
    """Fixed-width rows kept beside an index (the LSH refine codes): a read-only base block,
    memory-mapped after loading, plus an in-RAM tail for rows added since, so adding to a
    loaded index never copies the mapped part into RAM (the `RowStore` layout, any dtype)."""

    def __init__(self, dtype: np.dtype | type, width: int, base: np.ndarray | None = None):
        self.width = int(width)
        self._base = base if base is not None else np.empty((0, self.width), dtype=dtype)
        if self._base.ndim != 2 or self._base.shape[1] != self.width:
            raise ValueError("row block does not match its width")
        self._tail = GrowArray(self._base.dtype, self.width)

    def __len__(self) -> int:
        return len(self._base) + len(self._tail)

    def append(self, rows: np.ndarray) -> None:
        self._tail.append(rows)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows (any order) as a (len(rows), width) array."""
        nb = len(self._base)
        if len(self._tail) == 0:
            return np.take(self._base, rows, axis=0)
        if nb == 0:
            return np.take(self._tail.view, rows, axis=0)
        out = np.empty((len(rows), self.width), dtype=self._base.dtype)
        in_base = rows < nb
        out[in_base] = self._base[rows[in_base]]
        out[~in_base] = self._tail.view[rows[~in_base] - nb]
        return out

    def chunks(self) -> list[np.ndarray]:
        parts = [a for a in (self._base, self._tail.view) if len(a)]
        return parts or [self._base]

    def compacted(self, keep: np.ndarray) -> MappedRows:
        """A new block holding only rows `keep` (in order), in RAM."""
        return MappedRows(self._base.dtype, self.width, base=self.take(keep))

    def ram_bytes(self) -> int:
        base = 0 if isinstance(self._base, np.memmap) else int(self._base.nbytes)
        return base + self._tail.nbytes()
