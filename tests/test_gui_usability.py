"""The window as a new user meets it: shortcuts, counts, closing while indexing, first run."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtGui import QAction, QKeySequence  # noqa: E402
from PySide6.QtWidgets import QApplication, QMenu  # noqa: E402

from imgfinder.gui.main_window import unique_shortcuts  # noqa: E402


def _menu_actions(w) -> list[QAction]:
    out = []
    for menu in w.menuBar().findChildren(QMenu):
        for a in menu.actions():
            if a.shortcuts() and a not in out:
                out.append(a)
    return out + [a for a in w.actions() if a.shortcuts() and a not in out]


def test_unique_shortcuts_drops_repeats(qapp):
    K = QKeySequence.StandardKey
    seqs = unique_shortcuts([K.Quit, "Ctrl+Q", "", "Alt+Left", "Alt+Left"])
    assert [s.toString() for s in seqs].count("Ctrl+Q") == 1
    assert [s.toString() for s in seqs].count("Alt+Left") == 1
    assert all(not s.isEmpty() for s in seqs)


def test_every_shortcut_triggers_its_action(qtbot, make_window):
    w = make_window()
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    actions = _menu_actions(w)
    names = {a.text().replace("&", "") for a in actions}
    assert {"Quit", "Back", "Forward", "Add folder…", "Open image…"} <= names
    owner: dict[str, str] = {}
    for a in actions:  # no key sequence is held twice, by one action or by two
        for s in a.shortcuts():
            key = s.toString()
            assert key not in owner, f"{key} is both {owner[key]} and {a.text()}"
            owner[key] = a.text()
    fired: list[str] = []
    for a in actions:
        a.triggered.disconnect()  # record the trigger instead of opening dialogs or quitting
        a.triggered.connect(lambda _c=False, t=a.text(): fired.append(t))
        a.setEnabled(True)
    for a in actions:
        for s in a.shortcuts():
            fired.clear()
            combo = s[0]
            w.results_view.setFocus()
            qtbot.keyClick(w.results_view, combo.key(), combo.keyboardModifiers())
            assert fired == [a.text()], f"{s.toString()} did not trigger {a.text()}"
    for key in ("Ctrl+Q", "Alt+Left", "Alt+Right"):
        assert key in owner


def test_shortcut_list_names_each_action_once(make_window):
    w = make_window(wait_model=False)
    lines = w.shortcut_lines()
    names = [line.split(":")[0] for line in lines]
    assert len(names) == len(set(names))
    assert any(line.startswith("Add folder…") for line in lines)
    assert not any(
        "not available" in a.text() for m in w.menuBar().findChildren(QMenu) for a in m.actions()
    )
