"""What the main window is made of that is not the window itself: its texts and layout helpers.

The empty grid's text for each state of the library, saving and restoring splitter and
window layouts (hex of Qt's saveState), and shortcut lists without repeats.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QByteArray
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFrame, QSplitter, QWidget

log = logging.getLogger(__name__)

READY_TEXT = (
    "Drop a photo on the window, paste one (Ctrl+V) or open one (Ctrl+O) to find similar photos "
    "in your library."
)
EMPTY_TEXT = (
    "Add a folder to your library (Ctrl+Shift+O), then drop a photo on the window, paste one "
    "(Ctrl+V) or open one (Ctrl+O) to find similar photos."
)
NOT_INDEXED_TEXT = (
    "Your folders are being indexed; once photos are indexed, drop a photo on the window, "
    "paste one (Ctrl+V) or open one (Ctrl+O) to find similar photos."
)
NO_WEIGHTS_TEXT = (
    "The model weights are missing, so your photos cannot be indexed or searched yet. "
    "Choose a weights file in File ▸ Settings… ▸ Model, or get them with "
    "Library ▸ Get model weights… when this computer is online."
)


def empty_grid_text(*, weights_missing: bool, folders: int, photos: int) -> str:
    """What the empty results grid says: the real next step, not always "add a folder"."""
    if weights_missing:
        return NO_WEIGHTS_TEXT
    if not folders:
        return EMPTY_TEXT
    return READY_TEXT if photos else NOT_INDEXED_TEXT


def to_hex(data: QByteArray) -> str:
    return bytes(data.toHex()).decode()


def restore_splitter(split: QSplitter, saved: str | None) -> bool:
    """Apply a saved `split.saveState()` (hex); anything unusable leaves the layout as it is.

    The state is tried on a stand-in splitter first: QSplitter.restoreState() accepts a
    truncated state that starts like a real one and then sets orientation 0 and a zero-width
    handle, which would leave the real splitter broken.
    """
    if not saved:
        return False
    state = QByteArray.fromHex(saved.encode("ascii", "replace"))
    probe = QSplitter(split.orientation())
    for _ in range(split.count()):
        probe.addWidget(QWidget())
    usable = probe.restoreState(state) and probe.orientation() == split.orientation()
    probe.deleteLater()
    if not usable or not split.restoreState(state):
        log.info("ignoring the saved layout of %s", split.objectName() or "a splitter")
        return False
    return True


def unique_shortcuts(keys) -> list[QKeySequence]:
    """Key sequences without repeats or empties: a standard key (e.g. Quit) is often the same
    as the explicit one given with it ("Ctrl+Q"), and one action holding a sequence twice
    makes Qt call the shortcut ambiguous and ignore it."""
    out: list[QKeySequence] = []
    for k in keys:
        seqs = (
            QKeySequence.keyBindings(k)
            if isinstance(k, QKeySequence.StandardKey)
            else [QKeySequence(k)]
        )
        for seq in seqs:
            if not seq.isEmpty() and all(seq != o for o in out):
                out.append(seq)
    return out


def separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.VLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line
