"""The pieces of the explanation views: a zoomable photo with a heat layer, and its controls.

`ImageView` (photo + stretched heat layer, wheel zoom, pan, double-click to fit),
`ColorLegend` (the colour bar) and `HeatmapControls` (toggle, opacity, branch), used by
`explain_view.QueryExplainPanel` and `explain_view.MatchView`.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap, QTransform
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFrame,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from imgfinder.core import colormap
from imgfinder.gui.items import pil_to_qimage

BRANCH_ITEMS = (
    ("fused", "Fused (both)"),
    ("attention", "Attention (ECA / avg)"),
    ("global", "Global (max)"),
)


class ImageView(QGraphicsView):
    """A photo with a heat layer on top; wheel zooms, drag pans, double-click fits.

    `zoom` is relative to fitting the photo in the view (1.0 = fit), so two views showing
    photos of different sizes can share it and both stay meaningful.
    """

    zoomed = Signal()
    MIN_ZOOM, MAX_ZOOM = 1.0, 40.0

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        # the window's own colour around the photo, not a grey box that dwarfs it
        self.setBackgroundBrush(self.palette().window())
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumSize(160, 120)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.photo_item = QGraphicsPixmapItem()
        self.photo_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.heat_item = QGraphicsPixmapItem(self.photo_item)
        self.heat_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.scene().addItem(self.photo_item)
        self.zoom = 1.0

    @property
    def fit_mode(self) -> bool:
        return self.zoom <= self.MIN_ZOOM

    def has_photo(self) -> bool:
        return not self.photo_item.pixmap().isNull()

    def set_photo(self, image: QImage | None) -> None:
        pix = QPixmap() if image is None else QPixmap.fromImage(image)
        self.photo_item.setPixmap(pix)
        self.heat_item.setPixmap(QPixmap())
        self.scene().setSceneRect(self.photo_item.sceneBoundingRect())
        self.set_zoom(1.0)

    def set_heat(self, image: QImage | None) -> None:
        pix = QPixmap() if image is None else QPixmap.fromImage(image)
        self.heat_item.setPixmap(pix)
        photo = self.photo_item.pixmap()
        if not pix.isNull() and not photo.isNull():
            sx, sy = photo.width() / pix.width(), photo.height() / pix.height()
            self.heat_item.setTransform(QTransform.fromScale(sx, sy))

    def set_heat_visible(self, visible: bool) -> None:
        self.heat_item.setVisible(visible)

    def set_heat_opacity(self, opacity: float) -> None:
        self.heat_item.setOpacity(max(0.0, min(1.0, opacity)))

    def fit_scale(self) -> float:
        """The view scale at which the whole photo just fits."""
        rect, vp = self.scene().sceneRect(), self.viewport().rect()
        if rect.isEmpty() or vp.isEmpty():
            return 1.0
        return max(min((vp.width() - 2) / rect.width(), (vp.height() - 2) / rect.height()), 1e-4)

    def set_zoom(self, zoom: float) -> None:
        """Zoom relative to fit, keeping the view's centre (fit recentres the photo)."""
        self.zoom = max(self.MIN_ZOOM, min(self.MAX_ZOOM, zoom))
        s = self.fit_scale() * self.zoom
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setTransform(QTransform.fromScale(s, s))
        self.setTransformationAnchor(anchor)
        if self.fit_mode:
            self.centerOn(self.scene().sceneRect().center())

    def zoom_by(self, factor: float) -> None:
        """Zoom around the mouse (wheel) or the centre; emits `zoomed`."""
        target = max(self.MIN_ZOOM, min(self.MAX_ZOOM, self.zoom * factor))
        if target == self.MIN_ZOOM:
            self.set_zoom(target)
        else:
            f = target / self.zoom
            self.scale(f, f)
            self.zoom = target
        self.zoomed.emit()

    def fit(self) -> None:
        self.set_zoom(1.0)
        self.zoomed.emit()

    def wheelEvent(self, event) -> None:  # noqa: N802
        delta = event.angleDelta().y()
        if delta:
            self.zoom_by(1.0015**delta)
            event.accept()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        self.fit()
        event.accept()

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self.set_zoom(self.zoom)


class ColorLegend(QWidget):
    """The heat colours from low to high, as in the exported PNG's colour bar."""

    def __init__(self, cmap: str = "inferno", parent: QWidget | None = None):
        super().__init__(parent)
        self.low, self.high = QLabel("low"), QLabel("high")
        self.bar = QLabel()
        self.bar.setFixedSize(96, 10)
        self.bar.setToolTip("Heatmap colours: how much each area adds to the match")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        for w in (self.low, self.bar, self.high):
            lay.addWidget(w)
        self.set_cmap(cmap)

    def set_cmap(self, cmap: str, signed: bool = False) -> None:
        self.cmap, self.signed = cmap, signed
        strip = colormap.colorbar(self.bar.width(), self.bar.height(), cmap, signed)
        self.bar.setPixmap(QPixmap.fromImage(pil_to_qimage(strip)))
        self.low.setText("against" if signed else "low")
        self.high.setText("for" if signed else "high")


class HeatmapControls(QWidget):
    """Show-heatmap toggle, opacity slider and branch selector; `changed` on any edit."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None, *, vertical: bool = False):
        super().__init__(parent)
        self.toggle = QCheckBox("&Heatmap")
        self.toggle.setChecked(True)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(50)
        self.opacity_slider.setAccessibleName("Heatmap opacity")
        self.opacity_slider.setToolTip("Heatmap opacity")
        self.opacity_slider.setMaximumWidth(140)
        self.branch_box = QComboBox()
        self.branch_box.setAccessibleName("Descriptor branch")
        self.branch_box.setToolTip(
            "Which part of the descriptor to map: the ECA-weighted average branch, "
            "the max (global) branch, or both"
        )
        for name, text in BRANCH_ITEMS:
            self.branch_box.addItem(text, name)
        self.opacity_label = QLabel("&Opacity")
        self.opacity_label.setBuddy(self.opacity_slider)
        self.legend = ColorLegend()
        if vertical:  # a narrow column beside a photo
            col = QVBoxLayout(self)
            col.setContentsMargins(0, 0, 0, 0)
            opacity = QHBoxLayout()
            opacity.addWidget(self.opacity_label)
            opacity.addWidget(self.opacity_slider, 1)
            for part in (self.toggle, opacity, self.branch_box, self.legend):
                (col.addLayout if isinstance(part, QHBoxLayout) else col.addWidget)(part)
        else:
            lay = QHBoxLayout(self)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.addWidget(self.toggle)
            lay.addWidget(self.opacity_label)
            lay.addWidget(self.opacity_slider)
            lay.addWidget(self.branch_box)
            lay.addWidget(self.legend)
            lay.addStretch(1)
        self.toggle.toggled.connect(self._toggled)
        self.opacity_slider.valueChanged.connect(self.changed)
        self.branch_box.currentIndexChanged.connect(self.changed)

    def _toggled(self, on: bool) -> None:
        self.opacity_slider.setEnabled(on)
        self.opacity_label.setEnabled(on)
        self.legend.setEnabled(on)
        self.changed.emit()

    def branch(self) -> str:
        return str(self.branch_box.currentData())

    def set_branch(self, branch: str) -> None:
        i = self.branch_box.findData(branch)
        if i < 0:
            raise ValueError(f"unknown branch {branch!r}")
        self.branch_box.setCurrentIndex(i)

    def opacity(self) -> float:
        return self.opacity_slider.value() / 100.0

    def set_opacity(self, value: float) -> None:
        self.opacity_slider.setValue(round(max(0.0, min(1.0, value)) * 100))

    def heat_visible(self) -> bool:
        return self.toggle.isChecked()

    def set_heat_visible(self, on: bool) -> None:
        self.toggle.setChecked(on)
