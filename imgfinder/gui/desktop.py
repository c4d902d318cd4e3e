"""Handing files to the desktop: open with the default app, show in the file manager, copy path."""

from __future__ import annotations

import logging
import os
import shutil
import sys

from PySide6.QtCore import QProcess, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication

log = logging.getLogger(__name__)


def open_path(path: str) -> bool:
    """Open a file or folder with the desktop's default application."""
    ok = QDesktopServices.openUrl(QUrl.fromLocalFile(path))
    if not ok:
        log.warning("the desktop could not open %s", path)
    return ok


def show_in_folder(path: str) -> bool:
    """Reveal the file in the file manager (selected where the platform allows it)."""
    path = os.path.abspath(path)
    if sys.platform == "win32":
        return QProcess.startDetached("explorer.exe", [f"/select,{os.path.normpath(path)}"])[0]
    if sys.platform == "darwin":
        return QProcess.startDetached("open", ["-R", path])[0]
    folder = os.path.dirname(path)
    if shutil.which("dbus-send") and os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        # freedesktop FileManager1.ShowItems (Nautilus, Dolphin, Nemo, Thunar...) selects the
        # file; asynchronously, falling back to opening the folder when no file manager answers.
        proc = QProcess(QGuiApplication.instance())
        uri = QUrl.fromLocalFile(path).toString()

        def done(code: int, _status=None) -> None:
            if code != 0:
                open_path(folder)
            proc.deleteLater()

        proc.finished.connect(done)
        proc.start(
            "dbus-send",
            [
                "--session",
                "--print-reply",
                "--reply-timeout=3000",
                "--dest=org.freedesktop.FileManager1",
                "/org/freedesktop/FileManager1",
                "org.freedesktop.FileManager1.ShowItems",
                f"array:string:{uri}",
                "string:",
            ],
        )
        return True
    return open_path(folder)


def copy_path(path: str) -> None:
    QGuiApplication.clipboard().setText(path)
