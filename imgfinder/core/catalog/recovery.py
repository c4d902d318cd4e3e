"""Recovery of a damaged catalog: move it aside (never delete it), salvage what can be read,
restore folders and duplicate decisions from `catalog-backup.json`."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from imgfinder.core.catalog.db import Catalog
from imgfinder.core.catalog.text import display_path

log = logging.getLogger(__name__)

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
