"""The Duplicates view with pytest-qt: listing, filtering, instant regrouping, confirm, trash, undo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QFileDialog, QMessageBox  # noqa: E402

from imgfinder.core import dupes  # noqa: E402
from imgfinder.gui import dupes_view  # noqa: E402
from imgfinder.gui.dupes_view import DuplicatesView  # noqa: E402
from tests.core.test_dupes_library import indexed_library  # noqa: E402

Yes, No = QMessageBox.StandardButton.Yes, QMessageBox.StandardButton.No


@pytest.fixture
def library(tmp_path, weights_file):
    yield from indexed_library(tmp_path, weights_file)


@pytest.fixture
def scan_calls(monkeypatch):
    calls = []
    real = dupes.scan

    def counting(lib, **kw):
        calls.append(lib)
        return real(lib, **kw)

    monkeypatch.setattr(dupes, "scan", counting)
    return calls


@pytest.fixture
def view(qtbot, library):
    lib, _ = library
    v = DuplicatesView(lambda: lib, own_compare=False)
    qtbot.addWidget(v)
    yield v
    v.shutdown()
    v.loader.shutdown()


def scanned(qtbot, view) -> None:
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        view.scan()


def select_tier(view, tier: str) -> None:
    view.tier_combo.setCurrentIndex([t for _, t in dupes_view.TIER_FILTERS].index(tier))


def wait_facts(qtbot, view) -> None:
    qtbot.waitUntil(lambda: view.suggested is not None, timeout=20_000)


def texts(view) -> list[str]:
    return [view.group_list.item(i).text() for i in range(view.group_list.count())]


def test_groups_listed_largest_first_and_filtered_by_tier(qtbot, view, scan_calls):
    scanned(qtbot, view)
    assert len(scan_calls) == 1
    all_rows = texts(view)
    sizes = [int(t.split()[0]) for t in all_rows]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 3
    assert any("exact duplicate" in t for t in all_rows)
    assert any("same photo" in t for t in all_rows)
    select_tier(view, "exact")
    assert len(texts(view)) == 1 and "exact duplicate" in texts(view)[0]
    select_tier(view, "copy")
    assert all("same photo" in t for t in texts(view))
    wait_facts(qtbot, view)
    assert "kept: " in view.reason_label.text()
    assert len(view._cards) == len(view.selected_group())
    qtbot.waitUntil(
        lambda: (
            view._cards[0].thumb.pixmap() is not None and not view._cards[0].thumb.pixmap().isNull()
        ),
        timeout=20_000,
    )


def test_slider_regroups_without_rescanning(qtbot, view, scan_calls):
    scanned(qtbot, view)
    select_tier(view, "copy")
    before = len(texts(view))
    assert before >= 1
    view.copy_slider.setValue(view.copy_slider.maximum())  # 1.00: no copy is that perfect
    assert len(texts(view)) < before
    view.copy_slider.setValue(80)
    assert len(texts(view)) == before
    assert len(scan_calls) == 1 and view.scan_count == 1


def test_confirmation_lists_the_files_and_declining_moves_nothing(
    qtbot, view, library, monkeypatch
):
    lib, photos = library
    scanned(qtbot, view)
    select_tier(view, "copy")
    wait_facts(qtbot, view)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or No)
    moved = []
    view.trash_fn = lambda p: moved.append(p) or "/nowhere"
    assert view.resolve_selected() is None
    g = view.selected_group()
    keeper = g.members[view.keeper_index()].path
    for p in g.paths:
        assert os.path.exists(p)
        if p != keeper:
            assert p in asked[0]
    assert f"Kept: {keeper}" in asked[0]
    assert not moved


def test_resolve_moves_to_the_real_trash_and_undo_restores(
    qtbot, view, library, monkeypatch, tmp_path
):
    lib, photos = library
    xdg = tmp_path / "home" / ".local" / "share"
    xdg.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    probe = tmp_path / "photos" / "probe.txt"
    probe.write_text("x")
    try:
        dupes_view.qt_trash(str(probe))
    except OSError:
        pytest.skip("QFile.moveToTrash is not supported here")
    scanned(qtbot, view)
    select_tier(view, "exact")
    wait_facts(qtbot, view)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: Yes)
    result = view.resolve_selected()
    assert result is not None and result.complete and len(result.moved) == 1
    original, where = result.moved[0]
    assert not os.path.exists(original) and Path(where).is_relative_to(xdg / "Trash")
    assert os.path.exists(result.keeper)
    assert lib.catalog.image_by_path(original) is None
    assert texts(view) == []  # the only exact group is resolved
    assert dupes.journal_for(lib).where(original) == where
    with qtbot.waitSignal(view.scan_finished, timeout=120_000):
        undone = view.undo_last()
    assert undone.restored == [original] and os.path.exists(original)
    assert len(texts(view)) == 1


def test_failing_trash_deletes_nothing_and_offers_quarantine(
    qtbot, view, library, monkeypatch, tmp_path
):
    lib, photos = library
    scanned(qtbot, view)
    select_tier(view, "exact")
    wait_facts(qtbot, view)

    def no_trash(path: str) -> str:
        raise OSError("trash not supported on this share")

    view.trash_fn = no_trash
    answers = iter([Yes, No])  # confirm, then decline the quarantine
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: next(answers))
    result = view.resolve_selected()
    assert result.moved == [] and all(os.path.exists(p) for p in view.selected_group().paths)
    answers = iter([Yes, Yes])  # confirm, accept the quarantine
    quarantine = tmp_path / "quarantine"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(quarantine))
    result = view.resolve_selected()
    assert len(result.moved) == 1 and result.moved[0][1].startswith(str(quarantine))
    assert os.path.exists(result.moved[0][1]) and os.path.exists(result.keeper)


def test_not_duplicates_hides_the_group_for_good(qtbot, view, scan_calls):
    scanned(qtbot, view)
    select_tier(view, "copy")
    before = len(texts(view))
    hidden = view.selected_group().key()
    view.mark_selected(dupes.DISTINCT)
    assert len(texts(view)) == before - 1 and len(scan_calls) == 1
    scanned(qtbot, view)
    assert all(g.key() != hidden for g in view.groups)


def test_compare_emits_the_pair(qtbot, view):
    scanned(qtbot, view)
    select_tier(view, "copy")
    wait_facts(qtbot, view)
    with qtbot.waitSignal(view.compare_requested) as sig:
        view.compare_selected()
    a, b = sig.args
    assert a != b and {a, b} <= set(view.selected_group().paths)


def fake_trash(folder: Path):
    """A trash_fn that really moves the file (into `folder`), as the platform trash would."""
    folder.mkdir(parents=True, exist_ok=True)

    def move(path: str) -> str:
        dst = folder / f"{len(list(folder.iterdir()))}-{Path(path).name}"
        os.rename(path, dst)
        return str(dst)

    return move


def test_after_resolving_the_selection_moves_to_the_next_group(qtbot, view, monkeypatch, tmp_path):
    scanned(qtbot, view)
    assert len(view.groups) >= 3
    view.group_list.setCurrentRow(1)
    wait_facts(qtbot, view)
    following = [(g.tier, g.key()) for g in view.groups[2:]]
    view.trash_fn = fake_trash(tmp_path / "trash")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: Yes)
    assert view.resolve_selected().complete
    now = view.selected_group()
    # not back to the first group: the one that came after the resolved one
    assert now is not None and (now.tier, now.key()) == next(
        k for k in following if k in [(g.tier, g.key()) for g in view.groups]
    )
    assert view.group_list.currentRow() >= 1
    # "Not duplicates" moves on the same way
    row = view.group_list.currentRow()
    after = [(g.tier, g.key()) for g in view.groups[row + 1 :]]
    view.mark_selected(dupes.DISTINCT)
    if after:
        assert (view.selected_group().tier, view.selected_group().key()) == after[0]


def test_the_suggested_keeper_is_the_first_card_and_in_view(qtbot, view):
    view.resize(900, 600)
    view.show()
    qtbot.waitExposed(view)
    scanned(qtbot, view)
    for row in range(len(view.groups)):
        view.group_list.setCurrentRow(row)
        wait_facts(qtbot, view)
        keeper = view._cards[view.suggested.keeper]
        assert view.keeper_index() == view.suggested.keeper
        assert view.cards_layout.indexOf(keeper) == 0
        qtbot.waitUntil(lambda k=keeper: k.isVisible())
        vp = view.cards_scroll.viewport()
        left = keeper.mapTo(vp, keeper.rect().topLeft()).x()
        assert 0 <= left and left + keeper.width() <= vp.width()


def test_all_tiers_never_lists_two_photos_together_twice(qtbot, view):
    scanned(qtbot, view)
    seen = set()
    for g in view.groups:
        ids = [m.image_id for m in g.members]
        pairs = {frozenset((a, b)) for i, a in enumerate(ids) for b in ids[i + 1 :]}
        assert not pairs & seen, f"{g.tier} group repeats a pair"
        seen |= pairs
    tiers = {g.tier for g in view.groups}
    assert {"exact", "copy"} <= tiers  # the exact pair is still shown, in its own tier


def test_sliders_have_a_track_and_scanning_does_not_widen_the_view(qtbot, view):
    view.show()
    qtbot.waitExposed(view)
    assert view.copy_slider.width() >= 90 and view.similar_slider.width() >= 90
    before = view.minimumSizeHint().width()
    scanned(qtbot, view)
    view._say("Moved 12 file(s); “Undo last resolution” brings them back. " * 3)
    assert view.minimumSizeHint().width() <= before
    assert view.group_list.minimumWidth() >= dupes_view.GROUP_LIST_MIN_WIDTH


def test_signatures_only_library_scans_without_the_model(qtbot, tmp_path):
    """A library catalogued by `index --signatures-only`, with no model weights: Find
    duplicates lists its copies and says what the similar-shot tier is missing."""
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415
    from imgfinder.core.library import run  # noqa: PLC0415
    from tests.core.test_dupes_library import build_photos, open_lib  # noqa: PLC0415

    photos = build_photos(tmp_path / "photos")
    run(sigindex.index_signatures(tmp_path / "data", [tmp_path / "photos"]))
    lib = open_lib(tmp_path / "data", tmp_path / "missing.pth")
    v = DuplicatesView(lambda: lib, own_compare=False)
    qtbot.addWidget(v)
    try:
        scanned(qtbot, v)
        assert any(g.tier == "copy" for g in v.groups)
        text = v.status_label.text()
        assert f"{len(photos)} photos without CNN vectors yet" in text, text
    finally:
        v.shutdown()
        v.loader.shutdown()
        lib.close()
