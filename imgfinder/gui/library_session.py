"""The open library and its model: the settings in effect, loading, weights, indexing, folders.

`LibrarySession` owns what the main window used to create in `_open_library` and share
implicitly: the `Library`, the `Effective` configuration (saved settings with command-line
overrides on top), the loaded model's `ModelInfo`, the weights download, and whether new
files are indexed automatically. It drives the index controller and asks the search
worker to load the model; the window shows what it reports through signals and asks the
user the questions (re-index? weights?).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from imgfinder.core import torchinfo
from imgfinder.core.modelspec import get_spec
from imgfinder.core.weights import default_available, offline_message
from imgfinder.errors import ImgfinderError
from imgfinder.gui.indexing import IndexController
from imgfinder.gui.items import ModelInfo
from imgfinder.gui.search import SearchController
from imgfinder.gui.settings import LIBRARY_FIELDS, Effective, GuiSettings, LaunchOptions
from imgfinder.gui.workers import DownloadWorker, restore_torch_threads, worker_thread

log = logging.getLogger(__name__)


class LibrarySession(QObject):
    """One open library at a time (reopened when a setting changes what it is)."""

    opened = Signal(object)  # Library: a (new) library is open, its model not loaded yet
    recovered = Signal(str)  # a damaged catalog was moved aside and rebuilt: the message
    device_changed = Signal(str)  # the inference device in words, or why there is none
    model_ready = Signal(object)  # ModelInfo of the current library's model
    model_failed = Signal(str)  # the model could not be loaded (not for lack of weights)
    weights_needed = Signal(str)  # the weights are missing: the core's reason
    reindex_needed = Signal(object)  # ModelInfo: photos were indexed with another model
    download_started = Signal()
    download_progress = Signal(object, object)  # bytes done, total or None
    download_failed = Signal(str)
    downloaded = Signal(str)  # the weights file; the library is reopened with it next

    def __init__(
        self,
        opts: LaunchOptions,
        data_dir: Path,
        settings: GuiSettings,
        index_ctl: IndexController,
        search_ctl: SearchController,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.opts = opts
        self.data_dir = data_dir
        self.settings = settings
        self.index_ctl = index_ctl
        self.search_ctl = search_ctl
        self.lib = None
        self.effective: Effective | None = None
        self.model_info: ModelInfo | None = None
        self.weights_missing_now = False
        self.auto_index = True  # files found by the watcher or a rescan are indexed
        self._download: tuple | None = None  # (QThread, DownloadWorker) while one runs
        self.download_failed_once = False  # no automatic download again: ask the user
        search_ctl.model_ready.connect(self._model_ready)
        search_ctl.model_failed.connect(self._model_failed)

    # -- opening -----------------------------------------------------------------------------
    def open(self) -> None:
        self.effective = eff = Effective.resolve(self.settings, self.opts)
        from imgfinder.core.library import Library  # noqa: PLC0415 (torch: once the window is up)

        self.lib = Library(
            self.data_dir, eff.model_config(), index_backend=eff.index_backend, allow_download=False
        )
        self.model_info = None
        self.index_ctl.set_library(self.lib)
        self.search_ctl.lib = self.lib
        if self.lib.recovery is not None:
            self.recovered.emit(self.lib.recovery.message())
        try:
            self.device_changed.emit(torchinfo.describe_device(eff.device))
        except ImgfinderError as exc:
            self.device_changed.emit(str(exc))
        self.opened.emit(self.lib)

    def reopen(self) -> None:
        """After a settings change: stop indexing, let a search finish, open with new settings."""
        self.index_ctl.shutdown()
        self.search_ctl.wait_idle()
        old = self.lib
        self.open()
        old.close()
        gc.unfreeze()  # let the old model be collected; frozen again when the new one is ready
        self.load_model()

    def close(self) -> None:
        self.cancel_download(wait=True)
        if self.lib is not None:
            self.lib.close()

    # -- the model ---------------------------------------------------------------------------
    def weights_present(self) -> bool:
        explicit = self.effective.weights_file()
        if explicit:
            return Path(explicit).expanduser().is_file()
        return default_available(self.effective.backbone)

    def missing_weights_message(self, *, backbone: bool = True) -> str:
        explicit = self.effective.weights_file()
        reason = f"file not found: {explicit}" if explicit else "not downloaded yet"
        return offline_message(reason, self.effective.backbone if backbone else None)

    def load_model(self) -> bool:
        """Load the model in the search thread (so the first search is quick); False: the
        weights are missing (`weights_needed` says why)."""
        if not self.weights_present():
            self.weights_needed.emit(self.missing_weights_message())
            return False
        self.search_ctl.warm_up(self.lib)
        return True

    def _model_ready(self, lib, info: ModelInfo) -> None:
        if lib is not self.lib:
            return
        self.model_info = info
        self.weights_missing_now = False
        # The model, Qt and the libraries are now loaded and live as long as the app: keep the
        # collector from walking them again (a full collection of ~400k objects stalls every
        # thread for ~0.3 s, e.g. in the middle of indexing).
        gc.freeze()
        restore_torch_threads()  # only the search thread keeps its smaller torch thread count
        self.device_changed.emit(info.device)
        if info.stale:  # nothing re-extracts the library before the user agreed
            self.index_ctl.discard_pending()
            self.index_ctl.set_enabled(True)
            self.auto_index = False
        else:
            self.index_ctl.set_enabled(True)
            if self.lib.catalog.roots():
                self.auto_index = True
                self.index_ctl.request(reason="startup rescan")
        self.model_ready.emit(info)
        if info.stale:
            self.reindex_needed.emit(info)

    def _model_failed(self, lib, message: str, weights_missing: bool) -> None:
        if lib is not self.lib:
            return
        self.device_changed.emit("model not loaded")
        if weights_missing:
            self.weights_needed.emit(message)
        else:
            self.model_failed.emit(message)

    # -- weights -----------------------------------------------------------------------------
    def may_download(self) -> bool:
        """A missing default may be downloaded without asking (online, not failed before)."""
        explicit = self.effective.weights_file()
        return not (explicit or self.opts.offline or self.download_failed_once)

    @property
    def downloading(self) -> bool:
        return self._download is not None

    def start_download(self) -> bool:
        """Download the default weights in a worker thread; False: one is still stopping."""
        if self._download is not None:
            return False
        worker = DownloadWorker(self.effective.backbone)
        thread = worker_thread(worker, "imgfinder-download")
        # bound methods of this (GUI-thread) object: a lambda would run in the worker's thread
        worker.progress.connect(self.download_progress)
        worker.failed.connect(self._download_error)
        worker.succeeded.connect(self._downloaded)
        thread.finished.connect(self._download_thread_done)
        self._download = (thread, worker)
        self.download_started.emit()
        thread.start()
        return True

    def cancel_download(self, *, wait: bool = False) -> bool:
        """Stop at the next chunk (and with `wait`, block until the thread has ended)."""
        if self._download is None:
            return False
        thread, worker = self._download
        worker.cancel()
        self.download_failed_once = True
        if wait:
            thread.quit()
            thread.wait()
        return True

    def _download_thread_done(self) -> None:
        if self._download is not None:
            thread, worker = self._download
            self._download = None
            worker.deleteLater()
            thread.deleteLater()

    def _download_error(self, message: str) -> None:
        self.download_failed_once = True
        self.download_failed.emit(message)

    def _downloaded(self, path: str) -> None:
        log.info("weights downloaded to %s", path)
        self.downloaded.emit(path)
        if self.settings.weights or "weights" in self.opts.overrides:
            self.settings.weights = None
            self.opts.overrides.discard("weights")
            self.save_settings()
        self.reopen()

    def use_backbone(self, name: str) -> None:
        """Another backbone chosen by the user (the weights dialog's offer): a different model,
        so once it is loaded the usual re-index offer follows."""
        self.settings.backbone = name
        self.settings.weights = self.settings.head = self.settings.whitening = None
        for k in ("backbone", "weights", "head", "whitening"):
            self.opts.overrides.discard(k)
        self.save_settings()
        self.reopen()

    def use_weights_file(self, path: str) -> None:
        """A local weights file picked by the user: use it now and remember it."""
        self.settings.weights = path
        self.opts.overrides.discard("weights")
        self.save_settings()
        self.reopen()

    def weights_spec(self):
        return get_spec(self.effective.backbone)

    # -- settings ----------------------------------------------------------------------------
    def save_settings(self) -> None:
        try:
            self.settings.save(self.data_dir)
        except OSError as exc:
            log.warning("cannot save settings: %s", exc)

    def apply_settings(self, values: dict) -> list[str]:
        """Take the settings dialog's values and save them; returns the library fields that
        changed (the caller reopens the library when there are any)."""
        eff = self.effective
        changed = [k for k in LIBRARY_FIELDS if k in values and values[k] != getattr(eff, k)]
        for k, v in values.items():
            setattr(self.settings, k, v)
        for k in changed:
            self.opts.overrides.discard(k)
        self.settings.normalise()
        self.save_settings()
        self.search_ctl.raw_pairs_as_one = bool(self.settings.raw_pairs_as_one)
        self.search_ctl.rerank = self.settings.rerank
        return changed

    # -- folders and indexing ----------------------------------------------------------------
    def add_folder(self, path: str) -> str:
        """Add a library folder and ask for it to be indexed; its root, or ImgfinderError."""
        root = self.lib.add_root(path)
        self.auto_index = True
        self.index_ctl.request(reason=f"added {root}")
        return root

    def rescan(self, reason: str = "rescan requested") -> None:
        self.auto_index = True
        self.index_ctl.request(reason=reason)

    def reindex(self) -> None:
        self.rescan("re-index")

    def auto_rescan(self, reason: str) -> None:
        """The watcher or a drive coming back found changes: index them unless that is off."""
        if self.auto_index:
            self.index_ctl.request(reason=reason)

    def indexing_allowed(self) -> bool:
        return self.model_info is not None
