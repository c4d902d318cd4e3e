"""core/tvimport.py: torchvision imported without torch._dynamo, which stays importable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _fresh(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_resnet50_builds_without_dynamo_and_dynamo_still_imports():
    out = _fresh(
        "import sys, torch\n"
        "from imgfinder.core.backbones import build_trunk\n"
        "from imgfinder.core.modelspec import RESNET50\n"
        "t = build_trunk(RESNET50)\n"
        "print('map', tuple(t(torch.zeros(1, 3, 64, 64)).shape))\n"
        "print('dynamo before', 'torch._dynamo' in sys.modules)\n"
        "import torch._dynamo\n"
        "print('real', hasattr(torch._dynamo, 'reset'))\n"
        "from torchvision.ops import roi_align\n"  # calls is_compile_supported when it runs
        "r = roi_align(torch.rand(1, 2, 8, 8), [torch.tensor([[0., 0., 4., 4.]])], 2)\n"
        "print('roi', tuple(r.shape))\n"
    )
    assert "map (1, 2048, 2, 2)" in out
    assert "dynamo before False" in out
    assert "real True" in out and "roi (1, 2, 2, 2)" in out


def test_a_torchvision_that_needs_more_of_dynamo_is_imported_the_ordinary_way():
    """The stand-in lacks what a future torchvision might import (simulated: importing
    from the stand-in fails): the import falls back to the real package."""
    out = _fresh(
        "import builtins, sys\n"
        "real_import = builtins.__import__\n"
        "def strict(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    m = real_import(name, globals, locals, fromlist, level)\n"
        "    if name == 'torch._dynamo.utils' and getattr(m, '__file__', None) is None:\n"
        "        raise ImportError('cannot import name needed_later')\n"
        "    return m\n"
        "builtins.__import__ = strict\n"
        "from imgfinder.core import tvimport\n"
        "tv = tvimport.torchvision()\n"
        "builtins.__import__ = real_import\n"
        "print('models', hasattr(tv.models, 'resnet50'))\n"
        "print('dynamo real', hasattr(sys.modules.get('torch._dynamo'), 'reset'))\n"
    )
    assert "models True" in out
    assert "dynamo real True" in out  # the fallback imported the real package
