"""Turning drops and clipboard contents into queries; fetching dropped web images (size-capped)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QMimeData, QUrl
from PySide6.QtGui import QImage

from imgfinder import __version__, paths
from imgfinder.core.decode import sniff_format
from imgfinder.errors import ImgfinderError
from imgfinder.gui.items import Query

log = logging.getLogger(__name__)

MAX_DOWNLOAD_BYTES = 50 << 20
DOWNLOAD_TIMEOUT_S = 20.0
_EXT = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "TIFF": ".tif"}


class FetchError(ImgfinderError):
    """A dropped or pasted web image could not be downloaded; the message says what to do."""


@dataclass
class Incoming:
    """What a drop or paste carried: a query, a web address to fetch, or a folder to add."""

    query: Query | None = None
    url: str | None = None
    folder: str | None = None


def from_mime(mime: QMimeData | None, how: str = "dropped") -> Incoming | None:
    """Local files first, then encoded image bytes, decoded image data, then web addresses.

    `how` ("dropped" or "pasted") names an image that has no file name of its own.
    """
    if mime is None:
        return None
    urls = list(mime.urls()) if mime.hasUrls() else []
    for u in urls:
        if u.isLocalFile():
            found = _local(u.toLocalFile())
            if found is not None:
                return found
    for fmt in mime.formats():
        if fmt.startswith("image/"):
            data = bytes(mime.data(fmt).data())
            if data and sniff_format(data[:32]) is not None:
                return Incoming(Query(label=f"{how} {fmt.split('/')[1].upper()} image", data=data))
    if mime.hasImage():
        img = mime.imageData()
        if isinstance(img, QImage) and not img.isNull():
            label = f"{how} image {img.width()}×{img.height()}"
            return Incoming(Query(label=label, image=img))
    for u in urls:
        if u.scheme() in ("http", "https"):
            return Incoming(url=u.toString())
    if mime.hasText():
        return from_text(mime.text())
    return None


def from_text(text: str) -> Incoming | None:
    """A pasted path, file:// URL or web address."""
    text = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not text:
        return None
    if text.startswith(("http://", "https://")):
        return Incoming(url=text)
    if text.startswith("file:"):
        text = QUrl(text).toLocalFile()
    return _local(os.path.expanduser(text))


def _local(path: str) -> Incoming | None:
    if os.path.isdir(path):
        return Incoming(folder=path)
    if os.path.isfile(path):
        return Incoming(Query(label=os.path.basename(path), path=path))
    return None


def downloads_dir() -> Path:
    d = paths.cache_dir() / "downloads"
    d.mkdir(parents=True, exist_ok=True)
    return d


def clean_downloads(max_age_s: float = 24 * 3600) -> None:
    """Drop images fetched for earlier queries (they are only query inputs, never library files)."""
    now = time.time()
    for f in downloads_dir().glob("*"):
        try:
            if now - f.stat().st_mtime > max_age_s:
                f.unlink()
        except OSError:
            pass


def fetch_url(url: str, *, offline: bool = False, max_bytes: int = MAX_DOWNLOAD_BYTES) -> str:
    """Download an image to a temporary file (run in a worker); FetchError says why not."""
    host = urllib.parse.urlsplit(url).hostname or url
    hint = "Save the image from your browser and drop the file instead."
    if offline:
        raise FetchError(f"Offline mode: the image at {host} cannot be downloaded. {hint}")
    req = urllib.request.Request(url, headers={"User-Agent": f"imgfinder/{__version__}"})
    try:
        with urllib.request.urlopen(req, timeout=DOWNLOAD_TIMEOUT_S) as resp:  # noqa: S310
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise FetchError(
                    f"The image at {host} is {int(length) / 1e6:.0f} MB, over the "
                    f"{max_bytes / 1e6:.0f} MB limit. {hint}"
                )
            chunks, total = [], 0
            while chunk := resp.read(1 << 16):
                total += len(chunk)
                if total > max_bytes:
                    raise FetchError(
                        f"The image at {host} is over the {max_bytes / 1e6:.0f} MB limit. {hint}"
                    )
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise FetchError(
            f"{host} answered {exc.code} {exc.reason}: cannot get the image."
        ) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise FetchError(
            f"Cannot download the image from {host}: no network connection ({reason}). {hint}"
        ) from None
    data = b"".join(chunks)
    fmt = sniff_format(data[:32])
    if fmt is None:
        raise FetchError(f"{host} did not send an image imgfinder can read. {hint}")
    fd, tmp = tempfile.mkstemp(prefix="query-", suffix=_EXT.get(fmt, ".img"), dir=downloads_dir())
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    log.info("downloaded query image %s (%d bytes) to %s", url, len(data), tmp)
    return tmp
