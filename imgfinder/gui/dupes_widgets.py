"""The Duplicates view's parts: a member's card (thumbnail and file facts) and the keeper-rule dialog."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core import dupes

THUMB = 192


class KeeperRuleDialog(QDialog):
    """Edit the keeper rule: drag criteria and formats into order, list preferred folders."""

    def __init__(self, rule: dupes.KeeperRule, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keeper rule")
        self.criteria = self._list(rule.criteria)
        self.formats = self._list(rule.formats)
        self.folders = QListWidget()
        self.folders.addItems(list(rule.preferred_folders))
        add, remove = QPushButton("Add folder…"), QPushButton("Remove")
        add.clicked.connect(self._add_folder)
        remove.clicked.connect(
            lambda: [
                self.folders.takeItem(self.folders.row(i)) for i in self.folders.selectedItems()
            ]
        )
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Criteria, first difference decides (drag to reorder):"))
        lay.addWidget(self.criteria)
        lay.addWidget(QLabel("Format preference, best first:"))
        lay.addWidget(self.formats)
        lay.addWidget(QLabel("Preferred folders, best first:"))
        lay.addWidget(self.folders)
        row = QHBoxLayout()
        row.addWidget(add)
        row.addWidget(remove)
        lay.addLayout(row)
        box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        lay.addWidget(box)

    @staticmethod
    def _list(values) -> QListWidget:
        w = QListWidget()
        w.addItems(list(values))
        w.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        w.setMaximumHeight(120)
        return w

    def _add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Preferred folder")
        if folder:
            self.folders.addItem(folder)

    def rule(self) -> dupes.KeeperRule:
        def items(w: QListWidget) -> tuple[str, ...]:
            return tuple(w.item(i).text() for i in range(w.count()))

        return dupes.KeeperRule(items(self.criteria), items(self.formats), items(self.folders))


class MemberCard(QFrame):
    """One photo of a group: thumbnail, keep button and the facts that tell copies apart."""

    def __init__(self, index: int, path: str, buttons: QButtonGroup):
        super().__init__()
        self.index, self.path = index, path
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.thumb = QLabel("…")
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.keep = QRadioButton("Keep this one")
        buttons.addButton(self.keep, index)
        self.info = QLabel(Path(path).name)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setWordWrap(True)
        self.info.setToolTip(path)
        self.info.setFixedWidth(THUMB)
        lay = QVBoxLayout(self)
        lay.addWidget(self.thumb)
        lay.addWidget(self.keep)
        lay.addWidget(self.info)
        lay.addStretch(1)

    def set_facts(self, facts: dupes.FileFacts, score: float, differs: set[str]) -> None:
        def field(name: str, text: str) -> str:
            return f"<b>{text}</b>" if name in differs else text

        lines = [
            f"<b>{esc(Path(facts.path).name)}</b>",
            field("folder", esc(facts.folder)),
            field("dims", facts.picture_text()) + " · " + field("format", facts.format or "?"),
            field("size", _size(facts.size)) + " · " + field("date", facts.date_text()),
            f"{facts.date_source}; similarity to keeper {score:.3f}",
        ]
        if not facts.exists:
            lines.append("<span style='color:#b00020'>missing</span>")
        self.info.setText("<br>".join(lines))


def esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB"
