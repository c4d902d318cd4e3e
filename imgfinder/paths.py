"""Every directory imgfinder uses comes from here (platformdirs), honouring overrides.

Precedence: an explicit `set_data_dir()` (the CLI's --data-dir), then the
IMGFINDER_DATA_DIR environment variable, then platformdirs' user data dir.
Cache and logs live under the data directory when it is overridden, so one
override (e.g. a test's tmp_path) redirects everything. `DataDir` is the one object that
derives every folder from a data directory; a Library holds one (`Library.dirs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from imgfinder import APP_NAME

_override: Path | None = None
JOURNAL_NAME = "dupes-journal.jsonl"  # the duplicate finder's journal (core/dupes/trash.py)


def set_data_dir(path: str | os.PathLike | None) -> None:
    """Override the data directory for this process (None restores the default)."""
    global _override
    _override = Path(path).expanduser().resolve() if path else None


def _overridden() -> Path | None:
    if _override is not None:
        return _override
    env = os.environ.get("IMGFINDER_DATA_DIR")
    return Path(env).expanduser().resolve() if env else None


@dataclass(frozen=True)
class DataDir:
    """One data directory and every folder that follows it: catalog, vectors, index, models,
    cache, logs and the duplicate finder's journal. The one answer to "where does X live":
    `current()` is the process's (the functions below), a Library holds its own
    (`Library.dirs`), the same object when the library was opened on the current one.

    `own_cache`: the cache lives under the data directory (an explicit directory: a test's
    tmp_path, `--data-dir`), else in the platform's cache folder.
    """

    root: Path
    own_cache: bool = True

    @classmethod
    def at(cls, path: str | os.PathLike) -> DataDir:
        return cls(Path(path).expanduser().resolve())

    def _sub(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def models(self) -> Path:
        """Downloaded backbone weights, trained heads and whitenings."""
        return self._sub("models")

    @property
    def cache(self) -> Path:
        if self.own_cache:
            return self._sub("cache")
        d = Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def logs(self) -> Path:
        return self._sub("logs")

    @property
    def index(self) -> Path:
        return self._sub("index")

    @property
    def vectors(self) -> Path:
        return self._sub("vectors")

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def journal(self) -> Path:
        """The duplicate finder's resolution journal (core/dupes/trash.py)."""
        return self.root / JOURNAL_NAME


def current() -> DataDir:
    """The process's data directory: `set_data_dir`, else IMGFINDER_DATA_DIR, else the
    platform's user data folder (with the platform's cache folder)."""
    base = _overridden()
    if base is not None:
        dirs = DataDir(base)
    else:
        dirs = DataDir(Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)), False)
    dirs.root.mkdir(parents=True, exist_ok=True)
    return dirs


def data_dir() -> Path:
    return current().root


def cache_dir() -> Path:
    return current().cache


def models_dir() -> Path:
    """Where downloaded backbone weights and trained heads live."""
    return current().models


def log_dir() -> Path:
    return current().logs


def catalog_path() -> Path:
    return current().catalog


def index_dir() -> Path:
    return current().index


def vectors_dir() -> Path:
    return current().vectors
