"""The command line: output formats, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from imgfinder.cli import main
from tests.common import cli_args
from tests.imgutil import make_jpeg


@pytest.fixture
def library(tmp_path, weights_file):
    root = tmp_path / "pics"
    for i in range(5):
        make_jpeg(root / f"p{i}.jpg", size=(120, 90), seed=10 + i)
    (root / "bad.jpg").write_bytes(b"garbage")
    args = cli_args(tmp_path / "data", weights_file)
    assert main([*args, "index", str(root)]) == 0
    return root, args


def test_index_summary(library, capsys, tmp_path):
    root, args = library
    capsys.readouterr()
    assert main([*args, "index"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Nothing new or changed · library: 5 photos, 1 skipped")


def test_index_json_summary(library, capsys):
    root, args = library
    capsys.readouterr()
    make_jpeg(root / "new.jpg", seed=77)
    assert main([*args, "index", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["indexed"] == 1 and summary["unchanged"] == 6


def test_search_text_and_json(library, capsys):
    root, args = library
    capsys.readouterr()
    assert main([*args, "--index", "exact", "search", str(root / "p2.jpg"), "-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].endswith(str(root / "p2.jpg"))
    assert main([*args, "search", str(root / "p2.jpg"), "-k", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["query"] == str(root / "p2.jpg")
    assert [set(r) for r in data["results"]] == [{"path", "score", "metadata", "decoded_from"}] * 4
    assert data["results"][0]["path"] == str(root / "p2.jpg")
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True)


def test_status_json(library, capsys):
    root, args = library
    capsys.readouterr()
    assert main([*args, "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 5 and info["failed"] == 1
    assert info["roots"][0]["path"] == str(root)
    assert info["model_id"].startswith("fused-eca-r50/")
    assert info["device"].startswith("cpu")
    assert info["bytes_on_disk"]["vectors"] >= 5 * 4096 * 2
    assert main([*args, "status"]) == 0
    assert "bytes per image" in capsys.readouterr().out


def test_roots_commands(library, capsys, tmp_path):
    root, args = library
    other = tmp_path / "other"
    other.mkdir()
    capsys.readouterr()
    assert main([*args, "roots", "add", str(other)]) == 0
    assert capsys.readouterr().out.strip() == f"added {other}"
    assert main([*args, "roots", "list"]) == 0
    assert sorted(capsys.readouterr().out.split()) == sorted([str(other), str(root)])
    assert main([*args, "roots", "remove", str(root)]) == 0
    capsys.readouterr()
    assert main([*args, "roots", "list"]) == 0
    assert capsys.readouterr().out.strip() == str(other)
    assert root.joinpath("p0.jpg").exists()


def test_user_errors_are_one_line_with_nonzero_exit(library, capsys, tmp_path):
    root, args = library
    capsys.readouterr()
    assert main([*args, "search", str(tmp_path / "missing.jpg")]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jpg" in err and "Traceback" not in err
    assert main([*args, "search", str(root / "bad.jpg")]) != 0
    assert "bad.jpg" in capsys.readouterr().err
    assert main([*args, "roots", "remove", str(tmp_path / "nowhere")]) != 0
    assert "not a library folder" in capsys.readouterr().err
    assert main([*args, "search", str(root / "p1.jpg"), "-k", "0"]) != 0


def test_offline_without_weights_exits_nonzero(tmp_path, capsys):
    code = main(["--data-dir", str(tmp_path / "d"), "--device", "cpu", "status"])
    assert code == 0  # status still reports, with the reason
    assert "not available" in capsys.readouterr().out
    code = main(["--data-dir", str(tmp_path / "d"), "--offline", "search", __file__])
    assert code == 3
    err = capsys.readouterr().err
    assert "resnet50-0676ba61.pth" in err and str(tmp_path / "d" / "models") in err
    assert "--backbone efficientnet-lite0" in err  # the installed alternative, offered


def test_python_dash_m_and_help(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "imgfinder", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in ("index", "search", "status", "roots", "gui"):
        assert cmd in out


def test_commands_without_backbone_use_the_librarys_own(tmp_path, capsys, monkeypatch):
    """A library indexed with --backbone efficientnet-lite0 is searched and scanned with
    Lite0 when later commands name no backbone (not with the default ResNet50, whose
    weights may be missing); --backbone or IMGFINDER_BACKBONE still decide when given."""
    from imgfinder.core.weights import default_available

    if not default_available("efficientnet-lite0"):
        pytest.skip("Lite0 weights package missing")
    photos = tmp_path / "photos"
    for i in range(4):
        make_jpeg(photos / f"{i}.jpg", (96, 72), seed=70 + i)
    base = ["--data-dir", str(tmp_path / "d"), "--device", "cpu", "--input-size", "64"]
    assert main([*base, "--backbone", "efficientnet-lite0", "index", str(photos)]) == 0
    capsys.readouterr()
    assert main([*base, "--offline", "search", str(photos / "2.jpg"), "-k", "1"]) == 0
    assert capsys.readouterr().out.split()[1] == str(photos / "2.jpg")
    assert main([*base, "--offline", "status"]) == 0
    assert "model id: fused-eca-lite0/" in capsys.readouterr().out
    monkeypatch.setenv("IMGFINDER_BACKBONE", "resnet50")  # an explicit choice still wins
    assert main([*base, "--offline", "search", str(photos / "2.jpg")]) == 3
    assert "ResNet50 weights are not available" in capsys.readouterr().err


def test_model_prefixes_present_probe_whole_prefixes(tmp_path):
    """The cheap probe behind 'use the library's backbone': a prefix matches whole ids only
    ("fused-eca-r50" is not "fused-eca-r50x"), and only photos with a vector count."""
    from imgfinder.core.catalog import Catalog, ImageWrite

    cat = Catalog(tmp_path / "c.sqlite")
    rid = cat.add_root(str(tmp_path))
    cat.write_images(
        rid, "fused-eca-lite0/p/eca0/224/t", [ImageWrite(str(tmp_path / "a"), vec_row=0)]
    )
    cat.write_images(
        rid, "fused-eca-r50x/w/eca0/224/t", [ImageWrite(str(tmp_path / "b"), vec_row=1)]
    )
    cat.write_images(
        rid, "fused-eca-r50/w/eca0/224/t", [ImageWrite(str(tmp_path / "c"), error="bad")]
    )
    assert cat.model_prefixes_present(["fused-eca-r50", "fused-eca-lite0"]) == {"fused-eca-lite0"}
    cat.close()
