"""One helper for short background calls: a pool runs them, their results come back as signals.

Every short job of the GUI (catalog reads and URL fetches in `TaskRunner`, thumbnails,
explanations, a duplicate group's file facts) is a `Jobs.submit(fn, tag)`: `fn` runs in a
pool thread and touches no widget; `done(tag, result)` or `failed(tag, message)` is then
emitted, and Qt delivers it on the thread that owns the `Jobs` object (the GUI thread),
where QPixmaps and widgets may be made. `current` lets a stale request (an older
generation) be skipped before it starts. Long jobs (indexing, training, the duplicate
scan) are core generators driven by a worker QObject on its own QThread instead
(`workers.worker_thread`).

Why not superqt's `thread_worker`: it would be a new dependency for ~60 lines, and these
jobs need what it does not give directly: a chosen pool (one thread for explanations,
two for thumbnails), priorities, and skipping a stale request unstarted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from imgfinder.errors import ImgfinderError

log = logging.getLogger(__name__)


def describe(exc: BaseException) -> str:
    """One line for the user; unexpected errors are logged with their traceback."""
    if isinstance(exc, ImgfinderError):
        return str(exc)
    log.error("unexpected error in a worker", exc_info=exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


class _Job(QRunnable):
    def __init__(self, jobs: Jobs, fn, tag, current, errors):
        super().__init__()
        self.jobs, self.fn, self.tag, self.current, self.errors = jobs, fn, tag, current, errors

    def run(self) -> None:
        if self.current is not None and not self.current():
            return  # superseded before it started
        try:
            result = self.fn()
        except Exception as exc:  # noqa: BLE001 - the worker boundary
            self._emit("failed", self.errors(exc))
        else:
            self._emit("done", result)

    def _emit(self, name: str, value: object) -> None:
        try:
            getattr(self.jobs, name).emit(self.tag, value)
        except RuntimeError:  # the owner (and so this Jobs object) was deleted meanwhile
            log.debug("a background job finished after its owner was closed")


class Jobs(QObject):
    """Short calls in a thread pool; `done(tag, result)` / `failed(tag, message)` on this
    object's thread. `pool`: a shared pool (not cleared by `shutdown`), else an own one."""

    done = Signal(object, object)  # tag, result
    failed = Signal(object, str)  # tag, message

    def __init__(
        self,
        parent: QObject | None = None,
        *,
        threads: int = 2,
        pool: QThreadPool | None = None,
        errors: Callable[[BaseException], str] = describe,
    ):
        super().__init__(parent)
        self.own_pool = pool is None
        if pool is None:
            pool = QThreadPool(self)
            pool.setMaxThreadCount(threads)
        self.pool = pool
        self.errors = errors
        self.closed = False

    def submit(
        self,
        fn: Callable[[], object],
        tag: object = None,
        *,
        priority: int = 0,
        current: Callable[[], bool] | None = None,
    ) -> None:
        """Run `fn()` in the pool (higher `priority` first); `current()` False: skip it."""
        if not self.closed:
            self.pool.start(_Job(self, fn, tag, current, self.errors), priority)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """No new jobs; drop the queued ones of an own pool and wait for the running ones."""
        self.closed = True
        if self.own_pool:
            self.pool.clear()
        self.pool.waitForDone(timeout_ms)
