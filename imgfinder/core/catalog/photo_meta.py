"""SQL of the photo-metadata columns on `images` (which facts: core/photometa.py; the columns
are added by `schema.migrate_photo_meta`). Writers take the caller's transaction; readers take
the catalog's `execute`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from imgfinder.core import photometa
from imgfinder.core.catalog.text import path_from_db

_META_COLS = [c for c, _ in photometa.COLUMNS[:9]]


def store(conn, image_id: int, meta: photometa.PhotoMeta | None, source: str | None) -> None:
    """Write one image's metadata and decode source (inside the caller's transaction)."""
    if meta is None:
        conn.execute("UPDATE images SET decode_source=? WHERE id=?", (source, image_id))
        return
    sets = ", ".join(f"{c}=?" for c in _META_COLS)
    conn.execute(
        f"UPDATE images SET {sets}, decode_source=COALESCE(?, decode_source), meta_version=? "
        "WHERE id=?",
        (*photometa.row_values(meta), source, photometa.META_VERSION, image_id),
    )


def copy_from_same_content(conn, image_id: int, content_hash: str) -> None:
    """A moved or copied file (same bytes: same EXIF) takes the metadata of its twin."""
    cols = _META_COLS + ["decode_source", "meta_version"]
    row = conn.execute(
        f"SELECT {', '.join(cols)} FROM images WHERE hash=? AND id<>? "
        "AND meta_version IS NOT NULL LIMIT 1",
        (content_hash, image_id),
    ).fetchone()
    if row is not None:
        sets = ", ".join(f"{c}=?" for c in cols)
        conn.execute(f"UPDATE images SET {sets} WHERE id=?", (*row, image_id))


def _chunks(ids: Iterable[int], n: int = 500):
    ids = [int(i) for i in ids]
    for lo in range(0, len(ids), n):
        yield ids[lo : lo + n]


def load(execute: Callable, image_ids: Iterable[int]) -> dict[int, photometa.PhotoMeta]:
    out: dict[int, photometa.PhotoMeta] = {}
    for chunk in _chunks(image_ids):
        q = (
            f"SELECT id, {', '.join(_META_COLS)} FROM images "
            f"WHERE meta_version IS NOT NULL AND id IN ({','.join('?' * len(chunk))})"
        )
        for r in execute(q, chunk):
            out[int(r[0])] = photometa.from_row(r[1:])
    return out


def decode_sources(execute: Callable, image_ids: Iterable[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in _chunks(image_ids):
        q = (
            "SELECT id, decode_source FROM images WHERE decode_source IS NOT NULL "
            f"AND id IN ({','.join('?' * len(chunk))})"
        )
        out.update((int(i), s) for i, s in execute(q, chunk))
    return out


def unread(execute: Callable, root_id: int) -> list[tuple[int, str]]:
    cur = execute(
        "SELECT id, path FROM images WHERE root_id=? AND status='ok' "
        "AND (meta_version IS NULL OR meta_version < ?) ORDER BY id",
        (root_id, photometa.META_VERSION),
    )
    return [(int(i), path_from_db(p)) for i, p in cur]
