"""The main window's menu bar: every action with its shortcuts, in one place.

The actions the window enables and disables (export, back/forward, train, ...) are kept as
its attributes (`w.export_action`, ...); the slots are the window's, its search pane's or
its controllers' public methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QMessageBox

from imgfinder.gui.window_parts import unique_shortcuts

if TYPE_CHECKING:
    from imgfinder.gui.main_window import MainWindow


def _act(w: QMainWindow, menu: QMenu | None, text: str, slot, *keys, tip: str = "") -> QAction:
    """An action with its shortcuts; `menu` None: a window-wide shortcut not in a menu."""
    a = QAction(text, w)
    seqs = unique_shortcuts(keys)
    if seqs:
        a.setShortcuts(seqs)
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    if tip:
        a.setStatusTip(tip)
    a.triggered.connect(lambda _checked=False: slot())
    if menu is None:
        w.addAction(a)
    else:
        menu.addAction(a)
    return a


def build_menus(w: MainWindow) -> None:
    mb = w.menuBar()
    m = mb.addMenu("&File")
    K = QKeySequence.StandardKey
    w.open_action = _act(w, m, "&Open image…", w.search.choose_image, K.Open)
    w.paste_action = _act(w, m, "&Paste image", w.search.paste, K.Paste)
    w.export_action = _act(
        w,
        m,
        "&Export explanation…",
        w.search.export_explanation,
        "Ctrl+E",
        tip="Save the query and the selected result with their match maps as a PNG",
    )
    w.export_action.setEnabled(False)
    m.addSeparator()
    w.add_folder_action = _act(w, m, "&Add folder…", w.choose_folder, "Ctrl+Shift+O")
    _act(w, m, "&Settings…", w.open_settings, K.Preferences, "Ctrl+,")
    m.addSeparator()
    _act(w, m, "&Quit", w.close, K.Quit, "Ctrl+Q")

    m = mb.addMenu("&Edit")
    _act(w, m, "&Copy paths", w.search.copy_selected_path, "Ctrl+Shift+C")
    _act(w, m, "Select &all results", w.results_view.selectAll, K.SelectAll)
    w.find_action = _act(w, m, "&Filter results", w.search.focus_filter, K.Find)
    # the Delete key explains why nothing is deleted; it is no menu entry of its own
    w.delete_action = _act(w, None, "Delete", w.search.delete_hint, K.Delete)

    m = mb.addMenu("&Go")
    w.back_action = _act(w, m, "&Back", w.search.go_back, "Alt+Left", K.Back)
    w.forward_action = _act(w, m, "&Forward", w.search.go_forward, "Alt+Right", K.Forward)
    m.addSeparator()
    _act(w, m, "&Search similar", w.search.search_selected, "Ctrl+Return")
    _act(w, m, "&Open with system viewer", w.search.open_selected, "Shift+Return")
    _act(w, m, "Show in &folder", w.search.reveal_selected, "Ctrl+Shift+R")
    _act(w, m, "Focus &results", w.results_view.setFocus, "F6")

    m = mb.addMenu("&Library")
    m.addAction(w.add_folder_action)
    _act(w, m, "&Remove folder…", w.confirm_remove_folder)
    _act(w, m, "Re&scan", w.rescan, "F5")
    _act(w, m, "Re-&index", w.reindex)
    m.addSeparator()
    w.pause_action = _act(w, m, "&Pause/resume indexing", w.toggle_pause, "Ctrl+Shift+P")
    w.cancel_action = _act(w, m, "&Cancel indexing", w.index_ctl.cancel)
    _act(w, m, "S&kipped files", w.show_skipped, "Ctrl+Shift+K")
    w.get_weights_action = _act(
        w,
        m,
        "Get model &weights…",
        w.ask_for_weights,
        tip="Download the model weights or choose a weights file",
    )
    m.addSeparator()
    _act(
        w,
        m,
        "Find &duplicates",
        w.find_duplicates,
        "Ctrl+Shift+D",
        tip="Scan the library for exact copies, the same photo and similar shots",
    )
    w.train_action = _act(
        w,
        m,
        "&Train model…",
        w.open_train_dialog,
        tip="Fine-tune the model on a folder of your photos (runs in the background)",
    )

    w.view_menu = m = mb.addMenu("&View")
    _act(w, m, "Zoom &in", lambda: w.search.zoom(1), K.ZoomIn, "Ctrl+=")
    _act(w, m, "Zoom &out", lambda: w.search.zoom(-1), K.ZoomOut)
    _act(w, m, "&Reset zoom", lambda: w.search.set_thumb_size(160), "Ctrl+0")
    m.addSeparator()
    for dock in (w.library_dock, w.details_dock, w.skipped_dock):
        m.addAction(dock.toggleViewAction())

    m = mb.addMenu("&Help")
    _act(w, m, "&Keyboard shortcuts", lambda: show_shortcuts(w), K.HelpContents)
    _act(w, m, "&About imgfinder", lambda: show_about(w))
    w.query_panel.back_button.setDefaultAction(w.back_action)
    w.query_panel.forward_button.setDefaultAction(w.forward_action)
    w._update_history_actions()


def shortcut_lines(w: QMainWindow) -> list[str]:
    """ "Action: keys" for every menu action with a shortcut, each action once."""
    lines, seen = [], set()
    for menu in w.menuBar().findChildren(QMenu):
        for a in menu.actions():
            keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts()]
            keys = [k for k in keys if k]
            if keys and id(a) not in seen:
                seen.add(id(a))
                lines.append(f"{a.text().replace('&', '')}: {', '.join(keys)}")
    return lines


def show_shortcuts(w: QMainWindow) -> None:
    QMessageBox.information(w, "Keyboard shortcuts", "\n".join(shortcut_lines(w)))


def show_about(w: MainWindow) -> None:
    from imgfinder import __version__  # noqa: PLC0415

    QMessageBox.about(
        w,
        "About imgfinder",
        f"imgfinder {__version__}\nFind similar photos and duplicates in your folders.\n\n"
        f"Data folder: {w.data_dir}",
    )
