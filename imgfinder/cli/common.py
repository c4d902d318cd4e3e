"""Helpers shared by the CLI subcommands: opening the library, progress on stderr."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from imgfinder.core.types import Progress, fmt_eta

if TYPE_CHECKING:  # both import torch: only when a command needs the model (see cli/fast.py)
    from imgfinder.core.extract import ModelConfig
    from imgfinder.core.library import Library


def model_config(args: argparse.Namespace) -> ModelConfig:
    from imgfinder.core.extract import ModelConfig  # noqa: PLC0415

    return ModelConfig(
        backbone=args.backbone,
        weights=args.weights,
        head=args.head,
        attention=getattr(args, "attention", None),
        pooling=getattr(args, "pooling", None),
        whitening=getattr(args, "whitening", None),
        device=args.device,
        input_size=args.input_size,
    )


def open_library(args: argparse.Namespace) -> Library:
    from imgfinder.core.library import Library  # noqa: PLC0415

    lib = Library(
        args.data_dir,
        model_config(args),
        index_backend=args.index_backend,
        allow_download=not args.offline,
        weights_progress=DownloadBar() if not args.offline else None,
    )
    if lib.recovery is not None:  # the user is told what a damaged catalog's recovery kept
        print(f"imgfinder: warning: {lib.recovery.message()}", file=sys.stderr)
    return lib


class ProgressBar:
    """One self-overwriting line on a terminal; a line every few seconds otherwise."""

    def __init__(self, stream=None, interval: float = 5.0, label=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval
        self.label = label or (lambda p: p.stage)  # text before the bar
        self._last = 0.0
        self._width = 0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.total is not None and p.done >= p.total
        if not self.tty and not final and now - self._last < self.interval:
            return
        self._last = now
        if p.stage == "scan":
            line = f"scanning: {p.done} files found" if p.done else f"{p.message}"
        else:
            total = p.total or 0
            pct = 100.0 * p.done / total if total else 100.0
            bar = "#" * int(pct / 5)
            rate = f"{p.rate:.1f} img/s" if p.rate else "-- img/s"
            line = f"{self.label(p)} [{bar:<20}] {p.done}/{total} {rate} ETA {fmt_eta(p.eta_s)}"
        if self.tty:
            pad = max(0, self._width - len(line))
            self.stream.write("\r" + line + " " * pad)
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()


class DownloadBar:
    """Progress of the first-run weights download on stderr."""

    def __init__(self) -> None:
        self._last = -1

    def __call__(self, done: int, total: int | None) -> None:
        pct = int(100 * done / total) if total else -1
        if pct == self._last:
            return
        self._last = pct
        mb = done / 1e6
        msg = f"downloading model weights: {mb:.1f} MB" + (f" ({pct}%)" if total else "")
        end = "\n" if total and done >= total else ""
        sys.stderr.write("\r" + msg + end)
        sys.stderr.flush()
