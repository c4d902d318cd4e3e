"""Resolving duplicates: journaled moves to a (fake) trash, guards, failures, undo, quarantine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imgfinder.core import dupes
from imgfinder.core.dupes import trash


@pytest.fixture
def photos(tmp_path) -> list[str]:
    out = []
    for name in ("a/keep.jpg", "b/copy1.jpg", "c/copy2.jpg"):
        p = tmp_path / "lib" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(name.encode() * 10)
        out.append(str(p))
    return out


@pytest.fixture
def fake_trash(tmp_path):
    """Moves files into tmp_path/Trash (unique names) and says where, like QFile.moveToTrash."""
    folder = tmp_path / "Trash"
    folder.mkdir()
    calls: list[str] = []

    def move(path: str) -> str:
        calls.append(path)
        dst = folder / f"{len(calls)}-{Path(path).name}"
        os.rename(path, dst)
        return str(dst)

    move.calls = calls
    return move


@pytest.fixture
def journal(tmp_path) -> dupes.Journal:
    return dupes.Journal(tmp_path / "data" / "dupes-journal.jsonl")


def ops(journal) -> list[str]:
    return [r["op"] for r in journal.records()]


def test_resolve_moves_all_but_the_keeper_and_journals_each_move(photos, fake_trash, journal):
    keeper = photos[0]
    result = dupes.resolve(photos, keeper, fake_trash, journal, tier="copy")
    assert result.complete and len(result.moved) == 2
    assert os.path.exists(keeper)
    for original, where in result.moved:
        assert not os.path.exists(original) and os.path.exists(where)
        assert journal.where(original) == where
    assert ops(journal) == ["begin", "intent", "moved", "intent", "moved", "end"]
    lines = journal.path.read_text().splitlines()
    assert all(json.loads(line)["id"] == result.id for line in lines)
    assert dupes.last_resolution(journal)["keeper"] == keeper


def test_undo_restores_files_and_journals_it(photos, fake_trash, journal):
    first = dupes.resolve(photos[:2], photos[0], fake_trash, journal)
    second = dupes.resolve([photos[0], photos[2]], photos[0], fake_trash, journal)
    undone = dupes.undo_last(journal)
    assert undone.id == second.id and undone.restored == [photos[2]] and not undone.failed
    assert os.path.exists(photos[2]) and not os.path.exists(photos[1])
    assert journal.where(photos[2]) is None
    assert dupes.undo_last(journal).id == first.id  # then the one before
    assert all(os.path.exists(p) for p in photos)
    assert dupes.undo_last(journal).id is None  # nothing left to undo
    assert dupes.last_resolution(journal) is None


def test_undo_never_overwrites_and_the_journal_keeps_the_location(photos, fake_trash, journal):
    result = dupes.resolve(photos, photos[0], fake_trash, journal)
    Path(photos[1]).write_bytes(b"a new file took the name")
    undone = dupes.undo_last(journal)
    assert [p for p, _ in undone.failed] == [photos[1]]
    assert Path(photos[1]).read_bytes() == b"a new file took the name"
    where = dict(result.moved)[photos[1]]
    assert os.path.exists(where) and journal.where(photos[1]) == where
    assert undone.restored == [photos[2]]


def test_a_group_can_never_lose_every_member(photos, fake_trash, journal, tmp_path):
    with pytest.raises(dupes.ResolveError):
        dupes.resolve(photos[1:], photos[0], fake_trash, journal)  # keeper not a member
    with pytest.raises(dupes.ResolveError):
        dupes.resolve([photos[0], photos[0]], photos[0], fake_trash, journal)  # only the keeper
    os.unlink(photos[0])
    with pytest.raises(dupes.ResolveError, match="missing"):
        dupes.resolve(photos, photos[0], fake_trash, journal)  # keeper gone from disk
    link = tmp_path / "lib" / "hardlink.jpg"
    os.link(photos[1], link)
    with pytest.raises(dupes.ResolveError, match="same file|own file"):
        dupes.resolve([str(link), photos[1]], str(link), fake_trash, journal)
    assert fake_trash.calls == []
    assert all(os.path.exists(p) for p in photos[1:])


def test_a_failing_trash_deletes_nothing(photos, journal):
    def broken(path: str) -> str:
        raise OSError("trash not supported on this volume")

    result = dupes.resolve(photos, photos[0], broken, journal)
    assert not result.moved and not result.complete
    assert result.remaining == photos[1:]
    assert all(os.path.exists(p) for p in photos)
    assert ops(journal) == ["begin", "intent", "failed", "end"]


def test_a_failure_midway_stops_and_says_what_remains(photos, journal, fake_trash):
    def flaky(path: str) -> str:
        if path == photos[2]:
            raise PermissionError("read-only folder")
        return fake_trash(path)

    result = dupes.resolve(photos, photos[0], flaky, journal)
    assert [p for p, _ in result.moved] == [photos[1]]
    assert result.remaining == [photos[2]] and os.path.exists(photos[2])


def test_a_trash_that_claims_success_but_leaves_the_file_is_a_failure(photos, journal):
    result = dupes.resolve(photos, photos[0], lambda p: "/nowhere/" + Path(p).name, journal)
    assert not result.moved and result.failed
    assert all(os.path.exists(p) for p in photos)


def test_quarantine_keeps_structure_and_can_be_undone(photos, journal, tmp_path):
    folder = tmp_path / "quarantine"
    move = dupes.quarantine_fn(folder, roots=[str(tmp_path / "lib")])
    result = dupes.resolve(photos, photos[0], move, journal, method="quarantine")
    assert result.complete
    assert (folder / "lib" / "b" / "copy1.jpg").is_file()
    assert (folder / "lib" / "c" / "copy2.jpg").is_file()
    # a second file with the same relative path gets a free name
    Path(photos[1]).write_bytes(b"again")
    again = dupes.resolve([photos[0], photos[1]], photos[0], move, journal, method="quarantine")
    assert again.moved[0][1].endswith("copy1 (1).jpg")
    dupes.undo_last(journal)
    dupes.undo_last(journal)
    assert all(os.path.exists(p) for p in photos)


def test_quarantine_outside_roots_uses_the_absolute_path(tmp_path):
    src = tmp_path / "x" / "y.jpg"
    src.parent.mkdir()
    src.write_bytes(b"1")
    where = dupes.quarantine_fn(tmp_path / "q")(str(src))
    assert Path(where) == tmp_path / "q" / Path(*src.parts[1:])


def test_move_file_across_file_systems_is_copy_then_unlink(tmp_path, monkeypatch):
    src, dst = tmp_path / "a.bin", tmp_path / "sub" / "b.bin"
    src.write_bytes(b"x" * 1000)
    real_rename = os.rename

    def cross_device(a, b):
        if str(a) == str(src):
            raise OSError(18, "Invalid cross-device link")
        return real_rename(a, b)

    monkeypatch.setattr(os, "rename", cross_device)
    trash.move_file(str(src), str(dst))
    assert dst.read_bytes() == b"x" * 1000 and not src.exists()
    with pytest.raises(FileExistsError):
        trash.move_file(str(dst), str(dst))


def test_recover_settles_a_crash_between_intent_and_confirmation(tmp_path, photos, monkeypatch):
    journal = dupes.Journal(tmp_path / "j.jsonl")
    xdg = tmp_path / "xdg"
    (xdg / "Trash" / "files").mkdir(parents=True)
    (xdg / "Trash" / "info").mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    # the process died after moving photos[1] into the trash, before confirming it
    journal.append("begin", "r1", method="trash", tier="copy", keeper=photos[0], members=photos)
    journal.append("intent", "r1", path=photos[1], hash=None)
    in_trash = xdg / "Trash" / "files" / "copy1.jpg"
    os.rename(photos[1], in_trash)
    (xdg / "Trash" / "info" / "copy1.jpg.trashinfo").write_text(
        f"[Trash Info]\nPath={photos[1]}\nDeletionDate=2024-01-01T00:00:00\n"
    )
    journal.append("intent", "r1", path=photos[2], hash=None)  # died before this move
    with open(journal.path, "a") as fh:
        fh.write('{"op": "moved", "id": "r1", "pa')  # a torn last line
    assert dupes.recover(journal) == [(photos[1], str(in_trash))]
    assert journal.where(photos[1]) == str(in_trash)
    assert os.path.exists(photos[2])
    undone = dupes.undo_last(journal)
    assert undone.restored == [photos[1]] and os.path.exists(photos[1])
    assert not (xdg / "Trash" / "info" / "copy1.jpg.trashinfo").exists()


def test_a_crash_mid_quarantine_move_is_recovered_from_the_journaled_target(
    tmp_path, photos, monkeypatch
):
    """The quarantine target is journaled with the intent: killed after the move and before
    its confirmation, recovery still knows where the file is, and undo brings it back."""
    journal = dupes.Journal(tmp_path / "j.jsonl")
    move = dupes.quarantine_fn(tmp_path / "quarantine", roots=[str(tmp_path / "lib")])
    real_append = journal.append

    def die_after_the_move(op, rid, **fields):
        if op == "moved":
            raise KeyboardInterrupt  # as a kill between the move and its confirmation
        return real_append(op, rid, **fields)

    monkeypatch.setattr(journal, "append", die_after_the_move)
    with pytest.raises(KeyboardInterrupt):
        dupes.resolve(photos[:2], photos[0], move, journal, method="quarantine")
    monkeypatch.setattr(journal, "append", real_append)
    intent = [r for r in journal.records() if r["op"] == "intent"][-1]
    assert intent["to"] and os.path.exists(intent["to"]) and not os.path.exists(photos[1])
    assert dupes.recover(journal) == [(photos[1], intent["to"])]
    assert dupes.undo_last(journal).restored == [photos[1]] and os.path.exists(photos[1])
