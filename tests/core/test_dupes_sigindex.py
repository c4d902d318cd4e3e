"""`index --signatures-only`: duplicates without the CNN, then a normal index that only adds
vectors (core/dupes/sigindex.py, the CLI hooks, the scan over signature-only rows)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from imgfinder.cli import main
from imgfinder.core import dupes
from imgfinder.core.catalog import SIGNED, Catalog
from imgfinder.core.dupes import sigindex
from imgfinder.core.library import run
from imgfinder.errors import ImgfinderError
from tests.common import cli_args
from tests.core.test_dupes_library import build_photos, open_lib, snapshot, stems
from tests.imgutil import make_jpeg


def sign(data: Path, *paths):
    return run(sigindex.index_signatures(data, list(paths)))


def catalog(data: Path) -> Catalog:
    return Catalog(data / "catalog.sqlite")


@pytest.fixture
def signed(tmp_path):
    photos = build_photos(tmp_path / "photos")
    summary = sign(tmp_path / "data", tmp_path / "photos")
    return tmp_path, photos, summary


def test_signatures_only_catalogs_every_photo_with_hash_and_signature(signed):
    root, photos, summary = signed
    assert summary.indexed == len(photos) and not summary.skipped
    cat = catalog(root / "data")
    try:
        assert cat.counts().get(SIGNED) == len(photos) and cat.counts()["ok"] == 0
        assert len(cat.signed_rows()) == len(photos)
        assert not cat.model_counts() and cat.awaiting_vectors() == 0  # not "damaged"
        rows = cat.images(cat.signed_rows())
        sigs = dupes.store.load_signatures(cat, [r.hash for r in rows.values()])
        assert len(sigs) == len(photos) - 1  # s1 and its backup share one hash
        assert all(r.width and r.height and r.vec_row is None for r in rows.values())
    finally:
        cat.close()
    again = sign(root / "data")  # nothing changed: nothing read
    assert again.indexed == 0 and again.unchanged == len(photos)


def test_dupes_on_signatures_finds_exact_and_same_photo(signed):
    root, photos, _ = signed
    cat = catalog(root / "data")
    try:
        pairs = run(sigindex.scan_signatures(cat, root / "data"))
        groups = dupes.group_all(pairs)
        exact = [stems(g) for g in groups if g.tier == "exact"]
        copies = [stems(g) for g in groups if g.tier == "copy"]
        assert {"s1"} in exact or any({"s1"} <= g for g in exact)
        assert any({"s0", "s0_rot", "s0_small"} <= g for g in copies)
        assert not any(g.tier == "similar" for g in groups)
        assert pairs.stats["without_vectors"] == len(photos)
        again = run(sigindex.scan_signatures(cat, root / "data"))
        assert again.stats.get("cached") and len(again) == len(pairs)
    finally:
        cat.close()


def test_library_scan_of_a_signatures_only_library_needs_no_model(signed, tmp_path):
    """`dupes.scan(lib)` (the app's Find duplicates) on a library of signatures only: the
    same pairs as `imgfinder dupes`, with a weights file that does not exist (before, it
    failed asking for the ResNet50 weights)."""
    root, photos, _ = signed
    lib = open_lib(root / "data", tmp_path / "no-such-weights.pth")
    try:
        pairs = run(dupes.scan(lib))
        assert lib._extractor is None  # the model was never loaded
        copies = [stems(g) for g in dupes.group_all(pairs) if g.tier == "copy"]
        assert any({"s0", "s0_rot", "s0_small"} <= g for g in copies)
        assert pairs.stats["without_vectors"] == len(photos)
    finally:
        lib.close()


def test_keeper_facts_are_cached_by_content_hash(signed, monkeypatch):
    """`imgfinder dupes` lists every group's keeper: the second listing stats the files and
    opens none (facts kept by content hash in the catalog); a file that changed is read again."""
    root, photos, _ = signed
    s0 = Image.open(photos["s0"]).convert("RGB")
    mat = Image.new("RGB", (s0.width + 40, s0.height + 60), "white")
    mat.paste(s0, (20, 30))
    mat.save(root / "photos" / "s0_framed.jpg", quality=95)
    sign(root / "data")
    cat = catalog(root / "data")
    try:
        groups = dupes.group_all(run(sigindex.scan_signatures(cat, root / "data")))
        first = dupes.suggest_keepers(cat, groups)
        framed = [f for facts, _ in first for f in facts if f.path.endswith("s0_framed.jpg")]
        assert framed and framed[0].framed  # measured, and kept apart from the original
        opened = []
        for name in ("image_info", "read_meta", "read_file"):
            monkeypatch.setattr(dupes.keeper.decode, name, lambda p, *a, **k: opened.append(p))
        again = dupes.suggest_keepers(cat, groups)
        assert opened == []
        assert [(c.keeper, c.reason) for _, c in again] == [(c.keeper, c.reason) for _, c in first]
        assert [[f.measured for f in fs] for fs, _ in again] == [
            [f.measured for f in fs] for fs, _ in first
        ]
        monkeypatch.undo()
        with open(photos["s0_small"], "ab") as fh:  # the same pixels, one byte longer
            fh.write(b"\0")
        read = []
        real = dupes.keeper.decode.image_info
        monkeypatch.setattr(dupes.keeper.decode, "image_info", lambda p: read.append(p) or real(p))
        dupes.suggest_keepers(cat, groups)
        assert read == [str(photos["s0_small"])]
    finally:
        cat.close()


def run_without_torch(commands: str) -> subprocess.CompletedProcess:
    """Run CLI `commands` (Python lines calling `main`) in a fresh process; it must succeed
    without ever importing torch."""
    code = (
        "import sys\n"
        "from imgfinder.cli import main\n" + commands + "print('TORCH', 'torch' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "TORCH False" in out.stdout
    return out


def test_cli_signatures_only_then_dupes_never_imports_torch(tmp_path):
    """The whole fast path in a fresh process: no torch, no model, no file touched."""
    photos = build_photos(tmp_path / "photos")
    before = snapshot(tmp_path / "photos")
    data = tmp_path / "data"
    out = run_without_torch(
        f"a = ['--data-dir', {str(data)!r}]\n"
        f"assert main([*a, 'index', '--signatures-only', {str(tmp_path / 'photos')!r}]) == 0\n"
        "assert main([*a, 'dupes', '--json']) == 0\n"
        "assert main([*a, 'dupes', '--tier', 'similar']) != 0\n"
    )
    assert "Signed 11" in out.stdout and "duplicate signatures only" in out.stdout
    body = out.stdout[out.stdout.index("{") : out.stdout.rindex("}") + 1]
    groups = json.loads(body)["groups"]
    exact = [{Path(m["path"]).stem for m in g["members"]} for g in groups if g["tier"] == "exact"]
    assert {"s1"} in exact  # s1 and backup/s1
    assert any(g["tier"] == "copy" for g in groups)
    assert "similar-shot tier needs the CNN vectors" in out.stderr
    assert snapshot(tmp_path / "photos") == before
    assert len(photos) == 11


def test_cli_dupes_folder_signs_and_lists_in_one_command(tmp_path):
    """`imgfinder dupes FOLDER` on a fresh folder: signed and listed by one command, no torch;
    a second `dupes FOLDER` reads nothing again, and `dupes` alone then lists the same."""
    build_photos(tmp_path / "photos")
    before = snapshot(tmp_path / "photos")
    folder, data = str(tmp_path / "photos"), str(tmp_path / "data")
    out = run_without_torch(
        f"a = ['--data-dir', {data!r}]\n"
        f"assert main([*a, 'dupes', '--json', {folder!r}]) == 0\n"
        "print('SPLIT')\n"
        f"assert main([*a, 'dupes', '--json', {folder!r}]) == 0\n"
        "print('SPLIT')\n"
        "assert main([*a, 'dupes', '--json']) == 0\n"
    )
    first, again, plain = (
        json.loads(t[t.index("{") : t.rindex("}") + 1])["groups"]
        for t in out.stdout.split("SPLIT")[:3]
    )
    assert any(g["tier"] == "copy" for g in first) and first == again == plain
    assert out.stderr.count("signed 11 new or changed photos") == 1  # the second read none
    assert snapshot(tmp_path / "photos") == before


def test_later_index_adds_only_vectors_and_dupes_gains_features(signed, weights_file, capsys):
    root, photos, _ = signed
    lib = open_lib(root / "data", weights_file)
    try:
        summary = run(lib.index())
        assert summary.indexed == len(photos) and summary.removed == 0
        counts = lib.catalog.counts()
        assert counts.get(SIGNED, 0) == 0 and counts["ok"] == len(photos)
        pairs = run(dupes.scan(lib))
        assert pairs.stats["without_vectors"] == 0 and not pairs.stats.get("cached")
        assert pairs.stats["feature_pairs"] > 0
        assert any({"s0", "s0_rot"} <= stems(g) for g in dupes.group(pairs, "copy"))
    finally:
        lib.close()
    # a `dupes` that loaded the model remembers its id: the next unchanged one needs no torch
    args = cli_args(root / "data", weights_file)
    assert main([*args, "dupes", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    out = run_without_torch(f"assert main({[*args, 'dupes', '--json']!r}) == 0\n")
    body = out.stdout[out.stdout.index("{") : out.stdout.rindex("}") + 1]
    assert json.loads(body) == first


def test_signature_only_folder_joins_an_indexed_library(tmp_path, weights_file, capsys):
    photos = build_photos(tmp_path / "photos")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "s2_again.jpg").write_bytes(photos["s2"].read_bytes())
    lib = open_lib(tmp_path / "data", weights_file)
    try:
        run(lib.index([tmp_path / "photos"]))
    finally:
        lib.close()
    sign(tmp_path / "data", extra)
    lib = open_lib(tmp_path / "data", weights_file)
    try:
        pairs = run(dupes.scan(lib))
        assert pairs.stats["without_vectors"] == 1
        exact = [stems(g) for g in dupes.group(pairs, "exact")]
        assert {"s2", "s2_again"} in exact
    finally:
        lib.close()
    # the exact tier is the catalog's content hashes: no model, no torch, even with vectors
    out = run_without_torch(
        f"assert main(['--data-dir', {str(tmp_path / 'data')!r}, 'dupes', '--tier', 'exact', "
        "'--json']) == 0\n"
    )
    body = out.stdout[out.stdout.index("{") : out.stdout.rindex("}") + 1]
    groups = json.loads(body)["groups"]
    assert {g["tier"] for g in groups} == {"exact"}
    members = sorted(sorted(Path(m["path"]).stem for m in g["members"]) for g in groups)
    assert members == [["s1", "s1"], ["s2", "s2_again"]]  # s1 and backup/s1; the extra copy
    assert "no CNN vector" not in out.stderr  # the exact tier is complete without vectors
    assert main([*cli_args(tmp_path / "data", weights_file), "dupes"]) == 0
    err = capsys.readouterr().err
    assert "1 photo with duplicate signatures but no CNN vector yet" in err
    assert main([*cli_args(tmp_path / "data", weights_file), "status"]) == 0
    assert "signatures only: 1 photo (" in capsys.readouterr().out


def test_changed_deleted_and_unreadable_files(signed):
    root, photos, _ = signed
    photos["s3"].write_bytes(b"not an image any more")
    photos["s4"].unlink()
    summary = sign(root / "data")
    assert summary.removed == 1 and summary.indexed == 0
    assert set(summary.skipped) == {str(photos["s3"])}
    cat = catalog(root / "data")
    try:
        row = cat.image_by_path(str(photos["s3"]))
        assert row.status == "failed" and row.error
        assert cat.image_by_path(str(photos["s4"])) is None
    finally:
        cat.close()


def test_bad_folder_is_refused_and_adds_nothing(tmp_path):
    with pytest.raises(ImgfinderError, match="no such folder"):
        sign(tmp_path / "data", tmp_path / "nope")
    cat = catalog(tmp_path / "data")
    try:
        assert cat.roots() == []
    finally:
        cat.close()


def test_feature_pass_covers_only_the_photos_with_vectors():
    """find_pairs(feature_positions=...): neighbours among those photos, at their positions."""
    import numpy as np

    from imgfinder.core.dupes import pairs as pairs_mod
    from imgfinder.core.dupes import signature
    from imgfinder.core.index import ExactIndex

    rng = np.random.default_rng(0)
    n = 7
    ids = np.arange(10, 10 + n, dtype=np.int64)
    vec = rng.standard_normal((n, 16)).astype(np.float32)
    vec[5] = vec[2] + 0.05 * rng.standard_normal(16)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    have = np.array([0, 2, 3, 5], np.int64)
    index = ExactIndex(16, model_id="test")
    index.add(ids[have], vec[have])
    index.build()
    pl = run(
        pairs_mod.find_pairs(
            index,
            ids,
            [f"/p{i}.jpg" for i in range(n)],
            [f"{i:032x}" for i in range(n)],
            np.zeros((n, signature.SIG_DIM), np.float32),
            feature_positions=have,
        )
    )
    got = set(zip(pl.a.tolist(), pl.b.tolist()))
    assert (2, 5) in got
    assert all(a in have and b in have for a, b in got)
    assert np.all(np.isfinite(pl.similar))


def test_cancel_writes_the_batch_in_flight_and_reads_no_more(tmp_path, monkeypatch):
    # batches are signed one ahead of the one written: a cancel after the first batch keeps
    # both the first and the one already read, and starts no third
    for i in range(12):
        make_jpeg(tmp_path / "photos" / f"p{i:02d}.jpg", size=(80, 60), seed=i)
    monkeypatch.setattr(sigindex, "BATCH", 4)
    read: list[str] = []
    sign_file = sigindex.sign_file
    monkeypatch.setattr(sigindex, "sign_file", lambda p: (read.append(p), sign_file(p))[1])
    cancel = threading.Event()
    gen = sigindex.index_signatures(tmp_path / "data", [tmp_path / "photos"], cancel=cancel)
    while True:
        try:
            prog = next(gen)
        except StopIteration as stop:
            summary = stop.value
            break
        if prog.stage == "signatures" and prog.done == 4:
            cancel.set()
    assert summary.cancelled and summary.indexed == 8 and len(read) == 8
    cat = catalog(tmp_path / "data")
    try:
        assert cat.counts().get(SIGNED) == 8
    finally:
        cat.close()
    again = sign(tmp_path / "data")  # the rest on the next run, nothing read twice
    assert again.indexed == 4 and again.unchanged == 8
