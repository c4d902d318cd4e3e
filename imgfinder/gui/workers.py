"""Workers: indexing, training, search and downloads run off the GUI thread; signals only.

Long jobs are worker QObjects on their own QThread (`worker_thread`); short calls go to a
`TaskRunner`, built on the one background-job helper (`gui/jobs.py`). Torch is imported
only inside the workers' threads (through the core), never when this module loads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot

from imgfinder.core import decode, torchinfo
from imgfinder.core.weights import download_default
from imgfinder.errors import WeightsUnavailableError
from imgfinder.gui.items import (
    ModelInfo,
    ResultItem,
    SearchRequest,
    SearchResult,
    pil_to_qimage,
)
from imgfinder.gui.jobs import Jobs, describe

if TYPE_CHECKING:
    from imgfinder.core.train import TrainConfig

log = logging.getLogger(__name__)

PREVIEW_SIZE = 320
PREVIEW_DELAY_MS = 60
# torch's intra-op thread count is kept per OS thread: indexing uses the process default,
# interactive queries a quarter of the cores, so a query never spins OpenMP threads against
# a running index (on a 2-core machine that contention made one query ~8x slower).
SEARCH_TORCH_THREADS = max(1, (os.cpu_count() or 2) // 4)
INDEX_NICE = 5  # background indexing yields to the GUI thread (and to the user's other work)


def index_torch_threads() -> int:
    """The process default of torch's thread count (what indexing and training use)."""
    return torchinfo.default_threads()


def restore_torch_threads() -> None:
    """Call from the GUI thread after warm_up: threads started later get the default again."""
    torchinfo.set_threads(index_torch_threads())


def _lower_thread_priority(nice: int) -> None:
    """Raise this thread's nice value (Linux: per thread, inherited by threads it starts)."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, max(current, nice))
    except OSError as exc:
        log.debug("cannot lower the indexing thread's priority: %s", exc)


def worker_thread(worker: QObject, name: str) -> QThread:
    """A new (not yet started) QThread running `worker.run`, quitting when it emits finished.

    Connect the worker's other signals, then start the thread, so no early signal is lost.
    """
    thread = QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # Direct: quit() from the worker's thread, so it works even while the GUI thread waits.
    worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    return thread


def stop_and_wait(thread: QThread, worker: QObject) -> None:
    """Cancel a worker and block until its thread has ended (the core saves before it does)."""
    worker.cancel()
    thread.quit()
    thread.wait()


def dispose(thread: QThread | None, worker: QObject | None) -> None:
    """Schedule a finished worker and its thread for deletion (on the GUI thread)."""
    if worker is not None:
        worker.deleteLater()
    if thread is not None:
        thread.deleteLater()


# --------------------------------------------------------------------------- indexing


class IndexWorker(QObject):
    """Drives `Library.index()`; pausing stops pulling from the generator, cancel sets its flag."""

    progress = Signal(object)  # Progress
    batch_done = Signal()
    failed = Signal(str)
    finished = Signal(object)  # IndexSummary, or None after a failure

    def __init__(self, lib, add_paths=()):
        super().__init__()
        self.lib = lib
        self.add_paths = list(add_paths)
        self.cancel_event = threading.Event()
        self._cond = threading.Condition()
        self._paused = False
        self.parked = False  # paused and waiting: nothing is pulled from the generator now

    @Slot()
    def run(self) -> None:
        summary = None
        try:
            _lower_thread_priority(INDEX_NICE)
            torchinfo.set_threads(index_torch_threads())
            gen = self.lib.index(self.add_paths, cancel=self.cancel_event)
            while True:
                self._wait_while_paused()
                try:
                    p = next(gen)
                except StopIteration as stop:
                    summary = stop.value
                    break
                self.progress.emit(p)
                if p.stage == "extract":
                    self.batch_done.emit()
        except Exception as exc:  # noqa: BLE001 - the worker boundary
            self.failed.emit(describe(exc))
        finally:
            self.finished.emit(summary)

    def _wait_while_paused(self) -> None:
        with self._cond:
            while self._paused and not self.cancel_event.is_set():
                self.parked = True
                self._cond.wait(0.5)
            self.parked = False

    # called from the GUI thread (this worker's own event loop is busy in run())
    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def cancel(self) -> None:
        self.cancel_event.set()
        self.resume()

    @property
    def paused(self) -> bool:
        return self._paused


# --------------------------------------------------------------------------- training

TRAIN_PROGRESS_INTERVAL_S = 0.1  # ECA-only epochs run thousands of batches a second


class TrainWorker(QObject):
    """Drives `core.train.train()`; cancel stops after the current batch and keeps a checkpoint.

    Progress is thinned to ten signals a second (a new stage and "epoch" always pass), so a
    fast run cannot flood the GUI thread's event queue.
    """

    progress = Signal(object)  # Progress / TrainProgress
    failed = Signal(str)
    finished = Signal(object)  # TrainResult, or None after a failure

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, allow_download: bool = False):
        super().__init__()
        self.cfg = cfg
        self.resume = resume
        self.allow_download = allow_download
        self.cancel_event = threading.Event()

    @Slot()
    def run(self) -> None:
        result = None
        try:
            _lower_thread_priority(INDEX_NICE)
            torchinfo.set_threads(index_torch_threads())
            from imgfinder.core.train import train  # noqa: PLC0415 (torch: in this thread)

            gen = train(
                self.cfg,
                cancel=self.cancel_event,
                resume=self.resume,
                allow_download=self.allow_download,
            )
            stage, last = None, 0.0
            while True:
                try:
                    p = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                now = time.monotonic()
                if (
                    p.stage != stage
                    or p.stage == "epoch"
                    or now - last >= TRAIN_PROGRESS_INTERVAL_S
                ):
                    stage, last = p.stage, now
                    self.progress.emit(p)
        except Exception as exc:  # noqa: BLE001 - the worker boundary
            self.failed.emit(describe(exc))
        finally:
            self.finished.emit(result)

    def cancel(self) -> None:
        """From any thread: stop after the current batch (the core writes a checkpoint)."""
        self.cancel_event.set()


# --------------------------------------------------------------------------- search


def result_facts(lib, image_ids: list[int]) -> tuple[dict, dict]:
    """Photo metadata and decode source of search hits, from the catalog (no file read)."""
    return lib.photo_meta(image_ids), lib.decode_sources(image_ids)


def search_hits(lib, req: SearchRequest, vector: np.ndarray) -> list:
    """The request's hits: plain search, or re-ranked as Settings asks (issue 18)."""
    if not req.rerank:
        return lib.search_vector(vector, req.k, raw_pairs_as_one=req.raw_pairs_as_one)
    from imgfinder.core.rerank import RerankOptions, parse_methods  # noqa: PLC0415
    from imgfinder.core.rerank_search import reranked_search  # noqa: PLC0415

    options = RerankOptions(methods=parse_methods(req.rerank))
    return reranked_search(
        lib, vector, req.k, options, query_path=req.query.path,
        raw_pairs_as_one=req.raw_pairs_as_one,
    )  # fmt: skip


class SearchWorker(QObject):
    """Lives in one long-running thread; embeds queries and searches, newest request wins."""

    done = Signal(object)  # SearchResult
    failed = Signal(int, str)
    preview_ready = Signal(int, object)  # request id, QImage
    model_ready = Signal(object, object)  # Library, ModelInfo
    model_failed = Signal(object, str, bool)  # Library, message, weights missing

    def __init__(self):
        super().__init__()
        self.latest = 0  # set by the GUI thread; older requests are dropped unstarted
        self.busy = threading.Lock()  # held while a library is in use (closing waits for it)
        # One single-shot timer for the delayed query preview, connected once in the worker's
        # thread. A QTimer.singleShot(ms, callable) per search would connect from this thread
        # while it holds the GIL; with the GUI thread disconnecting some signal at that moment
        # (Qt's shared signal-slot mutexes) the two threads deadlocked (seen in the tests).
        self._preview_timer: QTimer | None = None
        self._pending_preview: tuple | None = None

    @Slot(object)
    def search(self, req: SearchRequest) -> None:
        if req.id != self.latest:
            return
        t0 = time.perf_counter()
        with self.busy:
            try:
                lib = req.lib
                q = req.query
                vector = q.vector if q.model_id == lib.model_id else None  # loads the model
                source = None
                if vector is None:
                    source = q.source()
                    vector = lib.embed(source)  # whitened when the library uses whitening
                hits = search_hits(lib, req, vector)
                metas, sources = result_facts(lib, [h.image_id for h in hits])
                items = []
                for h in hits:
                    r = h.row  # the catalog row, looked up once by search_vector
                    if r is None:
                        items.append(ResultItem(h))
                    else:
                        items.append(
                            ResultItem(
                                h,
                                r.size,
                                r.mtime_ns,
                                r.hash,
                                r.width,
                                r.height,
                                metas.get(h.image_id),
                                sources.get(h.image_id),
                            )
                        )
            except Exception as exc:  # noqa: BLE001 - the worker boundary
                self.failed.emit(req.id, describe(exc))
                return
        secs = time.perf_counter() - t0
        self.done.emit(SearchResult(req.id, q, items, vector, lib.model_id, secs))
        if req.want_preview:  # a little later: the GUI thread paints the results first
            self._pending_preview = (req, source)
            self._start_preview_timer()

    def _start_preview_timer(self) -> None:
        if self._preview_timer is None:  # created and connected once, in the worker's thread
            self._preview_timer = QTimer(self)
            self._preview_timer.setSingleShot(True)
            self._preview_timer.timeout.connect(self._run_pending_preview)
            # stopped in its own thread as that thread ends (never from the GUI thread)
            self.thread().finished.connect(
                self._preview_timer.stop, Qt.ConnectionType.DirectConnection
            )
        self._preview_timer.start(PREVIEW_DELAY_MS)

    @Slot()
    def _run_pending_preview(self) -> None:
        pending, self._pending_preview = self._pending_preview, None
        if pending is not None:
            self._preview(*pending)

    def _preview(self, req: SearchRequest, source) -> None:
        try:
            img = decode.open_image(
                source if source is not None else req.query.source(), min_size=PREVIEW_SIZE
            )
            img.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE), Image.Resampling.LANCZOS)
            self.preview_ready.emit(req.id, pil_to_qimage(img))
        except Exception as exc:  # noqa: BLE001 - a preview is optional
            log.info("no preview for %s: %s", req.query.label, exc)

    @Slot(object)
    def warm_up(self, lib) -> None:
        """Load the model (and index), run one dummy batch, report what the library holds."""
        with self.busy:
            try:
                ex = lib.extractor
                device = torchinfo.describe_device(ex.device)
                if ex.device.type == "cpu":
                    index_torch_threads()  # the default, known before this thread changes it
                    torchinfo.set_threads(SEARCH_TORCH_THREADS)
                s = ex.input_size
                ex.embed_arrays([np.zeros((s, s, 3), np.uint8)])
                counts = lib.catalog.model_counts()
                others = {m: n for m, n in counts.items() if m != lib.model_id}
                if not others:
                    lib.load_index()
                info = ModelInfo(
                    lib.model_id,
                    device,
                    ex.weights_source,
                    counts.get(lib.model_id, 0),
                    sum(others.values()),
                    others,
                )
            except WeightsUnavailableError as exc:
                self.model_failed.emit(lib, str(exc), True)
                return
            except Exception as exc:  # noqa: BLE001 - the worker boundary
                self.model_failed.emit(lib, describe(exc), False)
                return
        self.model_ready.emit(lib, info)


# --------------------------------------------------------------------------- weights download


class _Cancelled(Exception):
    pass


class DownloadWorker(QObject):
    """Downloads the default backbone weights; cancelling aborts at the next chunk."""

    progress = Signal(object, object)  # bytes done, total or None
    failed = Signal(str)
    succeeded = Signal(str)
    finished = Signal()

    def __init__(self, backbone: str | None = None):
        super().__init__()
        self._cancel = threading.Event()
        self._last = 0.0
        self.backbone = backbone

    @Slot()
    def run(self) -> None:
        try:
            path = download_default(self._progress, spec=self.backbone)
        except _Cancelled:
            self.failed.emit("download cancelled")
        except Exception as exc:  # noqa: BLE001 - the worker boundary
            self.failed.emit(describe(exc))
        else:
            self.succeeded.emit(str(path))
        finally:
            self.finished.emit()

    def _progress(self, done: int, total: int | None) -> None:
        if self._cancel.is_set():
            raise _Cancelled()
        now = time.monotonic()
        if now - self._last > 0.1 or (total and done >= total):
            self._last = now
            self.progress.emit(done, total)

    def cancel(self) -> None:
        self._cancel.set()


# --------------------------------------------------------------------------- small tasks


class TaskRunner(QObject):
    """Runs short blocking calls (folder listings, URL fetches) in a pool; each call's own
    callbacks get the result or the error message on the GUI thread (never after shutdown)."""

    def __init__(self, threads: int = 2, parent: QObject | None = None):
        super().__init__(parent)
        self.jobs = Jobs(self, threads=threads)
        self.pool = self.jobs.pool
        self.jobs.done.connect(self._done)
        self.jobs.failed.connect(self._failed)

    @property
    def closed(self) -> bool:
        return self.jobs.closed

    def run(
        self,
        fn: Callable[[], object],
        on_done: Callable[[object], None],
        on_failed: Callable[[str], None] | None = None,
    ) -> None:
        self.jobs.submit(fn, (on_done, on_failed))

    def _done(self, callbacks, result: object) -> None:
        if not self.closed:  # a late answer after shutdown has nobody to go to
            callbacks[0](result)

    def _failed(self, callbacks, message: str) -> None:
        if not self.closed and callbacks[1] is not None:
            callbacks[1](message)

    def shutdown(self, timeout_ms: int = 5000) -> None:
        self.jobs.shutdown(timeout_ms)
