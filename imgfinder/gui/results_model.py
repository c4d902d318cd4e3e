"""QAbstractListModel over search results; data() never decodes, thumbnails arrive by signal."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QUrl,
    Slot,
)
from PySide6.QtGui import QColor, QPainter, QPixmap

from imgfinder.gui.items import ResultItem, thumb_key
from imgfinder.gui.thumbnails import BUCKETS, ThumbnailLoader, ThumbRequest

log = logging.getLogger(__name__)

ItemRole = Qt.ItemDataRole.UserRole + 1  # the ResultItem
ScoreRole = Qt.ItemDataRole.UserRole + 2  # float
PathRole = Qt.ItemDataRole.UserRole + 3  # str
ThumbStateRole = Qt.ItemDataRole.UserRole + 4  # "ready" | "loading" | "broken"

Index = QModelIndex | QPersistentModelIndex

DAY = 86_400.0
# (label, maximum age in seconds or None, older-than flag): the results' date filter
DATE_FILTERS = (
    ("Any date", None, False),
    ("Past week", 7 * DAY, False),
    ("Past month", 31 * DAY, False),
    ("Past year", 366 * DAY, False),
    ("Older than a year", 366 * DAY, True),
)
SORT_KEYS = (
    ("Best match", "score"),
    ("Newest first", "newest"),
    ("Oldest first", "oldest"),
    ("Folder, then name", "folder"),
)


def photo_date(item: ResultItem) -> float:
    """The date a result is sorted and filtered by (seconds since the epoch).

    The file's modification time for now; the one place to switch to the capture date once
    the catalog has it (EXIF DateTimeOriginal), falling back to this.
    """
    return item.mtime_ns / 1e9 if item.mtime_ns else 0.0


def photo_folder(item: ResultItem) -> str:
    return os.path.dirname(item.path)


def placeholder(size: int, broken: bool = False) -> QPixmap:
    """A neutral square shown until the thumbnail arrives (or when it cannot be decoded)."""
    pm = QPixmap(size, size)
    pm.fill(QColor(0, 0, 0, 0))
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(150, 150, 150, 60) if not broken else QColor(200, 80, 80, 60))
    p.drawRoundedRect(0, 0, size, size, 6, 6)
    p.end()
    return pm


class ResultsModel(QAbstractListModel):
    """All hits of the current search; `visible` are those passing the score and text filters."""

    def __init__(self, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self._all: list[ResultItem] = []
        self._rows: list[ResultItem] = []
        self._keys: list[str] = []
        self._rows_of_key: dict[str, list[int]] = {}
        self._bucket = BUCKETS[0]
        self._min_score = -1.0
        self._text = ""
        self._folder: str | None = None  # only results directly in this folder
        self._date = 0  # index into DATE_FILTERS
        self._sort = "score"
        self.now = None  # tests pin "now" for the date filter; None: the clock
        self._placeholders: dict[tuple[int, bool], QPixmap] = {}
        loader.ready.connect(self._thumb_ready)

    # -- content -----------------------------------------------------------------------
    def set_items(self, items: list[ResultItem]) -> None:
        self.loader.drop_pending()  # requests for the old results are stale now
        self.beginResetModel()
        self._all = list(items)
        self._apply_filter()
        self.endResetModel()

    def set_filter(
        self,
        min_score: float | None = None,
        text: str | None = None,
        *,
        folder: str | None | bool = False,
        date: int | None = None,
    ) -> None:
        """Change some filters (the others stay): `folder` None shows every folder."""
        if min_score is not None:
            self._min_score = float(min_score)
        if text is not None:
            self._text = text.strip().casefold()
        if folder is not False:
            self._folder = folder or None
        if date is not None:
            self._date = max(0, min(len(DATE_FILTERS) - 1, int(date)))
        self.beginResetModel()
        self._apply_filter()
        self.endResetModel()

    def set_bucket(self, bucket: int) -> None:
        """Thumbnails are decoded at `bucket` pixels from now on (the view scales them down)."""
        if bucket == self._bucket:
            return
        self._bucket = bucket
        self.loader.drop_pending()
        self._rebuild_keys()
        if self._rows:
            self.dataChanged.emit(
                self.index(0), self.index(len(self._rows) - 1), [Qt.ItemDataRole.DecorationRole]
            )

    @property
    def bucket(self) -> int:
        return self._bucket

    def set_sort(self, key: str) -> None:
        """ "score" (best match first), "newest", "oldest" or "folder" (then file name)."""
        if key not in {k for _, k in SORT_KEYS}:
            raise ValueError(f"unknown sort key {key!r}")
        self._sort = key
        self.beginResetModel()
        self._apply_filter()
        self.endResetModel()

    @property
    def sort_key(self) -> str:
        return self._sort

    def folders(self) -> list[str]:
        """The folders the current results are in, most results first."""
        count: dict[str, int] = {}
        for it in self._all:
            f = photo_folder(it)
            count[f] = count.get(f, 0) + 1
        return sorted(count, key=lambda f: (-count[f], f))

    def total_count(self) -> int:
        return len(self._all)

    def item(self, row: int) -> ResultItem | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def items(self) -> list[ResultItem]:
        return list(self._rows)

    def _apply_filter(self) -> None:
        text, lo, folder = self._text, self._min_score, self._folder
        _, age, older = DATE_FILTERS[self._date]
        now = self.now if self.now is not None else time.time()

        def date_ok(it: ResultItem) -> bool:
            if age is None:
                return True
            d = photo_date(it)
            return (now - d > age) if older else (d > 0 and now - d <= age)

        rows = [
            it
            for it in self._all
            if it.score >= lo
            and (not text or text in it.path.casefold())
            and (folder is None or photo_folder(it) == folder)
            and date_ok(it)
        ]
        if self._sort == "newest":
            rows.sort(key=photo_date, reverse=True)
        elif self._sort == "oldest":
            rows.sort(key=photo_date)
        elif self._sort == "folder":
            rows.sort(key=lambda it: (photo_folder(it).casefold(), os.path.basename(it.path)))
        self._rows = rows  # "score": the search's order, best match first
        self._rebuild_keys()

    def _rebuild_keys(self) -> None:
        self._keys = [thumb_key(it.identity(), self._bucket) for it in self._rows]
        self._rows_of_key = {}
        for row, key in enumerate(self._keys):
            self._rows_of_key.setdefault(key, []).append(row)

    # -- Qt model API ----------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return (
            Qt.ItemFlag.ItemIsEnabled
            | Qt.ItemFlag.ItemIsSelectable
            | Qt.ItemFlag.ItemIsDragEnabled
            | Qt.ItemFlag.ItemNeverHasChildren
        )

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        it = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return os.path.basename(it.path)
        if role == Qt.ItemDataRole.DecorationRole:
            return self._decoration(index.row(), it)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{it.path}\nsimilarity {it.score:.3f}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{os.path.basename(it.path)}, similarity {it.score:.2f}"
        if role == ItemRole:
            return it
        if role == ScoreRole:
            return it.score
        if role == PathRole:
            return it.path
        if role == ThumbStateRole:
            key = self._keys[index.row()]
            if self.loader.cached(key) is not None:
                return "ready"
            return "broken" if self.loader.broken(key) else "loading"
        return None

    def _decoration(self, row: int, it: ResultItem) -> QPixmap:
        key = self._keys[row]
        pm = self.loader.pixmap(ThumbRequest(key, it.path, self._bucket))
        if pm is not None:
            return pm
        broken = self.loader.broken(key) is not None
        if not broken:  # while zooming, a thumbnail of another size stands in
            for b in BUCKETS:
                if b != self._bucket:
                    other = self.loader.cached(thumb_key(it.identity(), b))
                    if other is not None:
                        return other
        ph = self._placeholders.get((self._bucket, broken))
        if ph is None:
            ph = self._placeholders[(self._bucket, broken)] = placeholder(self._bucket, broken)
        return ph

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes) -> QMimeData:
        mime = QMimeData()
        paths = [self._rows[i.row()].path for i in indexes if i.isValid()]
        mime.setUrls([QUrl.fromLocalFile(p) for p in paths])
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    @Slot(str)
    def _thumb_ready(self, key: str) -> None:
        for row in self._rows_of_key.get(key, ()):
            ix = self.index(row)
            self.dataChanged.emit(ix, ix, [Qt.ItemDataRole.DecorationRole])
