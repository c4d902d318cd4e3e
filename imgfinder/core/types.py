"""Plain data types shared by the core, the CLI and the GUI (safe to pass between threads)."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    """One search result."""

    image_id: int
    path: str
    score: float
    # the image's catalog row (catalog.ImageRow: size, mtime, hash, width, height), filled by
    # Library.search_vector so callers need not look it up again
    row: object = field(default=None, compare=False, repr=False)


@dataclass
class Progress:
    """Progress of a long job, yielded once per batch by core generators."""

    stage: str  # e.g. "scan", "extract", "index", "dupes"
    done: int = 0
    total: int | None = None
    rate: float | None = None  # items per second
    eta_s: float | None = None
    message: str = ""

    @classmethod
    def since(
        cls,
        stage: str,
        done: int,
        total: int,
        started: float,
        message: str = "",
        *,
        already: int = 0,
    ):
        """Progress with rate and ETA measured from `started` (a time.perf_counter() value).

        `already`: items done before this run (e.g. by an interrupted one); they count in
        `done` and `total`, so a resumed run goes on from where it stopped, not from 0, but
        not in the rate.
        """
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 and done else None
        eta = (total - done) / rate if rate else None
        return cls(stage, already + done, already + total, rate, eta, message)


@dataclass
class IndexSummary:
    """What an indexing run did."""

    indexed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    missing_roots: list[str] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0
    repaired: int = 0  # images whose vector was missing or damaged, re-extracted this run


def fmt_eta(seconds: float | None) -> str:
    """Seconds -> "mm:ss" or "h:mm:ss" ("--:--" when unknown)."""
    if seconds is None:
        return "--:--"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def count_text(count: int, word: str) -> str:
    """ "1 photo", "2 photos", "1,204 photos"."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def library_counts_text(photos: int, skipped: int) -> str:
    """The library's totals in the words every view uses: "964 photos, 4 skipped"."""
    return f"{count_text(photos, 'photo')}, {skipped:,} skipped"


def run_summary_text(summary: IndexSummary, photos: int, skipped: int) -> str:
    """One line for an index run, in the same words as the status bar and `imgfinder status`.

    "skipped" is always the library's total of files that could not be used (the Skipped
    files panel, `status`); the files this run newly found unusable are "N more skipped".
    `photos`/`skipped` are the catalog's counts after the run.
    """
    new_skips = len(summary.skipped)
    done = []
    if summary.indexed:
        moved = f" ({summary.moved:,} moved)" if summary.moved else ""
        done.append(f"indexed {summary.indexed:,}{moved}")
    if summary.removed:
        done.append(f"removed {summary.removed:,}")
    if new_skips:
        done.append(f"{new_skips:,} more skipped")
    if summary.cancelled:
        head = "Indexing cancelled" + (f" ({', '.join(done)} kept)" if done else "")
    else:
        head = ", ".join(done).capitalize() if done else "Nothing new or changed"
    return f"{head} · library: {library_counts_text(photos, skipped)} · {summary.seconds:.1f} s"


def run(gen: Generator[Progress, None, T], on_progress=None) -> T:
    """Drive a core generator (a long job yielding Progress) to its end, passing each
    Progress to `on_progress`; returns the generator's return value."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(p)
