"""Logging to stderr and to a rotating file in the data directory."""

from __future__ import annotations

import logging
import logging.handlers

from imgfinder import paths

_FMT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbosity: int = 0, *, to_file: bool = True) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_imgfinder", False):
            root.removeHandler(h)
            h.close()
    root.setLevel(logging.DEBUG)
    # a full disk or a file name that is not UTF-8 must not print a logging traceback
    logging.raiseExceptions = False
    err = logging.StreamHandler()
    err.setLevel(logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else 10)
    err.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    err._imgfinder = True  # type: ignore[attr-defined]
    root.addHandler(err)
    if to_file:
        try:
            fh = logging.handlers.RotatingFileHandler(
                paths.log_dir() / "imgfinder.log",
                maxBytes=2_000_000,
                backupCount=3,
                encoding="utf-8",
                errors="backslashreplace",
            )
        except OSError as exc:
            logging.getLogger(__name__).warning("no log file: %s", exc)
            return
        fh.setLevel(logging.INFO)
        fh.setFormatter(logging.Formatter(_FMT))
        fh._imgfinder = True  # type: ignore[attr-defined]
        root.addHandler(fh)
