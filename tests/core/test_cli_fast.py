"""`status` and a no-change `index` answer without the model (no torch import), and agree
with the full path; anything changed still indexes for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgfinder.cli import DEFAULTS, build_parser, command_of, main
from imgfinder.cli.fast import CACHE_FILE, known_model, unchanged_index
from tests.common import cli_args
from tests.imgutil import make_jpeg

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def library(tmp_path, weights_file):
    root = tmp_path / "pics"
    for i in range(4):
        make_jpeg(root / f"p{i}.jpg", size=(120, 90), seed=40 + i)
    (root / "bad.jpg").write_bytes(b"garbage")
    args = cli_args(tmp_path / "data", weights_file)
    assert main([*args, "index", str(root)]) == 0
    return root, args, tmp_path / "data"


def parsed(args: list[str], *cmd: str):
    ns = build_parser([*args, *cmd]).parse_args([*args, *cmd])
    for key, value in DEFAULTS.items():
        if not hasattr(ns, key):
            setattr(ns, key, value)
    return ns


def _imports_torch(args: list[str], *cmd: str) -> tuple[bool, str]:
    code = (
        "import sys; from imgfinder.cli import main; rc = main(sys.argv[1:]); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr); "
        "sys.exit(rc)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args, *cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    return "NO-TORCH" not in proc.stderr, proc.stdout


def test_status_and_unchanged_index_do_not_import_torch(library, capsys):
    """Also: the fast status says what the full one says."""
    root, args, data = library
    assert (data / CACHE_FILE).is_file()
    capsys.readouterr()
    assert main([*args, "status", "--json"]) == 0
    fast = json.loads(capsys.readouterr().out)
    (data / CACHE_FILE).unlink()
    assert main([*args, "status", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    for info in (fast, full):  # the catalog's WAL file grows when the library is opened
        info.pop("bytes_per_image")
        info["bytes_on_disk"].pop("catalog")
    assert fast == full
    assert (data / CACHE_FILE).is_file()  # remembered again
    torch_used, out = _imports_torch(args, "status")
    assert not torch_used and "images: 4 photos, 1 skipped" in out
    assert "model: ResNet50, weights file resnet50-seed0.pth, untrained ECA head" in out
    torch_used, out = _imports_torch(args, "index")
    assert not torch_used and out.startswith("Nothing new or changed · library: 4 photos")
    # a new photo, a removed one: the real index run (in this process, torch is loaded here)
    make_jpeg(root / "new.jpg", seed=99)
    (root / "p1.jpg").unlink()
    assert unchanged_index(parsed(args, "index")) is None
    capsys.readouterr()
    assert main([*args, "index"]) == 0
    assert capsys.readouterr().out.startswith("Indexed 1, removed 1 · library: 4 photos")
    assert unchanged_index(parsed(args, "index")) is not None
    # other weights (the same bytes in another file): their id is not assumed
    weights = Path(args[args.index("--weights") + 1])
    other = data.parent / "other.pth"
    other.write_bytes(weights.read_bytes())
    moved = [str(other) if a == str(weights) else a for a in args]
    assert known_model(parsed(moved, "status")) is None
    assert known_model(parsed(args, "status")) is not None


def test_command_of_skips_option_values():
    assert command_of(["--data-dir", "status", "index"]) == "index"
    assert command_of(["--data-dir=x", "status"]) == "status"
    assert command_of(["--help", "status"]) is None
    assert command_of(["frobnicate"]) is None
