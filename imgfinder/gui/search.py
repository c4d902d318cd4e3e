"""Search requests and history: one long-lived SearchWorker thread, back/forward over queries."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from imgfinder.gui.items import Query, SearchRequest, SearchResult
from imgfinder.gui.workers import SearchWorker

log = logging.getLogger(__name__)

MAX_HISTORY = 100


class SearchController(QObject):
    """Sends the current query to the worker; only the newest request's answer is shown."""

    results = Signal(object)  # SearchResult of the current query
    failed = Signal(str)
    busy_changed = Signal(bool)
    preview_changed = Signal(object)  # Query whose preview arrived
    history_changed = Signal()
    model_ready = Signal(object, object)  # Library, ModelInfo
    model_failed = Signal(object, str, bool)  # Library, message, weights missing
    _submit = Signal(object)
    _warm = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.lib = None
        self.k = 60
        self.raw_pairs_as_one = False  # GuiSettings.raw_pairs_as_one
        self.rerank = ""  # GuiSettings.rerank
        self.history: list[Query] = []
        self.pos = -1
        self._next_id = 0
        self._queries: dict[int, Query] = {}
        self.busy = False
        self.worker = SearchWorker()
        self.thread = QThread()
        self.thread.setObjectName("imgfinder-search")
        self.worker.moveToThread(self.thread)
        self._submit.connect(self.worker.search, Qt.ConnectionType.QueuedConnection)
        self._warm.connect(self.worker.warm_up, Qt.ConnectionType.QueuedConnection)
        self.worker.done.connect(self._done)
        self.worker.failed.connect(self._failed)
        self.worker.preview_ready.connect(self._preview)
        self.worker.model_ready.connect(self.model_ready)
        self.worker.model_failed.connect(self.model_failed)
        self.thread.start()

    # -- queries ---------------------------------------------------------------------------
    @property
    def current(self) -> Query | None:
        return self.history[self.pos] if 0 <= self.pos < len(self.history) else None

    def search(self, query: Query) -> None:
        """A new query: it becomes the newest history entry (forward entries are dropped)."""
        del self.history[self.pos + 1 :]
        self.history.append(query)
        if len(self.history) > MAX_HISTORY:
            del self.history[0]
        self.pos = len(self.history) - 1
        self.history_changed.emit()
        self._run(query)

    def can_go_back(self) -> bool:
        return self.pos > 0

    def can_go_forward(self) -> bool:
        return self.pos < len(self.history) - 1

    def back(self) -> Query | None:
        if not self.can_go_back():
            return None
        self.pos -= 1
        self.history_changed.emit()
        self._run(self.history[self.pos])
        return self.history[self.pos]

    def forward(self) -> Query | None:
        if not self.can_go_forward():
            return None
        self.pos += 1
        self.history_changed.emit()
        self._run(self.history[self.pos])
        return self.history[self.pos]

    def set_k(self, k: int) -> None:
        self.k = int(k)
        self.rerun()

    def rerun(self) -> None:
        """Search the current query again (its vector is cached: no model call)."""
        if self.current is not None:
            self._run(self.current)

    def _run(self, query: Query) -> None:
        if self.lib is None:
            self.failed.emit("The library is not open.")
            return
        self._next_id += 1
        rid = self._next_id
        self._queries = {i: q for i, q in self._queries.items() if i >= rid - 8}
        self._queries[rid] = query
        self.worker.latest = rid
        self._set_busy(True)
        self._submit.emit(
            SearchRequest(
                rid,
                self.lib,
                query,
                self.k,
                query.preview is None,
                raw_pairs_as_one=self.raw_pairs_as_one,
                rerank=self.rerank,
            )
        )

    def warm_up(self, lib) -> None:
        self._warm.emit(lib)

    def wait_idle(self) -> None:
        """Block until the worker is not using a library (before closing one)."""
        self.worker.latest = -1
        with self.worker.busy:
            pass
        self._set_busy(False)

    def shutdown(self) -> None:
        self.worker.latest = -1
        self.thread.quit()
        self.thread.wait()

    # -- answers ---------------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        if busy != self.busy:
            self.busy = busy
            self.busy_changed.emit(busy)

    @Slot(object)
    def _done(self, result: SearchResult) -> None:
        result.query.vector = result.vector
        result.query.model_id = result.model_id
        if result.id != self.worker.latest:
            return
        self._set_busy(False)
        self.results.emit(result)

    @Slot(int, str)
    def _failed(self, rid: int, message: str) -> None:
        if rid != self.worker.latest:
            return
        self._set_busy(False)
        self.failed.emit(message)

    @Slot(int, object)
    def _preview(self, rid: int, image) -> None:
        query = self._queries.get(rid)
        if query is None:
            return
        query.preview = image
        self.preview_changed.emit(query)
