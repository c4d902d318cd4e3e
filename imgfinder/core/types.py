"""Plain data types shared by the core, the CLI and the GUI (safe to pass between threads)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hit:
    """One search result."""

    image_id: int
    path: str
    score: float


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
    def since(cls, stage: str, done: int, total: int, started: float, message: str = ""):
        """Progress with rate and ETA measured from `started` (a time.perf_counter() value)."""
        elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed > 0 and done else None
        eta = (total - done) / rate if rate else None
        return cls(stage, done, total, rate, eta, message)


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
