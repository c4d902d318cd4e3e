"""Main-window behaviour around queries and results: drops, paste, history, grid actions."""

from __future__ import annotations

import logging
import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMenu

from imgfinder.gui import desktop
from imgfinder.gui.items import Query, ResultItem, SearchResult
from imgfinder.gui.query import Incoming, fetch_url, from_mime
from imgfinder.gui.query_panel import can_accept
from imgfinder.gui.settings import THUMB_MAX, THUMB_MIN
from imgfinder.gui.thumbnails import bucket_for

log = logging.getLogger(__name__)

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.tif *.tiff *.bmp *.gif *.heic);;All files (*)"


class SearchMixin:
    """Mixed into MainWindow (which provides the panels, the controllers and `notify`)."""

    # -- queries -----------------------------------------------------------------------------
    def handle_incoming(self, found: Incoming | None) -> None:
        if found is None:
            self.query_panel.show_message(
                "That is not an image, an image file or an image address."
            )
        elif found.folder:
            self.add_folder(found.folder)
        elif found.url:
            url = found.url
            self.query_panel.show_message(f"Downloading {url}…", error=False)
            offline = self.opts.offline
            self.tasks.run(
                lambda: fetch_url(url, offline=offline),
                lambda p: self.search_query(Query(label=url.rsplit("/", 1)[-1] or url, path=p)),
                lambda msg: self.query_panel.show_message(msg),
            )
        elif found.query is not None:
            self.search_query(found.query)

    def search_query(self, query: Query) -> None:
        self.query_panel.show_message("")
        self.query_panel.set_query(query)
        self.search_ctl.search(query)

    def search_similar(self, item: ResultItem | None) -> None:
        if item is not None:
            self.search_query(Query(label=os.path.basename(item.path), path=item.path))

    def search_selected(self) -> None:
        self.search_similar(self.results_view.current_item())

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Search with an image", "", IMAGE_FILTER)
        if path:
            self.search_query(Query(label=os.path.basename(path), path=path))

    def paste(self) -> None:
        found = from_mime(QGuiApplication.clipboard().mimeData())
        if found is None:
            self.query_panel.show_message(
                "The clipboard holds no image, image file or image address to search with."
            )
            return
        self.handle_incoming(found)

    def go_back(self) -> None:
        q = self.search_ctl.back()
        if q is not None:
            self.query_panel.set_query(q)

    def go_forward(self) -> None:
        q = self.search_ctl.forward()
        if q is not None:
            self.query_panel.set_query(q)

    def refresh_results(self) -> None:
        self.search_ctl.rerun()

    def _show_results(self, result: SearchResult) -> None:
        selected = self.results_view.current_item()
        self.results_model.set_items(result.items)
        n, shown = len(result.items), self.results_model.rowCount()
        text = f"{n:,} results in {result.seconds * 1000:.0f} ms"
        if shown != n:
            text += f" ({shown:,} shown)"
        self.query_panel.set_busy(text)
        if not n:
            self.query_panel.show_message(
                "No results: the library is empty or not indexed yet.", error=False
            )
        if selected is not None:
            for row, it in enumerate(self.results_model.items()):
                if it.path == selected.path:
                    self.results_view.setCurrentIndex(self.results_model.index(row))
                    break

    def _search_failed(self, message: str) -> None:
        self.query_panel.set_busy("")
        self.query_panel.show_message(message)

    def _preview_arrived(self, query: Query) -> None:
        if query is self.search_ctl.current:
            self.query_panel.set_query(query)

    def _update_history_actions(self) -> None:
        self.back_action.setEnabled(self.search_ctl.can_go_back())
        self.forward_action.setEnabled(self.search_ctl.can_go_forward())

    def _count_changed(self, k: int) -> None:
        self.settings.result_count = k
        self._save_timer.start()
        self.search_ctl.set_k(k)

    def _min_score_changed(self, v: float) -> None:
        self.settings.min_score = v
        self._save_timer.start()
        self.results_model.set_filter(min_score=v)

    # -- results -----------------------------------------------------------------------------
    def _result_menu(self, item: ResultItem, pos) -> None:
        menu = QMenu(self)
        menu.addAction("Search similar", lambda: self.search_similar(item))
        menu.addAction("Open", lambda: desktop.open_path(item.path))
        menu.addAction("Show in folder", lambda: desktop.show_in_folder(item.path))
        menu.addAction("Copy path", lambda: desktop.copy_path(item.path))
        menu.popup(pos)
        self.result_menu = menu

    def copy_selected_path(self) -> None:
        item = self.results_view.current_item()
        if item is not None:
            desktop.copy_path(item.path)
            self.statusBar().showMessage(f"Copied {item.path}", 4000)

    def focus_filter(self) -> None:
        self.query_panel.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.query_panel.filter_edit.selectAll()

    def delete_hint(self) -> None:
        self.statusBar().showMessage(
            "imgfinder never deletes photos from the results; nothing was changed.", 6000
        )

    def zoom(self, step: int) -> None:
        self.set_thumb_size(self.settings.thumb_size + 32 * step)

    def set_thumb_size(self, px: int) -> None:
        px = max(THUMB_MIN, min(THUMB_MAX, int(px)))
        self.settings.thumb_size = px
        self.results_view.set_thumb_size(px)
        self.results_model.set_bucket(bucket_for(px * self.devicePixelRatioF()))
        if hasattr(self, "_save_timer"):
            self._save_timer.start()

    # -- drops on the whole window ------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if can_accept(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if can_accept(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        found = from_mime(event.mimeData())
        event.acceptProposedAction() if found else event.ignore()
        self.handle_incoming(found)
