"""Which candidate pairs the duplicate scan sends to the geometric check, and in what order."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from imgfinder.core import imagesig as signature
from imgfinder.core.dupes import pairs as P
from imgfinder.core.index import ExactIndex


def _scan(
    vectors: np.ndarray, sigs: np.ndarray, hashes: list[str] | None = None, score: float = 0.0
):
    n = len(vectors)
    ids = np.arange(1, n + 1, dtype=np.int64)
    index = ExactIndex(vectors.shape[1], model_id="t")
    index.add(ids, vectors.astype(np.float32))
    index.build()
    calls: list[tuple[int, int]] = []

    def verifier(i: int, j: int, o: int) -> float:
        calls.append((min(i, j), max(i, j)))
        return score

    gen = P.find_pairs(
        index,
        ids,
        [f"/p/{i}.jpg" for i in range(n)],
        hashes or [f"{i:032x}" for i in range(n)],
        sigs,
        verifier=verifier,
        k_features=6,
        k_signatures=4,
    )
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value, set(calls)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _cluster_library():
    rng = np.random.default_rng(0)
    dim = 64
    # one tight cluster of 8 photos (every pair far above the feature gate once centred) in a
    # spread-out library of 60 others, each photo's neighbours at distinct distances
    centre = rng.standard_normal(dim)
    cluster = centre + 0.25 * rng.standard_normal((8, dim)) * np.linspace(0.5, 1.5, 8)[:, None]
    others = 3 * rng.standard_normal((60, dim))
    vectors = _unit(np.concatenate([cluster, others]))
    sigs = _unit(rng.standard_normal((len(vectors), signature.SIG_DIM)))  # unrelated signatures
    return vectors, sigs


def test_feature_candidates_are_checked_only_among_a_photos_nearest_neighbours():
    vectors, sigs = _cluster_library()
    pl, calls = _scan(vectors, sigs)
    cluster_pairs = {(i, j) for i in range(8) for j in range(i + 1, 8)}
    gated = {
        (int(a), int(b))
        for a, b, s in zip(pl.a, pl.b, pl.similar)
        if (int(a), int(b)) in cluster_pairs and s >= P.FEATURE_GATE
    }
    assert len(gated) >= 20  # the feature gate alone would check most of the cluster
    # the pairs within rank 2 of either photo, from an exact neighbour ranking
    sims = vectors @ vectors.T
    near = set()
    for i in range(len(vectors)):
        order = [j for j in np.argsort(-sims[i]) if j != i][: P.FEATURE_RANK]
        near |= {(min(i, int(j)), max(i, int(j))) for j in order}
    assert calls & cluster_pairs == gated & near
    assert len(calls & cluster_pairs) < len(gated)
    assert pl.stats["feature_gate_pairs"] > pl.stats["verify_candidates"]


def test_pairs_left_unchecked_inside_a_family_of_copies_are_checked_when_closing_it():
    # every check says "copy": the cluster's gated pairs link it into one family, and the
    # cluster's pairs below the rank gate are then checked too, so grouping can keep it whole
    vectors, sigs = _cluster_library()
    pl, calls = _scan(vectors, sigs, score=0.95)
    cluster = [t for t in range(len(pl)) if pl.b[t] < 8]
    assert len(cluster) == 28  # every pair of the 8 is a feature neighbour pair or was added
    assert all(np.isfinite(pl.copy[t]) for t in cluster)
    assert pl.stats["closing_pairs"] > 0
    assert len(calls) == len(set(calls))  # no pair checked twice


def test_signature_candidates_are_checked_whatever_their_feature_rank():
    rng = np.random.default_rng(1)
    dim = 32
    vectors = _unit(rng.standard_normal((40, dim)))
    sigs = _unit(rng.standard_normal((40, signature.SIG_DIM)))
    sigs[7] = sigs[3] + 0.01 * rng.standard_normal(signature.SIG_DIM)  # a copy by signature
    sigs[7] /= np.linalg.norm(sigs[7])
    vectors[7] = _unit(-vectors[3:4])[0]  # ... whose features are far apart
    pl, calls = _scan(vectors, sigs)
    assert (3, 7) in calls
    # byte-identical files are paired by hash and never checked
    hashes = [f"{i:032x}" for i in range(40)]
    hashes[9] = hashes[4]
    pl, calls = _scan(vectors, sigs, hashes)
    k = [t for t in range(len(pl)) if (pl.a[t], pl.b[t]) == (4, 9)]
    assert k and pl.exact[k[0]] and pl.copy[k[0]] == 1.0 and (4, 9) not in calls


def test_hash_codes_match_equal_hashes():
    hashes = ["b", "a", "b", "c", "a", "b"]
    codes, uniq = P._hash_codes(hashes)
    assert sorted(uniq) == ["a", "b", "c"]
    for i in range(len(hashes)):
        assert uniq[codes[i]] == hashes[i]
    ea, eb = P._exact_pairs(hashes)
    assert sorted(zip(ea.tolist(), eb.tolist())) == [(0, 2), (0, 5), (1, 4), (2, 5)]


def _decodes(a: np.ndarray, b: np.ndarray, order, cache: int) -> int:
    lru: OrderedDict[int, None] = OrderedDict()
    n = 0
    for t in order:
        for p in (int(a[t]), int(b[t])):
            if p in lru:
                lru.move_to_end(p)
                continue
            n += 1
            lru[p] = None
            while len(lru) > cache:
                lru.popitem(last=False)
    return n


def test_locality_order_describes_each_photo_about_once():
    rng = np.random.default_rng(2)
    # 300 groups of 5 photos with every pair a candidate, positions scattered over 1,500
    perm = rng.permutation(1500)
    a, b = [], []
    for g in range(300):
        m = perm[g * 5 : g * 5 + 5]
        for i in range(5):
            for j in range(i + 1, 5):
                a.append(min(m[i], m[j]))
                b.append(max(m[i], m[j]))
    a, b = np.asarray(a), np.asarray(b)
    order = P._locality_order(a, b)
    assert sorted(order.tolist()) == list(range(len(a)))
    by_position = np.lexsort((b, a))
    assert _decodes(a, b, order, 16) == 1500
    assert _decodes(a, b, by_position, 16) > 3000
    assert len(P._locality_order(np.zeros(0, np.int64), np.zeros(0, np.int64))) == 0


def test_decisions_drop_their_pairs_whatever_the_order_of_hashes():
    hashes = ["z", "a", "m", "b"]  # first-seen order differs from string order
    a, b = np.array([0, 0, 1, 2]), np.array([1, 3, 2, 3])
    drop = P._decided(hashes, a, b, {("a", "z"), ("m", "b")})
    assert drop.tolist() == [True, False, False, True]
    drop = P._decided(hashes, a, b, {("z", "a")})  # either order of a stored pair
    assert drop.tolist() == [True, False, False, False]


def test_pairs_of_the_same_two_contents_are_checked_once():
    # photos 0 and 1 are byte-identical (one hash); 2 is a copy of both: (0, 2) and (1, 2)
    # are the same check, done once, and both pairs get its score
    rng = np.random.default_rng(1)
    base = rng.standard_normal(signature.SIG_DIM)
    sigs = _unit(np.stack([base, base, base + 0.1 * rng.standard_normal(signature.SIG_DIM)]))
    others = _unit(rng.standard_normal((20, signature.SIG_DIM)))
    sigs = np.concatenate([sigs, others])
    vectors = _unit(rng.standard_normal((len(sigs), 16)))
    hashes = ["a" * 32, "a" * 32] + [f"{i:032x}" for i in range(2, len(sigs))]
    pl, calls = _scan(vectors, sigs, hashes, score=0.93)
    assert len(calls & {(0, 2), (1, 2)}) == 1
    copy = {(int(a), int(b)): float(c) for a, b, c in zip(pl.a, pl.b, pl.copy)}
    assert copy[(0, 2)] == copy[(1, 2)] == np.float32(0.93)
    assert copy[(0, 1)] == 1.0  # identical files: never checked
    assert pl.stats["verify_same_contents"] == 1


def test_signature_neighbours_are_each_photos_exact_nearest_in_bounded_blocks(monkeypatch):
    rng = np.random.default_rng(4)
    sigs = _unit(rng.standard_normal((150, signature.SIG_DIM)))
    sigs[7] = 0  # a flat photo: no signature, no neighbours
    monkeypatch.setattr(P, "SIG_SCORES_ELEMS", 64 * 150)  # 64-row score blocks: 3 of them
    gen = P._signature_pairs(sigs, 5, threading.Event())
    steps = 0
    while True:
        try:
            next(gen)
            steps += 1
        except StopIteration as stop:
            a, b = stop.value
            break
    assert steps == 3
    valid = [i for i in range(150) if i != 7]
    inv = signature.invariant(sigs[valid])
    inv /= np.linalg.norm(inv, axis=1, keepdims=True)
    cos = inv @ inv.T
    np.fill_diagonal(cos, -np.inf)
    want = set()
    for r, row in enumerate(cos):
        for c in np.argsort(-row)[:5]:
            x, y = valid[r], valid[int(c)]
            want.add((min(x, y), max(x, y)))
    assert set(zip(a.tolist(), b.tolist())) == want
