"""User-facing error types; each carries enough context to print one clear line."""

from __future__ import annotations

from pathlib import Path


class ImgfinderError(Exception):
    """Base class for errors that are reported to the user without a traceback."""

    exit_code = 2


class DecodeError(ImgfinderError):
    """An image file could not be read or decoded; the file is recorded and skipped."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class WeightsUnavailableError(ImgfinderError):
    """Backbone weights are neither on disk nor downloadable."""

    exit_code = 3


class ModelMismatchError(ImgfinderError):
    """Stored vectors or an index were made by a different model than the one in use."""

    def __init__(self, message: str, stored: str = "", current: str = ""):
        self.stored = stored
        self.current = current
        super().__init__(message)


class IndexFormatError(ImgfinderError):
    """An index file is truncated, corrupt or of an unknown version."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class IndexStateError(ImgfinderError):
    """An index was used the wrong way (query before build, wrong dimension, ...)."""


class CatalogError(ImgfinderError):
    """The catalog could not be opened or is of an unknown schema."""


class CatalogDamagedError(CatalogError):
    """The catalog file is damaged (zero bytes, failed integrity check, unreadable pages)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"catalog {self.path} is damaged: {reason}")


class LibraryBusyError(ImgfinderError):
    """Another process holds the library's writer lock."""

    def __init__(self, message: str, pid: int | None = None):
        self.pid = pid
        super().__init__(message)
