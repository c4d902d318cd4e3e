"""Learning a whitening off the GUI thread (Settings ▸ Model): PCA from the open library's
vectors, or supervised from a folder per class embedded with the library's model.

The control flow only: one run at a time, a cancel token per run, the result saved into
the models folder and handed back by a signal; the settings dialog owns the widgets.
`core.whiten` (torch) is imported when a whitening is listed or learned, not at import.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import shiboken6
from PySide6.QtCore import QObject, Signal

from imgfinder.errors import ImgfinderError
from imgfinder.gui.model_files import same_file

if TYPE_CHECKING:
    from imgfinder.core.library import Library
    from imgfinder.core.whiten import Whitening
    from imgfinder.gui.workers import TaskRunner

log = logging.getLogger(__name__)

LEARN_DIM_MIN = 16  # D' offered for a whitening learned in the app (the CLI takes any)


def describe_whitening(path: Path, w: Whitening) -> str:
    if w.kind == "supervised":
        return (
            f"Supervised whitening: {path}\n{w.samples:,} photos in {w.classes} classes, "
            f"{w.dim_in} → {w.dim_out} dimensions, shrinkage {w.shrinkage:g}, centred on "
            f"{w.centred_on or 'its training photos'}\nLearned for model {w.model_id}"
        )
    return (
        f"PCA whitening: {path}\n{w.samples:,} vectors, {w.dim_in} → {w.dim_out} dimensions, "
        f"power {w.power:g}, shrinkage {w.shrinkage:g}\nLearned for model {w.model_id}"
    )


def whitening_files(models_dir: Path, current: str | None) -> list[tuple[Path, Whitening]]:
    """The whitening files in the models folder, plus `current` when it lives elsewhere."""
    from imgfinder.core import whiten  # noqa: PLC0415 (lazy: torch)

    found = whiten.list_whitening_files(None, models_dir)
    if current and not any(same_file(str(p), current) for p, _ in found):
        try:  # a file from elsewhere (--whiten, or moved since)
            found.append((Path(current), whiten.load_whitening(current)))
        except ImgfinderError as exc:
            log.warning("settings: %s", exc)
    return found


def default_learn_dim(descriptor_dim: int) -> int:
    """D' before the library's photo count is known: the core's default, capped at the input."""
    from imgfinder.core.whiten import DEFAULT_DIM  # noqa: PLC0415 (lazy: torch)

    return min(DEFAULT_DIM, descriptor_dim)


def learn_dim_for(n_vectors: int) -> int:
    """D' by the core's rule for a library of `n_vectors` vectors of the model."""
    from imgfinder.core.whiten import default_dim  # noqa: PLC0415 (lazy: torch)

    return max(LEARN_DIM_MIN, default_dim(n_vectors))


def learn_tooltips(ok: bool) -> tuple[str, str]:
    """Tooltips of "Learn from library…" and "Learn from class folders…", offered (`ok`)
    or not (learning needs the model in use: the library's vectors are of that model)."""
    if not ok:
        return (
            "Learning reads the library's vectors of the model in use: choose that model and "
            "input size (or apply this one and re-index first)",
            "Learning uses the model in use: choose that model and input size",
        )
    return (
        "Learn a PCA whitening from the vectors of the indexed photos, in the background "
        "(like imgfinder whiten); OK then uses it and offers a re-index",
        "Learn a supervised whitening from a folder with one sub-folder of photos per class "
        "(like imgfinder whiten --classes): it damps how photos of one subject differ, and "
        "helps on other subjects too",
    )


class WhiteningLearner(QObject):
    """One learning run at a time in the task pool; `learned` or `failed` ends a run.

    `cancel()` drops the run's result (and `core.whiten` stops after its current step); a
    result of a cancelled or superseded run is never emitted.
    """

    learned = Signal(object, object, int)  # (Whitening, saved Path, the D' asked for)
    failed = Signal(str)

    def __init__(
        self,
        library: Callable[[], Library | None] | None,
        tasks: TaskRunner | None,
        models_dir: Path,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self._library = library
        self._tasks = tasks
        self.models_dir = Path(models_dir)
        self._cancel: threading.Event | None = None  # set while learning; the run's token

    @property
    def available(self) -> bool:
        """Whether a library and a task runner were given, so learning can be offered."""
        return self._library is not None and self._tasks is not None

    @property
    def running(self) -> bool:
        return self._cancel is not None

    def library(self) -> Library | None:
        return self._library() if self._library is not None else None

    def count_vectors(self, done: Callable[[dict[str, int]], None]) -> None:
        """`done({model id: vectors})` on the GUI thread, from the library's catalog."""
        lib = self.library() if self.available else None
        if lib is not None:
            self._tasks.run(lib.catalog.model_counts, done)

    def start(self, lib: Library, dim: int, classes: str | None = None) -> None:
        """Learn a `dim`-dimension whitening and save it into the models folder: PCA from
        `lib`'s vectors, or with `classes` (a folder per class) a supervised one."""
        models = self.models_dir
        cancel = threading.Event()

        def work() -> tuple[Whitening, Path]:  # in a pool thread: no widgets here
            from imgfinder.core import whiten  # noqa: PLC0415 (lazy: torch)
            from imgfinder.core.types import run  # noqa: PLC0415

            if classes:
                w = run(whiten.learn_from_classes(lib, classes, dim, cancel=cancel))
            else:
                w = whiten.learn_from_library(lib, dim, cancel=cancel)
            if cancel.is_set():
                raise whiten.LearningCancelled("learning the whitening was cancelled")
            return w, whiten.save_whitening(w, models / w.file_name)

        self._cancel = cancel
        self._tasks.run(
            work,
            lambda result: self._done(cancel, dim, *result),
            lambda message: self._failed(cancel, message),
        )

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            self._cancel = None

    def _current(self, cancel: threading.Event) -> bool:
        """A result belongs to the run in progress and this object still exists."""
        return shiboken6.isValid(self) and self._cancel is cancel

    def _done(self, cancel: threading.Event, dim: int, w: Whitening, path: Path) -> None:
        if self._current(cancel):
            self._cancel = None
            self.learned.emit(w, path, dim)

    def _failed(self, cancel: threading.Event, message: str) -> None:
        if self._current(cancel):
            self._cancel = None
            self.failed.emit(message)
