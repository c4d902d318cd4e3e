"""The duplicate finder over a Library: scan, suggest a keeper, decide, resolve, undo (no Qt here).

`scan(lib)` is a generator like `Library.index()`: it yields a Progress per batch, checks the
cancel flag between batches and returns the PairList (None when cancelled). Signatures are
computed for photos that have none yet (decoded small, in threads, saved per batch so an
interrupted scan keeps its work); after that a scan needs no decoding except for newly
proposed copy pairs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgfinder.core import imagesig as signature
from imgfinder.core.dupes import cache as pair_cache
from imgfinder.core.dupes import geometry, rawpairs, store
from imgfinder.core.dupes import pairs as pairs_mod
from imgfinder.core.dupes import workers as worker_procs
from imgfinder.core.dupes.geometry import GeometricVerifier, handedness_sure
from imgfinder.core.dupes.grouping import DEFAULT_THRESHOLDS, TIERS, DuplicateGroup
from imgfinder.core.dupes.keeper import (
    FACTS_VERSION,
    FileFacts,
    KeeperChoice,
    KeeperRule,
    choose_keeper,
    file_facts,
    to_cache,
)
from imgfinder.core.dupes.pairs import PairList
from imgfinder.core.dupes.trash import (
    Journal,
    ResolveResult,
    TrashFn,
    UndoResult,
    resolve,
    undo_last,
)
from imgfinder.core.types import Progress, run
from imgfinder.errors import ImgfinderError

log = logging.getLogger(__name__)

SIG_BATCH = 256


class NotIndexedError(ImgfinderError):
    """The library has no indexed photos yet."""

    def __init__(
        self, message: str = "the library has no indexed photos; run `imgfinder index FOLDER` first"
    ):
        super().__init__(message)


def _workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def _signature_or_none(path: str) -> np.ndarray | None:
    try:
        return signature.signature_of_path(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file just gets no signature
        log.info("no signature for %s: %s", path, exc)
        return None


def compute_signatures(
    catalog, todo: dict[str, str], *, cancel: threading.Event, workers: int | None = None
) -> Generator[Progress, None, dict[str, np.ndarray]]:
    """Signatures for {hash: path}, saved to the catalog per batch; returns those computed."""
    out: dict[str, np.ndarray] = {}
    items = sorted(todo.items(), key=lambda kv: kv[1])
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers or _workers(), thread_name_prefix="dupes-sig") as pool:
        for lo in range(0, len(items), SIG_BATCH):
            if cancel.is_set():
                break
            batch = items[lo : lo + SIG_BATCH]
            got = dict(
                zip((h for h, _ in batch), pool.map(_signature_or_none, [p for _, p in batch]))
            )
            fresh = {h: s for h, s in got.items() if s is not None}
            store.save_signatures(catalog, fresh)
            out.update(fresh)
            yield Progress.since(
                "signatures",
                lo + len(batch),
                len(items),
                t0,
                "reading photos for duplicate signatures",
            )
    return out


def scan(
    lib,
    *,
    verify: bool = True,
    k_features: int = pairs_mod.K_FEATURES,
    k_signatures: int = pairs_mod.K_SIGNATURES,
    cancel: threading.Event | None = None,
    workers: int | None = None,
) -> Generator[Progress, None, PairList | None]:
    """Find candidate duplicate pairs in an indexed library (see pairs.py for how).

    Photos catalogued by `index --signatures-only` and not yet given a vector take part
    through their hashes and signatures (exact and same-photo tiers), not their features.
    A library that has such photos and no vector at all is scanned without the model
    (sigindex.scan_signatures: no weights, no torch), as `imgfinder dupes` does; its
    `stats["without_vectors"]` says how many photos the similar-shot tier is missing."""
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415 (sigindex imports this module)

    if sigindex.signatures_only(lib.catalog):
        return (
            yield from sigindex.scan_signatures(
                lib.catalog, lib.data_dir, verify=verify, cancel=cancel, workers=workers
            )
        )
    t0 = time.perf_counter()
    lib.check_model()
    inputs = scan_inputs(
        lib.catalog,
        lib.data_dir,
        lib.model_id,
        verify=verify,
        k_features=k_features,
        k_signatures=k_signatures,
        index_backend=lib.index_backend,
    )
    cached = cached_scan(inputs)
    if cached is not None:  # nothing changed since the last scan
        cached.seconds = time.perf_counter() - t0
        return cached
    return (
        yield from compute_scan(
            inputs,
            lib.load_index,
            verify=verify,
            k_features=k_features,
            k_signatures=k_signatures,
            cancel=cancel,
            workers=workers,
            lock=getattr(lib, "_lock", None),
            started=t0,
        )
    )


@dataclass
class ScanInputs:
    """What one scan is over (from the catalog alone: no model, no torch) and its cache key."""

    catalog: object
    model_id: str
    ids: np.ndarray  # ascending image ids
    paths: list[str]
    hashes: list[str]
    features: np.ndarray  # positions (into ids) of photos with a vector of model_id
    decisions: list
    cache_path: Path
    key: str


def scan_inputs(
    catalog,
    data_dir: Path,
    model_id: str,
    *,
    verify: bool = True,
    k_features: int = pairs_mod.K_FEATURES,
    k_signatures: int = pairs_mod.K_SIGNATURES,
    index_backend: str | None = None,
    features: bool = True,
) -> ScanInputs:
    """The photos to scan: those with a vector of `model_id` (features=True) and those with
    a signature only (`index --signatures-only`); NotIndexedError when there are none."""
    rows = catalog.dupe_scan_rows(model_id if features and model_id else None)
    if not rows:
        raise NotIndexedError()
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    paths = [r[1] for r in rows]
    hashes = [r[2] for r in rows]
    feat = np.flatnonzero(np.fromiter((r[3] for r in rows), bool, len(rows)))
    decisions = list(store.load_decisions(catalog).keys())
    settings = {
        "verify": verify,
        "k": [k_features, k_signatures],
        "index": index_backend if features else None,
        "features": hashlib.sha256(ids[feat].tobytes()).hexdigest(),
    }
    key = pair_cache.fingerprint(model_id, ids, paths, hashes, decisions, settings)
    return ScanInputs(
        catalog, model_id, ids, paths, hashes, feat, decisions, data_dir / pair_cache.FILE_NAME, key
    )


def cached_scan(inputs: ScanInputs) -> PairList | None:
    """The last scan's pairs when nothing they depend on changed (no decoding, no model)."""
    return pair_cache.load(inputs.cache_path, inputs.key)


def exact_scan(catalog) -> PairList:
    """Byte-identical files only (the exact tier), from the catalog's content hashes: no
    model, no decoding, no signature or feature pass; O(N). Decided pairs are left out."""
    t0 = time.perf_counter()
    rows = catalog.hashed_rows()
    if not rows:
        raise NotIndexedError()
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    paths, hashes = [r[1] for r in rows], [r[2] for r in rows]
    sigs = np.zeros((len(rows), signature.SIG_DIM), np.float32)  # no signature pass
    decisions = list(store.load_decisions(catalog).keys())
    pairs = run(pairs_mod.find_pairs(None, ids, paths, hashes, sigs, decisions=decisions))
    pairs = pairs.select(pairs.exact)
    pairs.seconds = time.perf_counter() - t0
    pairs.stats["exact_only"] = True
    return pairs


def compute_scan(
    inputs: ScanInputs,
    load_index,
    *,
    verify: bool = True,
    k_features: int = pairs_mod.K_FEATURES,
    k_signatures: int = pairs_mod.K_SIGNATURES,
    cancel: threading.Event | None = None,
    workers: int | None = None,
    lock=None,
    started: float | None = None,
    processes: bool | None = None,
) -> Generator[Progress, None, PairList | None]:
    """A fresh scan of `inputs`; `load_index()` gives the feature index (None: signatures and
    hashes only). Signatures missing from the catalog are computed first and saved.

    Without the index (the scan without the CNN) the geometric check runs in worker
    processes (workers.py) when there are workers.MIN_VERIFY_PAIRS pairs or more to check;
    `processes` True/False forces it either way."""
    cancel = cancel or threading.Event()
    t0 = started if started is not None else time.perf_counter()
    catalog, ids, paths, hashes = inputs.catalog, inputs.ids, inputs.paths, inputs.hashes
    store.ensure_tables(catalog)
    have = store.load_signatures(catalog, hashes)
    todo = {h: p for h, p in zip(hashes, paths) if h not in have}
    if todo:
        have.update((yield from compute_signatures(catalog, todo, cancel=cancel, workers=workers)))
    if cancel.is_set():
        return None
    sigs = np.zeros((len(ids), signature.SIG_DIM), np.float32)
    for i, h in enumerate(hashes):
        s = have.get(h)
        if s is not None:
            sigs[i] = s
    index = load_index() if load_index is not None and len(inputs.features) else None
    # without the CNN (signatures-only scan) the check goes ORB first, for speed; the full
    # scan keeps SIFT (benchmarks/duplicates.py: same-photo recall 0.987 against 0.940)
    fast = load_index is None
    version = geometry.FAST_VERSION if fast else geometry.VERSION
    verified = store.load_verified(catalog, version)
    before = dict(verified)
    detectors = geometry.FAST_DETECTORS if fast else geometry.DETECTORS
    checker = GeometricVerifier(detectors=detectors) if verify else None

    def verifier(i: int, j: int, o: int) -> float:
        return checker(paths[i], paths[j], o, handedness_sure(sigs[i], sigs[j]))

    # The full scan's SIFT check stays in threads: SIFT holds the GIL little, and worker
    # processes, each with its own cache of described photos, decode more (measured on
    # benchmarks/dupes_copies.py --issue-size, 2,792 pairs: 38.2 s in threads, 37.5 s in
    # workers with 2,719 decodes instead of 2,169).
    batch = None
    if checker is not None and fast and worker_procs.processes_allowed(processes):
        n_workers = workers or _workers()

        def batch(triples: list[tuple[int, int, int]]):
            items = [
                (paths[i], paths[j], o, handedness_sure(sigs[i], sigs[j])) for i, j, o in triples
            ]
            return worker_procs.submit(n_workers, worker_procs.verify_chunk, detectors, items)

    result = yield from pairs_mod.find_pairs(
        index,
        ids,
        paths,
        hashes,
        sigs,
        verifier=verifier if checker else None,
        verified=verified,
        decisions=inputs.decisions,
        k_features=k_features,
        k_signatures=k_signatures,
        cancel=cancel,
        lock=lock or nullcontext(),
        workers=workers or _workers(),
        companions=raw_jpeg_companions(catalog, ids, paths),
        feature_positions=inputs.features,
        verify_batch=batch,
        batch_min=0 if processes else worker_procs.MIN_VERIFY_PAIRS,
    )
    store.save_verified(catalog, {k: v for k, v in verified.items() if k not in before}, version)
    if result is None:
        return None
    result.model_id = inputs.model_id
    result.seconds = time.perf_counter() - t0
    result.stats["signatures_computed"] = len(todo)
    result.stats["verify_decodes"] = (checker.decoded if checker else 0) + result.stats.pop(
        "verify_batch_decodes", 0
    )
    result.stats["without_vectors"] = len(ids) - len(inputs.features)
    try:
        pair_cache.save(inputs.cache_path, result, inputs.key)
    except OSError as exc:  # a read-only or full disk: the scan is still good, just not cached
        log.warning("could not cache duplicate pairs: %s", exc)
    log.info("duplicate scan: %s in %.1f s", result.stats, result.seconds)
    return result


def raw_jpeg_companions(catalog, ids: np.ndarray, paths: list[str]):
    """(a, b) positions of RAW+JPEG pairs among the scanned photos (rawpairs.py)."""
    if not any(map(rawpairs.is_raw, paths)):  # every pair has a RAW: no metadata to read
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    meta_by_id = catalog.photo_meta(ids.tolist())
    where = {int(i): p for p, i in enumerate(ids.tolist())}
    metas = {where[i]: m for i, m in meta_by_id.items() if i in where}
    return rawpairs.raw_jpeg_pairs(paths, metas)


# -- describing and deciding -------------------------------------------------------------------
def load_rule(catalog) -> KeeperRule:
    return KeeperRule.from_dict(store.load_setting(catalog, "keeper_rule"))


def save_rule(catalog, rule: KeeperRule) -> None:
    store.save_setting(catalog, "keeper_rule", rule.to_dict())


def load_thresholds(catalog) -> dict[str, float]:
    saved = store.load_setting(catalog, "thresholds") or {}
    out = dict(DEFAULT_THRESHOLDS)
    for t in TIERS:
        if isinstance(saved.get(t), int | float):
            out[t] = float(saved[t])
    return out


def save_thresholds(catalog, thresholds: dict[str, float]) -> None:
    store.save_setting(catalog, "thresholds", {t: float(v) for t, v in thresholds.items()})


def suggest_keeper(
    group: DuplicateGroup, rule: KeeperRule | None = None
) -> tuple[list[FileFacts], KeeperChoice]:
    """File facts of every member (header reads only) and the suggested keeper with its reason."""
    facts = [file_facts(p) for p in group.paths]
    return facts, choose_keeper(facts, rule)


def suggest_keepers(
    catalog, groups: list[DuplicateGroup], rule: KeeperRule | None = None
) -> list[tuple[list[FileFacts], KeeperChoice]]:
    """suggest_keeper for many groups (`imgfinder dupes`), with the file facts kept in the
    catalog by content hash (keeper.to_cache): a repeated listing stats each file and opens
    none that is unchanged. New or changed facts are stored in one transaction."""
    hashes = [m.hash for g in groups for m in g.members if m.hash]
    try:
        stored = catalog.dupes.fact_rows(FACTS_VERSION, hashes)
    except sqlite3.OperationalError:  # a catalog from before the table: add it
        stored = {}
        try:
            catalog.dupes.ensure_tables()
        except (sqlite3.Error, ImgfinderError) as exc:  # read-only: read the files
            log.info("keeper facts not cached: %s", exc)
    out, fresh = [], {}
    for g in groups:
        facts = [file_facts(m.path, stored.get(m.hash)) for m in g.members]
        out.append((facts, choose_keeper(facts, rule)))
        for m, f in zip(g.members, facts):
            text = to_cache(f)
            if m.hash and text is not None and text != stored.get(m.hash):
                fresh[m.hash] = stored[m.hash] = text
    if fresh:
        try:
            catalog.dupes.save_fact_rows(FACTS_VERSION, fresh)
        except (sqlite3.Error, ImgfinderError) as exc:  # read-only, busy: still a listing
            log.warning("could not cache keeper facts: %s", exc)
    return out


def mark(catalog, group: DuplicateGroup, decision: str = store.DISTINCT) -> list[tuple[str, str]]:
    """Remember "not duplicates" / "keep both" for every pair of the group's photos."""
    pairs = [store.hash_pair(a, b) for a, b in group.hash_pairs()]
    store.remember(catalog, pairs, decision)
    return pairs


# -- resolving -------------------------------------------------------------------------------
def forget_paths(lib, paths: list[str]) -> int:
    """Drop moved files from the catalog and index now (a later `index` run would also do it)."""
    return lib.forget_paths(sorted(paths))


def resolve_group(
    lib,
    group: DuplicateGroup,
    keeper: str,
    trash_fn: TrashFn,
    journal: Journal | None = None,
    *,
    method: str = "trash",
) -> ResolveResult:
    """Move all members but `keeper` (journaled), then remove the moved files from the library."""
    journal = journal or journal_for(lib)
    hashes = {os.path.abspath(m.path): m.hash for m in group.members}
    result = resolve(
        group.paths, keeper, trash_fn, journal, method=method, tier=group.tier, hashes=hashes
    )
    if result.moved:
        forget_paths(lib, [p for p, _ in result.moved])
    return result


def undo(lib, journal: Journal | None = None) -> UndoResult:
    """Undo the last resolution; restored files return to the library at the next index run
    (`lib.index()`, which reuses their stored vectors by content hash)."""
    return undo_last(journal or journal_for(lib))


def journal_for(lib) -> Journal:
    """The library's resolution journal (in its data directory)."""
    return Journal(lib.dirs.journal)
