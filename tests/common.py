"""Plain helpers and constants shared by the test packages (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

# the labelled flower photos beside the repository (IMGFINDER_SHARED_DATA: another copy, e.g.
# from a git worktree whose parent folder has no shared/ beside it)
SHARED_DATA = Path(
    os.environ.get("IMGFINDER_SHARED_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-flowers17-12class"
)
TEST_INPUT_SIZE = 64  # small input keeps CPU tests fast; the code path is the same


def cli_args(data_dir: Path, weights: Path) -> list[str]:
    return [
        "--data-dir",
        str(data_dir),
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--input-size",
        str(TEST_INPUT_SIZE),
    ]
