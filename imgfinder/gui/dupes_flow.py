"""The Duplicates view's control flow, apart from its widgets.

`DuplicateScan` runs the core scan generator (or a re-index then a scan) in a worker
QObject on its own QThread; `resolve_with_confirmation` and `undo_with_report` move a
group's other members to the trash (journaled, after the user confirms; a quarantine
folder when the trash is not available) and bring the last resolution back. The view
(`dupes_view.DuplicatesView`) places the widgets and calls these.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from imgfinder.core import dupes

log = logging.getLogger(__name__)


def qt_trash(path: str) -> str:
    """Move a file to the platform trash with Qt; returns where it went, raises if impossible."""
    from PySide6.QtCore import QFile  # noqa: PLC0415

    f = QFile(path)
    if not f.moveToTrash():
        raise OSError(f"the trash is not available for {path}")
    return f.fileName()


class _ScanWorker(QObject):
    """Drives the core scan generator in its own thread."""

    progress = Signal(object)
    finished = Signal(object)  # PairList, or None (cancelled or failed)
    failed = Signal(str)

    def __init__(self, gen_factory: Callable[[threading.Event], object]):
        super().__init__()
        self.cancel = threading.Event()
        self._factory = gen_factory

    @Slot()
    def run(self) -> None:
        result = None
        try:
            gen = self._factory(self.cancel)
            while True:
                try:
                    self.progress.emit(next(gen))
                except StopIteration as stop:
                    result = stop.value
                    break
        except Exception as exc:  # noqa: BLE001 - the worker boundary
            log.exception("duplicate scan failed")
            self.failed.emit(str(exc) or type(exc).__name__)
        finally:
            self.finished.emit(result)


class DuplicateScan(QObject):
    """One scan at a time in its own thread; `finished(pairs or None)` once its thread ended."""

    progress = Signal(object)  # Progress
    failed = Signal(str)
    finished = Signal(object)  # PairList, or None (cancelled or failed)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: _ScanWorker | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, factory: Callable[[threading.Event], object]) -> None:
        """Run the generator `factory(cancel)` makes; its return value is the pair list."""
        self._worker = _ScanWorker(factory)
        self._thread = QThread()
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self.progress)
        self._worker.failed.connect(self.failed)
        self._worker.finished.connect(self._done)
        self._thread.start()

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel.set()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel a running scan and wait for its thread (call before the app quits)."""
        self.cancel()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait(timeout_ms)

    @Slot(object)
    def _done(self, pairs) -> None:
        if self._thread is not None:  # run() has returned: end the thread's loop, reap it
            self._thread.quit()
            self._thread.wait()
        self._thread = self._worker = None
        self.finished.emit(pairs)


def resolve_with_confirmation(
    parent: QWidget, lib, g: dupes.DuplicateGroup, keeper: str, trash_fn: Callable[[str], str]
) -> dupes.ResolveResult | None:
    """Ask, then move every member but `keeper` to the trash (journaled); None: nothing done."""
    others = [p for p in g.paths if p != keeper]
    text = (
        f"Move {len(others)} file(s) to the trash?\n\n" + "\n".join(others) + f"\n\nKept: {keeper}"
    )
    answer = QMessageBox.question(
        parent,
        "Move duplicates to trash",
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return None
    try:
        result = dupes.resolve_group(lib, g, keeper, trash_fn)
    except dupes.ResolveError as exc:
        QMessageBox.warning(parent, "Nothing was moved", str(exc))
        return None
    if result.remaining:
        result = _offer_quarantine(parent, lib, g, keeper, result)
    return result


def _offer_quarantine(parent: QWidget, lib, g, keeper: str, result) -> dupes.ResolveResult:
    failed = "\n".join(f"{p}: {e}" for p, e in result.failed) or "\n".join(result.remaining)
    answer = QMessageBox.question(
        parent,
        "Trash not available",
        f"These files could not be moved to the trash and are untouched:\n{failed}\n\n"
        "Move them to a quarantine folder instead?",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    if answer != QMessageBox.StandardButton.Yes:
        return result
    folder = QFileDialog.getExistingDirectory(parent, "Quarantine folder")
    if not folder:
        return result
    keep = set(result.remaining) | {keeper}
    sub = dupes.DuplicateGroup(g.tier, [m for m in g.members if m.path in keep], g.weakest)
    roots = [r.path for r in lib.roots()]
    more = dupes.resolve_group(
        lib, sub, keeper, dupes.quarantine_fn(folder, roots), method="quarantine"
    )
    result.moved += more.moved
    result.failed, result.not_attempted = more.failed, more.not_attempted
    if more.remaining:
        QMessageBox.warning(parent, "Some files were not moved", "\n".join(more.remaining))
    return result


def undo_with_report(parent: QWidget, lib) -> dupes.UndoResult:
    """Move the files of the last resolution back; the files that could not be, in a warning."""
    result = dupes.undo(lib)
    if result.id is not None and result.failed:
        QMessageBox.warning(
            parent,
            "Some files could not be restored",
            "\n".join(f"{p}: {e}" for p, e in result.failed),
        )
    return result


def reindex_then_scan(lib) -> Callable[[threading.Event], object]:
    """The generator factory for "index the restored files, then scan again"."""

    def gen(cancel):
        yield from lib.index(cancel=cancel)
        return (yield from dupes.scan(lib, cancel=cancel))

    return gen
