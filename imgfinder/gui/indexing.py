"""Index runs: one IndexWorker thread at a time, queued requests, pause/resume/cancel, shutdown."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QThread, Signal, Slot

from imgfinder.core.types import IndexSummary
from imgfinder.gui.workers import IndexWorker, dispose, stop_and_wait, worker_thread

log = logging.getLogger(__name__)


class IndexController(QObject):
    """Starts index runs when asked (folder added, watcher, rescan) and one more if asked meanwhile.

    A request made while a run is in progress marks the library dirty; when the run ends, a
    new one starts (the core's incremental scan makes that cheap). Nothing starts until
    `enabled` is set: the model must be loaded and the user must not have declined a re-index.
    """

    started = Signal()
    progress = Signal(object)  # Progress
    batch_done = Signal()
    finished = Signal(object)  # IndexSummary, or None after a failure
    failed = Signal(str)
    state_changed = Signal(str)  # "idle" | "running" | "paused" | "cancelling" | "stopping"
    stopped = Signal()  # the worker thread has ended (after any run, cancelled or not)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.lib = None
        self._enabled = False
        self._thread: QThread | None = None
        self._worker: IndexWorker | None = None
        self._paths: list[str] = []
        self._dirty = False
        self._cancelled_by_user = False
        self.last_summary: IndexSummary | None = None
        self.state = "idle"

    # -- configuration -------------------------------------------------------------------
    def set_library(self, lib) -> None:
        if self.is_running:
            raise RuntimeError("set_library() while indexing; call shutdown() first")
        self.lib = lib

    @property
    def enabled(self) -> bool:
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        if enabled:
            self._maybe_start()

    @property
    def is_running(self) -> bool:
        return self._thread is not None

    @property
    def pending(self) -> bool:
        return self._dirty

    def discard_pending(self) -> None:
        """Forget queued requests (e.g. before asking whether to re-index everything)."""
        self._dirty = False
        self._paths.clear()

    # -- requests ------------------------------------------------------------------------
    def request(self, add_paths=(), reason: str = "") -> None:
        """Index now, or right after the current run."""
        self._paths.extend(str(p) for p in add_paths)
        self._dirty = True
        if reason:
            log.info("index run requested: %s", reason)
        self._maybe_start()

    def _maybe_start(self) -> None:
        if not (self._enabled and self._dirty and self.lib is not None) or self.is_running:
            return
        paths, self._paths = self._paths, []
        self._dirty = False
        self._cancelled_by_user = False
        worker = IndexWorker(self.lib, paths)
        thread = worker_thread(worker, "imgfinder-index")
        worker.progress.connect(self.progress)
        worker.batch_done.connect(self.batch_done)
        worker.failed.connect(self.failed)
        worker.finished.connect(self._worker_finished)
        thread.finished.connect(self._thread_finished)
        self._thread, self._worker = thread, worker
        thread.start()
        self._set_state("running")
        self.started.emit()

    @property
    def parked(self) -> bool:
        """Paused, and the current batch has ended: the index thread waits for resume."""
        return self._worker is not None and self._worker.parked

    # -- control (GUI thread) --------------------------------------------------------------
    def pause(self) -> None:
        if self._worker is not None and self.state == "running":
            self._worker.pause()
            self._set_state("paused")

    def resume(self) -> None:
        if self._worker is not None and self.state == "paused":
            self._worker.resume()
            self._set_state("running")

    def cancel(self) -> None:
        """Stop after the current batch; what was indexed so far is kept."""
        if self._worker is not None:
            self._cancelled_by_user = True
            self._dirty = False
            self._paths.clear()
            self._worker.cancel()
            self._set_state("cancelling")

    def stop(self) -> bool:
        """Without blocking: stop after the current batch because the app is closing.

        Returns False when nothing runs; otherwise `stopped` is emitted once the thread ended.
        """
        if self._worker is None:
            return False
        self._enabled = False
        self._dirty = False
        self._paths.clear()
        self._cancelled_by_user = True
        self._worker.cancel()
        self._set_state("stopping")
        return True

    def shutdown(self) -> None:
        """Cancel, quit, wait: the store is saved by the core before the thread ends."""
        self._enabled = False
        thread, worker = self._thread, self._worker
        if thread is None or worker is None:
            return
        stop_and_wait(thread, worker)
        self._cleanup()

    # -- internals -------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    @Slot(object)
    def _worker_finished(self, summary: IndexSummary | None) -> None:
        if summary is not None:
            self.last_summary = summary
        self.finished.emit(summary)

    @Slot()
    def _thread_finished(self) -> None:
        if self.sender() is not self._thread:
            return  # already cleaned up by shutdown()
        self._cleanup()
        self.stopped.emit()
        if not self._cancelled_by_user:
            self._maybe_start()

    def _cleanup(self) -> None:
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        dispose(thread, worker)
        self._set_state("idle")
