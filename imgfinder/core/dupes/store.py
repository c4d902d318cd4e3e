"""Duplicate-finder state in the catalog: signatures, verified-pair cache, decisions, settings.

Everything is keyed by content hash, never by path or image id, so it survives moves, renames,
re-indexing and model changes. Tables are created on first use (CREATE TABLE IF NOT EXISTS);
the catalog schema itself is not touched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

import numpy as np

from imgfinder.core.catalog import Catalog
from imgfinder.core.dupes import signature, verify

log = logging.getLogger(__name__)

DISTINCT = "distinct"  # "not duplicates": different photos that look alike
KEEP_BOTH = "keep"  # duplicates the user wants to keep anyway
DECISIONS = (DISTINCT, KEEP_BOTH)

_SCHEMA = """
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
"""


def ensure_tables(catalog: Catalog) -> None:
    with catalog.transaction() as c:
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                c.execute(stmt)


def hash_pair(h1: str, h2: str) -> tuple[str, str]:
    return (h1, h2) if h1 <= h2 else (h2, h1)


# -- signatures --------------------------------------------------------------------------
def load_signatures(catalog: Catalog, hashes: Iterable[str]) -> dict[str, np.ndarray]:
    want = list(dict.fromkeys(hashes))
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(want), 500):
        chunk = want[i : i + 500]
        q = (
            "SELECT hash, sig FROM dupe_signatures WHERE version=? AND hash IN "
            f"({','.join('?' * len(chunk))})"
        )
        for h, blob in catalog.execute(q, [signature.VERSION, *chunk]):
            try:
                out[h] = signature.from_blob(blob)
            except ValueError:
                log.warning("ignoring malformed stored signature for %s", h)
    return out


def save_signatures(catalog: Catalog, sigs: dict[str, np.ndarray]) -> None:
    if not sigs:
        return
    with catalog.transaction() as c:
        c.executemany(
            "INSERT OR REPLACE INTO dupe_signatures (hash, version, sig) VALUES (?, ?, ?)",
            [(h, signature.VERSION, signature.to_blob(s)) for h, s in sigs.items()],
        )


# -- verified pairs ------------------------------------------------------------------------
def load_verified(catalog: Catalog) -> dict[tuple[str, str], float]:
    cur = catalog.execute(
        "SELECT hash_a, hash_b, score FROM dupe_verified WHERE version=?", (verify.VERSION,)
    )
    return {(a, b): float(s) for a, b, s in cur}


def save_verified(catalog: Catalog, scores: dict[tuple[str, str], float]) -> None:
    rows = [(a, b, verify.VERSION, s) for (a, b), s in scores.items() if np.isfinite(s)]
    if not rows:
        return
    with catalog.transaction() as c:
        c.executemany(
            "INSERT OR REPLACE INTO dupe_verified (hash_a, hash_b, version, score) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )


# -- decisions (the catalog's own `decisions` table) ---------------------------------------
def load_decisions(catalog: Catalog) -> dict[tuple[str, str], str]:
    return {
        (a, b): d for a, b, d in catalog.execute("SELECT hash_a, hash_b, decision FROM decisions")
    }


def remember(catalog: Catalog, hash_pairs: Iterable[tuple[str, str]], decision: str) -> int:
    """Record a decision for each pair of content hashes; returns how many pairs were written."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; use one of {DECISIONS}")
    now = time.time()
    rows = sorted({hash_pair(a, b) for a, b in hash_pairs})
    with catalog.transaction() as c:
        c.executemany(
            "INSERT OR REPLACE INTO decisions (hash_a, hash_b, decision, at) VALUES (?, ?, ?, ?)",
            [(a, b, decision, now) for a, b in rows],
        )
    catalog.write_backup()  # decisions survive a damaged catalog
    return len(rows)


def forget_decisions(catalog: Catalog, hash_pairs: Iterable[tuple[str, str]]) -> None:
    with catalog.transaction() as c:
        c.executemany(
            "DELETE FROM decisions WHERE hash_a=? AND hash_b=?",
            [hash_pair(a, b) for a, b in hash_pairs],
        )
    catalog.write_backup()


# -- settings (per library, so the CLI and the app agree) -----------------------------------
def load_setting(catalog: Catalog, key: str) -> dict | None:
    raw = catalog.get_meta(f"dupes.{key}")
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("ignoring unreadable setting dupes.%s", key)
        return None
    return value if isinstance(value, dict) else None


def save_setting(catalog: Catalog, key: str, value: dict) -> None:
    catalog.set_meta(f"dupes.{key}", json.dumps(value, sort_keys=True))
