"""The Duplicates view: scan, review groups side by side, choose a keeper, move the rest to trash.

API (a self-contained widget; the main window only places it and passes the library):

    view = DuplicatesView(lambda: window.lib, parent, thumbnails=window.loader)
    window.add_view(view, "Duplicates")          # a tab (or window.add_dock(...))
    view.library_changed.connect(...)            # files left or came back: refresh results
    view.compare_requested.connect(...)          # (path_a, path_b): show match maps elsewhere
    view.shutdown()                              # before the app quits (waits for the scan)
    view.splitter                                # group list | review (the window saves it)

Signals: `compare_requested(str, str)`, `library_changed()`, `scan_finished(int groups)`,
`status_message(str)`. With `own_compare=True` (default) "Compare" also opens the match view
of gui/explain_view.py in a dialog when that module is available.
All heavy work is off the GUI thread: the scan in a QThread (`dupes_flow.DuplicateScan`), file
facts in the thread pool (`gui/jobs.py`), thumbnails through the shared ThumbnailLoader;
resolving and undoing are `dupes_flow`'s, the cards and the rule dialog `dupes_widgets`'. Moving the slider regroups the cached pairs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QThreadPool, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core import dupes
from imgfinder.core.types import count_text
from imgfinder.gui.dupes_flow import (
    DuplicateScan,
    qt_trash,
    reindex_then_scan,
    resolve_with_confirmation,
    undo_with_report,
)
from imgfinder.gui.dupes_widgets import THUMB, KeeperRuleDialog, MemberCard, esc
from imgfinder.gui.items import thumb_key
from imgfinder.gui.jobs import Jobs
from imgfinder.gui.thumbnails import ThumbnailLoader, ThumbRequest

log = logging.getLogger(__name__)

GROUP_LIST_MIN_WIDTH = 200  # narrower and the entries read "5 photos / image_1"
GROUP_LIST_WIDTH = 260
TIER_FILTERS = (
    ("All tiers", None),
    ("Exact duplicates", "exact"),
    ("Same photo", "copy"),
    ("Similar shots", "similar"),
)


class DuplicatesView(QWidget):
    """Duplicate groups of the library, largest first, with review and resolve actions."""

    compare_requested = Signal(str, str)
    library_changed = Signal()
    scan_finished = Signal(int)
    status_message = Signal(str)

    def __init__(
        self,
        library_provider: Callable[[], object | None],
        parent: QWidget | None = None,
        *,
        thumbnails: ThumbnailLoader | None = None,
        trash_fn: Callable[[str], str] = qt_trash,
        own_compare: bool = True,
    ):
        super().__init__(parent)
        self.library_provider = library_provider
        self.trash_fn = trash_fn
        self.own_compare = own_compare
        self.loader = thumbnails or ThumbnailLoader(self)
        self.loader.ready.connect(self._thumb_ready)
        self.pairs: dupes.PairList | None = None
        self.groups: list[dupes.DuplicateGroup] = []
        self.thresholds = dict(dupes.DEFAULT_THRESHOLDS)
        self.rule = dupes.KeeperRule()
        self.scan_count = 0
        self.scanner = DuplicateScan(self)
        self.scanner.progress.connect(self._on_progress)
        self.scanner.failed.connect(self._say)
        self.scanner.finished.connect(self._on_scanned)
        self._token = 0
        self._cards: list[MemberCard] = []
        self.suggested: dupes.KeeperChoice | None = None
        self._differs: set[str] = set()
        self._facts: list[dupes.FileFacts] = []
        self._facts_jobs = Jobs(self, pool=QThreadPool.globalInstance())
        self._facts_jobs.done.connect(self._facts_ready)
        self._save_timer = QTimer(self, singleShot=True, interval=500)
        self._save_timer.timeout.connect(self._save_thresholds)
        self._build()

    # -- layout ---------------------------------------------------------------------------------
    def _build(self) -> None:
        self.scan_button = QPushButton("Find duplicates")
        self.scan_button.clicked.connect(self.scan)
        self.tier_combo = QComboBox()
        for label, _ in TIER_FILTERS:
            self.tier_combo.addItem(label)
        self.tier_combo.currentIndexChanged.connect(lambda _i: self.regroup())
        self.copy_slider, self.copy_label = self._slider("copy")
        self.similar_slider, self.similar_label = self._slider("similar")
        self.rule_button = QPushButton("Keeper rule…")
        self.rule_button.clicked.connect(self.edit_rule)
        self.undo_button = QPushButton("Undo last resolution")
        self.undo_button.clicked.connect(self.undo_last)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(160)
        keep_room = self.progress.sizePolicy()
        keep_room.setRetainSizeWhenHidden(True)  # showing it must not widen the window
        self.progress.setSizePolicy(keep_room)
        self.progress.hide()
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)  # a long message never widens the window
        # two rows, so the view fits next to the docks in a 1280-pixel window
        row1 = QHBoxLayout()
        for w in (self.scan_button, self.tier_combo, self.progress):
            row1.addWidget(w)
        row1.addStretch(1)
        for w in (self.rule_button, self.undo_button):
            row1.addWidget(w)
        row2 = QHBoxLayout()
        for w in (
            QLabel("Same photo ≥"),
            self.copy_slider,
            self.copy_label,
            QLabel("   Similar shot ≥"),
            self.similar_slider,
            self.similar_label,
        ):
            row2.addWidget(w)
        row2.addStretch(1)
        top = QVBoxLayout()
        top.addLayout(row1)
        top.addLayout(row2)

        self.group_list = QListWidget()
        self.group_list.setMinimumWidth(GROUP_LIST_MIN_WIDTH)  # "5 photos · similar shot …"
        self.group_list.currentRowChanged.connect(self._show_group)
        self.rule_label = QLabel(self.rule.describe())
        self.rule_label.setWordWrap(True)
        self.reason_label = QLabel("“Find duplicates” scans the library.")
        self.reason_label.setWordWrap(True)
        self.cards_box = QWidget()
        self.cards_layout = QHBoxLayout(self.cards_box)
        self.cards_layout.addStretch(1)
        self.cards_scroll = scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.cards_box)
        self.keep_buttons = QButtonGroup(self)
        self.keep_buttons.idToggled.connect(self._keeper_toggled)
        self.resolve_button = QPushButton("Move others to trash…")
        self.resolve_button.clicked.connect(self.resolve_selected)
        self.distinct_button = QPushButton("Not duplicates")
        self.distinct_button.clicked.connect(lambda: self.mark_selected(dupes.DISTINCT))
        self.keep_all_button = QPushButton("Keep all")
        self.keep_all_button.clicked.connect(lambda: self.mark_selected(dupes.KEEP_BOTH))
        self.compare_combo = QComboBox()
        self.compare_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.compare_combo.setMinimumContentsLength(10)
        self.compare_combo.setToolTip("The photo to compare with the keeper")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Show where the keeper and the chosen photo match")
        self.compare_button.clicked.connect(self.compare_selected)
        decide = QHBoxLayout()
        for w in (self.resolve_button, self.distinct_button, self.keep_all_button):
            decide.addWidget(w)
        decide.addStretch(1)
        compare = QHBoxLayout()
        compare.addWidget(self.compare_button)
        compare.addWidget(self.compare_combo)
        compare.addStretch(1)
        actions = QVBoxLayout()
        actions.addLayout(decide)
        actions.addLayout(compare)
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.addWidget(self.rule_label)
        dl.addWidget(self.reason_label)
        dl.addWidget(scroll, 1)
        dl.addLayout(actions)
        self.splitter = split = QSplitter()  # the window saves and restores its state
        split.setObjectName("dupes-split")
        split.addWidget(self.group_list)
        split.addWidget(detail)
        split.setStretchFactor(1, 3)
        split.setCollapsible(0, False)
        split.setCollapsible(1, False)
        split.setSizes([GROUP_LIST_WIDTH, 900])
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addWidget(self.status_label)
        self._set_actions_enabled(False)

    def _slider(self, tier: str) -> tuple[QSlider, QLabel]:
        lo, hi = dupes.THRESHOLD_RANGES[tier]
        s = QSlider(Qt.Orientation.Horizontal)
        s.setRange(round(lo * 100), round(hi * 100))
        s.setValue(round(self.thresholds[tier] * 100))
        s.setMinimumWidth(90)  # a track to slide along even before the first scan
        s.setMaximumWidth(140)
        label = QLabel(f"{self.thresholds[tier]:.2f}")
        s.valueChanged.connect(lambda v, t=tier: self._threshold_changed(t, v))
        return s, label

    def _set_actions_enabled(self, on: bool) -> None:
        for w in (
            self.resolve_button,
            self.distinct_button,
            self.keep_all_button,
            self.compare_button,
            self.compare_combo,
        ):
            w.setEnabled(on)

    # -- library ---------------------------------------------------------------------------------
    def library(self):
        lib = self.library_provider()
        if lib is None:
            raise RuntimeError("no library is open")
        return lib

    def load_settings(self) -> None:
        """Read the keeper rule and thresholds saved in the library (called before a scan)."""
        lib = self.library()
        self.rule = dupes.load_rule(lib.catalog)
        self.rule_label.setText(self.rule.describe())
        self.thresholds = dupes.load_thresholds(lib.catalog)
        for tier, slider in (("copy", self.copy_slider), ("similar", self.similar_slider)):
            slider.blockSignals(True)
            slider.setValue(round(self.thresholds[tier] * 100))
            slider.blockSignals(False)
        self._update_labels()

    # -- scanning --------------------------------------------------------------------------------
    def scan(self) -> None:
        """Scan the library in a worker thread; the pair list is then cached for regrouping."""
        if self.scanner.running:
            return
        try:
            lib = self.library()
            self.load_settings()
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self._say(str(exc))
            return
        self._start(lambda cancel: dupes.scan(lib, cancel=cancel), "Scanning for duplicates…")

    def _start(self, factory: Callable[[threading.Event], object], message: str) -> None:
        self.scan_count += 1
        self.scan_button.setEnabled(False)
        self.progress.setRange(0, 0)
        self.progress.show()
        self._say(message)
        self.scanner.start(factory)

    def reset(self) -> None:
        """Forget the cached pairs (call when another library is opened)."""
        self.cancel_scan()
        self.pairs, self.groups = None, []
        self.group_list.clear()
        self._show_group(-1)
        self.reason_label.setText("“Find duplicates” scans the library.")

    def cancel_scan(self) -> None:
        self.scanner.cancel()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel a running scan and wait for its thread (call before the app quits)."""
        self.scanner.shutdown(timeout_ms)

    @Slot(object)
    def _on_progress(self, p) -> None:
        if p.total:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
        self.progress.setFormat(f"{p.message or p.stage} %p%")

    @Slot(object)
    def _on_scanned(self, pairs) -> None:
        self.scan_button.setEnabled(True)
        self.progress.hide()
        if pairs is not None:
            self.pairs = pairs
            self.regroup()
            text = f"{len(self.groups)} groups found in {pairs.seconds:.1f} s"
            missing = int(pairs.stats.get("without_vectors", 0) or 0)
            if missing:  # signed by `index --signatures-only`, no CNN vector yet
                text += (
                    f". {count_text(missing, 'photo')} without CNN vectors yet: exact copies "
                    "and the same photo only; similar shots come once they are indexed"
                )
            self._say(text)
        self.scan_finished.emit(len(self.groups))

    # -- grouping (instant, from the cached pairs) --------------------------------------------
    def current_tier(self) -> str | None:
        return TIER_FILTERS[self.tier_combo.currentIndex()][1]

    def _threshold_changed(self, tier: str, value: int) -> None:
        self.thresholds[tier] = value / 100
        self._update_labels()
        self.regroup()
        self._save_timer.start()

    def _update_labels(self) -> None:
        self.copy_label.setText(f"{self.thresholds['copy']:.2f}")
        self.similar_label.setText(f"{self.thresholds['similar']:.2f}")

    def _save_thresholds(self) -> None:
        lib = self.library_provider()
        if lib is not None:
            dupes.save_thresholds(lib.catalog, self.thresholds)

    def regroup(self) -> None:
        """Rebuild the group list from the cached pairs (no scanning).

        The selected group stays selected; when it is gone (resolved, marked, or no longer
        above the threshold) the selection moves on to the next group that is still listed,
        never back to the top of the list.
        """
        if self.pairs is None:
            return
        keep = self._selected_key()
        old_row = self.group_list.currentRow()
        following = [(g.tier, g.key()) for g in self.groups[max(old_row, 0) + 1 :]]
        tier = self.current_tier()
        if tier is None:  # most certain tier first, no two photos listed together twice
            self.groups = dupes.group_all(self.pairs, self.thresholds)
        else:
            self.groups = dupes.group(
                self.pairs, tier, self.thresholds[tier], copy_threshold=self.thresholds["copy"]
            )
        self.groups.sort(key=lambda g: (-len(g), dupes.TIERS.index(g.tier), -g.weakest))
        self.group_list.blockSignals(True)
        self.group_list.clear()
        for g in self.groups:
            label = dupes.TIER_LABELS[g.tier]
            item = QListWidgetItem(
                f"{len(g)} photos · {label} · weakest {g.weakest:.3f}\n"
                f"{Path(g.members[0].path).name}"
            )
            item.setToolTip("\n".join(g.paths))
            self.group_list.addItem(item)
        keys = [(g.tier, g.key()) for g in self.groups]
        row = self._next_row(keys, keep, following, old_row)
        self.group_list.setCurrentRow(row)
        self.group_list.blockSignals(False)
        self._show_group(row)

    @staticmethod
    def _next_row(keys: list, keep, following: list, old_row: int) -> int:
        """The row to select after regrouping: the same group, else the next one still listed."""
        if not keys:
            return -1
        if keep in keys:
            return keys.index(keep)
        for k in following:
            if k in keys:
                return keys.index(k)
        return min(max(old_row, 0), len(keys) - 1)

    def _selected_key(self):
        g = self.selected_group()
        return (g.tier, g.key()) if g is not None else None

    def selected_group(self) -> dupes.DuplicateGroup | None:
        row = self.group_list.currentRow()
        return self.groups[row] if 0 <= row < len(self.groups) else None

    # -- one group ------------------------------------------------------------------------------
    @Slot(int)
    def _show_group(self, row: int) -> None:
        for card in self._cards:
            self.keep_buttons.removeButton(card.keep)
            self.cards_layout.removeWidget(card)
            card.deleteLater()
        self._cards, self._facts, self.suggested = [], [], None
        self._token += 1
        g = self.groups[row] if 0 <= row < len(self.groups) else None
        self._set_actions_enabled(g is not None)
        self.compare_combo.clear()
        if g is None:
            self.reason_label.setText("No duplicate groups at these thresholds.")
            return
        self.reason_label.setText("Reading file details…")
        for i, m in enumerate(g.members):
            card = MemberCard(i, m.path, self.keep_buttons)
            self._cards.append(card)
            self.cards_layout.insertWidget(self.cards_layout.count() - 1, card)
            self._request_thumb(card, m.hash)
            self.compare_combo.addItem(Path(m.path).name, i)
        rule = self.rule
        self._facts_jobs.submit(lambda: dupes.suggest_keeper(g, rule), self._token)

    def _request_thumb(self, card: MemberCard, identity: str) -> None:
        req = ThumbRequest(thumb_key(identity, THUMB), card.path, THUMB)
        card.setProperty("thumb_key", req.key)
        pm = self.loader.pixmap(req)
        if pm is not None:
            self._show_thumb(card, pm)

    @staticmethod
    def _show_thumb(card: MemberCard, pm) -> None:
        card.thumb.setPixmap(
            pm.scaled(
                THUMB,
                THUMB,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )

    @Slot(str)
    def _thumb_ready(self, key: str) -> None:
        for card in self._cards:
            if card.property("thumb_key") == key:
                pm = self.loader.cached(key)
                if pm is None:
                    card.thumb.setText(self.loader.broken(key) or "no preview")
                else:
                    self._show_thumb(card, pm)

    @Slot(int, object)
    def _facts_ready(self, token: int, result) -> None:
        g = self.selected_group()
        if token != self._token or g is None:
            return  # an answer for a group no longer shown
        facts, choice = result
        self._facts = facts
        differs = {
            name
            for name, get in (
                ("folder", lambda f: f.folder),
                ("dims", lambda f: (f.pixels, f.picture_pixels)),
                ("format", lambda f: f.format),
                ("size", lambda f: f.size),
                ("date", lambda f: int(f.date)),
            )
            if len({get(f) for f in facts}) > 1
        }
        self._differs = differs
        keeper_card = self._cards[choice.keeper]
        self.cards_layout.removeWidget(keeper_card)  # the suggested keeper comes first, in view
        self.cards_layout.insertWidget(0, keeper_card)
        keeper_card.keep.setChecked(True)  # fills the cards (_keeper_toggled)
        self.cards_scroll.horizontalScrollBar().setValue(0)
        self.suggested = choice
        self.reason_label.setText(
            f"Suggested keeper: <b>{esc(Path(g.members[choice.keeper].path).name)}</b> "
            f"— {esc(choice.reason)}"
        )

    def _keeper_toggled(self, index: int, checked: bool) -> None:
        g = self.selected_group()
        if checked and g is not None and self._facts:
            for card, f in zip(self._cards, self._facts):
                card.set_facts(f, g.score(index, card.index), self._differs)

    def keeper_index(self) -> int:
        return max(0, self.keep_buttons.checkedId())

    # -- decisions ------------------------------------------------------------------------------
    def mark_selected(self, decision: str) -> None:
        """Remember "not duplicates" / "keep all" for the group; it is not shown again."""
        g = self.selected_group()
        if g is None or self.pairs is None:
            return
        hash_pairs = dupes.mark(self.library().catalog, g, decision)
        self.pairs = self.pairs.suppress(hash_pairs)
        self.regroup()
        self._say("Remembered: these photos will not be shown together again.")

    def compare_selected(self) -> None:
        g = self.selected_group()
        if g is None:
            return
        other = self.compare_combo.currentData()
        keeper = self.keeper_index()
        if other is None or other == keeper:
            other = 1 if keeper == 0 else 0
        a, b = g.members[keeper].path, g.members[other].path
        self.compare_requested.emit(a, b)
        if self.own_compare:
            self._open_match_view(a, b)

    def _open_match_view(self, a: str, b: str) -> None:
        try:
            from imgfinder.gui.explain_view import MatchView  # noqa: PLC0415
        except ImportError:
            return
        lib = self.library()
        dlg = QDialog(self)
        dlg.setWindowTitle(f"{Path(a).name} ↔ {Path(b).name}")
        view = MatchView(lambda: lib.extractor, dlg)
        QVBoxLayout(dlg).addWidget(view)
        dlg.resize(1000, 600)
        dlg.finished.connect(lambda _r: view.shutdown())
        view.set_pair(a, b)
        dlg.show()

    def edit_rule(self) -> None:
        dlg = KeeperRuleDialog(self.rule, self)
        if dlg.exec() != QDialog.DialogCode.Accepted:
            return
        self.rule = dlg.rule()
        lib = self.library_provider()
        if lib is not None:
            dupes.save_rule(lib.catalog, self.rule)
        self.rule_label.setText(self.rule.describe())
        self._show_group(self.group_list.currentRow())

    # -- resolving ------------------------------------------------------------------------------
    def resolve_selected(self) -> dupes.ResolveResult | None:
        """Ask, then move every member but the chosen keeper to the trash (journaled)."""
        g = self.selected_group()
        if g is None:
            return None
        keeper = g.members[self.keeper_index()].path
        result = resolve_with_confirmation(self, self.library(), g, keeper, self.trash_fn)
        if result is not None:
            self._after_moves([p for p, _ in result.moved])
        return result

    def _after_moves(self, moved: list[str]) -> None:
        if not moved:
            return
        if self.pairs is not None:
            self.pairs = self.pairs.without_paths(moved)
        self.regroup()
        self._say(f"Moved {len(moved)} file(s); “Undo last resolution” brings them back.")
        self.library_changed.emit()

    def undo_last(self) -> dupes.UndoResult | None:
        """Move the files of the last resolution back, then re-index and re-scan."""
        lib = self.library()
        result = undo_with_report(self, lib)
        if result.id is None:
            self._say("Nothing to undo.")
            return result
        self._say(f"Restored {len(result.restored)} file(s); re-indexing…")
        if result.restored:
            self.library_changed.emit()
            if not self.scanner.running:
                self._start(reindex_then_scan(lib), "Re-indexing restored files…")
        return result

    def _say(self, text: str) -> None:
        self.status_label.setText(text)
        self.status_message.emit(text)
