"""Every directory imgfinder uses comes from here (platformdirs), honouring overrides.

Precedence: an explicit `set_data_dir()` (the CLI's --data-dir), then the
IMGFINDER_DATA_DIR environment variable, then platformdirs' user data dir.
Cache and logs live under the data directory when it is overridden, so one
override (e.g. a test's tmp_path) redirects everything.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from imgfinder import APP_NAME

_override: Path | None = None


def set_data_dir(path: str | os.PathLike | None) -> None:
    """Override the data directory for this process (None restores the default)."""
    global _override
    _override = Path(path).expanduser().resolve() if path else None


def _overridden() -> Path | None:
    if _override is not None:
        return _override
    env = os.environ.get("IMGFINDER_DATA_DIR")
    return Path(env).expanduser().resolve() if env else None


def data_dir() -> Path:
    root = _overridden() or Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir() -> Path:
    base = _overridden()
    d = base / "cache" if base else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))
    d.mkdir(parents=True, exist_ok=True)
    return d


def models_dir() -> Path:
    """Where downloaded backbone weights and trained heads live."""
    d = data_dir() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def log_dir() -> Path:
    d = data_dir() / "logs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def catalog_path() -> Path:
    return data_dir() / "catalog.sqlite"


def index_dir() -> Path:
    d = data_dir() / "index"
    d.mkdir(parents=True, exist_ok=True)
    return d


def vectors_dir() -> Path:
    d = data_dir() / "vectors"
    d.mkdir(parents=True, exist_ok=True)
    return d
