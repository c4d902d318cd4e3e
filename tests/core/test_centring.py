"""Centred search space: the library mean, its file, and centred cosine."""

from __future__ import annotations

import numpy as np

from imgfinder.core.centring import MIN_VECTORS, Centre, estimate, load_centre, save_centre


def unit(rng, n, d, offset=2.0):
    x = rng.standard_normal((n, d)).astype(np.float32) + offset  # a shared positive offset
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_apply_gives_the_centred_cosine():
    rng = np.random.default_rng(0)
    x = unit(rng, 200, 32)
    c = estimate(lambda ids: x[ids], np.arange(200), "m")
    assert np.allclose(c.mean, x.mean(axis=0), atol=1e-6) and c.count == 200
    y = c.apply(x)
    assert np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    a, b = x[0] - c.mean, x[1] - c.mean
    expected = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    assert abs(float(y[0] @ y[1]) - expected) < 1e-5
    assert np.allclose(c.apply(x[3]), y[3])  # one vector as a (D,) array
    # raw cosines all sit near 1 with the shared offset; centred ones spread out
    assert np.std(x @ x[0]) < 0.5 * np.std(y @ y[0])


def test_offset_float16_rows_and_the_catalog_source(tmp_path):
    """The index's source gives centred directions, not unit rows (the index normalises):
    float16 store rows are widened exactly, and their direction is apply's."""
    from imgfinder.core.searchstate import CatalogSource
    from imgfinder.core.vectors import VectorStore

    rng = np.random.default_rng(1)
    x16 = unit(rng, 50, 64).astype(np.float16)
    c = Centre(x16.astype(np.float32).mean(axis=0), 50, "m")
    off = c.offset(x16)
    assert off.dtype == np.float32
    np.testing.assert_array_equal(off, x16.astype(np.float32) - c.mean)
    unit_off = off / np.linalg.norm(off, axis=1, keepdims=True)
    np.testing.assert_allclose(unit_off, c.apply(x16), atol=1e-6)
    store = VectorStore(tmp_path / "v.f16", 64, "m")
    rows = store.append(x16)
    src = CatalogSource(store, zip(range(100, 150), rows.tolist()), c)
    ids = np.array([120, 100, 149])
    np.testing.assert_array_equal(src.get(ids), off[ids - 100])


def test_too_few_vectors_and_the_sample():
    rng = np.random.default_rng(1)
    x = unit(rng, MIN_VECTORS - 1, 8)
    assert estimate(lambda ids: x[ids], np.arange(len(x)), "m") is None
    seen = []
    big = np.arange(120_000)

    def get(ids):
        seen.extend(ids.tolist())
        return np.ones((len(ids), 4), np.float32)

    c = estimate(get, big, "m")
    assert c.count == 120_000 and len(seen) <= 60_000 and np.allclose(c.mean, 1)


def test_stale_after_doubling_or_halving():
    c = Centre(np.zeros(4, np.float32), 100, "m")
    assert not c.stale(100) and not c.stale(199) and not c.stale(51)
    assert c.stale(200) and c.stale(50)


def test_file_round_trip_and_damage(tmp_path):
    c = Centre(np.arange(8, dtype=np.float32), 42, "model-a")
    path = save_centre(c, tmp_path / "centre.npz")
    back = load_centre(path, "model-a", 8)
    assert back is not None and back.count == 42 and back.tag == c.tag
    assert np.array_equal(back.mean, c.mean)
    assert load_centre(path, "model-b", 8) is None  # another model's mean
    assert load_centre(path, "model-a", 16) is None
    assert load_centre(tmp_path / "missing.npz", "model-a", 8) is None
    path.write_bytes(path.read_bytes()[:40])  # torn
    assert load_centre(path, "model-a", 8) is None
    save_centre(Centre(np.full(8, np.nan, np.float32), 42, "model-a"), path)
    assert load_centre(path, "model-a", 8) is None
    assert c.tag != Centre(c.mean + 1, 42, "model-a").tag
