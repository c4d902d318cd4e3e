"""Entry script for the PyInstaller bundle (packaging/imgfinder.spec).

Runs `imgfinder.cli.main()`. A bundled app started with no arguments (double-click, Start menu,
Dock, Finder) opens the desktop app, i.e. `imgfinder gui`; the console build `imgfinder-cli` and
non-bundled runs keep the CLI's behaviour (help text).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from pathlib import Path

CLI_SUFFIX = "-cli"


def is_bundled() -> bool:
    return bool(getattr(sys, "frozen", False))


def bundle_argv(argv: Sequence[str], executable: str, frozen: bool) -> list[str]:
    """The arguments for `imgfinder.cli.main`, given the process's argv[1:]."""
    # macOS Finder used to append a process serial number (-psn_0_12345); it is no user argument.
    args = [a for a in argv if not a.startswith("-psn_")]
    if frozen and not args and not Path(executable).stem.lower().endswith(CLI_SUFFIX):
        return ["gui"]
    return args


def _ensure_std_streams() -> None:
    # A windowed (console-less) Windows executable has no stdout/stderr; printing would raise.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def main() -> int:
    multiprocessing.freeze_support()  # worker processes of a frozen app re-enter here
    _ensure_std_streams()
    from imgfinder.cli import main as cli_main

    return cli_main(bundle_argv(sys.argv[1:], sys.executable, is_bundled()))


if __name__ == "__main__":
    sys.exit(main())
