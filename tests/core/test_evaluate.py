"""Evaluation metrics by hand, and `imgfinder eval` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imgfinder.cli import main
from imgfinder.core.evaluate import (
    QueryResult,
    average_precision,
    evaluate_vectors,
    precision_at,
    recall_at,
    summarise,
)
from imgfinder.core.index import ExactIndex
from tests.common import cli_args
from tests.imgutil import textured


def test_metrics_by_hand():
    rel = np.array([1, 0, 1, 0, 0], bool)
    assert average_precision(rel, 2) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision(rel, 3) == pytest.approx((1 / 1 + 2 / 3) / 3)  # one never found
    assert precision_at(rel, 2) == 0.5 and precision_at(rel, 5) == 0.4
    assert recall_at(rel, 1, 2) == 0.5 and recall_at(rel, 3, 2) == 1.0


def test_summary_paper_variants_by_hand():
    results = [
        QueryResult(np.array([1, 0, 1, 1, 0], bool), 3),
        QueryResult(np.array([0, 0, 0, 0, 1], bool), 1),
    ]
    s = summarise(results, cutoffs=[5])
    assert s["precision_at"]["5"] == pytest.approx((3 / 5 + 1 / 5) / 2)
    # query counted as first hit: 1 + relevant among the first 4 others
    assert s["paper_map_at"]["included"]["5"] == pytest.approx(((1 + 3) / 5 + (1 + 0) / 5) / 2)
    assert s["recall_at"]["5"] == pytest.approx(1.0)
    ap1 = (1 + 2 / 3 + 3 / 4) / 3
    ap2 = 1 / 5
    assert s["map"] == pytest.approx((ap1 + ap2) / 2)


def test_evaluate_vectors_on_known_geometry():
    # class a: three vectors near e0; class b: two near e1; one b vector sits near a's cluster
    v = np.array([[1, 0.0, 0], [1, 0.1, 0], [1, 0, 0.1], [0, 1, 0], [0.9, 0.2, 0.1]])
    labels = ["a", "a", "a", "b", "b"]
    ids = np.arange(10, 15)
    idx = ExactIndex(dim=3)
    idx.add(ids, v)
    idx.build()
    rep = evaluate_vectors(ids, v, labels, idx, cutoffs=[1, 2])
    # query 3 ("b", e1): ranking of others by cosine -> 14 (b) first
    assert rep.images == 5 and rep.classes == 2
    assert rep.exact_map == pytest.approx(rep.map) and rep.index_recall_at_10 == 1.0
    assert 0 < rep.map < 1


def make_dataset(root, classes=3, per_class=4):
    for c in range(classes):
        base = textured((96, 72), seed=100 + c)
        for i in range(per_class):
            arr = np.asarray(base).astype(np.int16)
            arr = np.clip(arr + (i * 7 - 10), 0, 255).astype(np.uint8)
            d = root / f"class_{c}"
            d.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(arr).save(d / f"img_{i}.jpg", quality=92)


def test_eval_cli_json_matches_brute_force(tmp_path, weights_file, capsys):
    ds = tmp_path / "dataset"
    make_dataset(ds)
    args = cli_args(tmp_path / "data", weights_file)
    assert main([*args, "--index", "exact", "eval", str(ds), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in (
        "images",
        "classes",
        "map",
        "precision_at",
        "recall_at",
        "paper_map_at",
        "query_ms_median",
        "query_ms_p95",
        "exact_map",
        "index_recall_at_10",
    ):
        assert key in out
    assert out["images"] == 12 and out["classes"] == 3
    assert set(out["precision_at"]) == {"5", "10", "20", "25", "50"}
    assert out["map"] == pytest.approx(out["exact_map"]) and out["index_recall_at_10"] == 1.0
    # independent brute force over the stored vectors
    from imgfinder.core.extract import ModelConfig
    from imgfinder.core.library import Library

    lib = Library(
        tmp_path / "data",
        ModelConfig(weights=str(weights_file), device="cpu", input_size=64),
        index_backend="exact",
    )
    pairs = lib.catalog.vector_rows(lib.model_id)
    rows = lib.catalog.images(i for i, _ in pairs)
    vecs = lib.store().get(np.array([r for _, r in pairs])).astype(np.float32)
    labels = [rows[i].path.split("/")[-2] for i, _ in pairs]
    p5 = []
    for q in range(len(pairs)):
        sims = vecs @ vecs[q]
        sims[q] = -np.inf
        order = np.argsort(-sims, kind="stable")[:5]
        p5.append(sum(labels[j] == labels[q] for j in order) / 5)
    assert out["precision_at"]["5"] == pytest.approx(np.mean(p5), abs=1e-6)
    lib.close()


def test_eval_needs_classes(tmp_path, weights_file, capsys):
    flat = tmp_path / "flat"
    (flat / "only").mkdir(parents=True)
    textured((64, 48), seed=1).save(flat / "only" / "a.jpg")
    textured((64, 48), seed=2).save(flat / "only" / "b.jpg")
    assert main([*cli_args(tmp_path / "d", weights_file), "eval", str(flat)]) == 2
    assert "two class" in capsys.readouterr().err
