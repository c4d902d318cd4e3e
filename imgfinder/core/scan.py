"""Walk photo library roots and list image files, surviving loops, junk folders and bad disks."""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from imgfinder.core.decode import IMAGE_EXTENSIONS, UNSUPPORTED_IMAGE_FORMATS, sniff_format

log = logging.getLogger(__name__)

_WINDOWS = sys.platform == "win32"
_MACOS = sys.platform == "darwin"
_SNIFF_BYTES = 32

# Folders that operating systems, NAS boxes and tools fill with thumbnails, trash or metadata:
# indexing them would flood results with near-duplicates of the real photos. Compared lower-case.
_SKIP_DIRS = frozenset(
    name.lower()
    for name in (
        "$RECYCLE.BIN",
        "RECYCLER",
        "System Volume Information",
        "@eaDir",  # Synology thumbnails
        "#recycle",  # Synology recycle bin
        "#snapshot",
        "@Recycle",  # QNAP
        "@Recently-Snapshot",
        ".thumbnails",
        "__MACOSX",
        "lost+found",
        ".git",
        "node_modules",
    )
)

# Extensions that are certainly not photos we can decode: their content is never sniffed, which
# saves opening every video/sidecar on slow network shares. THM files are JPEG thumbnails of
# videos. Camera RAW files are photos (decode.IMAGE_EXTENSIONS lists them; rawpy decodes them).
_NOT_IMAGE_EXTENSIONS = frozenset(
    (
        ".txt .md .log .csv .json .xml .html .htm .ini .cfg .db .sqlite .pdf .doc .docx .xls .xlsx "
        ".zip .7z .rar .gz .tar .bz2 .xz .exe .dll .so .dylib .py .js .css .sh .bat "
        ".mp4 .mov .avi .mkv .mts .m2ts .m4v .3gp .wmv .mpg .mpeg .webm .lrv .thm "
        ".mp3 .wav .aac .m4a .flac .ogg .xmp .aae .pp3 .dop .lrcat .lrdata"
    ).split()
)


def _is_hidden(entry: os.DirEntry) -> bool:
    """Dot-names everywhere; also the Windows hidden attribute and the macOS hidden flag."""
    if entry.name.startswith("."):
        return True
    if _WINDOWS or _MACOS:
        try:
            st = entry.stat(follow_symlinks=False)  # cached by scandir on Windows
        except OSError:
            return False
        if _WINDOWS:
            return bool(getattr(st, "st_file_attributes", 0) & stat.FILE_ATTRIBUTE_HIDDEN)
        return bool(getattr(st, "st_flags", 0) & getattr(stat, "UF_HIDDEN", 0))
    return False


def _skip_dir(name: str) -> bool:
    lower = name.lower()
    return lower in _SKIP_DIRS or lower.startswith(".trash")


def _dir_key(path: str) -> tuple | None:
    """Identity of a directory (device, inode) so every directory is entered once: stops loops."""
    try:
        st = os.stat(path)
    except OSError as exc:
        log.warning("cannot access folder %s: %s", path, exc.strerror or exc)
        return None
    if st.st_ino:
        return (st.st_dev, st.st_ino)
    # Some file systems (FAT, certain network shares on Windows) report no inode numbers.
    return ("path", os.path.normcase(os.path.realpath(path)))


def _looks_like_image(path: str) -> bool:
    """Sniff files whose extension says nothing, e.g. 'IMG_0001' or 'photo.dat'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:
        log.debug("cannot sniff %s: %s", path, exc)
        return False
    return sniff_format(head) is not None


def _is_image_name(path: str) -> bool | None:
    """True/False when the extension decides, None when the content must be sniffed."""
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGE_EXTENSIONS or ext in UNSUPPORTED_IMAGE_FORMATS:
        return True  # an unsupported one is listed so that it is recorded as skipped, with why
    if ext in _NOT_IMAGE_EXTENSIONS:
        return False
    return None


def _list_dir(path: str) -> list[os.DirEntry]:
    """Sorted entries of one directory; an unreadable one is logged and treated as empty."""
    entries: list[os.DirEntry] = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                entries.append(entry)
    except OSError as exc:
        # Keep whatever was listed before an I/O error half-way (e.g. a flaky network share).
        log.warning("cannot read folder %s: %s", path, exc.strerror or exc)
    entries.sort(key=lambda e: (e.name.casefold(), e.name))
    return entries


def _as_root_list(roots: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Accept one root or many (a bare string must not be iterated character by character)."""
    if isinstance(roots, (str, bytes, os.PathLike)):
        roots = [roots]
    return [os.path.abspath(os.path.expanduser(os.fsdecode(r))) for r in roots]


def iter_image_files(
    roots: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    follow_symlinks: bool = True,
    cancel: threading.Event | None = None,
) -> Iterator[Path]:
    """Yield absolute paths of image files under `roots`, in a deterministic (sorted) order.

    The extension decides when it can (fast, and a broken '.jpg' is still yielded so the decoder
    can record why it failed); unknown or missing extensions are decided by sniffing 32 bytes.
    Hidden entries and system/NAS/trash folders are skipped below a root (a root itself is
    always honoured). Each directory is entered once, which makes symlink loops and overlapping
    roots harmless. With follow_symlinks=False symlinked files and folders are ignored.
    A root that is a file yields that file; a missing root is logged and skipped (use
    root_available to report it). `cancel` is checked once per directory.
    """
    visited: set[tuple] = set()
    root_list = _as_root_list(roots)
    # Files given as roots are yielded where they are listed and skipped inside walked folders,
    # so overlapping roots never produce a path twice (folders are deduplicated by `visited`).
    file_roots = {r for r in root_list if os.path.isfile(r)}
    done_files: set[str] = set()
    for root in root_list:
        if cancel is not None and cancel.is_set():
            return
        if root in file_roots:
            if root not in done_files:
                done_files.add(root)
                yield Path(root)
            continue
        if not os.path.isdir(root):
            log.warning("library folder not available: %s", root)
            continue
        key = _dir_key(root)
        if key is None or key in visited:
            continue
        visited.add(key)
        yield from _walk(root, visited, file_roots, follow_symlinks, cancel)


def _walk(
    root: str,
    visited: set[tuple],
    file_roots: set[str],
    follow_symlinks: bool,
    cancel: threading.Event | None,
) -> Iterator[Path]:
    """Depth-first, pre-order walk with an explicit stack (no recursion limit on deep trees)."""
    stack: list[Iterator[os.DirEntry]] = [iter(_list_dir(root))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if _is_hidden(entry):
            continue
        try:
            is_link = entry.is_symlink()
            if is_link and not follow_symlinks:
                continue
            is_dir = entry.is_dir(follow_symlinks=True)
            is_file = not is_dir and entry.is_file(follow_symlinks=True)
        except OSError as exc:
            log.debug("cannot stat %s: %s", entry.path, exc)
            continue
        if is_dir:
            if _skip_dir(entry.name):
                continue
            if cancel is not None and cancel.is_set():
                return
            key = _dir_key(entry.path)
            if key is None or key in visited:
                continue  # a symlink loop, or a folder already scanned via another path
            visited.add(key)
            stack.append(iter(_list_dir(entry.path)))
        elif is_file:  # FIFOs, sockets and devices are never opened
            decided = _is_image_name(entry.name)
            if decided is None:
                decided = _looks_like_image(entry.path)
            if decided and entry.path not in file_roots:
                yield Path(entry.path)


def root_available(root: str | os.PathLike) -> bool:
    """True if the root is a directory we can list now (an unplugged drive or offline share: False)."""
    path = os.path.expanduser(os.fsdecode(root))
    try:
        if not os.path.isdir(path):
            return False
        with os.scandir(path) as it:
            next(it, None)
    except OSError:
        return False
    return True
