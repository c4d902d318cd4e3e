"""CLI output a user reads: keeper reasons, explain without a picture, exported file modes."""

from __future__ import annotations

import json
import os
import stat

from imgfinder.cli import main
from imgfinder.core.dupes import FileFacts, KeeperRule
from imgfinder.core.dupes.keeper import _because
from tests.common import cli_args
from tests.imgutil import make_jpeg


def test_close_file_sizes_are_told_apart_in_bytes():
    a, b = FileFacts("/a.jpg", size=10_140), FileFacts("/b.jpg", size=10_112)
    assert _because("size", a, b, KeeperRule()) == "largest file (10,140 bytes vs 10,112 bytes)"
    c = FileFacts("/c.jpg", size=2_500_000)
    assert _because("size", c, b, KeeperRule()) == "largest file (2.5 MB vs 10.1 KB)"


def test_explain_json_needs_no_picture_and_pictures_are_not_private(tmp_path, weights_file, capsys):
    q, r = tmp_path / "q.jpg", tmp_path / "r.jpg"
    make_jpeg(q, size=(96, 72), seed=1)
    make_jpeg(r, size=(96, 72), seed=2)
    args = cli_args(tmp_path / "data", weights_file)
    assert main([*args, "explain", str(q), str(r), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output"] is None and "score" in info
    assert main([*args, "explain", str(q), str(r)]) == 2  # neither -o nor --json
    assert "-o FILE" in capsys.readouterr().err
    out = tmp_path / "why.png"
    old = os.umask(0o022)
    try:
        assert main([*args, "explain", str(q), str(r), "-o", str(out)]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
