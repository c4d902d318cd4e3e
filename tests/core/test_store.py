"""Vector store and catalog: crash-safety properties and the headless-core rule."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from imgfinder.atomic import atomic_write
from imgfinder.core.catalog import SCHEMA_VERSION, Catalog
from imgfinder.core.vectors import HEADER_SIZE, VectorStore
from imgfinder.errors import CatalogError, IndexFormatError, ModelMismatchError


def test_append_and_memory_map(tmp_path):
    store = VectorStore(tmp_path / "v.f16", 8, "m1")
    rows = store.append(np.eye(3, 8, dtype=np.float32))
    assert rows.tolist() == [0, 1, 2]
    assert store.append(np.ones((2, 8))).tolist() == [3, 4]
    assert len(store) == 5
    assert isinstance(store.matrix(), np.memmap)
    np.testing.assert_array_equal(store.get(np.array([1])), np.eye(3, 8)[1:2])
    assert store.nbytes() == HEADER_SIZE + 5 * (8 * 2 + 4)  # float16 row + CRC-32


def test_torn_tail_is_cut_back(tmp_path):
    path = tmp_path / "v.f16"
    store = VectorStore(path, 8, "m1")
    store.append(np.ones((2, 8)))
    with open(path, "ab") as fh:
        fh.write(b"\x01\x02\x03")  # a row half-written when the process died
    again = VectorStore(path, 8, "m1")
    assert len(again) == 2
    assert again.append(np.zeros((1, 8))).tolist() == [2]


def test_store_refuses_other_model_and_garbage(tmp_path):
    path = tmp_path / "v.f16"
    VectorStore(path, 8, "m1").append(np.ones((1, 8)))
    with pytest.raises(ModelMismatchError):
        VectorStore(path, 8, "m2")
    with pytest.raises(IndexFormatError, match="dimension"):
        VectorStore(path, 16, "m1")
    bad = tmp_path / "bad.f16"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(IndexFormatError, match="not an imgfinder"):
        VectorStore(bad, 8, "m1")
    with pytest.raises(ValueError, match="non-finite"):
        VectorStore(path, 8, "m1").append(np.full((1, 8), np.nan))


def test_compaction_writes_a_new_file(tmp_path):
    store = VectorStore(tmp_path / "a.f16", 4, "m")
    store.append(np.arange(20, dtype=np.float32).reshape(5, 4))
    new = store.compact_to(tmp_path / "b.f16", np.array([4, 1]))
    np.testing.assert_array_equal(new.get(np.array([0, 1])), [[16, 17, 18, 19], [4, 5, 6, 7]])
    assert len(store) == 5  # the old file is untouched until the catalog switches


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write(b"new partial")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_catalog_transactions_roll_back(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    rid = cat.add_root("/photos")
    with pytest.raises(RuntimeError), cat.transaction() as c:
        c.execute(
            "INSERT INTO images (path, root_id, status, updated_at) VALUES ('/photos/a', ?, 'ok', 0)",
            (rid,),
        )
        raise RuntimeError("crash mid-transaction")
    assert cat.counts() == {"ok": 0, "failed": 0}
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_catalog_from_the_future_is_refused(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    cat.set_meta("schema_version", "99")
    cat.close()
    with pytest.raises(CatalogError, match="newer"):
        Catalog(tmp_path / "c.sqlite")
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CatalogError):
        Catalog(tmp_path / "junk.sqlite")


def test_core_and_cli_import_no_qt():
    code = (
        "import sys, imgfinder.core.library, imgfinder.core.extract, imgfinder.cli;"
        "import imgfinder.core.decode, imgfinder.core.scan;"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'PyQt', 'shiboken'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_row_is_checksummed_once_per_process(tmp_path, monkeypatch):
    """An exact search reads every row on every query: a row that passed its check is not
    checked again, a damaged one is, and `verify` always reads the file afresh."""
    from imgfinder.core import vectors

    store = vectors.VectorStore(tmp_path / "v.f16", 8, "m")
    rows = store.append(np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32))
    checked = []
    real = vectors.row_crcs
    monkeypatch.setattr(vectors, "row_crcs", lambda v: checked.append(len(v)) or real(v))
    first = store.get(rows)
    assert sum(checked) == 50
    again = store.get(rows[::-1])
    assert sum(checked) == 50 and np.array_equal(again, first[::-1])
    assert len(store.verify()) == 0 and sum(checked) == 100
    store.close()
