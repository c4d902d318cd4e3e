"""Main-window behaviour around queries and results: drops, paste, history, grid actions."""

from __future__ import annotations

import html
import logging
import os
from collections.abc import Sequence

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMenu

from imgfinder.core import decode
from imgfinder.core.explain import MatchExplanation
from imgfinder.gui import desktop
from imgfinder.gui.image_view import HeatmapControls
from imgfinder.gui.items import Query, ResultItem, SearchResult
from imgfinder.gui.query import Incoming, fetch_url, from_mime
from imgfinder.gui.query_panel import can_accept
from imgfinder.gui.settings import THUMB_MAX, THUMB_MIN
from imgfinder.gui.thumbnails import bucket_for

log = logging.getLogger(__name__)

# every format the decoder reads, camera RAW and HEIC/AVIF included
IMAGE_FILTER = (
    "Images (" + " ".join(f"*{e}" for e in sorted(decode.IMAGE_EXTENSIONS)) + ");;All files (*)"
)
OPEN_AT_ONCE = 20  # "Open"/"Show in folder" on a big selection opens this many windows at most
PREFETCH_RESULTS = 8  # match maps of the top results are computed before they are clicked
NO_MATCH_TEXT = "Select a result to see where it matches the query."


def incoming_from_arg(arg: str) -> Incoming | None:
    """A command-line IMAGE (the .desktop entry's %U): a file, a file:// URL or a web address."""
    arg = arg.strip()
    if arg.lower().startswith(("http://", "https://")):
        return Incoming(url=arg)
    if arg.lower().startswith("file:"):
        path = QUrl(arg).toLocalFile()
    else:
        path = os.path.expanduser(arg)
    path = os.path.abspath(path) if path else ""
    if path and os.path.isfile(path):
        return Incoming(Query(label=os.path.basename(path), path=path))
    return None


def match_summary(e: MatchExplanation) -> str:
    """The compact score breakdown shown in the details panel."""
    s, sh = e.branch_scores, e.shares()
    return (
        f"<b>{e.score_name.capitalize()} {e.score:.4f}</b><br>"
        f"Attention (ECA/avg): {s['attention']:.4f} &nbsp;({100 * sh['attention']:.0f}%)<br>"
        f"Global (max): {s['global']:.4f} &nbsp;({100 * sh['global']:.0f}%)"
    )


class SearchMixin:
    """Mixed into MainWindow (which provides the panels, the controllers and `notify`)."""

    # -- queries -----------------------------------------------------------------------------
    def handle_incoming(self, found: Incoming | None) -> None:
        self._pending_open = None  # a drop or paste wins over a command-line image still waiting
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
        self._pending_open = None
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
        found = from_mime(QGuiApplication.clipboard().mimeData(), how="pasted")
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
        self.query_panel.set_folders(self.results_model.folders())
        self._explain_results(result)
        self._last_result = result
        self.update_result_header()
        n = len(result.items)
        if not n:
            self.query_panel.show_message(
                "No results: the library is empty or not indexed yet.", error=False
            )
        if selected is not None:
            for row, it in enumerate(self.results_model.items()):
                if it.path == selected.path:
                    self.results_view.setCurrentIndex(self.results_model.index(row))
                    break

    def result_header(self) -> str:
        """ "60 results in 120 ms", or "1 of 60 results shown · 120 ms" when filters hide some."""
        result = getattr(self, "_last_result", None)
        if result is None:
            return ""
        n, shown = len(result.items), self.results_model.rowCount()
        ms = f"{result.seconds * 1000:.0f} ms"
        if shown == n:
            return f"{n:,} result{'s' if n != 1 else ''} in {ms}"
        return f"{shown:,} of {n:,} results shown (filtered) · {ms}"

    def update_result_header(self) -> None:
        """Called on every new answer and every filter change, so the count is what is shown."""
        if getattr(self, "_last_result", None) is not None:
            self.query_panel.set_busy(self.result_header())

    def open_on_start(self, items: Sequence[str]) -> None:
        """`imgfinder gui IMAGE...`: search for the first one (once the model is ready)."""
        items = [str(x) for x in items or () if str(x).strip()]
        if not items:
            return
        if len(items) > 1:
            log.info("searching for %s; %d more ignored", items[0], len(items) - 1)
        found = incoming_from_arg(items[0])
        if found is None:
            self.query_panel.show_message(
                f"Cannot search with {items[0]}: it is not an image file or a web address."
            )
            return
        if self.model_info is None:  # the weights may still need a download or a file
            self._pending_open = found
            self.query_panel.show_message("Loading the model to search…", error=False)
        else:
            self.handle_incoming(found)

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

    # -- explanations ------------------------------------------------------------------------
    def _explain_model_ready(self, lib, _info) -> None:
        if lib is not self.lib:
            return
        lock = self.search_ctl.worker.busy  # the model is not re-entrant: one user at a time
        for w in (self.query_explain, self.match_view):
            w.set_extractor(
                lambda lib=lib: lib.extractor, lock=lock, mean=lambda lib=lib: lib.search_mean()
            )
        self._explain_ready = True
        if self._pending_open is not None:
            found, self._pending_open = self._pending_open, None
            self.handle_incoming(found)

    def _explain_results(self, result: SearchResult) -> None:
        """A new answer: explain its query (once per query and model) and prefetch the top hits."""
        if not self._explain_ready:
            return
        q = result.query
        if self._explained != (q, result.model_id):
            self._explained = (q, result.model_id)
            self.query_explain.set_query(q.source, label=q.label)
            self.match_view.set_query(q.source, label=q.label)
            self.match_summary.setText(NO_MATCH_TEXT)
            self.explain_pane.setCurrentWidget(self.query_explain)  # nothing selected yet
        self.match_view.prefetch([it.path for it in result.items[:PREFETCH_RESULTS]])

    def _result_selected(self, item: ResultItem | None) -> None:
        self.details.set_item(item)
        mv = self.match_view
        if self._explained is not None and item is None:
            if mv.current is not None or mv.busy():  # the empty state, not a stale pair
                q = self._explained[0]
                mv.set_query(q.source, label=q.label)
            self.match_summary.setText(NO_MATCH_TEXT)
        elif self._explained is not None:
            # No cache key: the widget's own (path + size + mtime) is what prefetch() used.
            mv.set_result(item.path, label=os.path.basename(item.path))
            self.match_summary.setText("Computing match maps…")
            self.explain_pane.setCurrentWidget(mv)
        self._update_export_action()

    def _match_explained(self, e: MatchExplanation) -> None:
        self.match_summary.setText(match_summary(e))
        self._update_export_action()

    def _explain_failed(self, message: str) -> None:
        """An explanation failed: say so, and do not leave an earlier one on screen."""
        self.statusBar().showMessage(f"Cannot explain: {message}", 8000)
        error = f"<span style='color:#b00020'>{html.escape(message)}</span>"
        if self.sender() is self.match_view:
            mv = self.match_view
            if mv.current is not None and self._explained is not None:
                q = self._explained[0]
                mv.set_query(q.source, label=q.label)  # clears the previous pair
                mv.score_label.setText("No match maps for this result.")
                mv.status.setText(error)
            self.match_summary.setText(f"No explanation: {html.escape(message)}")
        elif self.sender() is self.query_explain and self.query_explain.current is not None:
            self.query_explain.clear()  # the previous query's map
            self.query_explain.status.setText(error)
        self._update_export_action()

    def _sync_controls(self, src: HeatmapControls, dst: HeatmapControls) -> None:
        """Both panels show the same branch, opacity and toggle state."""
        if self._syncing_controls:
            return
        self._syncing_controls = True
        try:
            dst.set_heat_visible(src.heat_visible())
            dst.set_opacity(src.opacity())
            dst.set_branch(src.branch())
        finally:
            self._syncing_controls = False

    def _update_export_action(self) -> None:
        mv = self.match_view
        ready = self.details.item is not None and mv.current is not None and not mv.busy()
        self.export_action.setEnabled(ready)

    def export_explanation(self) -> None:
        """File ▸ Export explanation: the side-by-side view of the selected result as a PNG."""
        self._update_export_action()
        if not self.export_action.isEnabled():
            self.statusBar().showMessage("Select a result and wait for its match maps.", 4000)
            return
        out = self.match_view.export_explanation()
        if out is not None:
            self.statusBar().showMessage(f"Saved the explanation to {out}", 6000)

    # -- results -----------------------------------------------------------------------------
    def _result_menu(self, item: ResultItem, pos) -> None:
        menu = QMenu(self)
        n = len(self.results_view.selected_items())
        several = f" ({n} photos)" if n > 1 else ""
        menu.addAction("Search similar", lambda: self.search_similar(item))
        menu.addAction("Open" + several, self.open_selected)
        menu.addAction("Show in folder" + several, self.reveal_selected)
        menu.addAction("Copy path" + ("s" + several if n > 1 else ""), self.copy_selected_path)
        menu.popup(pos)
        self.result_menu = menu

    def copy_selected_path(self) -> None:
        """Copy the selected results' paths, one a line."""
        paths = [it.path for it in self.results_view.selected_items()]
        if not paths:
            self.statusBar().showMessage("Select one or more results first.", 4000)
            return
        desktop.copy_path("\n".join(paths))
        what = paths[0] if len(paths) == 1 else f"{len(paths)} paths"
        self.statusBar().showMessage(f"Copied {what}", 4000)

    def open_selected(self) -> None:
        """Open the selected results with the system's viewer (at most OPEN_AT_ONCE)."""
        items = self.results_view.selected_items()
        if not items:
            self.statusBar().showMessage("Select one or more results first.", 4000)
            return
        failed = [it.path for it in items[:OPEN_AT_ONCE] if not desktop.open_path(it.path)]
        if failed:
            self.statusBar().showMessage(f"No application could open {failed[0]}", 6000)
        elif len(items) > OPEN_AT_ONCE:
            self.statusBar().showMessage(
                f"Opened the first {OPEN_AT_ONCE} of {len(items)} selected photos.", 6000
            )

    def reveal_selected(self) -> None:
        """Show the selected results in the file manager (each folder once)."""
        items = self.results_view.selected_items()
        if not items:
            self.statusBar().showMessage("Select one or more results first.", 4000)
            return
        first_in_folder: dict[str, str] = {}
        for it in items:
            first_in_folder.setdefault(os.path.dirname(it.path), it.path)
        shown = list(first_in_folder.values())[:OPEN_AT_ONCE]
        if not all(desktop.show_in_folder(p) for p in shown):
            self.statusBar().showMessage("Could not open the file manager", 6000)

    def _view_options_changed(self) -> None:
        qp = self.query_panel
        self.results_model.set_filter(folder=qp.folder(), date=qp.date_filter())
        if self.results_model.sort_key != qp.sort_key():
            self.results_model.set_sort(qp.sort_key())

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
