"""The last scan's PairList on disk, reused while nothing it depends on has changed.

A scan's result depends only on: which photos are indexed (image ids, paths, content hashes),
the model and index backend, the scan's settings (k, verification on/off), the signature,
candidate-search and geometric-check versions and the user's decisions. `fingerprint` hashes
all of that; `load` returns the cached PairList only when the fingerprint matches, so any
change (a photo added, removed, re-encoded or moved, a decision, another model) makes the
next scan compute afresh.
The file is versioned and written atomically (temp + fsync + replace); an unreadable or
foreign file is ignored, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from imgfinder.atomic import atomic_write_npz
from imgfinder.core import imagesig as signature
from imgfinder.core.dupes import geometry
from imgfinder.core.dupes import pairs as pairs_mod
from imgfinder.core.dupes.pairs import PairList

log = logging.getLogger(__name__)

FILE_NAME = "dupes-pairs.npz"
FORMAT = 1  # bump when the file layout changes
_ARRAYS = ("ids", "a", "b", "exact", "similar", "sig", "orientation", "copy")


def fingerprint(
    model_id: str,
    ids: np.ndarray,
    paths: list[str],
    hashes: list[str],
    decisions,
    settings: dict,
) -> str:
    """Hex digest of everything a scan's result depends on."""
    h = hashlib.sha256()
    meta = {
        "format": FORMAT,
        "model": model_id,
        "signature": signature.VERSION,
        "geometry": geometry.VERSION,
        "search": pairs_mod.SEARCH_VERSION,
        "settings": settings,
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(np.ascontiguousarray(ids, np.int64).tobytes())
    for part in (paths, hashes):
        h.update(b"\0".join(s.encode("utf-8", "surrogateescape") for s in part))
        h.update(b"\1")
    for a, b in sorted(tuple(sorted(p)) for p in decisions):
        h.update(f"{a}\0{b}\1".encode())
    return h.hexdigest()


def save(path: Path, pairs: PairList, key: str) -> None:
    """Write the PairList with its fingerprint (crash-safe)."""
    header = {
        "format": FORMAT,
        "key": key,
        "paths": pairs.paths,
        "hashes": pairs.hashes,
        "model_id": pairs.model_id,
        "stats": {k: v for k, v in pairs.stats.items() if isinstance(v, int | float | str)},
    }
    atomic_write_npz(
        path,
        header=np.frombuffer(
            json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogateescape"), np.uint8
        ),
        **{name: getattr(pairs, name) for name in _ARRAYS},
    )


def load(path: Path, key: str) -> PairList | None:
    """The cached PairList when its fingerprint is `key`; None otherwise (or unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode("utf-8", "surrogateescape"))
            if header.get("format") != FORMAT or header.get("key") != key:
                return None
            arrays = {name: np.array(z[name]) for name in _ARRAYS}
    except Exception as exc:  # noqa: BLE001 - a damaged cache is recomputed, not trusted
        log.info("ignoring unreadable duplicate-pair cache %s: %s", path, exc)
        return None
    n, p = len(arrays["ids"]), len(arrays["a"])
    if len(header["paths"]) != n or len(header["hashes"]) != n or len(arrays["b"]) != p:
        return None
    return PairList(
        paths=list(header["paths"]),
        hashes=list(header["hashes"]),
        model_id=header.get("model_id", ""),
        stats=dict(header.get("stats", {}))
        | {"cached": True, "verified_now": 0, "signatures_computed": 0},
        **arrays,
    )


def invalidate(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
