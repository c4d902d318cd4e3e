"""Rules of the GUI layer: it imports no torch and no CLI at module level; one config module."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import imgfinder.gui
from imgfinder import config

ROOT = Path(__file__).resolve().parents[2]


def gui_modules() -> list[str]:
    return sorted(f"imgfinder.gui.{m.name}" for m in pkgutil.iter_modules(imgfinder.gui.__path__))


def test_importing_every_gui_module_loads_no_torch_and_no_cli():
    code = (
        "import importlib, json, sys\n"
        f"for name in {gui_modules()!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', "
        "'torchvision', 'imgfinder.cli')))\n"
        "print(json.dumps(bad))\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(gui_modules()) > 20  # the list is real (every module of the package)
    assert loaded == [], f"imported at module level by imgfinder.gui: {loaded[:5]}"


def test_the_rule_test_would_see_torch():
    """The subprocess check is not vacuous: a module that imports torch is caught."""
    code = "import sys, imgfinder.core.extract; print('torch' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "True"


def test_cli_gui_and_core_take_their_defaults_and_choices_from_config():
    from imgfinder.cli import DEFAULTS, build_parser
    from imgfinder.core import modelspec
    from imgfinder.core.index import BACKENDS
    from imgfinder.gui import settings

    assert DEFAULTS is config.DEFAULTS
    assert set(config.INDEX_BACKENDS) == set(BACKENDS)
    assert modelspec.DEVICES is config.DEVICES
    assert modelspec.INPUT_SIZE_RANGE is config.INPUT_SIZE_RANGE
    assert settings.BACKENDS is config.INDEX_BACKENDS
    s = settings.GuiSettings()
    assert (s.device, s.input_size, s.index_backend) == (
        config.DEFAULTS["device"],
        config.DEFAULTS["input_size"],
        config.DEFAULTS["index_backend"],
    )
    parser = build_parser(["status"])
    actions = {a.dest: a for a in parser._actions}
    assert tuple(actions["device"].choices) == config.DEVICES
    assert tuple(actions["index_backend"].choices) == config.INDEX_BACKENDS


def test_config_imports_neither_qt_nor_torch():
    code = (
        "import sys, imgfinder.config\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'PySide6', 'numpy')))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


def test_no_gui_or_cli_module_is_over_600_lines():
    long = {}
    for folder in ("gui", "cli"):
        for f in (ROOT / "imgfinder" / folder).glob("*.py"):
            n = len(f.read_text(encoding="utf-8").splitlines())
            if n > 600:
                long[f"{folder}/{f.name}"] = n
    assert long == {}
