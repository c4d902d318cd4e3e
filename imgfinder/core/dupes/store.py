"""Duplicate-finder state in the catalog: signatures, verified-pair cache, decisions, settings.

Everything is keyed by content hash, never by path or image id, so it survives moves, renames,
re-indexing and model changes. The SQL is the catalog's (`catalog.dupes`,
core/catalog/dupes.py); this module holds the rules: versions, blob encoding, decisions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

import numpy as np

from imgfinder.core import imagesig as signature
from imgfinder.core.catalog import Catalog
from imgfinder.core.dupes import geometry

log = logging.getLogger(__name__)

DISTINCT = "distinct"  # "not duplicates": different photos that look alike
KEEP_BOTH = "keep"  # duplicates the user wants to keep anyway
DECISIONS = (DISTINCT, KEEP_BOTH)


def ensure_tables(catalog: Catalog) -> None:
    catalog.dupes.ensure_tables()


def hash_pair(h1: str, h2: str) -> tuple[str, str]:
    return (h1, h2) if h1 <= h2 else (h2, h1)


# -- signatures --------------------------------------------------------------------------
def load_signatures(catalog: Catalog, hashes: Iterable[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for h, blob in catalog.dupes.signature_blobs(signature.VERSION, hashes).items():
        try:
            out[h] = signature.from_blob(blob)
        except ValueError:
            log.warning("ignoring malformed stored signature for %s", h)
    return out


def save_signatures(catalog: Catalog, sigs: dict[str, np.ndarray]) -> None:
    catalog.dupes.save_signature_blobs(
        signature.VERSION, {h: signature.to_blob(s) for h, s in sigs.items()}
    )


# -- verified pairs ------------------------------------------------------------------------
def load_verified(catalog: Catalog, version: int | None = None) -> dict[tuple[str, str], float]:
    """Cached copy scores of the check `version` (geometry.VERSION, or FAST_VERSION for the
    ORB-first scan without the CNN: its scores are not reused by the full scan)."""
    return catalog.dupes.verified_scores(geometry.VERSION if version is None else version)


def save_verified(
    catalog: Catalog, scores: dict[tuple[str, str], float], version: int | None = None
) -> None:
    rows = [(a, b, s) for (a, b), s in scores.items() if np.isfinite(s)]
    catalog.dupes.save_verified_scores(geometry.VERSION if version is None else version, rows)


# -- decisions (the catalog's own `decisions` table) ---------------------------------------
def load_decisions(catalog: Catalog) -> dict[tuple[str, str], str]:
    return catalog.dupes.decisions()


def remember(catalog: Catalog, hash_pairs: Iterable[tuple[str, str]], decision: str) -> int:
    """Record a decision for each pair of content hashes; returns how many pairs were written."""
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; use one of {DECISIONS}")
    rows = sorted({hash_pair(a, b) for a, b in hash_pairs})
    catalog.dupes.set_decisions(rows, decision, time.time())
    catalog.write_backup()  # decisions survive a damaged catalog
    return len(rows)


def forget_decisions(catalog: Catalog, hash_pairs: Iterable[tuple[str, str]]) -> None:
    catalog.dupes.delete_decisions([hash_pair(a, b) for a, b in hash_pairs])
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
