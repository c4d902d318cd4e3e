"""Resolving a group: move all but the keeper to the trash (or a quarantine folder), journaled.

The core never deletes and never imports Qt: the caller passes `trash_fn(path) -> where` (the
app uses QFile.moveToTrash; tests a folder). Every move is written to an append-only JSON-lines
journal in the data directory, fsync'ed *before* the move ("intent") and confirmed after it
("moved", with where the file went), so after a crash the journal still tells where every file
is; `recover()` settles intents left unconfirmed. `undo_last()` moves the files of the last
resolution back where the platform allows it (the recorded location still exists and the
original path is free) and journals each restore.

Journal records (one JSON object per line, all with "op", "id" and "at"):
  begin    {method, tier, keeper, members}          a resolution starts
  intent   {path, hash, to?}                        about to move path (to: known target)
  moved    {path, to}                               path is now at to
  failed   {path, error}                            the move did not happen; nothing after it ran
  end      {moved, failed}                          the resolution is over
  recovered{path, to | null}                        an unconfirmed intent, settled by recover()
  restored {path, from} / restore-failed {path, error} / undone {restored, failed}   (undo)
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from imgfinder import paths
from imgfinder.atomic import fsync_dir
from imgfinder.errors import ImgfinderError

log = logging.getLogger(__name__)

JOURNAL_NAME = paths.JOURNAL_NAME
TrashFn = Callable[[str], str]


class ResolveError(ImgfinderError):
    """A resolution was refused before anything moved (e.g. it would trash every member)."""


@dataclass
class ResolveResult:
    id: str
    keeper: str
    method: str
    moved: list[tuple[str, str]] = field(default_factory=list)  # (original path, where)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    not_attempted: list[str] = field(default_factory=list)  # after the first failure

    @property
    def complete(self) -> bool:
        return not self.failed and not self.not_attempted

    @property
    def remaining(self) -> list[str]:
        """Files that should have moved but did not (offer a quarantine folder for these)."""
        return [p for p, _ in self.failed] + list(self.not_attempted)


@dataclass
class UndoResult:
    id: str | None
    restored: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


class Journal:
    """Append-only JSON lines; each append is flushed and fsync'ed before it returns."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else paths.current().journal

    def append(self, op: str, rid: str, **fields) -> None:
        rec = {"op": op, "id": rid, "at": time.time(), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():  # a line torn by a crash must not swallow this record
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if new:
            fsync_dir(self.path.parent)

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:  # a torn last line after a crash
                    log.warning("journal %s: skipping unreadable line %d", self.path, n)
        return out

    def where(self, path: str) -> str | None:
        """Where the journal last saw `path` go (None: not moved, or moved back)."""
        loc = None
        for r in self.records():
            if r.get("path") != path:
                continue
            if r["op"] in ("moved", "recovered"):
                loc = r.get("to")
            elif r["op"] == "restored":
                loc = None
        return loc


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def resolve(
    members: Iterable[str],
    keeper: str,
    trash_fn: TrashFn,
    journal: Journal | None = None,
    *,
    method: str = "trash",
    tier: str = "",
    hashes: dict[str, str] | None = None,
) -> ResolveResult:
    """Move every member except `keeper` with `trash_fn`; stops at the first failure.

    Refuses (ResolveError, nothing moved) when the keeper is not a member, is missing on disk,
    or when a member to move is the keeper's own file under another name: whatever the caller
    passes, at least the keeper's content stays in place.
    """
    journal = journal or Journal()
    members = list(dict.fromkeys(os.path.abspath(m) for m in members))
    keeper = os.path.abspath(keeper)
    if keeper not in members:
        raise ResolveError(f"the keeper {keeper} is not in the group")
    others = [m for m in members if m != keeper]
    if not others:
        raise ResolveError("nothing to move: the group has only the keeper")
    if not os.path.isfile(keeper):
        raise ResolveError(f"the keeper {keeper} is missing; nothing was moved")
    for m in others:
        if _same_file(m, keeper) and not os.path.islink(m):
            raise ResolveError(f"{m} is the keeper's own file under another name; nothing moved")
    rid = uuid.uuid4().hex[:12]
    result = ResolveResult(rid, keeper, method)
    journal.append("begin", rid, method=method, tier=tier, keeper=keeper, members=members)
    for i, path in enumerate(others):
        plan = getattr(trash_fn, "target", None)  # where a quarantine move will put it
        to = plan(path) if plan is not None else None
        journal.append("intent", rid, path=path, hash=(hashes or {}).get(path), to=to)
        try:
            where = str(trash_fn(path))
            if os.path.lexists(path):
                raise OSError(f"{path} is still in place after the move")
        except Exception as exc:  # noqa: BLE001 - any failure stops the resolution
            msg = str(exc) or type(exc).__name__
            journal.append("failed", rid, path=path, error=msg)
            result.failed.append((path, msg))
            result.not_attempted = others[i + 1 :]
            log.warning("could not move %s (%s); stopping", path, msg)
            break
        journal.append("moved", rid, path=path, to=where)
        result.moved.append((path, where))
    journal.append("end", rid, moved=len(result.moved), failed=len(result.failed))
    return result


# -- moving files ourselves (quarantine, undo) ----------------------------------------------
def move_file(src: str, dst: str) -> None:
    """Rename, or copy + fsync + rename + unlink across file systems; never overwrites."""
    if os.path.lexists(dst):
        raise FileExistsError(f"{dst} already exists")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
        fsync_dir(Path(dst).parent)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:  # not just another file system
            raise
    tmp = f"{dst}.imgfinder-partial"
    shutil.copy2(src, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    if os.path.lexists(dst):
        os.unlink(tmp)
        raise FileExistsError(f"{dst} already exists")
    os.rename(tmp, dst)
    fsync_dir(Path(dst).parent)
    os.unlink(src)


def _free_name(path: Path) -> Path:
    if not os.path.lexists(path):
        return path
    for n in range(1, 10000):
        cand = path.with_name(f"{path.stem} ({n}){path.suffix}")
        if not os.path.lexists(cand):
            return cand
    raise FileExistsError(f"no free name for {path}")


def quarantine_fn(folder: str | os.PathLike, roots: Iterable[str] = ()) -> TrashFn:
    """A trash_fn that moves files into `folder`, keeping their structure.

    A file under a library root R goes to folder/<name of R>/<path inside R>; any other file
    to folder/<its absolute path without the drive or leading slash>.
    """
    base = Path(folder).expanduser().resolve()
    root_list = sorted((Path(r).resolve() for r in roots), key=lambda p: -len(p.parts))

    def target(path: str) -> str:
        """Where `path` goes (journaled before the move, so a crash mid-move is recoverable)."""
        p = Path(path).resolve()
        if p.is_relative_to(base):
            raise ResolveError(f"{p} is already inside the quarantine folder")
        rel = None
        for r in root_list:
            if p.is_relative_to(r):
                rel = Path(r.name or "root") / p.relative_to(r)
                break
        if rel is None:
            rel = Path(*p.parts[1:]) if len(p.parts) > 1 else Path(p.name)
        return str(_free_name(base / rel))

    def move(path: str) -> str:
        dst = target(path)
        move_file(str(Path(path).resolve()), dst)
        return dst

    move.target = target  # type: ignore[attr-defined]
    return move


# -- undo and recovery ----------------------------------------------------------------------
def _xdg_trashinfo(location: str) -> Path | None:
    """The .trashinfo file that belongs to a file in a freedesktop.org trash, if any."""
    p = Path(location)
    if p.parent.name != "files":
        return None
    info = p.parent.parent / "info" / f"{p.name}.trashinfo"
    return info if info.is_file() else None


def locate_in_trash(path: str, trash_dirs: Iterable[Path] = ()) -> str | None:
    """Find a file moved to a freedesktop.org trash by its original path (for recovery)."""
    dirs = list(trash_dirs)
    if not dirs:
        xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "share"
        )
        dirs = [Path(xdg) / "Trash"]
    best: tuple[str, str] | None = None
    for trash in dirs:
        info_dir = trash / "info"
        if not info_dir.is_dir():
            continue
        for info in info_dir.glob("*.trashinfo"):
            try:
                text = info.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
            if urllib.parse.unquote(fields.get("Path", "")) != path:
                continue
            candidate = trash / "files" / info.name[: -len(".trashinfo")]
            date = fields.get("DeletionDate", "")
            if candidate.exists() and (best is None or date > best[0]):
                best = (date, str(candidate))
    return best[1] if best else None


def recover(journal: Journal | None = None) -> list[tuple[str, str | None]]:
    """Settle intents without a confirmation (a crash mid-move); journal where each file is."""
    journal = journal or Journal()
    open_intents: dict[tuple[str, str], dict] = {}
    for r in journal.records():
        key = (r.get("id", ""), r.get("path", ""))
        if r["op"] == "intent":
            open_intents[key] = r
        elif r["op"] in ("moved", "failed", "recovered"):
            open_intents.pop(key, None)
    out = []
    for (rid, path), rec in open_intents.items():
        if os.path.lexists(path):
            journal.append("failed", rid, path=path, error="interrupted before the move")
            continue
        where = rec.get("to") if rec.get("to") and os.path.lexists(rec["to"]) else None
        where = where or locate_in_trash(path)
        journal.append("recovered", rid, path=path, to=where)
        out.append((path, where))
    return out


def undo_last(journal: Journal | None = None) -> UndoResult:
    """Move the files of the last resolution not yet undone back to where they were."""
    journal = journal or Journal()
    recover(journal)
    records = journal.records()
    undone = {r["id"] for r in records if r["op"] == "undone"}
    order: list[str] = []
    moves: dict[str, list[dict]] = {}
    for r in records:
        if r["op"] in ("moved", "recovered") and r.get("to"):
            if r["id"] not in moves:
                order.append(r["id"])
            moves.setdefault(r["id"], []).append(r)
    todo = [rid for rid in order if rid not in undone]
    if not todo:
        return UndoResult(None)
    rid = todo[-1]
    result = UndoResult(rid)
    for r in reversed(moves[rid]):
        path, where = r["path"], r["to"]
        try:
            if not os.path.lexists(where):
                raise FileNotFoundError(f"no longer at {where} (emptied from the trash?)")
            if os.path.lexists(path):
                raise FileExistsError(f"{path} is occupied by another file")
            info = _xdg_trashinfo(where)
            move_file(where, path)
            if info is not None:
                info.unlink(missing_ok=True)
        except OSError as exc:
            msg = str(exc)
            journal.append("restore-failed", rid, path=path, error=msg)
            result.failed.append((path, msg))
            continue
        journal.append("restored", rid, path=path, **{"from": where})
        result.restored.append(path)
    journal.append("undone", rid, restored=len(result.restored), failed=len(result.failed))
    return result


def last_resolution(journal: Journal | None = None) -> dict | None:
    """The 'begin' record of the last resolution that can still be undone (for the UI)."""
    journal = journal or Journal()
    records = journal.records()
    undone = {r["id"] for r in records if r["op"] == "undone"}
    moved = {r["id"] for r in records if r["op"] in ("moved", "recovered") and r.get("to")}
    for r in reversed(records):
        if r["op"] == "begin" and r["id"] in moved and r["id"] not in undone:
            return r
    return None
