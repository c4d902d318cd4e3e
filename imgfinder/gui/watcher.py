"""Watching library folders: debounced change events, within the platform's watch budget.

Each directory costs one watch (an inotify watch on Linux, a handle on Windows), and the
budget is shared with every other program of the user. A folder tree larger than what is
left is not watched at all; it is rescanned periodically instead, and the UI says so.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal, Slot

from imgfinder.gui.workers import TaskRunner

log = logging.getLogger(__name__)

DEFAULT_CAP = 8192  # never hold more watches than this, whatever the system allows
SHARE_OF_SYSTEM = 4  # ... nor more than a quarter of the user's inotify watches


def watch_budget() -> int:
    """How many directories this process may watch."""
    if sys.platform.startswith("linux"):
        try:
            limit = int(Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip())
        except (OSError, ValueError):
            limit = 8192  # the historical kernel default
        return max(0, min(DEFAULT_CAP, limit // SHARE_OF_SYSTEM))
    if sys.platform == "win32":
        return 2000  # one handle and a share of a 64-handle wait group per directory
    return DEFAULT_CAP


def list_dirs(root: str, limit: int) -> list[str] | None:
    """The root and its visible subfolders, or None when there are more than `limit`."""
    out: list[str] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        out.append(d)
        if len(out) > limit:
            return None
        try:
            with os.scandir(d) as it:
                for e in it:
                    if e.name.startswith(".") or e.name.startswith("@"):
                        continue
                    try:
                        if e.is_dir():
                            stack.append(e.path)
                    except OSError:
                        continue
        except OSError as exc:
            log.debug("cannot list %s: %s", d, exc)
    return out


@dataclass
class WatchState:
    root: str
    mode: str  # "watching" | "polling" | "missing" | "pending"
    folders: int = 0
    reason: str = ""

    def describe(self, rescan_minutes: int) -> str:
        if self.mode == "watching":
            n = self.folders
            return f"watching {n} folder{'s' if n != 1 else ''}"
        if self.mode == "polling":
            return f"not watched ({self.reason}); rescanned every {rescan_minutes} min"
        if self.mode == "missing":
            return "not available"
        return "preparing to watch…"


class FolderWatcher(QObject):
    """Debounces QFileSystemWatcher events into one `changed` signal; periodic rescans too."""

    changed = Signal(str)  # a reason, for the log and status bar
    states_changed = Signal()

    def __init__(
        self,
        tasks: TaskRunner,
        parent: QObject | None = None,
        *,
        debounce_ms: int = 1500,
        budget: int | None = None,
        rescan_minutes: int = 10,
    ):
        super().__init__(parent)
        self.tasks = tasks
        self.budget = watch_budget() if budget is None else budget
        self.fs = QFileSystemWatcher(self)
        self.fs.directoryChanged.connect(self._dir_changed)
        self.states: dict[str, WatchState] = {}
        self._dirs: dict[str, list[str]] = {}  # root -> watched dirs
        self._gen: dict[str, int] = {}
        self._touched: set[str] = set()
        self._debounce = QTimer(self, singleShot=True, interval=debounce_ms)
        self._debounce.timeout.connect(self._fire)
        self.rescan_timer = QTimer(self)
        self.rescan_timer.timeout.connect(lambda: self.changed.emit("periodic rescan"))
        self.set_rescan_minutes(rescan_minutes)

    def set_rescan_minutes(self, minutes: int) -> None:
        self.rescan_minutes = max(1, int(minutes))
        self.rescan_timer.start(self.rescan_minutes * 60_000)

    @property
    def used(self) -> int:
        return sum(len(v) for v in self._dirs.values())

    def set_roots(self, roots: list[tuple[str, bool]]) -> None:
        """(path, available) of every library folder; starts or stops watches to match."""
        wanted = {p: ok for p, ok in roots}
        for root in list(self.states):
            if root not in wanted or (not wanted[root] and self.states[root].mode != "missing"):
                self._unwatch(root)
                del self.states[root]
        for root, ok in wanted.items():
            if not ok:
                self.states[root] = WatchState(root, "missing")
                continue
            if root in self.states and self.states[root].mode != "missing":
                continue
            self.states[root] = WatchState(root, "pending")
            gen = self._gen[root] = self._gen.get(root, 0) + 1
            limit = max(0, self.budget - self.used)
            self.tasks.run(
                lambda r=root, n=limit: list_dirs(r, n),
                lambda dirs, r=root, g=gen: self._listed(r, g, dirs),
                lambda msg, r=root, g=gen: self._listed(r, g, None, msg),
            )
        self.states_changed.emit()

    def _listed(self, root: str, gen: int, dirs: list[str] | None, error: str = "") -> None:
        if self._gen.get(root) != gen or root not in self.states:
            return  # the roots changed meanwhile
        if dirs is None:
            reason = error or "too many subfolders for the system's watch limit"
            self.states[root] = WatchState(root, "polling", reason=reason)
        else:
            failed = set(self.fs.addPaths(dirs)) if dirs else set()
            if failed:
                self.fs.removePaths([d for d in dirs if d not in failed])
                self.states[root] = WatchState(
                    root, "polling", reason="the system refused more folder watches"
                )
            else:
                self._dirs[root] = list(dirs)
                self.states[root] = WatchState(root, "watching", folders=len(dirs))
        log.info("library folder %s: %s", root, self.states[root].describe(self.rescan_minutes))
        self.states_changed.emit()

    def _unwatch(self, root: str) -> None:
        dirs = self._dirs.pop(root, [])
        if dirs:
            self.fs.removePaths(dirs)

    def polling(self) -> list[str]:
        return [r for r, s in self.states.items() if s.mode == "polling"]

    @Slot(str)
    def _dir_changed(self, path: str) -> None:
        self._touched.add(path)
        self._debounce.start()

    def _fire(self) -> None:
        touched, self._touched = self._touched, set()
        for d in touched:
            root = self._root_of(d)
            if root is not None:
                known = set(self._dirs[root])
                limit = max(0, self.budget - self.used)
                self.tasks.run(
                    lambda d=d, k=known, n=limit: new_subdirs(d, k, n),
                    lambda dirs, r=root, g=self._gen.get(root): self._add_new(r, g, dirs),
                )
        self.changed.emit(f"changes in {len(touched)} folder{'s' if len(touched) != 1 else ''}")

    def _root_of(self, d: str) -> str | None:
        for r in self._dirs:
            if d == r or d.startswith(r.rstrip(os.sep) + os.sep):
                return r
        return None

    def _add_new(self, root: str, gen: int | None, dirs: list[str] | None) -> None:
        """Folders created (or moved in) below a watched one are watched too, within budget."""
        if self._gen.get(root) != gen or root not in self._dirs or dirs == []:
            return
        failed = self.fs.addPaths(dirs) if dirs else []
        if dirs is None or failed:
            if dirs:
                bad = set(failed)
                self.fs.removePaths([x for x in dirs if x not in bad])
            self._unwatch(root)
            self.states[root] = WatchState(
                root, "polling", reason="too many subfolders for the system's watch limit"
            )
        else:
            self._dirs[root].extend(dirs)
            self.states[root].folders = len(self._dirs[root])
        self.states_changed.emit()

    def shutdown(self) -> None:
        self._debounce.stop()
        self.rescan_timer.stop()
        for root in list(self._dirs):
            self._unwatch(root)


def new_subdirs(d: str, known: set[str], limit: int) -> list[str] | None:
    """Folders below `d` not watched yet (None: more than `limit`)."""
    if not os.path.isdir(d):
        return []
    out: list[str] = []
    try:
        entries = list(os.scandir(d))
    except OSError:
        return []
    for e in entries:
        if e.path in known or e.name.startswith((".", "@")):
            continue
        try:
            if not e.is_dir():
                continue
        except OSError:
            continue
        sub = list_dirs(e.path, limit - len(out))
        if sub is None:
            return None
        out.extend(x for x in sub if x not in known)
    return out
