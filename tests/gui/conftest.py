"""Fixtures of the GUI tests (pytest-qt, QT_QPA_PLATFORM=offscreen)."""

from __future__ import annotations

import pytest


@pytest.fixture
def make_window(qtbot, weights_file, monkeypatch, shared_extractor):
    """`make_window(**kw)` builds a MainWindow on the isolated data dir with the seeded model.

    Qt is imported only when a test asks for this fixture, so the core tests do not need it.
    """
    from tests.gui_helpers import window_factory

    yield from window_factory(qtbot, weights_file, monkeypatch, shared_extractor)
