"""The optional compiled engine of the LSH candidate stage: loading, caching, fallback.

numba is imported lazily (never at `import imgfinder`: CLI start-up), and only when the
index is queried. Its compiled kernels are cached on disk: NUMBA_CACHE_DIR when set, else
`numba/` under the app's cache folder (paths.cache_dir), else a folder under the system's
temporary directory, the first of them that is writable (numba's own default, next to the
package, is read-only in a system-wide install). Compilation is paid once per machine (a
few seconds; later processes load the cached machine code in a fraction of that).

`get(wait)`: the kernels module, or None for the numpy engine. A batch of queries (the
duplicate scan, calibration's held-out check) waits for them to load; a single query
takes them only when they are already loaded, so a short process (`imgfinder search`: one
query) never imports numba and its start-up is unchanged. The GUI calls `preload()` once its
window is up: they load on a background thread while the numpy engine answers. Both engines
return the same rows and scores, so a switch between them is invisible.

IMGFINDER_NUMBA=0 forces the numpy engine; a missing or broken numba falls back to it (logged
once).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

_lock = threading.Lock()  # held while loading
_start = threading.Lock()  # held while starting the background loader
_state: dict = {"mod": None, "failed": False, "thread": None}


def enabled() -> bool:
    """True unless IMGFINDER_NUMBA=0 or numba is not installed (nothing is imported)."""
    if os.environ.get("IMGFINDER_NUMBA", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if _state["failed"]:
        return False
    if "found" not in _state:
        _state["found"] = importlib.util.find_spec("numba") is not None
    return _state["found"]


def _writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=d, prefix=".probe-"):
            pass
        return True
    except OSError:
        return False


def cache_dir() -> Path | None:
    """The folder numba caches compiled kernels in (chosen before numba is imported)."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    options = [Path(env)] if env else []
    try:
        from ... import paths

        options.append(paths.cache_dir() / "numba")
    except Exception:  # noqa: BLE001 - no app dirs (e.g. no home): try the temp dir
        pass
    options.append(Path(tempfile.gettempdir()) / f"imgfinder-numba-{os.getuid()}")
    for d in options:
        if _writable(d):
            return d
    return None


def _load() -> ModuleType | None:
    with _lock:
        if _state["mod"] is not None or _state["failed"]:
            return _state["mod"]
        try:
            d = cache_dir()
            if d is not None and "numba" not in sys.modules:
                os.environ["NUMBA_CACHE_DIR"] = str(d)
            from . import _numba_kernels as mod  # compiles, or loads the cached code

            _state["mod"] = mod
        except Exception as exc:  # noqa: BLE001 - any failure: the numpy engine stays
            _state["failed"] = True
            log.warning("compiled LSH kernels unavailable (%s); using the numpy engine", exc)
        return _state["mod"]


def get(wait: bool) -> ModuleType | None:
    """The compiled kernels, or None (numpy engine); see the module docstring."""
    if not enabled():
        return None
    mod = _state["mod"]
    if mod is not None or not wait:
        return mod
    return _load()


def preload() -> None:
    """Load the kernels on a background thread (a long-lived process, the GUI: its first
    searches run on the numpy engine until they are in; a short one, `imgfinder search`,
    never pays for them). Returns at once."""
    if not enabled() or _state["mod"] is not None:
        return
    with _start:
        if _state["thread"] is None:
            t = threading.Thread(target=_load, name="imgfinder-numba-load", daemon=True)
            _state["thread"] = t
            t.start()
