"""Main-window behaviour around the library: opening it, model weights, indexing, folders, settings."""

from __future__ import annotations

import gc
import logging
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from imgfinder.core.extract import device_description, pick_device
from imgfinder.core.library import Library
from imgfinder.core.modelspec import get_spec
from imgfinder.core.types import IndexSummary, Progress, run_summary_text
from imgfinder.core.weights import default_available, offline_message
from imgfinder.errors import ImgfinderError
from imgfinder.gui.dialogs import SettingsDialog, WeightsDialog
from imgfinder.gui.items import ModelInfo
from imgfinder.gui.settings import LIBRARY_FIELDS, Effective
from imgfinder.gui.workers import DownloadWorker, restore_torch_threads, worker_thread

log = logging.getLogger(__name__)


class LibraryMixin:
    """Mixed into MainWindow (which provides the widgets, controllers and `notify`)."""

    # -- opening -----------------------------------------------------------------------------
    def _open_library(self) -> None:
        self.effective = Effective.resolve(self.settings, self.opts)
        eff = self.effective
        self.lib = Library(
            self.data_dir, eff.model_config(), index_backend=eff.index_backend, allow_download=False
        )
        if self.lib.recovery is not None:  # a damaged catalog was moved aside and rebuilt
            self.notify("Library recovered", self.lib.recovery.message())
        self.model_info: ModelInfo | None = None
        self._update_train_action()
        self.index_ctl.set_library(self.lib)
        self.search_ctl.lib = self.lib
        try:
            self.device_label.setText(device_description(pick_device(eff.device)))
        except ImgfinderError as exc:
            self.device_label.setText(str(exc))

    def reopen_library(self) -> None:
        """After a settings change: stop indexing, let a search finish, open with new settings."""
        self.index_ctl.shutdown()
        self.search_ctl.wait_idle()
        old = self.lib
        self._open_library()
        self.dupes_view.reset()  # its pair list belongs to the old library
        old.close()
        gc.unfreeze()  # let the old model be collected; frozen again when the new one is ready
        self.refresh_roots()
        self.load_model()

    def weights_present(self) -> bool:
        explicit = self.effective.weights_file()
        if explicit:
            return Path(explicit).expanduser().is_file()
        return default_available(self.effective.backbone)

    def load_model(self) -> None:
        """Load the model in the search thread (so the first search is quick), or ask for weights."""
        if not self.weights_present():
            explicit = self.effective.weights_file()
            reason = f"file not found: {explicit}" if explicit else "not downloaded yet"
            self.weights_missing(offline_message(reason, self.effective.backbone))
            return
        self.statusBar().showMessage("Loading the model…")
        self.search_ctl.warm_up(self.lib)

    def _model_ready(self, lib, info: ModelInfo) -> None:
        if lib is not self.lib:
            return
        self.model_info = info
        self.weights_missing_now = False
        self.update_empty_text()
        self._update_train_action()
        # The model, Qt and the libraries are now loaded and live as long as the app: keep the
        # collector from walking them again (a full collection of ~400k objects stalls every
        # thread for ~0.3 s, e.g. in the middle of indexing).
        gc.freeze()
        restore_torch_threads()  # only the search thread keeps its smaller torch thread count
        self.device_label.setText(info.device)
        self.statusBar().showMessage(f"Model ready on {info.device}", 4000)
        if info.stale:  # nothing re-extracts the library before the user agreed
            self.index_ctl.discard_pending()
            self.index_ctl.set_enabled(True)
            self._offer_reindex(info)
            return
        self.index_ctl.set_enabled(True)
        if self.lib.catalog.roots():
            self.auto_index = True
            self.index_ctl.request(reason="startup rescan")

    def _model_failed(self, lib, message: str, weights_missing: bool) -> None:
        if lib is not self.lib:
            return
        self.device_label.setText("model not loaded")
        if weights_missing:
            self.weights_missing(message)
        else:
            self.notify("Cannot load the model", message)

    def _offer_reindex(self, info: ModelInfo) -> None:
        self.auto_index = False
        self.reindex_box = self._ask(
            "Re-index the library?",
            f"{info.stale:,} photos were indexed with another model or input size. Searches use "
            f"the current model ({info.model_id}), so they must be indexed again.\n\n"
            "Re-index now? It runs in the background and can be paused.",
            self._reindex_answer,
        )

    def _ask(self, title: str, text: str, answer, *, cautious: bool = False) -> QMessageBox:
        """A window-modal Yes/No question (Yes/Cancel, Cancel the default, when `cautious`);
        `answer(yes)` runs when it closes. Returns the open box."""
        no = QMessageBox.StandardButton.Cancel if cautious else QMessageBox.StandardButton.No
        yes = QMessageBox.StandardButton.Yes
        box = QMessageBox(QMessageBox.Icon.Question, title, text, yes | no, self)
        box.setDefaultButton(no if cautious else yes)
        box.finished.connect(lambda code: answer(code == yes))
        box.open()
        return box

    def _reindex_answer(self, yes: bool) -> None:
        self.reindex_box = None
        if yes:
            self.reindex()
        else:
            self.statusBar().showMessage(
                "Automatic indexing is off until you re-index (Library ▸ Re-index).", 10000
            )

    def reindex(self) -> None:
        self.auto_index = True
        self.index_ctl.request(reason="re-index")

    # -- weights -----------------------------------------------------------------------------
    def weights_missing(self, message: str) -> None:
        dlg = self.weights_dialog
        if dlg is None:
            dlg = self.weights_dialog = WeightsDialog(self, get_spec(self.effective.backbone))
            dlg.file_chosen.connect(self.use_weights_file)
            dlg.backbone_chosen.connect(self.use_backbone)
            dlg.download_requested.connect(self.start_download)
            dlg.cancel_requested.connect(self.cancel_download)
            dlg.finished.connect(self._weights_dialog_closed)
        explicit = self.effective.weights_file()
        if explicit or self.opts.offline or self._download_failed:
            dlg.show_missing(message, can_download=not self.opts.offline)
        else:
            self.start_download()
        dlg.open()

    def _weights_dialog_closed(self, _code: int) -> None:
        self.cancel_download()
        self.weights_dialog = None
        if self.model_info is None and not self.weights_present():
            self.device_label.setText("no model weights")
            self.statusBar().showMessage(
                "No model weights: searching and indexing are off (File ▸ Settings ▸ Model)."
            )
            self.weights_missing_now = True
            self.update_empty_text()

    def ask_for_weights(self) -> None:
        """Library ▸ Get model weights…: the first-run dialog again (download or choose a file)."""
        if self.model_info is not None and self.weights_present():
            self.statusBar().showMessage("The model weights are present and loaded.", 4000)
            return
        self._download_failed = False  # offer a fresh download
        explicit = self.effective.weights_file()
        reason = f"file not found: {explicit}" if explicit else "not downloaded yet"
        self.weights_missing(offline_message(reason))

    def start_download(self) -> None:
        if self._download is not None:
            self.statusBar().showMessage("The previous download is still stopping…", 4000)
            return
        worker = DownloadWorker(self.effective.backbone)
        thread = worker_thread(worker, "imgfinder-download")
        # bound methods of this (GUI-thread) window: a lambda would run in the worker's thread
        worker.progress.connect(self._download_progress)
        worker.failed.connect(self._download_error)
        worker.succeeded.connect(self._downloaded)
        thread.finished.connect(self._download_thread_done)
        self._download = (thread, worker)
        if self.weights_dialog is not None:
            self.weights_dialog.show_downloading()
        thread.start()

    def _download_progress(self, done: int, total: int | None) -> None:
        if self.weights_dialog is not None:
            self.weights_dialog.set_progress(done, total)

    def cancel_download(self) -> None:
        """Stop at the next chunk; the dialog says so at once (a stalled connect may take longer)."""
        if self._download is not None:
            self._download[1].cancel()
            self._download_failed = True
            if self.weights_dialog is not None and self.weights_dialog.state == "downloading":
                self.weights_dialog.show_missing(
                    offline_message("download cancelled", self.effective.backbone)
                )

    def _download_thread_done(self) -> None:
        if self._download is not None:
            thread, worker = self._download
            self._download = None
            worker.deleteLater()
            thread.deleteLater()

    def _download_error(self, message: str) -> None:
        self._download_failed = True
        if self.weights_dialog is not None and self.weights_dialog.state == "downloading":
            self.weights_dialog.show_missing(message)

    def _downloaded(self, path: str) -> None:
        log.info("weights downloaded to %s", path)
        if self.weights_dialog is not None:
            self.weights_dialog.accept()
        if self.settings.weights or "weights" in self.opts.overrides:
            self.settings.weights = None
            self.opts.overrides.discard("weights")
            self.save_settings()
        self.reopen_library()

    def use_backbone(self, name: str) -> None:
        """Another backbone chosen by the user (the weights dialog's offer): a different model,
        so once it is loaded the usual re-index offer follows."""
        self.settings.backbone = name
        self.settings.weights = self.settings.head = self.settings.whitening = None
        for k in ("backbone", "weights", "head", "whitening"):
            self.opts.overrides.discard(k)
        self.save_settings()
        self.reopen_library()

    def use_weights_file(self, path: str) -> None:
        """A local weights file picked by the user: use it now and remember it."""
        self.settings.weights = path
        self.opts.overrides.discard("weights")
        self.save_settings()
        self.reopen_library()

    # -- folders and indexing ----------------------------------------------------------------
    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder to the library")
        if path:
            self.add_folder(path)

    def add_folder(self, path: str) -> None:
        """Add a library folder and start indexing it at once."""
        try:
            root = self.lib.add_root(path)
        except ImgfinderError as exc:
            self.notify("Cannot add this folder", str(exc))
            return
        self.statusBar().showMessage(f"Added {root}; indexing…", 5000)
        self.refresh_roots()
        self.auto_index = True
        self.index_ctl.request(reason=f"added {root}")
        if self.model_info is None:
            self.statusBar().showMessage("Indexing starts when the model is loaded.", 5000)

    def confirm_remove_folder(self, root: str | None = None) -> None:
        roots = [r.path for r in self.library_panel.roots]
        root = root or self.library_panel.current_root() or (roots[0] if len(roots) == 1 else None)
        if not root:
            text = (
                "Select the folder to remove in the library panel first."
                if roots
                else "The library has no folders to remove."
            )
            self.statusBar().showMessage(text, 4000)
            return
        self.remove_box = self._ask(
            "Remove folder from the library?",
            f"Forget {root} and its indexed photos?\n\nNo file on disk is touched; add the "
            "folder again to index it anew.",
            lambda yes: yes and self.remove_folder(root),
            cautious=True,
        )

    def remove_folder(self, root: str) -> None:
        """Forget a folder (after confirmation): indexing stops first, removal runs in a worker."""
        self.index_ctl.shutdown()
        lib = self.lib

        def removed(n) -> None:
            self.statusBar().showMessage(f"Removed {root} ({n:,} entries forgotten)", 6000)
            self.index_ctl.set_enabled(self.model_info is not None)
            self.refresh_roots()
            self.refresh_skipped()

        def failed(msg: str) -> None:
            self.index_ctl.set_enabled(self.model_info is not None)
            self.notify("Cannot remove folder", msg)

        self.tasks.run(lambda: lib.remove_root(root), removed, failed)

    def rescan(self) -> None:
        self.auto_index = True
        self.index_ctl.request(reason="rescan requested")

    def _auto_rescan(self, reason: str) -> None:
        if self.auto_index:
            self.index_ctl.request(reason=reason)

    def _index_progress(self, p: Progress) -> None:
        self.index_progress.set_progress(p)

    def _index_batch(self) -> None:
        if not self._roots_timer.isActive():
            self._roots_timer.start()

    def _index_finished(self, summary: IndexSummary | None) -> None:
        self.refresh_roots()
        self.refresh_skipped()
        if summary is None:
            return
        lib = self.lib

        def show(counts: dict) -> None:
            msg = run_summary_text(summary, counts.get("ok", 0), counts.get("failed", 0))
            if summary.missing_roots:
                msg += f" · {len(summary.missing_roots)} folder(s) not available, entries kept"
            self.statusBar().showMessage(msg, 10000)

        self.tasks.run(lambda: lib.catalog.counts(), show)
        if summary.indexed or summary.removed or summary.moved:
            self.refresh_results()

    def _index_failed(self, message: str) -> None:
        self.notify("Indexing stopped", message)

    # -- settings ----------------------------------------------------------------------------
    def open_settings(self) -> None:
        dlg = SettingsDialog(
            self.settings,
            self.effective,
            self.data_dir,
            self,
            library=lambda: self.lib,  # the library open when learning starts
            tasks=self.tasks,
        )
        dlg.accepted.connect(lambda: self.apply_settings(dlg.values()))
        self.settings_dialog = dlg
        dlg.open()

    def apply_settings(self, values: dict) -> None:
        eff = self.effective
        lib_changed = [k for k in LIBRARY_FIELDS if k in values and values[k] != getattr(eff, k)]
        for k, v in values.items():
            setattr(self.settings, k, v)
        for k in lib_changed:
            self.opts.overrides.discard(k)
        self.settings.normalise()
        self.save_settings()
        self.set_thumb_size(self.settings.thumb_size)
        self.watcher.set_rescan_minutes(self.settings.rescan_minutes)
        self.search_ctl.raw_pairs_as_one = bool(self.settings.raw_pairs_as_one)
        self.search_ctl.rerank = self.settings.rerank  # issue 18: search re-ranking
        if lib_changed:
            log.info("library settings changed (%s); reopening", ", ".join(lib_changed))
            self.reopen_library()
