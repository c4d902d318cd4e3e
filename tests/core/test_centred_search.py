"""Search in centred space: the library mean is estimated by the writer, saved beside the
index, tagged into the index's model id, re-estimated when the library doubles, and every
score is the centred cosine."""

from __future__ import annotations

import numpy as np
import pytest

from imgfinder.core.centring import MIN_VECTORS, load_centre
from imgfinder.core.library import Library, run
from tests.core.test_library import make_photos


def centred_cosine(a: np.ndarray, b: np.ndarray, mean: np.ndarray) -> float:
    x, y = a - mean, b - mean
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


@pytest.mark.parametrize("backend", ["exact", "lsh"])
def test_scores_are_centred_cosines_around_the_saved_mean(tmp_path, model_config, backend):
    root = tmp_path / "Photos"
    files = make_photos(root, MIN_VECTORS + 4)
    lib = Library(tmp_path / "data", model_config, index_backend=backend)
    try:
        assert run(lib.index([root])).indexed == len(files)
        centre = load_centre(lib.centre_path, lib.model_id, lib.dim)
        assert centre is not None and centre.count == len(files)
        raw = lib.raw_vectors().astype(np.float32)
        assert np.allclose(centre.mean, raw.mean(axis=0), atol=1e-4)
        assert lib.index_model_id == f"{lib.model_id}/{centre.tag}"
        assert lib.status()["centred"] is True
        q = lib.embed(files[3])
        hits = lib.search_vector(q, k=5)
        assert hits[0].path == str(files[3])
        vec_of = dict(zip(sorted(str(f) for f in files), raw))  # raw_vectors: rows in id order
        for h in hits[1:]:
            assert abs(h.score - centred_cosine(q, vec_of[h.path], centre.mean)) < 2e-3
        # re-ranking reads the library's vectors in the index's space: centred once, so a
        # photo's stored vector meets its own query vector there (cosine 1)
        ids = np.array([h.image_id for h in hits])
        space = lib.index_vectors(ids)
        assert float(space[0] @ lib.query_space(q)) > 0.999
        np.testing.assert_allclose(space @ lib.query_space(q), [h.score for h in hits], atol=2e-3)
    finally:
        lib.close()
    # a reader opening the library uses the saved mean and index as they are
    again = Library(tmp_path / "data", model_config, index_backend=backend)
    try:
        # the mean an explanation decomposes with: there before any search, and again after
        # the in-memory index was dropped (another process changed the catalog)
        np.testing.assert_array_equal(again.search_mean(), centre.mean)
        assert again.search_vector(q, k=1)[0].path == str(files[3])
        again.search_state.drop()
        np.testing.assert_array_equal(again.search_mean(), centre.mean)
        assert again.index_model_id == f"{again.model_id}/{centre.tag}"
    finally:
        again.close()


def test_a_small_library_is_searched_raw_until_it_grows(tmp_path, model_config):
    root = tmp_path / "Photos"
    make_photos(root, MIN_VECTORS - 2)
    lib = Library(tmp_path / "data", model_config, index_backend="exact")
    try:
        run(lib.index([root]))
        assert not lib.centre_path.exists() and lib.index_model_id == lib.model_id
        make_photos(root, 2 * MIN_VECTORS, start=50)  # grows past the minimum, then doubles
        run(lib.index())
        first = load_centre(lib.centre_path, lib.model_id, lib.dim)
        assert first is not None and first.count == 3 * MIN_VECTORS - 2
        make_photos(root, 4, start=200)  # +4: no new mean
        run(lib.index())
        assert load_centre(lib.centre_path, lib.model_id, lib.dim).tag == first.tag
        make_photos(root, 3 * MIN_VECTORS, start=300)  # doubled: a new mean, a rebuilt index
        run(lib.index())
        second = load_centre(lib.centre_path, lib.model_id, lib.dim)
        assert second.count == 6 * MIN_VECTORS + 2 and second.tag != first.tag
        assert lib.index_model_id.endswith(second.tag)
    finally:
        lib.close()


def test_centring_off_gives_raw_cosines(tmp_path, model_config):
    root = tmp_path / "Photos"
    files = make_photos(root, MIN_VECTORS + 2)
    lib = Library(tmp_path / "data", model_config, index_backend="exact", centre=False)
    try:
        run(lib.index([root]))
        assert not lib.centre_path.exists() and lib.status()["centred"] is False
        q = lib.embed(files[0])
        hit = lib.search_vector(q, k=2)[1]
        other = lib.embed(hit.path)
        assert abs(hit.score - float(q @ other)) < 2e-3
    finally:
        lib.close()


def test_explanations_decompose_the_centred_score(shared_extractor, tmp_path):
    """With the library mean, every map sums to its branch score and the fused maps to the
    centred cosine that search shows; without it, to the raw cosine as before."""
    from imgfinder.core.explain import activations_many, match_all
    from tests.imgutil import make_jpeg

    a = make_jpeg(tmp_path / "a.jpg", size=(160, 120), seed=1)
    b = make_jpeg(tmp_path / "b.jpg", size=(150, 120), seed=2)
    q, r = activations_many(shared_extractor, [a, b])
    rng = np.random.default_rng(0)
    mean = 0.8 * q.descriptor + 0.05 * rng.standard_normal(q.descriptor.shape)
    want = centred_cosine(q.descriptor.astype(np.float64), r.descriptor, mean)
    out = match_all(q, r, mean)
    fused = out["fused"]
    assert fused.centred and fused.score == pytest.approx(want, abs=1e-6)
    for e in out.values():
        assert e.query_map.sum() == pytest.approx(e.total, abs=1e-9)
        assert e.result_map.sum() == pytest.approx(e.total, abs=1e-9)
    halves = {"attention": slice(0, len(mean) // 2), "global": slice(len(mean) // 2, None)}
    uq, ur = q.descriptor - mean, r.descriptor - mean
    z = np.linalg.norm(uq) * np.linalg.norm(ur)
    for branch, half in halves.items():
        assert fused.branch_scores[branch] == pytest.approx(uq[half] @ ur[half] / z, abs=1e-6)
    raw = match_all(q, r)["fused"]
    assert not raw.centred and raw.score == pytest.approx(
        float(q.descriptor @ r.descriptor), abs=1e-5
    )
