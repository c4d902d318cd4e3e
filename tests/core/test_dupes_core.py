"""Duplicate grouping on hand-made pair lists, the keeper rule on crafted files, decisions."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgfinder.core import dupes
from imgfinder.core.catalog import Catalog
from imgfinder.core.dupes import store
from imgfinder.core.dupes.pairs import PairList
from tests.core.test_dupes_scenes import scene

NAN = float("nan")


def make_pairs(n: int, links: list[tuple], hashes: list[str] | None = None) -> PairList:
    """links: (a, b, copy score, similar score); identical hashes make exact pairs."""
    hashes = hashes or [f"h{i}" for i in range(n)]
    a = np.array([x[0] for x in links], np.int64)
    b = np.array([x[1] for x in links], np.int64)
    exact = np.array([hashes[i] == hashes[j] for i, j in zip(a, b)], bool)
    copy = np.array([x[2] for x in links], np.float32)
    similar = np.array([x[3] for x in links], np.float32)
    return PairList(
        ids=np.arange(1, n + 1, dtype=np.int64),
        paths=[f"/p/{i}.jpg" for i in range(n)],
        hashes=hashes,
        a=a,
        b=b,
        exact=exact,
        similar=similar,
        sig=np.where(np.isnan(copy), np.float32(0.5), np.float32(0.95)),
        orientation=np.zeros(len(a), np.int8),
        copy=copy,
    )


def names(groups) -> list[list[str]]:
    return [sorted(Path(p).stem for p in g.paths) for g in groups]


# -- grouping ----------------------------------------------------------------------------------
def test_no_chaining_through_a_weak_link():
    # A~B and B~C are copies above 0.8, A~C is below: never one group of three
    pairs = make_pairs(3, [(0, 1, 0.95, NAN), (1, 2, 0.90, NAN), (0, 2, 0.60, NAN)])
    groups = dupes.group(pairs, "copy", 0.8)
    assert names(groups) == [["0", "1"]]  # the strongest link wins, C stays out
    assert groups[0].weakest == pytest.approx(0.95)
    # lower the threshold below A~C: now all three are linked pairwise
    groups = dupes.group(pairs, "copy", 0.55)
    assert names(groups) == [["0", "1", "2"]]
    assert groups[0].weakest == pytest.approx(0.60)


def test_missing_link_counts_as_no_link():
    pairs = make_pairs(3, [(0, 1, 0.95, NAN), (1, 2, 0.97, NAN)])  # A~C never proposed
    assert names(dupes.group(pairs, "copy", 0.5)) == [["1", "2"]]


def test_groups_are_cliques_on_random_graphs():
    rng = np.random.default_rng(0)
    links = [
        (i, j, float(rng.uniform(0.5, 1)), float(rng.uniform(0.3, 1)))
        for i in range(40)
        for j in range(i + 1, 40)
        if rng.random() < 0.15
    ]
    pairs = make_pairs(40, links)
    score = {(i, j): c for i, j, c, _ in links}
    for t in (0.6, 0.8, 0.9):
        groups = dupes.group(pairs, "copy", t)
        seen: set[str] = set()
        for g in groups:
            ids = sorted(int(Path(p).stem) for p in g.paths)
            assert not seen & set(g.paths)  # a photo is in at most one group per tier
            seen |= set(g.paths)
            pair_scores = [score[(x, y)] for k, x in enumerate(ids) for y in ids[k + 1 :]]
            assert min(pair_scores) >= t
            assert g.weakest == pytest.approx(min(pair_scores))
        sizes = [len(g) for g in groups]
        assert sizes == sorted(sizes, reverse=True)


def test_tiers_are_separate():
    hashes = ["h0", "h0", "h2", "h3", "h4"]
    pairs = make_pairs(
        5,
        [
            (0, 1, 1.0, 1.0),  # identical files
            (0, 2, 0.92, 0.5),  # a copy of 0
            (1, 2, 0.92, 0.5),
            (2, 3, NAN, 0.85),  # a similar shot of 2
            (3, 4, NAN, 0.3),  # unrelated
        ],
        hashes,
    )
    assert names(dupes.group(pairs, "exact")) == [["0", "1"]]
    assert names(dupes.group(pairs, "copy", 0.8)) == [["0", "1", "2"]]
    assert names(dupes.group(pairs, "similar", 0.7)) == [["2", "3"]]
    # "same photo" includes byte-identical files (issue 17); only a listing of every tier
    # leaves a group of identical files only to the exact tier, so none is shown twice
    only_exact = make_pairs(2, [(0, 1, 1.0, 1.0)], ["h", "h"])
    assert names(dupes.group(only_exact, "copy", 0.8)) == [["0", "1"]]
    assert dupes.group(only_exact, "copy", 0.8, include_exact=False) == []
    assert [g.tier for g in dupes.group_all(only_exact)] == ["exact"]
    # a similar group made only of copies is left to the copy tier
    copies = make_pairs(2, [(0, 1, 0.95, 0.9)])
    assert dupes.group(copies, "similar", 0.7) == []
    assert len(dupes.group(copies, "similar", 0.7, copy_threshold=0.99)) == 1
    assert [g.tier for g in dupes.group_all(pairs)] == ["exact", "copy", "similar"]


def test_pairlist_updates_without_rescan():
    pairs = make_pairs(3, [(0, 1, 0.95, NAN), (1, 2, 0.90, NAN)])
    assert len(pairs.without_paths(["/p/1.jpg"])) == 0
    assert len(pairs.without_ids([3])) == 1
    assert len(pairs.suppress([("h1", "h0")])) == 1


def test_regrouping_a_large_library_is_fast():
    # 100k photos: 3k planted groups of 2-4 copies among 400k weak candidate pairs
    rng = np.random.default_rng(1)
    n = 100_000
    links = []
    start = 0
    for _ in range(3000):
        size = int(rng.integers(2, 5))
        links += [
            (start + i, start + j, 0.95, 0.9) for i in range(size) for j in range(i + 1, size)
        ]
        start += size
    a = rng.integers(start, n - 60, 400_000)
    b = a + rng.integers(1, 50, 400_000)
    links += list(zip(a, b, np.full(len(a), NAN), rng.uniform(0.4, 0.69, len(a))))
    pairs = make_pairs(n, links)
    t = time.perf_counter()
    copies = dupes.group(pairs, "copy", 0.9)
    similar = dupes.group(pairs, "similar", 0.7, copy_threshold=0.99)
    assert time.perf_counter() - t < 3.0  # generous: the machine running tests may be busy
    assert len(copies) == 3000 and len(similar) == 3000


def test_unknown_tier_is_rejected():
    with pytest.raises(ValueError):
        dupes.group(make_pairs(2, []), "fuzzy")


# -- keeper rule ------------------------------------------------------------------------------
def _jpeg(path: Path, im: Image.Image, **opts) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", **opts)
    return str(path)


def _facts(*paths):
    return [dupes.file_facts(str(p)) for p in paths]


def test_keeper_prefers_resolution(tmp_path):
    im = scene(1, (200, 150))
    big = _jpeg(tmp_path / "big.jpg", im, quality=70)
    small = _jpeg(tmp_path / "small.jpg", im.resize((100, 75)), quality=98)
    choice = dupes.choose_keeper(_facts(small, big))
    assert choice.keeper == 1
    assert choice.reason == "kept: highest resolution (200×150 vs 100×75)"


def _framed(im: Image.Image, pad: tuple[int, int], colour) -> Image.Image:
    out = Image.new("RGB", (im.width + 2 * pad[0], im.height + 2 * pad[1]), colour)
    out.paste(im, pad)
    return out


@pytest.mark.parametrize(
    ("pad", "colour"),
    [((40, 40), "white"), ((0, 135), "black"), ((60, 10), (90, 30, 120))],
    ids=["mat", "letterbox", "canvas"],
)
def test_keeper_counts_the_picture_not_the_frame(tmp_path, pad, colour):
    """A framed copy has more pixels than its original and no more of the photo: the original
    is kept, and the reason says why (before, "highest resolution" kept the frame)."""
    im = scene(4, (480, 320))
    orig = _jpeg(tmp_path / "orig.jpg", im, quality=90)
    framed = _jpeg(tmp_path / "framed.jpg", _framed(im, pad, colour), quality=95)
    facts = _facts(framed, orig)
    assert facts[0].pixels > facts[1].pixels
    choice = dupes.choose_keeper(facts)
    assert choice.keeper == 1 and choice.decided_by == "resolution", choice.reason
    assert facts[0].framed and not facts[1].framed
    # the picture measured inside the frame is the original's size (within ASPECT_MATCH):
    # the same photo, so the file without the frame keeps it
    assert facts[0].picture == (480, 320)
    framed_text = f"{facts[0].dims_text()} framed, 480×320 of picture"
    assert choice.reason == f"kept: no frame (480×320 vs {framed_text})"
    # header facts only, as before: the canvas wins (what measure=False is for)
    assert dupes.choose_keeper(_facts(framed, orig), measure=False).keeper == 0


def test_keeper_framed_copy_at_higher_resolution_still_wins(tmp_path):
    """A border does not cost a copy with more picture: a 2x copy on a mat beats the original."""
    im = scene(5, (240, 160))
    orig = _jpeg(tmp_path / "orig.jpg", im, quality=90)
    big = _jpeg(tmp_path / "big.jpg", _framed(im.resize((480, 320)), (30, 30), "white"))
    choice = dupes.choose_keeper(_facts(orig, big))
    assert choice.keeper == 1 and choice.reason.startswith("kept: highest resolution (540×380 ")
    assert "framed" in choice.reason


def test_keeper_ignores_a_flat_sky(tmp_path):
    """A flat band at an edge of both files (sky, studio wall) is not a frame: it passes the
    border test, but the picture inside has neither member's shape, so pixels decide."""
    im = scene(7, (300, 200))
    im.paste((135, 180, 230), (0, 0, 300, 50))  # a clear sky along the top
    big = _jpeg(tmp_path / "big.jpg", im, quality=90)
    small = _jpeg(tmp_path / "small.jpg", im.resize((270, 180)), quality=90)
    facts = _facts(small, big)
    choice = dupes.choose_keeper(facts)
    assert choice.keeper == 1 and not facts[0].framed and not facts[1].framed
    assert choice.reason == "kept: highest resolution (300×200 vs 270×180)"


def test_keeper_reads_no_pixels_unless_resolution_decides(tmp_path, monkeypatch):
    im = scene(6, (200, 150))
    a = _jpeg(tmp_path / "a.jpg", im, quality=60)
    b = _jpeg(tmp_path / "b.jpg", im, quality=95)  # same size: "largest file" decides
    half = _jpeg(tmp_path / "half.jpg", im.resize((101, 75)))  # resolution, same shape
    monkeypatch.setattr(dupes.keeper, "measure_picture", lambda f: pytest.fail("decoded " + f.path))
    assert dupes.choose_keeper(_facts(a, b)).decided_by == "size"
    choice = dupes.choose_keeper(_facts(half, b))  # 101x75 is 200x150 within rounding
    assert choice.keeper == 1 and choice.decided_by == "resolution"


def test_keeper_prefers_format_then_editable_order(tmp_path):
    im = scene(2, (120, 90))
    jpg = _jpeg(tmp_path / "a.jpg", im, quality=95)
    png = tmp_path / "a.png"
    im.save(png)
    facts = _facts(jpg, png)
    choice = dupes.choose_keeper(facts)
    assert choice.keeper == 1 and choice.reason == "kept: preferred format (PNG over JPEG)"
    rule = dupes.KeeperRule(formats=("JPEG", "PNG"))
    assert dupes.choose_keeper(facts, rule).keeper == 0
    # criteria order is editable too: size first picks the bigger file (the PNG)
    rule = dupes.KeeperRule(criteria=("size", "format"), formats=("JPEG", "PNG"))
    choice = dupes.choose_keeper(facts, rule)
    assert choice.keeper == 1 and choice.reason.startswith("kept: largest file (")


def test_keeper_prefers_larger_file(tmp_path):
    im = scene(3, (120, 90))
    low = _jpeg(tmp_path / "low.jpg", im, quality=40)
    high = _jpeg(tmp_path / "high.jpg", im, quality=95)
    choice = dupes.choose_keeper(_facts(low, high))
    assert choice.keeper == 1
    assert choice.reason.startswith("kept: largest file (") and " vs " in choice.reason


def _exif_date(date: str) -> bytes:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = date
    return exif.tobytes()


def test_keeper_prefers_earliest_capture_date_from_exif(tmp_path):
    im = scene(4, (120, 90))
    late = _jpeg(tmp_path / "late.jpg", im, quality=90, exif=_exif_date("2021:06:01 10:00:00"))
    early = _jpeg(tmp_path / "early.jpg", im, quality=90, exif=_exif_date("2019:06:01 10:00:00"))
    os.utime(early, (time.time(), time.time()))  # the file date would say otherwise
    os.utime(late, (1e9, 1e9))
    facts = _facts(late, early)
    assert os.path.getsize(late) == os.path.getsize(early)
    choice = dupes.choose_keeper(facts)
    assert choice.keeper == 1
    assert choice.reason == "kept: earliest capture date (2019-06-01 10:00 vs 2021-06-01 10:00)"


def test_keeper_falls_back_to_file_date_then_preferred_folder(tmp_path):
    im = scene(5, (120, 90))
    a = _jpeg(tmp_path / "inbox" / "x.jpg", im)
    b = _jpeg(tmp_path / "albums" / "x.jpg", im)
    os.utime(a, (1_600_000_000, 1_600_000_000))
    os.utime(b, (1_500_000_000, 1_500_000_000))
    choice = dupes.choose_keeper(_facts(a, b))
    assert choice.keeper == 1 and choice.reason.startswith("kept: earliest file date (")
    os.utime(a, (1_500_000_000, 1_500_000_000))
    rule = dupes.KeeperRule(preferred_folders=(str(tmp_path / "inbox"),))
    choice = dupes.choose_keeper(_facts(a, b), rule)
    assert choice.keeper == 0
    assert choice.reason == f"kept: in a preferred folder ({tmp_path / 'inbox'})"
    assert "preferred folders" in rule.describe()


def test_keeper_never_picks_a_missing_file(tmp_path):
    im = scene(6, (200, 150))
    small = _jpeg(tmp_path / "small.jpg", im.resize((50, 40)))
    choice = dupes.choose_keeper(_facts(tmp_path / "gone.jpg", small))
    assert choice.keeper == 1 and "missing" in choice.reason


def test_keeper_rule_round_trips_and_rejects_unknown_criteria():
    rule = dupes.KeeperRule(formats=("png", "jpeg"), preferred_folders=("/a",))
    assert dupes.KeeperRule.from_dict(rule.to_dict()) == rule
    assert dupes.KeeperRule.from_dict({"criteria": ["colour"]}) == dupes.KeeperRule()
    with pytest.raises(ValueError):
        dupes.KeeperRule(criteria=("colour",))


# -- decisions and settings in the catalog ---------------------------------------------------
def test_decisions_are_stored_by_hash(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    store.ensure_tables(cat)
    store.remember(cat, [("b", "a"), ("a", "b")], dupes.DISTINCT)
    assert store.load_decisions(cat) == {("a", "b"): dupes.DISTINCT}
    store.forget_decisions(cat, [("b", "a")])
    assert store.load_decisions(cat) == {}
    with pytest.raises(ValueError):
        store.remember(cat, [("a", "b")], "maybe")


def test_rule_and_thresholds_persist_in_the_catalog(tmp_path):
    cat = Catalog(tmp_path / "c.sqlite")
    rule = dupes.KeeperRule(formats=("JPEG",))
    dupes.save_rule(cat, rule)
    dupes.save_thresholds(cat, {"copy": 0.9})
    assert dupes.load_rule(cat) == rule
    assert dupes.load_thresholds(cat)["copy"] == 0.9
    assert dupes.load_thresholds(cat)["similar"] == dupes.DEFAULT_THRESHOLDS["similar"]


def test_core_dupes_imports_no_qt():
    code = "import sys, imgfinder.core.dupes; sys.exit(any(m.startswith('PySide6') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
