"""Query-time re-ranking (core/rerank.py): αQE, DBA + αQE, diffusion, local verification;
wired into `imgfinder search --rerank` and `imgfinder eval --rerank / --queries first`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from imgfinder.cli import main
from imgfinder.core.evaluate import first_of_each
from imgfinder.core.index import ExactIndex
from imgfinder.core.rerank import (
    Diffusion,
    LocalVerifier,
    Reranker,
    RerankOptions,
    dba_local,
    parse_methods,
)
from tests.common import cli_args
from tests.imgutil import textured


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _exact(vectors):
    idx = ExactIndex(dim=vectors.shape[1])
    idx.add(np.arange(len(vectors)), vectors)
    idx.build()
    return idx


def test_parse_methods():
    assert parse_methods(None) == () and parse_methods("none") == ()
    assert parse_methods("verify, dba+aqe") == ("dba+aqe", "verify")
    with pytest.raises(ValueError, match="unknown re-ranking"):
        parse_methods("qe")
    with pytest.raises(ValueError, match="one of aqe and dba"):
        parse_methods("aqe,dba+aqe")


def test_dba_local_pulls_each_vector_towards_its_neighbours():
    rng = np.random.default_rng(0)
    centre = _unit(rng.standard_normal(16))
    v = _unit(centre + 0.5 * rng.standard_normal((8, 16)))
    out = dba_local(v, n=3)
    assert out.shape == v.shape
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)
    assert float(np.mean(out @ centre)) > float(np.mean(v @ centre))


def _chain_and_distractor():
    """q, then a (close to q), b (close to a, not to q), d (closer to q than b is)."""
    e = np.eye(8, dtype=np.float32)
    q = e[0]
    a = _unit(e[0] + 0.6 * e[1])
    b = _unit(0.55 * e[0] + e[1])
    d = _unit(0.6 * e[0] + e[2])
    return np.stack([q, a, b, d])


def test_alpha_qe_brings_up_the_neighbour_of_the_top_result():
    v = _chain_and_distractor()
    assert float(v[0] @ v[3]) > float(v[0] @ v[2])  # plain cosine: d before b
    idx = _exact(v)
    plain = Reranker(RerankOptions(), idx.query, lambda i: v[i])
    assert plain.rank(v[0], 3, exclude=0)[0].tolist() == [1, 3, 2]
    aqe = Reranker(RerankOptions(methods=("aqe",), qe_n=1, alpha=1.0), idx.query, lambda i: v[i])
    ids, scores = aqe.rank(v[0], 3, exclude=0)
    assert ids.tolist() == [1, 2, 3]
    assert np.allclose(scores, v[[1, 2, 3]] @ v[0])  # still the query's own cosines
    dba = Reranker(RerankOptions(methods=("dba+aqe",), qe_n=1, dba_n=1), idx.query, lambda i: v[i])
    assert dba.rank(v[0], 3, exclude=0)[0].tolist()[:2] == [1, 2]


def _arc(u, w, degrees):
    t = np.radians(np.asarray(degrees, np.float64))
    return _unit(np.cos(t)[:, None] * u + np.sin(t)[:, None] * w)


def test_diffusion_follows_the_manifold():
    e = np.eye(6)
    arc_a = _arc(e[0], e[1], np.arange(0, 90, 3))  # the query's manifold, 3° steps
    u = _unit(0.8 * e[0] + 0.6 * e[2])  # a second one, 37° from the query at its closest
    arc_b = _arc(u, e[3], np.arange(0, 90, 3))
    v = np.concatenate([arc_a, arc_b]).astype(np.float32)
    a_ids = set(range(len(arc_a)))
    idx = _exact(v)
    plain_ids, _ = idx.query(v[0], len(v))
    plain = [int(i) for i in plain_ids if i != 0]
    assert any(i not in a_ids for i in plain[: len(arc_a) - 1])  # cosine mixes the two
    diff = Diffusion(np.arange(len(v)), v, truncate=60, graph_k=4, alpha=0.95)
    rr = Reranker(RerankOptions(methods=("diffusion",)), idx.query, lambda i: v[i], diffusion=diff)
    ids, _ = rr.rank(v[0], len(v) - 1, exclude=0)
    assert set(ids[: len(arc_a) - 1].tolist()) == a_ids - {0}
    assert diff.nbytes > 0


def _photo(seed, size=(360, 270)):
    rng = np.random.default_rng(seed)
    arr = np.asarray(textured(size, seed=seed)).astype(np.int16)
    for _ in range(40):  # corners and edges for SIFT: random rectangles
        x, y = rng.integers(0, size[0] - 40), rng.integers(0, size[1] - 40)
        w, h = rng.integers(8, 40, size=2)
        arr[y : y + h, x : x + w] = rng.integers(0, 255, size=3)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _perspective(img):
    w, h = img.size
    # a moderate perspective view of the middle 85%
    coeffs = _coeffs(
        [(0, 0), (w, 0), (w, h), (0, h)],
        [(0.06 * w, 0.02 * h), (0.92 * w, 0.08 * h), (0.95 * w, 0.9 * h), (0.03 * w, 0.97 * h)],
    )
    return img.transform((w, h), Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BILINEAR)


def _coeffs(dst, src):
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.asarray(src, np.float64).reshape(8)
    return np.linalg.solve(np.asarray(a, np.float64), b).tolist()


def test_local_verification_counts_inliers_of_the_same_scene(tmp_path):
    orig, other = _photo(1), _photo(2)
    orig.save(tmp_path / "a.png")
    _perspective(orig).rotate(8, resample=Image.Resampling.BILINEAR).save(tmp_path / "b.jpg")
    other.save(tmp_path / "c.png")
    ver = LocalVerifier()
    same = ver.inliers(str(tmp_path / "a.png"), str(tmp_path / "b.jpg"))
    diff = ver.inliers(str(tmp_path / "a.png"), str(tmp_path / "c.png"))
    assert same >= 30 and diff < 15
    assert ver.inliers(str(tmp_path / "a.png"), str(tmp_path / "missing.jpg")) == 0
    # as a re-ranking: the same scene moves above a result with a higher cosine
    paths = [str(tmp_path / n) for n in ("a.png", "c.png", "b.jpg")]
    v = _chain_and_distractor()[[0, 1, 3]]
    idx = _exact(v)
    rr = Reranker(
        RerankOptions(methods=("verify",)),
        idx.query,
        lambda i: v[i],
        path_of=lambda ids: [paths[int(i)] for i in ids],
        verifier=ver,
    )
    assert idx.query(v[0], 3)[0].tolist()[1:] == [1, 2]
    assert rr.rank(v[0], 2, exclude=0, query_path=paths[0])[0].tolist() == [2, 1]


def test_first_of_each_picks_the_first_file_per_folder():
    labels = ["b", "a", "a", "b", ""]
    paths = ["/d/b/2.jpg", "/d/a/9.jpg", "/d/a/1.jpg", "/d/b/10.jpg", "/d/x.jpg"]
    assert first_of_each(labels, paths) == [2, 3]


def _instance_set(root, objects=3, views=3):
    for o in range(objects):
        base = _photo(10 + o, (200, 150))
        d = root / f"object_{o}"
        d.mkdir(parents=True)
        base.save(d / "0_query.png")
        for v in range(1, views):
            img = _perspective(base) if v % 2 else base.rotate(6 * v)
            img.convert("RGB").save(d / f"{v}_view.jpg", quality=90)


def test_eval_queries_first_with_verification_and_search_rerank(tmp_path, weights_file, capsys):
    ds = tmp_path / "instances"
    _instance_set(ds)
    args = cli_args(tmp_path / "data", weights_file)
    assert main([*args, "--index", "exact", "eval", str(ds), "--queries", "first", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["queries"] == 3 and plain["images"] == 9 and plain["rerank"] == "none"
    cmd = [*args, "--index", "exact", "eval", str(ds), "--queries", "first", "--json"]
    assert main([*cmd, "--rerank", "verify"]) == 0
    ver = json.loads(capsys.readouterr().out)
    assert ver["rerank"] == "verify" and ver["queries"] == 3
    # a random-init network ranks these poorly; SIFT finds every view of each object
    assert ver["map"] == pytest.approx(1.0) and ver["map"] >= plain["map"]
    assert main([*cmd, "--rerank", "dba+aqe,diffusion"]) == 0
    both = json.loads(capsys.readouterr().out)
    assert both["rerank"] == "dba+aqe,diffusion" and both["diffusion_offline_s"] >= 0
    # search: the indexed library, re-ranked (diffusion builds its offline part first)
    query = str(ds / "object_1" / "0_query.png")
    assert main([*args, "search", query, "-k", "3", "--rerank", "verify", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert [h["path"].split("/")[-2] for h in hits] == ["object_1"] * 3
    assert main([*args, "search", query, "-k", "3", "--rerank", "diffusion", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert len(hits) == 3 and hits[0]["path"] == query
    assert main([*args, "search", query, "--rerank", "qe"]) == 2
    assert "unknown re-ranking" in capsys.readouterr().err
