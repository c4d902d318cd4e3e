"""Application entry: QApplication, app icon, excepthook dialog + log, orderly thread shutdown."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

import imgfinder
from imgfinder import APP_NAME, paths
from imgfinder.config import DEFAULTS
from imgfinder.gui.settings import LaunchOptions
from imgfinder.logsetup import setup_logging

if TYPE_CHECKING:
    from imgfinder.gui.main_window import MainWindow

log = logging.getLogger(__name__)


DESKTOP_FILE_NAME = "io.github.imgfinder.ImgFinder"  # the installed .desktop file, sans suffix
ICON_NAME = "imgfinder"  # the freedesktop icon name (Icon= in the .desktop file)


def icon_path() -> Path | None:
    """resources/icons/imgfinder.svg: PyInstaller bundle, source tree, or inside the package."""
    pkg = Path(imgfinder.__file__).resolve().parent
    bases = [pkg.parent / "resources", pkg / "resources"]
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        bases.insert(0, Path(bundle) / "resources")
    for base in bases:
        p = base / "icons" / f"{ICON_NAME}.svg"
        if p.is_file():
            return p
    return None


def theme_icon() -> QIcon:
    """The icon installed for the desktop (hicolor theme), or an empty icon."""
    if not QIcon.hasThemeIcon(ICON_NAME):
        return QIcon()
    return QIcon.fromTheme(ICON_NAME)


def app_icon() -> QIcon:
    """The installed theme icon, else the bundled/source SVG (with its PNG sizes), else an empty
    icon (Qt then uses the platform default)."""
    icon = theme_icon()
    if not icon.isNull():
        log.debug("using the theme icon %r", ICON_NAME)
        return icon
    p = icon_path()
    if p is None:
        log.info("no app icon found; using the platform default")
        return QIcon()
    icon = QIcon(str(p))
    pngs = p.parent / "hicolor"
    for size in (16, 24, 32, 48, 64, 128, 256):
        png = pngs / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
        if png.is_file():
            icon.addFile(str(png))
    if icon.isNull():
        log.info("app icon %s could not be loaded", p)
    return icon


class ErrorReporter(QObject):
    """sys/threading excepthooks: log the traceback, show one dialog at a time, never crash."""

    report = Signal(str, str)

    def __init__(self, parent_widget: QWidget | None = None):
        super().__init__()
        self.parent_widget = parent_widget
        self.box: QMessageBox | None = None
        self.suppressed = 0
        self.report.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self._old_hook = sys.excepthook
        self._old_thread_hook = threading.excepthook

    def install(self) -> None:
        sys.excepthook = self.excepthook
        threading.excepthook = self._thread_hook

    def uninstall(self) -> None:
        sys.excepthook = self._old_hook
        threading.excepthook = self._old_thread_hook

    def excepthook(self, etype, value, tb) -> None:
        if issubclass(etype, KeyboardInterrupt):
            QApplication.quit()
            return
        log.error("uncaught exception", exc_info=(etype, value, tb))
        details = "".join(traceback.format_exception(etype, value, tb))
        self.report.emit(f"{etype.__name__}: {value}", details)

    def _thread_hook(self, args) -> None:
        if args.exc_type is SystemExit:
            return
        self.excepthook(args.exc_type, args.exc_value, args.exc_traceback)

    @Slot(str, str)
    def _show(self, summary: str, details: str) -> None:
        if self.box is not None and self.box.isVisible():
            self.suppressed += 1
            self.box.setInformativeText(f"{self.suppressed} more error(s) since; see the log.")
            return
        self.suppressed = 0
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "imgfinder: unexpected error",
            f"Something went wrong, but your library is safe.\n\n{summary}\n\n"
            f"The details are in {paths.log_dir() / 'imgfinder.log'}.",
            QMessageBox.StandardButton.Ok,
            self.parent_widget,
        )
        box.setDetailedText(details)
        box.setWindowModality(Qt.WindowModality.NonModal)
        self.box = box
        box.show()


def options_from_args(args: argparse.Namespace) -> LaunchOptions:
    """Values left at the CLI defaults do not override the saved settings."""

    def given(name: str):
        value = getattr(args, name, None)
        return None if value == DEFAULTS.get(name) else value

    return LaunchOptions(
        data_dir=getattr(args, "data_dir", None),
        backbone=given("backbone"),
        weights=given("weights"),
        head=given("head"),
        whitening=given("whitening"),
        device=given("device"),
        input_size=given("input_size"),
        index_backend=given("index_backend"),
        attention=given("attention"),
        pooling=given("pooling"),
        offline=bool(getattr(args, "offline", False)),
    )


def system_color_scheme(app: QApplication) -> str:
    """ "dark" or "light": what the desktop asks for (Qt's colour scheme, else GTK_THEME)."""
    forced = os.environ.get("IMGFINDER_THEME", "").strip().lower()
    if forced in ("dark", "light"):
        return forced
    scheme = app.styleHints().colorScheme()
    if scheme == Qt.ColorScheme.Dark:
        return "dark"
    if scheme == Qt.ColorScheme.Light:
        return "light"
    return "dark" if os.environ.get("GTK_THEME", "").lower().endswith(":dark") else "light"


def dark_palette() -> QPalette:
    """A dark Fusion palette for desktops that ask for dark but give Qt no palette of their own."""
    p = QPalette()
    role, group = QPalette.ColorRole, QPalette.ColorGroup
    colours = {
        role.Window: "#2b2b2b",
        role.WindowText: "#e6e6e6",
        role.Base: "#1f1f1f",
        role.AlternateBase: "#2f2f2f",
        role.ToolTipBase: "#3a3a3a",
        role.ToolTipText: "#f0f0f0",
        role.Text: "#e6e6e6",
        role.PlaceholderText: "#9a9a9a",
        role.Button: "#353535",
        role.ButtonText: "#e6e6e6",
        role.BrightText: "#ff6b6b",
        role.Light: "#4a4a4a",
        role.Midlight: "#3e3e3e",
        role.Mid: "#5a5a5a",
        role.Dark: "#181818",
        role.Shadow: "#000000",
        role.Highlight: "#3d7bd9",
        role.HighlightedText: "#ffffff",
        role.Link: "#7fb2ff",
    }
    for r, c in colours.items():
        p.setColor(r, QColor(c))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(group.Disabled, r, QColor("#7a7a7a"))
    return p


def apply_system_palette(app: QApplication) -> str:
    """Follow the desktop's light or dark choice, now and when it changes; returns which.

    Platform themes that supply their own palette (KDE, GNOME with a platform theme, macOS,
    Windows) are left alone when it already matches; otherwise Fusion with a dark or the
    standard light palette.
    """
    scheme = system_color_scheme(app)
    is_dark = app.palette().color(QPalette.ColorRole.Window).lightness() < 128
    if scheme == "dark" and not is_dark:
        app.setStyle("Fusion")
        app.setPalette(dark_palette())
    elif scheme == "light" and is_dark:
        app.setStyle("Fusion")
        app.setPalette(app.style().standardPalette())
    if not app.property("imgfinder_palette_hooked"):
        app.setProperty("imgfinder_palette_hooked", True)
        app.styleHints().colorSchemeChanged.connect(lambda _s: apply_system_palette(app))
    return scheme


def setup_app(args: argparse.Namespace) -> QApplication:
    """Data dir, logging and the QApplication with its names and icon (reused if it exists)."""
    if getattr(args, "data_dir", None):
        paths.set_data_dir(args.data_dir)
    setup_logging(getattr(args, "verbose", 0) or 0)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)  # also the X11 WM_CLASS: StartupWMClass=imgfinder
    app.setApplicationDisplayName("imgfinder")
    app.setOrganizationName(APP_NAME)
    app.setDesktopFileName(DESKTOP_FILE_NAME)  # Wayland app id: the desktop entry's icon/name
    icon = app_icon()
    if not icon.isNull():
        app.setWindowIcon(icon)
    apply_system_palette(app)
    return app


def start(args: argparse.Namespace) -> MainWindow:
    """Create and show the main window, and search for `args.open`'s first image (if any)."""
    from imgfinder.gui.main_window import MainWindow  # noqa: PLC0415 (after logging is set)

    app = setup_app(args)
    window = MainWindow(options_from_args(args), icon=app.windowIcon())
    window.show()
    window.open_on_start(list(getattr(args, "open", None) or []))
    return window


def run_app(args: argparse.Namespace) -> int:
    """`imgfinder gui [IMAGE...]`: run the desktop app until the window closes."""
    window = start(args)
    from imgfinder.core.index import _numba  # noqa: PLC0415 (numba itself loads later)

    _numba.preload()  # the LSH index's compiled kernels, on a background thread
    app = QApplication.instance()
    reporter = ErrorReporter(window)
    reporter.install()
    app.aboutToQuit.connect(window.shutdown)
    try:
        return int(app.exec())
    finally:
        reporter.uninstall()
        window.shutdown()
