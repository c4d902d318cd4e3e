"""PCA whitening: learning, the whitened geometry, save/load, model ids, the `whiten` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgfinder.cli import main
from imgfinder.core.whiten import (
    learn_whitening,
    list_whitening_files,
    load_whitening,
    save_whitening,
)
from imgfinder.errors import ImgfinderError, ModelMismatchError
from tests.common import cli_args
from tests.imgutil import make_jpeg


def correlated(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Unit vectors with a few strong, correlated directions (like CNN descriptors)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) * np.geomspace(10, 0.1, d)[:, None]
    x = rng.normal(size=(n, d)) @ mix + 3.0
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("n", [40, 300])  # fewer and more samples than dimensions
def test_whitening_decorrelates_and_normalises(n):
    x = correlated(n, 64)
    w = learn_whitening(x, 16, model_id="m", shrinkage=0.0)
    assert (w.dim_in, w.dim_out, w.samples) == (64, 16, n)
    z = (x - w.mean) @ w.projection
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(16), atol=1e-3)
    y = w.apply(x)
    assert y.shape == (n, 16) and y.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
    assert w.apply(x[0]).shape == (16,)
    assert np.all(np.diff(w.eigenvalues) <= 1e-9)  # strongest first


def test_chunked_scatter_matches_the_direct_covariance():
    x = correlated(500, 48) * 0.05 + 0.7  # a large common component, as CNN descriptors have
    one = learn_whitening(x, 20, chunk=10_000)
    for chunk in (7, 64, 499):
        w = learn_whitening(x, 20, chunk=chunk)
        np.testing.assert_allclose(w.mean, one.mean, atol=1e-7)
        np.testing.assert_allclose(w.eigenvalues, one.eigenvalues, rtol=1e-5)
        np.testing.assert_allclose(w.apply(x), one.apply(x), atol=1e-4)
    xd = x.astype(np.float64)
    cov = np.cov(xd, rowvar=False)
    expected = np.sort(np.linalg.eigvalsh(cov))[::-1][:20]
    np.testing.assert_allclose(one.eigenvalues, expected, rtol=1e-4)
    half = learn_whitening(x.astype(np.float16), 20)  # the store's dtype is taken as it is
    assert half.dim_out == 20 and np.isfinite(half.projection).all()


def test_shrinkage_and_power_tame_weak_components():
    x = correlated(200, 32)
    full = learn_whitening(x, 32, shrinkage=0.0)
    shrunk = learn_whitening(x, 32, shrinkage=0.5)
    partial = learn_whitening(x, 32, power=0.25, shrinkage=0.0)
    gain = [np.linalg.norm(w.projection, axis=0) for w in (full, shrunk, partial)]
    ratio = [g[-1] / g[0] for g in gain]  # weakest axis' gain relative to the strongest
    assert ratio[1] < ratio[0] and ratio[2] < ratio[0]
    unit = learn_whitening(x, 32, shrinkage=1.0)  # full shrinkage: a plain PCA rotation
    norms = np.linalg.norm(unit.projection, axis=0)
    np.testing.assert_allclose(norms, norms[0], rtol=1e-5)


def test_truncating_equals_learning_fewer_dimensions():
    x = correlated(150, 40)
    small = learn_whitening(x, 10)
    cut = learn_whitening(x, 30).truncated(10)
    np.testing.assert_allclose(cut.projection, small.projection, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cut.apply(x), small.apply(x), atol=1e-5)
    with pytest.raises(ImgfinderError):
        small.truncated(11)


def test_dimension_is_capped_at_the_rank():
    w = learn_whitening(correlated(10, 64), 32)
    assert w.dim_out == 9
    with pytest.raises(ImgfinderError):
        learn_whitening(correlated(2, 8), 4)
    with pytest.raises(ImgfinderError, match="expects 64-d"):
        w.apply(np.zeros((2, 32), np.float32))


def test_save_load_round_trip_and_model_ids(tmp_path):
    x = correlated(120, 48)
    w = learn_whitening(x, 24, model_id="fused-eca-r50/file-abc/eca0/224/sq-in1k")
    path = save_whitening(w, tmp_path / "w.npz")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind
    back = load_whitening(path, model_id=w.model_id)
    np.testing.assert_array_equal(back.projection, w.projection)
    np.testing.assert_array_equal(back.apply(x), w.apply(x))
    assert (back.power, back.shrinkage, back.samples) == (w.power, w.shrinkage, 120)
    assert back.tag == w.tag and back.tag.startswith("pw24-")
    assert back.output_model_id == f"{w.model_id}/{w.tag}"
    other = learn_whitening(correlated(120, 48, seed=1), 24, model_id=w.model_id)
    assert other.output_model_id != w.output_model_id
    with pytest.raises(ModelMismatchError, match="learned for model"):
        load_whitening(path, model_id="another-model")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ImgfinderError, match="cannot read"):
        load_whitening(tmp_path / "bad.npz")
    with pytest.raises(ImgfinderError, match="no such"):
        load_whitening(tmp_path / "missing.npz")


def test_cli_whiten_learns_from_the_library(tmp_path, weights_file, capsys):
    photos = tmp_path / "photos"
    for i in range(6):
        make_jpeg(photos / f"{i}.jpg", (80, 60), seed=30 + i)
    args = cli_args(tmp_path / "data", weights_file)
    assert main([*args, "index", str(photos)]) == 0
    capsys.readouterr()
    assert main([*args, "whiten", "--dim", "4"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    path = Path(out[-1])
    assert path.parent == (tmp_path / "data" / "models").resolve() and path.exists()
    w = load_whitening(path)
    assert w.dim_out == 4 and w.samples == 6 and w.model_id.startswith("fused-eca-r50/")
    assert f"whitened model id: {w.output_model_id}" in out
    listed = list_whitening_files(w.model_id, path.parent)
    assert [f for f, _ in listed] == [path]
    assert list_whitening_files("other-model", path.parent) == []


def test_library_applies_whitening_before_the_index(tmp_path, model_config, capsys):
    """--whiten: smaller stored vectors, their own model id, search still finds the copy."""
    import dataclasses

    from imgfinder.core.library import Library, run
    from imgfinder.core.whiten import learn_whitening, save_whitening
    from tests.imgutil import make_jpeg

    root = tmp_path / "pics"
    for i in range(12):
        make_jpeg(root / f"p{i}.jpg", size=(96, 72), seed=200 + i)
    raw = Library(tmp_path / "data", model_config, index_backend="exact")
    run(raw.index([root]))
    pairs = raw.catalog.vector_rows(raw.model_id)
    vecs = raw.store().get(np.array([r for _, r in pairs])).astype(np.float32)
    w = learn_whitening(vecs, 8, model_id=raw.model_id)
    wfile = save_whitening(w, tmp_path / "w.npz")
    raw.close()

    cfg = dataclasses.replace(model_config, whitening=str(wfile))
    lib = Library(tmp_path / "data", cfg, index_backend="exact")
    assert lib.dim == 8 and lib.model_id == w.output_model_id
    with pytest.raises(Exception, match="re-index needed"):
        lib.search(root / "p3.jpg")
    summary = run(lib.index())
    assert summary.indexed == 12
    assert lib.store().dim == 8
    hit = lib.search(root / "p3.jpg", k=1)[0]
    assert hit.path == str(root / "p3.jpg") and hit.score == pytest.approx(1.0, abs=1e-2)
    lib.close()


def test_learn_from_library_uses_the_raw_vectors(tmp_path, model_config):
    """The default D', the raw vectors also under a whitening, and the errors of an empty one."""
    import dataclasses
    import threading

    from imgfinder.core.library import Library, run
    from imgfinder.core.whiten import LearningCancelled, default_dim, learn_from_library

    assert (default_dim(12), default_dim(10_000), default_dim(2)) == (3, 1024, 1)
    empty = Library(tmp_path / "empty", model_config, index_backend="exact")
    with pytest.raises(ImgfinderError, match="has 0 vectors.*index some photos first"):
        learn_from_library(empty)
    empty.close()

    root = tmp_path / "pics"
    for i in range(12):
        make_jpeg(root / f"p{i}.jpg", size=(96, 72), seed=300 + i)
    raw = Library(tmp_path / "data", model_config, index_backend="exact")
    run(raw.index([root]))
    w = learn_from_library(raw, 5)
    assert (w.dim_in, w.dim_out, w.samples) == (raw.dim, 5, 12)
    assert w.model_id == raw.model_id
    assert learn_from_library(raw).dim_out == 3  # 12 vectors: a quarter of them
    stop = threading.Event()
    stop.set()
    with pytest.raises(LearningCancelled):
        learn_from_library(raw, 5, cancel=stop)
    raw.close()

    # configured with a whitening, not yet re-indexed: still learns from the raw vectors
    cfg = dataclasses.replace(model_config, whitening=str(save_whitening(w, tmp_path / "w.npz")))
    lib = Library(tmp_path / "data", cfg, index_backend="exact")
    assert lib.model_id == w.output_model_id
    again = learn_from_library(lib, 5)
    assert again.model_id == w.model_id and again.dim_in == w.dim_in
    np.testing.assert_allclose(again.projection, w.projection, rtol=1e-4, atol=1e-6)
    run(lib.index())  # re-indexed whitened: no raw vectors are left to learn from
    with pytest.raises(ImgfinderError, match="turn it off and re-index"):
        learn_from_library(lib, 5)
    lib.close()


def nuisance_classes(classes: int, per: int, d: int = 32, seed: int = 0):
    """Unit vectors whose class lives in weak directions while photos of one class vary
    strongly along shared nuisance directions (pose, light): cosine ranks by nuisance."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(99).normal(size=(d, d)))[0]
    centres = rng.normal(size=(classes, d)) * np.r_[np.zeros(8), np.ones(d - 8)]
    noise = rng.normal(size=(classes * per, d)) * np.r_[np.full(8, 3.0), np.full(d - 8, 0.3)]
    x = (np.repeat(centres, per, axis=0) + noise + 2.0) @ basis
    labels = np.repeat(np.arange(classes), per)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


def exact_map(x: np.ndarray, labels: np.ndarray) -> float:
    from imgfinder.core.evaluate import evaluate_vectors
    from imgfinder.core.index import ExactIndex

    ids = np.arange(len(x), dtype=np.int64)
    index = ExactIndex(dim=x.shape[1])
    index.add(ids, x)
    index.build()
    return evaluate_vectors(ids, x, [str(c) for c in labels], index).map


def test_supervised_whitening_transfers_to_unseen_classes():
    """Learned on classes 0-11, it lifts retrieval of 12 other classes far above cosine on
    the raw vectors and above an unlabelled PCA whitening of the same training vectors."""
    from imgfinder.core.whiten import learn_supervised_whitening

    x, lab = nuisance_classes(24, 20)
    train, held = lab < 12, lab >= 12
    w = learn_supervised_whitening(x[train], lab[train], 16, model_id="m", shrinkage=0.1)
    assert (w.kind, w.classes, w.samples, w.dim_out) == ("supervised", 12, 240, 16)
    assert w.tag.startswith("lw16-") and w.output_model_id == f"m/{w.tag}"
    raw = exact_map(x[held], lab[held])
    pca = exact_map(learn_whitening(x[train], 16).apply(x[held]), lab[held])
    lw = exact_map(w.apply(x[held]), lab[held])
    assert lw > 0.9 and lw > raw + 0.4 and lw > pca + 0.4, (raw, pca, lw)  # 0.98, 0.32, 0.28
    centre = x[held].mean(axis=0)
    on_library = learn_supervised_whitening(x[train], lab[train], 16, shrinkage=0.1, centre=centre)
    np.testing.assert_allclose(on_library.mean, centre, atol=1e-6)
    np.testing.assert_allclose(on_library.projection, w.projection, atol=1e-6)
    with pytest.raises(ImgfinderError, match="two classes"):
        learn_supervised_whitening(x[:5], np.zeros(5), 4)
    with pytest.raises(ImgfinderError, match="shrinkage"):
        learn_supervised_whitening(x, lab, 4, shrinkage=0.0)
    assert learn_supervised_whitening(x[:30], lab[:30], 64).dim_out == 29  # rank n - 1


def test_supervised_whitening_file_round_trip_and_version_1(tmp_path):
    from imgfinder.core.whiten import learn_supervised_whitening

    x, lab = nuisance_classes(6, 10)
    w = learn_supervised_whitening(x, lab, 8, model_id="m")
    back = load_whitening(save_whitening(w, tmp_path / "lw.npz"), model_id="m")
    assert (back.kind, back.classes, back.tag) == ("supervised", 6, w.tag)
    np.testing.assert_array_equal(back.apply(x), w.apply(x))
    old = learn_whitening(x, 8, model_id="m")  # a file written before kinds existed
    np.savez(
        tmp_path / "v1.npz", format=np.array("imgfinder-whitening"), version=np.array(1),
        model_id=np.array("m"), mean=old.mean, projection=old.projection,
        eigenvalues=old.eigenvalues, power=np.array(0.5), shrinkage=np.array(0.1),
        samples=np.array(60),
    )  # fmt: skip
    v1 = load_whitening(tmp_path / "v1.npz")
    assert (v1.kind, v1.classes, v1.tag) == ("pca", 0, old.tag)


def test_cli_whiten_classes_learns_from_a_labelled_folder(tmp_path, weights_file, capsys):
    """`whiten --classes DATASET`: photos embedded with the library's model, an unreadable
    one skipped, centred on the library's mean once the library has enough photos."""
    dataset = tmp_path / "classes"
    for c in range(3):
        for i in range(4):
            make_jpeg(dataset / f"c{c}" / f"{i}.jpg", (72, 56), seed=10 * c + i)
    (dataset / "c0" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    args = cli_args(tmp_path / "data", weights_file)
    assert main([*args, "whiten", "--classes", str(dataset), "--dim", "6"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    w = load_whitening(out[-1])
    assert (w.kind, w.classes, w.samples, w.dim_out) == ("supervised", 3, 12, 6)
    assert "12 photos in 3 classes" in out[0] and "training photos' mean" in out[0]
    photos = tmp_path / "photos"
    for i in range(16):
        make_jpeg(photos / f"{i}.jpg", (72, 56), seed=100 + i)
    assert main([*args, "index", str(photos)]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                *args,
                "whiten",
                "--classes",
                str(dataset),
                "--dim",
                "6",
                "-o",
                str(tmp_path / "x.npz"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert "library's mean (16 photos)" in out[0]
    assert main([*args, "--whiten", out[-1], "index"]) == 0
    assert main([*args, "whiten", "--classes", str(tmp_path / "nope")]) == 2


@pytest.mark.parametrize("n", [12, 80])  # fewer photos than dimensions (the n x n path), more
def test_shrunk_inverse_square_root_matches_the_full_matrix(n):
    import torch

    from imgfinder.core.whiten import _principal_axes, _shrunk_inverse_sqrt

    a = torch.from_numpy(np.random.default_rng(n).normal(size=(n, 40)))
    y = torch.from_numpy(np.random.default_rng(1).normal(size=(5, 40)))
    s = 0.7 * (a.T @ a) + 0.3 * float((a * a).sum()) / 40 * torch.eye(40, dtype=a.dtype)
    w, u = torch.linalg.eigh(s)
    expected = y @ ((u * w.rsqrt()) @ u.T)
    np.testing.assert_allclose(_shrunk_inverse_sqrt(a, 0.3)(y).numpy(), expected.numpy(), atol=1e-8)
    z = a - a.mean(dim=0)
    evals, vecs = _principal_axes(z, 6)
    ref = np.sort(np.linalg.eigvalsh(np.cov(z.numpy(), rowvar=False)))[::-1][:6]
    np.testing.assert_allclose(evals.numpy(), ref, rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose((vecs.T @ vecs).numpy(), np.eye(6), atol=1e-8)
