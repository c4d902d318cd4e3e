"""αQE and DBA: the weighted-neighbour formula, exclusions, and a gain on clustered data."""

from __future__ import annotations

import numpy as np

from imgfinder.core.rerank import alpha_qe, database_augment, expand


def clusters(seed=0, k=20, per=15, d=32, spread=1.2):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d))
    x = np.repeat(centres, per, axis=0) + spread * rng.standard_normal((k * per, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x, np.repeat(np.arange(k), per)


def exact(x):
    def search(q, k):
        s = x @ q
        order = np.argsort(-s)[:k]
        return order.astype(np.int64), s[order]

    def knn(v, k):
        s = v @ x.T
        order = np.argsort(-s, axis=1)[:, :k]
        return order.astype(np.int64), np.take_along_axis(s, order, 1)

    return search, knn, (lambda ids: x[np.asarray(ids)])


def test_expand_is_the_weighted_mean():
    v = np.array([[1.0, 0.0]], np.float32)
    nb = np.array([[[0.0, 1.0], [0.6, 0.8]]], np.float32)
    got = expand(v, nb, np.array([[0.5, -0.2]]), alpha=2.0)
    want = np.array([1.0, 0.25])
    assert np.allclose(got[0], want / np.linalg.norm(want), atol=1e-6)  # negative: weight 0


def test_alpha_qe_excludes_the_query_photo_and_helps():
    x, labels = clusters()
    search, _, get = exact(x)
    q = alpha_qe(x[0], search, get, n=3, exclude=0)
    ids, scores = search(x[0], 4)
    rest = [i for i in ids.tolist() if i != 0][:3]
    want = expand(x[:1], x[rest][None], (x[rest] @ x[0])[None], 3.0)[0]
    assert np.allclose(q, want, atol=1e-6)

    def precision(vectors_as_queries):
        hits = []
        for i, qv in enumerate(vectors_as_queries):
            order = [j for j in np.argsort(-(x @ qv)).tolist() if j != i][:10]
            hits.append(np.mean(labels[order] == labels[i]))
        return float(np.mean(hits))

    expanded = [alpha_qe(x[i], search, get, n=5, exclude=i) for i in range(len(x))]
    assert precision(expanded) > precision(x) + 0.02


def test_database_augment_matches_a_direct_computation():
    x, _ = clusters(seed=1, k=4, per=6, d=8)
    _, knn, get = exact(x)
    ids = np.arange(len(x))
    got = database_augment(ids, get, knn, n=3, alpha=3.0, chunk=5)
    for i in range(len(x)):
        s = x @ x[i]
        nb = [j for j in np.argsort(-s).tolist() if j != i][:3]
        want = x[i] + sum(max(0.0, s[j]) ** 3 * x[j] for j in nb)
        assert np.allclose(got[i], want / np.linalg.norm(want), atol=1e-5)
