"""Candidate pairs from index neighbours (features and signatures), scored and cached as a PairList.

No N x N matrix is ever formed. Two k-NN passes propose pairs:

* features: every photo's vector is queried against the library's index (`query_batch`), and
  each neighbour pair gets a *centred* cosine: the cosine after removing the library's mean
  unit feature. Raw cosines of pooled ReLU features bunch near 1 (random-init weights put
  unrelated photos at 0.99); centring spreads them so one slider range works for any weights,
  and it costs O(1) per pair from the index's own score: with unit a, b and mean m,
  (a-m).(b-m) = cos - a.m - b.m + m.m and |a-m|^2 = 1 - 2 a.m + m.m.
* signatures: up to EXACT_SIG_LIMIT photos, every photo's nearest DCT signatures by the exact
  cosine of their dihedral-invariant forms, in bounded blocks (no index is built); beyond, one LSH
  self-join over the signatures in all 8 orientations (sigpairs.py) returns the pairs whose
  best-orientation similarity reaches SIG_GATE, so rotated and mirrored copies are proposed
  even when the features miss them.

Pairs whose best-orientation signature similarity reaches SIG_GATE, or whose centred feature
cosine reaches FEATURE_GATE while being among the FEATURE_RANK nearest feature neighbours of
one of its two photos, are then checked geometrically (geometry.py: SIFT + RANSAC, aligned
detail correlation, containment) unless the hash pair's score is cached. The rank condition is
what keeps the check affordable: in a dense collection (a class of flowers, a burst) a photo
has many neighbours above FEATURE_GATE, but a copy is its original's first or second feature
neighbour (benchmarks/dupes_copies.py: every verified copy was, while 60% of the pairs that
only the feature gate proposed and the check then rejected ranked lower). Pairs are checked in
an order that keeps each photo's described features in the verifier's small cache while its
pairs are checked (`_locality_order`). Photos sharing a content hash are
paired directly from the catalog. Pairs the user marked "not duplicates" / "keep both" are
dropped. What remains (every pair above the loosest setting of any slider) is the PairList
that `grouping.group` regroups in milliseconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np

from imgfinder.core import imagesig as signature
from imgfinder.core.dupes import sigpairs
from imgfinder.core.dupes.workers import MIN_VERIFY_PAIRS, verify_in_batches
from imgfinder.core.types import Progress

log = logging.getLogger(__name__)

K_FEATURES = 10  # feature neighbours per photo
K_SIGNATURES = 16  # signature neighbours per photo (bounds how many copies form one group)
LOOSE_SIMILAR = 0.40  # lowest "similar" slider value: weaker feature pairs are not kept
SIG_GATE = 0.85  # signature similarity from which a pair is verified as a possible copy
FEATURE_GATE = 0.60  # ... or centred feature cosine (crops, borders, tilts the signature misses)
FEATURE_RANK = 2  # ... when the pair is among one photo's FEATURE_RANK nearest feature neighbours
NO_RANK = 127  # rank of pairs that are not feature neighbours
EXACT_SIG_LIMIT = 20000  # up to this many photos the signature neighbours are exact
# beyond: a threshold self-join over the oriented signatures (sigpairs.py)
SEARCH_VERSION = 3  # bump when the candidate search changes (2: signature self-join; 3: exact
# signature neighbours from float32 invariants, not an ExactIndex of float16 rows): in the
# pair cache's key (cache.py), so a scan cached by an older search is computed afresh
EXACT_GROUP_CAP = 200  # identical files beyond this many per hash are left out of pairing
CHUNK = 2048
SIG_CHUNK = 8192  # pairs per signature-similarity gather
SIG_SCORES_ELEMS = 1 << 20  # signature neighbours: 4 MB score blocks, reused from the heap (32 MB
# ones were fresh pages each time: 0.6 s of page faults at 3.5k photos on the test VM)
# threads of the feature k-NN: on the shared, loaded 2-core test machine (load 4-5) two threads
# were slower than one (20k x 4096 LSH: 11 s wall against 8 s), the engine's many small numpy
# steps contending for the GIL; more may pay on idle cores, unmeasured here
KNN_THREADS = 1

Verifier = Callable[[int, int, int], float]  # (position a, position b, orientation) -> score
# [(position a, position b, orientation)] -> a future of (scores, photos decoded)
BatchVerifier = Callable[[list[tuple[int, int, int]]], "Future"]
BATCH_PAIRS = 32  # pairs per chunk sent to a worker (pairs of one photo stay together mostly)


@dataclass
class PairList:
    """All candidate pairs of one scan; positions index `ids`, `paths` and `hashes`."""

    ids: np.ndarray  # (N,) image ids, ascending
    paths: list[str]
    hashes: list[str]
    a: np.ndarray  # (P,) int64 positions, a < b
    b: np.ndarray
    exact: np.ndarray  # bool: same content hash
    similar: np.ndarray  # float32 centred feature cosine; NaN: not feature neighbours
    sig: np.ndarray  # float32 best-orientation signature similarity
    orientation: np.ndarray  # int8 index into signature.ORIENTATIONS (maps b onto a)
    copy: np.ndarray  # float32 verified copy score; NaN: not verified (below SIG_GATE)
    model_id: str = ""
    seconds: float = 0.0
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.a)

    def select(self, keep: np.ndarray) -> PairList:
        return replace(
            self,
            a=self.a[keep],
            b=self.b[keep],
            exact=self.exact[keep],
            similar=self.similar[keep],
            sig=self.sig[keep],
            orientation=self.orientation[keep],
            copy=self.copy[keep],
        )

    def position(self, image_id: int) -> int | None:
        i = int(np.searchsorted(self.ids, image_id))
        return i if i < len(self.ids) and int(self.ids[i]) == int(image_id) else None

    def without_ids(self, image_ids: Iterable[int]) -> PairList:
        """Drop every pair touching these images (e.g. just moved to the trash)."""
        pos = [p for p in (self.position(i) for i in image_ids) if p is not None]
        if not pos:
            return self
        gone = np.zeros(len(self.ids), bool)
        gone[pos] = True
        return self.select(~(gone[self.a] | gone[self.b]))

    def without_paths(self, paths: Iterable[str]) -> PairList:
        where = {p: i for i, p in enumerate(self.paths)}
        return self.without_ids(int(self.ids[where[p]]) for p in paths if p in where)

    def suppress(self, hash_pairs: Iterable[tuple[str, str]]) -> PairList:
        """Drop pairs whose content hashes carry a user decision."""
        drop = _decided(self.hashes, self.a, self.b, set(hash_pairs))
        return self.select(~drop) if drop.any() else self


def _decided(hashes: list[str], a: np.ndarray, b: np.ndarray, decided: set) -> np.ndarray:
    if not decided or len(a) == 0:
        return np.zeros(len(a), bool)
    codes, uniq = _hash_codes(hashes)
    lookup = {h: i for i, h in enumerate(uniq)}
    n = len(uniq)
    keys = [  # codes are in first-seen order, not string order: order each pair by code
        min(lookup[x], lookup[y]) * n + max(lookup[x], lookup[y])
        for x, y in decided
        if x in lookup and y in lookup
    ]
    ca, cb = codes[a], codes[b]
    pair_keys = np.minimum(ca, cb) * n + np.maximum(ca, cb)
    return np.isin(pair_keys, np.asarray(keys, np.int64))


def _hash_codes(hashes: list[str]) -> tuple[np.ndarray, list[str]]:
    """(code per photo, distinct hashes): equal hashes get equal codes, in first-seen order
    (a dict pass: np.unique on 100k Python strings sorts them as objects, far slower)."""
    lookup: dict[str, int] = {}
    codes = np.fromiter(
        (lookup.setdefault(h, len(lookup)) for h in hashes), np.int64, count=len(hashes)
    )
    return codes, list(lookup)


def centred_cosine(cos: np.ndarray, am_a: np.ndarray, am_b: np.ndarray, mm: float) -> np.ndarray:
    num = cos - am_a - am_b + mm
    den = np.sqrt(np.maximum(1 - 2 * am_a + mm, 1e-9) * np.maximum(1 - 2 * am_b + mm, 1e-9))
    return (num / den).astype(np.float32)


def _feature_pairs(
    index, ids: np.ndarray, k: int, cancel: threading.Event, lock, threads: int = 1
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """(a, b, centred cosine, rank) for every photo's k feature neighbours; rank 0 is the
    querying photo's nearest neighbour other than itself.

    Chunks of CHUNK photos are queried `threads` at a time, in parallel (concurrent queries
    are safe on every index: base.py), holding `lock` for each such wave; progress and the
    cancel check come once per wave."""
    n = len(ids)
    step = max(1, n // 20000)  # the mean of 20k unit vectors is plenty
    sample = ids[::step]
    total = np.zeros(index.dim, np.float64)
    for lo in range(0, len(sample), CHUNK):
        with lock:
            total += index.get_vectors(sample[lo : lo + CHUNK]).sum(axis=0)
    m = (total / len(sample)).astype(np.float32)
    mm = float(m @ m)
    am = np.empty(n, np.float32)
    rows, nbrs, scores, ranks = [], [], [], []
    t0 = time.perf_counter()
    kk = min(k + 1, n)
    threads = max(1, int(threads))

    def query(lo: int):
        q = index.get_vectors(ids[lo : lo + CHUNK])
        return (q, *index.query_batch(q, kk))

    with ThreadPoolExecutor(threads, thread_name_prefix="dupes-knn") as pool:
        for wave in range(0, n, CHUNK * threads):
            if cancel.is_set():
                return None
            los = range(wave, min(n, wave + CHUNK * threads), CHUNK)
            with lock:
                got = list(pool.map(query, los)) if threads > 1 else [query(wave)]
            for lo, (q, nb, sc) in zip(los, got):
                chunk = ids[lo : lo + CHUNK]
                am[lo : lo + len(chunk)] = q @ m
                rows.append(np.repeat(np.arange(lo, lo + len(chunk)), kk))
                nbrs.append(nb.ravel())
                scores.append(sc.ravel())
                own = np.cumsum(nb == chunk[:, None], axis=1)  # the photo itself does not count
                ranks.append((np.arange(nb.shape[1])[None, :] - own).ravel())
            done = min(n, wave + CHUNK * threads)
            rate = done / max(time.perf_counter() - t0, 1e-9)
            yield Progress("features", done, n, rate, (n - done) / rate, "feature neighbours")
    row = np.concatenate(rows)
    nb = np.concatenate(nbrs)
    sc = np.concatenate(scores).astype(np.float32)
    rank = np.concatenate(ranks)
    pos = np.searchsorted(ids, nb)
    pos_ok = np.minimum(pos, n - 1)
    ok = (nb >= 0) & (ids[pos_ok] == nb) & (pos_ok != row)
    row, col, sc, rank = row[ok], pos_ok[ok], sc[ok], rank[ok]
    cos = centred_cosine(sc, am[row], am[col], mm)
    return np.minimum(row, col), np.maximum(row, col), cos, np.minimum(rank, NO_RANK)


def _signature_pairs(
    sigs: np.ndarray, k: int, cancel: threading.Event
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray] | None]:
    """(a, b) signature candidate pairs: up to EXACT_SIG_LIMIT photos every photo's k nearest
    dihedral-invariant signatures (exact); beyond, every pair whose best-orientation
    similarity reaches SIG_GATE, at most k per photo, by one LSH self-join (sigpairs.py:
    find_pairs keeps no signature-only pair below SIG_GATE, so nothing else is needed)."""
    valid = np.flatnonzero(np.linalg.norm(sigs, axis=1) > 0)
    if len(valid) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(valid) > EXACT_SIG_LIMIT:
        got = yield from sigpairs.threshold_pairs(sigs, SIG_GATE, k, cancel=cancel)
        return None if got is None else (got[0], got[1])
    inv = signature.invariant(sigs[valid])
    inv /= np.maximum(np.linalg.norm(inv, axis=1, keepdims=True), 1e-12)
    kk = min(k + 1, len(valid))
    rows, nbrs = [], []
    t0 = time.perf_counter()
    step = max(64, min(CHUNK, SIG_SCORES_ELEMS // len(valid)))  # bounded (step, N) scores
    for lo in range(0, len(valid), step):
        if cancel.is_set():
            return None
        chunk = valid[lo : lo + step]
        rows.append(np.repeat(chunk, kk))
        scores = inv[lo : lo + step] @ inv.T  # (step, photos): the exact cosines
        np.negative(scores, out=scores)  # in place: no second block
        nbrs.append(valid[np.argpartition(scores, kk - 1, axis=1)[:, :kk]].ravel())
        done = lo + len(chunk)
        rate = done / max(time.perf_counter() - t0, 1e-9)
        yield Progress(
            "candidates", done, len(valid), rate, (len(valid) - done) / rate, "signature neighbours"
        )
    row, nb = np.concatenate(rows), np.concatenate(nbrs)
    ok = (nb >= 0) & (nb != row)
    row, nb = row[ok], nb[ok]
    return np.minimum(row, nb), np.maximum(row, nb)


def _exact_pairs(hashes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    codes, _ = _hash_codes(hashes)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    pa, pb = [], []
    for s, e in zip(starts, ends):
        if e - s < 2:
            continue
        members = np.sort(order[s:e])
        if len(members) > EXACT_GROUP_CAP:
            log.warning(
                "%d identical files share one hash; pairing the first %d",
                len(members),
                EXACT_GROUP_CAP,
            )
            members = members[:EXACT_GROUP_CAP]
        ia, ib = np.triu_indices(len(members), 1)
        pa.append(members[ia])
        pb.append(members[ib])
    if not pa:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(pa).astype(np.int64), np.concatenate(pb).astype(np.int64)


def _companion_parts(
    companions: tuple[np.ndarray, np.ndarray] | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Companion pairs (RAW+JPEG) as (a < b) positions, invalid ones dropped."""
    if companions is None or len(companions[0]) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    x = np.asarray(companions[0], np.int64)
    y = np.asarray(companions[1], np.int64)
    ok = (x != y) & (x >= 0) & (y >= 0) & (x < n) & (y < n)
    x, y = x[ok], y[ok]
    return np.minimum(x, y), np.maximum(x, y)


def find_pairs(
    index,
    ids: np.ndarray,
    paths: list[str],
    hashes: list[str],
    sigs: np.ndarray,
    *,
    verifier: Verifier | None = None,
    verified: dict[tuple[str, str], float] | None = None,
    decisions: Iterable[tuple[str, str]] = (),
    k_features: int = K_FEATURES,
    k_signatures: int = K_SIGNATURES,
    cancel: threading.Event | None = None,
    lock=None,
    workers: int = 2,
    knn_threads: int = KNN_THREADS,
    companions: tuple[np.ndarray, np.ndarray] | None = None,
    feature_positions: np.ndarray | None = None,
    verify_batch: BatchVerifier | None = None,
    batch_min: int = MIN_VERIFY_PAIRS,
) -> Generator[Progress, None, PairList | None]:
    """The scan proper, independent of the Library (the benchmark drives it directly).

    `index`: anything with get_vectors/query_batch/dim over `ids` (None: no feature pass).
    `sigs`: (N, SIG_DIM) signatures, zero rows for photos without one. `verifier(a, b, o)`
    scores a candidate copy; None leaves `copy` NaN. `verified`: cached scores by hash pair,
    updated in place with new ones. `companions`: (a, b) positions of files that are the
    same shot by construction (RAW+JPEG pairs, rawpairs.py): kept with copy score 1 and never
    verified. `feature_positions`: ascending positions of the photos that have a vector in
    `index` (default all); the others take part through signatures and hashes only (photos
    from `index --signatures-only`). `workers`: threads of the geometric check;
    `knn_threads`: of the feature k-NN (chunks queried in parallel). `verify_batch`: checks
    chunks of pairs elsewhere (worker processes, dupes/workers.py) instead of `verifier` in
    threads, when there are at least `batch_min` to check; `verifier` still
    checks the few pairs that close groups. Returns None when cancelled.
    """
    t0 = time.perf_counter()
    cancel = cancel or threading.Event()
    lock = lock or nullcontext()
    ids = np.asarray(ids, np.int64)
    if len(ids) and np.any(np.diff(ids) <= 0):
        raise ValueError("ids must be strictly ascending")
    n = len(ids)
    stats: dict = {"images": n}
    parts_a, parts_b, parts_sim, parts_rank = [], [], [], []
    tf, cf = time.perf_counter(), time.process_time()
    fpos = (
        np.arange(n, dtype=np.int64)
        if feature_positions is None
        else np.asarray(feature_positions, np.int64)
    )
    if index is not None and len(fpos) > 1 and len(index):
        got = yield from _feature_pairs(index, ids[fpos], k_features, cancel, lock, knn_threads)
        if got is None:
            return None
        parts_a.append(fpos[got[0]])  # fpos ascending: a < b stays true
        parts_b.append(fpos[got[1]])
        parts_sim.append(got[2])
        parts_rank.append(got[3])
        stats["feature_pairs"] = len(got[0])
    stats["features_s"] = round(time.perf_counter() - tf, 3)
    stats["features_cpu_s"] = round(time.process_time() - cf, 3)  # all threads of the process
    ts, cs = time.perf_counter(), time.process_time()
    got = yield from _signature_pairs(sigs, k_signatures, cancel)
    if got is None:
        return None
    parts_a.append(got[0])
    parts_b.append(got[1])
    parts_sim.append(np.full(len(got[0]), np.nan, np.float32))
    parts_rank.append(np.full(len(got[0]), NO_RANK, np.int64))
    stats["signature_pairs"] = len(got[0])
    stats["signatures_s"] = round(time.perf_counter() - ts, 3)
    stats["signatures_cpu_s"] = round(time.process_time() - cs, 3)
    ea, eb = _exact_pairs(hashes)
    parts_a.append(ea)
    parts_b.append(eb)
    parts_sim.append(np.full(len(ea), np.nan, np.float32))
    parts_rank.append(np.full(len(ea), NO_RANK, np.int64))
    ca, cb = _companion_parts(companions, n)
    parts_a.append(ca)
    parts_b.append(cb)
    parts_sim.append(np.full(len(ca), np.nan, np.float32))
    parts_rank.append(np.full(len(ca), NO_RANK, np.int64))

    a_all, b_all = np.concatenate(parts_a), np.concatenate(parts_b)
    sim_all = np.concatenate(parts_sim)
    keys, inv = np.unique(a_all * max(n, 1) + b_all, return_inverse=True)
    a, b = keys // max(n, 1), keys % max(n, 1)
    similar = np.full(len(keys), np.nan, np.float32)
    np.fmax.at(similar, inv, sim_all)
    rank = np.full(len(keys), NO_RANK, np.int64)
    np.minimum.at(rank, inv, np.concatenate(parts_rank))
    sig = np.empty(len(a), np.float32)
    orient = np.empty(len(a), np.int8)
    # in chunks: 2M pairs x 144 floats is 1 GB; 8192 pairs (2 x 4.7 MB) stay in cache
    # (measured 15% less CPU than 65536 per chunk, same scores)
    for lo in range(0, len(a), SIG_CHUNK):
        sl = slice(lo, lo + SIG_CHUNK)
        sig[sl], orient[sl] = signature.similarity(sigs[a[sl]], sigs[b[sl]])
    codes, _ = _hash_codes(hashes)
    exact = codes[a] == codes[b]
    paired = np.isin(a * max(n, 1) + b, ca * max(n, 1) + cb) if len(ca) else np.zeros(len(a), bool)
    keep = exact | paired | (sig >= SIG_GATE) | (similar >= LOOSE_SIMILAR)
    keep &= ~_decided(hashes, a, b, set(decisions))
    a, b, exact, similar, sig, orient, paired, rank = (
        x[keep] for x in (a, b, exact, similar, sig, orient, paired, rank)
    )
    sig = np.where(exact, np.float32(1.0), sig)
    copy = np.where(exact | paired, np.float32(1.0), np.float32(np.nan)).astype(np.float32)
    stats["raw_jpeg_pairs"] = int(paired.sum())

    verified = verified if verified is not None else {}
    todo = np.flatnonzero(~exact & ~paired & _to_verify(sig, similar, rank))
    stats["verify_candidates"] = len(todo)
    stats["feature_gate_pairs"] = int(np.count_nonzero(~exact & ~paired & _to_verify(sig, similar)))
    # pairs of the same two contents (a byte-identical file's pairs) are checked once
    unchecked: dict[tuple[str, str], list[int]] = {}
    for t in todo:
        key = _hp(hashes, a[t], b[t])
        s = verified.get(key)
        if s is None:
            unchecked.setdefault(key, []).append(int(t))
        else:
            copy[t] = s
    missing = [ts[0] for ts in unchecked.values()]
    twins = {ts[0]: ts[1:] for ts in unchecked.values() if len(ts) > 1}
    stats["verified_now"] = len(missing) if verifier is not None else 0
    stats["verify_same_contents"] = sum(len(ts) for ts in twins.values())
    if missing:  # photos the check has to describe (decode + SIFT) at least once
        # a set, not np.unique: numpy 2's plain unique imports numpy.ma (0.05 s at start-up)
        stats["verify_photos"] = len(set(a[missing].tolist()) | set(b[missing].tolist()))
    if verifier is not None and missing:
        missing = [missing[i] for i in _locality_order(a[missing], b[missing])]
        tv = time.perf_counter()
    if verifier is not None and verify_batch is not None and len(missing) >= batch_min:
        triples = [(int(a[t]), int(b[t]), int(orient[t])) for t in missing]
        got = yield from verify_in_batches(triples, verify_batch, BATCH_PAIRS, cancel, stats, tv)
        if got is None:
            return None
        for t, s in zip(missing, got):
            copy[t] = s
            copy[twins.get(t, [])] = s
            if np.isfinite(s):
                verified[_hp(hashes, a[t], b[t])] = float(s)
    elif verifier is not None and missing:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="dupes-verify") as pool:
            for lo in range(0, len(missing), 128):
                if cancel.is_set():
                    return None
                chunk = missing[lo : lo + 128]
                got_scores = pool.map(
                    lambda t: verifier(int(a[t]), int(b[t]), int(orient[t])), chunk
                )
                for t, s in zip(chunk, got_scores):
                    copy[t] = s
                    copy[twins.get(t, [])] = s
                    if np.isfinite(s):
                        verified[_hp(hashes, a[t], b[t])] = float(s)
                done = lo + len(chunk)
                yield Progress.since("verify", done, len(missing), tv, "checking candidate copies")
    stats["verify_s"] = round(time.perf_counter() - tv, 3) if verifier and missing else 0.0
    if verifier is not None:
        got = _close_groups(
            a, b, exact, similar, sig, orient, copy, sigs, hashes, verified, verifier
        )
        a, b, exact, similar, sig, orient, copy, added = got
        stats["closing_pairs"] = added
    return PairList(
        ids=ids,
        paths=list(paths),
        hashes=list(hashes),
        a=a.astype(np.int64),
        b=b.astype(np.int64),
        exact=exact,
        similar=similar,
        sig=sig.astype(np.float32),
        orientation=orient.astype(np.int8),
        copy=copy,
        seconds=time.perf_counter() - t0,
        stats=stats | {"pairs": len(a)},
    )


def _close_groups(a, b, exact, similar, sig, orient, copy, sigs, hashes, verified, verifier):
    """Check the pairs missing inside components of verified copies (geometry.missing_links)
    and add them, so complete linkage does not split a family of copies for want of a link."""
    from imgfinder.core.dupes.geometry import missing_links  # noqa: PLC0415

    ma, mb = missing_links(a, b, copy, len(sigs), exact)
    if len(ma) == 0:
        return a, b, exact, similar, sig, orient, copy, 0
    n = max(len(sigs), 1)
    keys = a * n + b  # ascending: find_pairs keeps its pairs in key order
    at = np.minimum(np.searchsorted(keys, ma * n + mb), max(len(keys) - 1, 0))
    listed = (keys[at] == ma * n + mb) if len(keys) else np.zeros(len(ma), bool)
    copy = copy.copy()
    for t in np.flatnonzero(listed):  # in the list but never checked (below the rank gate)
        i = int(at[t])
        copy[i] = _checked(hashes, verified, verifier, int(a[i]), int(b[i]), int(orient[i]))
    ma, mb = ma[~listed], mb[~listed]
    if len(ma) == 0:
        return a, b, exact, similar, sig, orient, copy, int(listed.sum())
    msig, mor = signature.similarity(sigs[ma], sigs[mb])
    mcopy = np.empty(len(ma), np.float32)
    for t in range(len(ma)):
        mcopy[t] = _checked(hashes, verified, verifier, int(ma[t]), int(mb[t]), int(mor[t]))
    order = np.argsort(np.concatenate([a * n + b, ma * n + mb]), kind="stable")
    cat = [
        np.concatenate(x)[order]
        for x in (
            (a, ma),
            (b, mb),
            (exact, np.zeros(len(ma), bool)),
            (similar, np.full(len(ma), np.nan, np.float32)),
            (sig, msig.astype(np.float32)),
            (orient, mor.astype(np.int8)),
            (copy, mcopy),
        )
    ]
    return (*cat, len(ma) + int(listed.sum()))


def _checked(hashes, verified, verifier, i: int, j: int, o: int) -> float:
    """The copy score of one pair: cached by hash pair, else checked (and cached)."""
    key = _hp(hashes, i, j)
    s = verified.get(key)
    if s is None:
        s = verifier(i, j, o)
        if np.isfinite(s):
            verified[key] = float(s)
    return s


def _to_verify(sig: np.ndarray, similar: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
    """Pairs checked geometrically: close signatures, or close (centred) features among one
    photo's FEATURE_RANK nearest neighbours (`rank` None: the feature gate alone)."""
    with np.errstate(invalid="ignore"):
        near = similar >= FEATURE_GATE
    if rank is not None:
        near &= rank < FEATURE_RANK
    return (sig >= SIG_GATE) | near


def _locality_order(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """An order of the pairs (a[i], b[i]) in which each photo's pairs come close together.

    Photos are numbered breadth-first over the graph of pairs (a photo's partners right after
    it), and pairs sorted by their later photo: a pair is checked as soon as both photos have
    been reached, so the few photos in play at any time stay in the verifier's LRU cache,
    instead of one decode and SIFT per pair as (a, b) order gives on a large library."""
    if len(a) == 0:
        return np.zeros(0, np.int64)
    nodes, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    x, y = inv[: len(a)], inv[len(a) :]
    m = len(nodes)
    src = np.concatenate([x, y])
    dst = np.concatenate([y, x])
    order = np.argsort(src, kind="stable")
    dst = dst[order]
    start = np.searchsorted(src[order], np.arange(m + 1))
    seen = np.full(m, -1, np.int64)
    step = 0
    for root in range(m):
        if seen[root] >= 0:
            continue
        seen[root] = step
        step += 1
        queue = [root]
        while queue:
            nxt = []
            for u in queue:
                for v in dst[start[u] : start[u + 1]].tolist():
                    if seen[v] < 0:
                        seen[v] = step
                        step += 1
                        nxt.append(v)
            queue = nxt
    ox, oy = seen[x], seen[y]
    return np.lexsort((np.minimum(ox, oy), np.maximum(ox, oy)))


def _hp(hashes: list[str], i, j) -> tuple[str, str]:
    x, y = hashes[int(i)], hashes[int(j)]
    return (x, y) if x <= y else (y, x)
