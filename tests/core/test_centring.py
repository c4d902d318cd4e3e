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


def test_catalog_source_fast_form_matches_get_bit_for_bit(tmp_path):
    """The LSH re-rank reads a CatalogSource in its fast form (take_f16 + shift: float16 rows
    into the index's own buffer, widened and shifted there): the same ids and scores, bit for
    bit, as through get(); the sorted id map follows changes to the row map; a row that fails
    its checksum still goes through get's checks."""
    from imgfinder.core.index import LSHIndex
    from imgfinder.core.searchstate import CatalogSource
    from imgfinder.core.vectors import VectorStore

    rng = np.random.default_rng(2)
    centres = rng.standard_normal((30, 96)) * 3
    x = unit(rng, 1500, 96, offset=0.0) + centres[rng.integers(0, 30, 1500)] * 0.1
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    store = VectorStore(tmp_path / "v.f16", 96, "m")
    rows = store.append(x)
    ids = np.arange(1500, dtype=np.int64) * 3 + 7
    c = estimate(lambda i: x[(np.asarray(i) - 7) // 3], ids, "m")
    src = CatalogSource(store, zip(ids.tolist(), rows.tolist()), c)

    class PlainSource:  # get() only: the general source path
        def get(self, i):
            return src.get(i)

    results, built = [], []
    for source in (src, PlainSource()):
        idx = LSHIndex(96, seed=0, source=source, exact_fallback=False)
        idx.add(ids, src.get(ids))
        idx.build()
        qs = c.apply(x[:40])
        results.append(idx.query_batch(qs, 10))
        built.append(idx)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    # stored vectors read back through the fast form equal those through get()
    got = [ix.get_vectors(ids[[3, 1, 40]]) for ix in built]
    np.testing.assert_array_equal(got[0], got[1])
    out = np.empty((3, 96), np.float16)
    np.testing.assert_array_equal(src.take_f16(ids[[5, 0, 9]], out), store.get(rows[[5, 0, 9]]))
    src.rows[10**6] = int(rows[4])  # the map changed: the sorted copy follows
    np.testing.assert_array_equal(src.store_rows(np.array([10**6, ids[2]])), rows[[4, 2]])
    src.rows.pop(10**6)
    try:
        src.store_rows(np.array([10**6]))
        raise AssertionError("an unknown id must raise")
    except KeyError:
        pass
    fresh = VectorStore(tmp_path / "v.f16", 96, "m")  # nothing checked yet in this object
    with open(tmp_path / "v.f16", "r+b") as fh:  # damage row 3's vector bytes
        fh.seek(fresh.path.stat().st_size - 1497 * fresh.row_bytes + 10)
        fh.write(b"\xff\x7f" * 4)
    got = fresh.take(rows[[2, 3]], np.empty((2, 96), np.float16))
    np.testing.assert_array_equal(got[0], x[2].astype(np.float16))
    assert not got[1].any() and 3 in fresh.bad_rows  # damaged: zeros, as get gives
