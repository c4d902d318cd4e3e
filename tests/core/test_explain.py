"""Match and attention heatmaps: exact sums, patch localisation, EXIF alignment, rendering, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from imgfinder.cli import main
from imgfinder.core import colormap, explain
from imgfinder.core.explain import Activations, activations, attention_map, match_all, match_maps
from imgfinder.core.extract import Extractor, ModelConfig
from tests.common import TEST_INPUT_SIZE, cli_args
from tests.imgutil import make_jpeg, make_png, textured

# --------------------------------------------------------------------------- helpers


class TextureTrunk(nn.Module):
    """A deterministic stand-in for ResNet50's trunk whose features fire on a checkerboard.

    Half the channels are the (eroded, thresholded) Laplacian energy per 8x8 cell, i.e. they
    respond to fine texture and not to smooth photo content or grain; the other half are weak
    colour features, present everywhere, so the maps have a background to be told apart from.
    """

    def __init__(self, channels: int = 32, cell: int = 8):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.cell = cell
        lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
        self.register_buffer("lap", lap)
        half = channels // 2
        self.register_buffer("tex_w", torch.rand(half, generator=g) + 0.5)
        self.register_buffer("col_w", torch.rand(channels - half, 3, generator=g) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        energy = F.conv2d(x.mean(1, keepdim=True), self.lap, padding=1).abs()
        energy = -F.max_pool2d(-energy, 3, stride=1, padding=1)  # erode: texture on all sides
        tex = F.avg_pool2d(F.relu(energy - 0.5), self.cell)
        col = F.avg_pool2d(F.relu(x + 2.5), self.cell)
        colour = torch.einsum("kc,nchw->nkhw", self.col_w, col)
        return torch.cat([tex * self.tex_w.view(1, -1, 1, 1), colour], dim=1)


@pytest.fixture(scope="module")
def texture_extractor(weights_file):
    """An extractor of its own (never the shared one) with the texture trunk swapped in."""
    ex = Extractor(ModelConfig(weights=str(weights_file), device="cpu", input_size=TEST_INPUT_SIZE))
    ex.model.trunk = TextureTrunk()
    return ex


def checkerboard(size: int, check: int) -> Image.Image:
    yy, xx = np.mgrid[0:size, 0:size]
    board = (((yy // check) + (xx // check)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([board] * 3, axis=-1), "RGB")


def mass_inside(hmap: np.ndarray, rows: slice, cols: slice) -> float:
    pos = np.clip(hmap, 0, None)
    return float(pos[rows, cols].sum() / pos.sum())


def random_activations(rng: np.random.Generator, c: int = 16, h: int = 3, w: int = 4, neg=False):
    fmap = rng.random((c, h, w)).astype(np.float32) ** 3
    if neg:
        fmap -= 0.3
    eca = rng.random(c).astype(np.float32)
    return Activations(fmap, eca, np.zeros(2 * c, np.float32), (w * 10, h * 10))


# --------------------------------------------------------------------------- exactness


def test_maps_sum_to_the_score_for_real_images(shared_extractor, tmp_path):
    paths = [make_jpeg(tmp_path / f"{i}.jpg", size=(96, 72), seed=30 + i) for i in range(4)]
    acts = explain.activations_many(shared_extractor, paths)
    for q, r in [(acts[0], acts[1]), (acts[2], acts[3]), (acts[1], acts[3])]:
        cosine = float(q.descriptor @ r.descriptor)
        all_maps = match_all(q, r)
        fused = all_maps["fused"]
        assert fused.score == pytest.approx(cosine, abs=1e-5)
        assert sum(fused.branch_scores.values()) == pytest.approx(fused.score, abs=1e-12)
        for branch, e in all_maps.items():
            assert e.query_map.shape == e.result_map.shape == q.grid
            assert e.query_map.sum() == pytest.approx(e.total, abs=1e-9)
            assert e.result_map.sum() == pytest.approx(e.total, abs=1e-9)
            assert match_maps(q, r, branch).total == pytest.approx(e.total)
        # each branch is half the descriptor's energy, so each share is at most 0.5
        assert all(0 <= s <= 0.5 + 1e-6 for s in fused.branch_scores.values())


def test_attention_map_is_the_self_split(shared_extractor, tmp_path):
    act = activations(shared_extractor, make_jpeg(tmp_path / "a.jpg", size=(80, 60), seed=4))
    assert act.image_size == (80, 60)
    assert attention_map(act, "fused").sum() == pytest.approx(1.0, abs=1e-6)
    assert attention_map(act, "attention").sum() == pytest.approx(0.5, abs=1e-6)
    assert attention_map(act, "global").sum() == pytest.approx(0.5, abs=1e-6)
    same = match_maps(act, act)
    np.testing.assert_allclose(same.query_map, same.result_map)
    with pytest.raises(ValueError, match="unknown branch"):
        attention_map(act, "sideways")


@pytest.mark.parametrize("neg", [False, True])
def test_sums_hold_for_any_features_including_negative(neg):
    rng = np.random.default_rng(7)
    for _ in range(5):
        q, r = random_activations(rng, neg=neg), random_activations(rng, h=5, w=2, neg=neg)
        maps = match_all(q, r)
        assert maps["fused"].query_map.shape == (3, 4)
        assert maps["fused"].result_map.shape == (5, 2)
        for e in maps.values():
            assert e.query_map.sum() == pytest.approx(e.total, abs=1e-9)
            assert e.result_map.sum() == pytest.approx(e.total, abs=1e-9)
        if neg:
            assert min(maps["attention"].query_map.min(), maps["attention"].result_map.min()) < 0


def test_all_zero_map_does_not_divide_by_zero():
    rng = np.random.default_rng(0)
    q = random_activations(rng)
    dead = Activations(np.zeros((16, 3, 4), np.float32), np.ones(16), np.zeros(32), (4, 3))
    e = match_maps(q, dead)
    assert e.score == 0 and np.all(e.result_map == 0) and np.all(np.isfinite(e.query_map))
    assert e.shares() == {"attention": 0.0, "global": 0.0}


# --------------------------------------------------------------------------- localisation


def test_shared_patch_carries_the_match(texture_extractor, tmp_path):
    """The same checkerboard pasted at different places: the mass sits on it in both images."""
    patch = checkerboard(32, 4)
    a = textured((128, 128), seed=1)
    b = textured((128, 128), seed=2)
    a.paste(patch, (16, 16))  # cells (rows 1-2, cols 1-2) of the 8x8 grid
    b.paste(patch, (80, 64))  # cells (rows 4-5, cols 5-6)
    q, r = explain.activations_many(
        texture_extractor,
        [make_png(tmp_path / "a.png", image=a), make_png(tmp_path / "b.png", image=b)],
    )
    assert q.grid == (8, 8)
    for branch, e in match_all(q, r).items():
        assert mass_inside(e.query_map, slice(1, 3), slice(1, 3)) > 0.9, branch
        assert mass_inside(e.result_map, slice(4, 6), slice(5, 7)) > 0.9, branch
    assert np.unravel_index(attention_map(r).argmax(), r.grid)[0] in (4, 5)


def test_exif_rotated_photo_lines_up_with_its_map(texture_extractor, tmp_path):
    """Orientation 6: a marker in the *displayed* top-left shows up at the top-left."""
    shown = textured((96, 128), seed=5)  # what the viewer sees: 96 wide, 128 tall
    shown.paste(checkerboard(32, 6), (0, 0))
    stored = shown.transpose(Image.Transpose.ROTATE_90)  # EXIF 6 rotates it back clockwise
    path = make_jpeg(tmp_path / "rot.jpg", image=stored, orientation=6, quality=95)
    act = activations(texture_extractor, path)
    assert act.image_size == (96, 128)
    hmap = attention_map(act)
    row, col = np.unravel_index(hmap.argmax(), hmap.shape)
    assert row < 4 and col < 4
    photo = explain.load_photo(path)
    assert photo.size == (96, 128)
    over = colormap.overlay(photo, hmap, opacity=1.0)
    assert over.size == photo.size
    lum = np.asarray(over.convert("L"), dtype=np.float64)
    quads = [lum[:64, :48], lum[:64, 48:], lum[64:, :48], lum[64:, 48:]]
    means = [q.mean() for q in quads]
    assert int(np.argmax(means)) == 0, means


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("name", colormap.SEQUENTIAL)
def test_sequential_colormaps_get_brighter(name):
    table = colormap.lut(name)
    assert table.shape == (256, 3) and table.dtype == np.uint8
    srgb = table / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > -1e-3)  # monotonic up to 8-bit rounding
    assert luminance[-1] - luminance[0] > 0.7
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap.lut("jet")


def test_signed_maps_use_the_diverging_colours():
    hmap = np.array([[-1.0, 0.0, 1.0]])
    rgb = colormap.colorize(hmap)
    assert colormap.is_signed(hmap) and not colormap.is_signed(np.abs(hmap))
    blue, grey, red = (tuple(int(v) for v in px) for px in rgb[0])
    assert blue[2] > blue[0] and red[0] > red[2] and abs(grey[0] - grey[2]) < 5


def test_upsample_and_overlay_keep_the_photo_geometry():
    hmap = np.array([[0.0, 1.0], [0.0, 0.0]])
    big = colormap.upsample(hmap, (300, 100))
    assert big.shape == (100, 300) and big.min() >= 0 and big.max() <= 1
    assert big[:50, 150:].mean() > big[50:, :150].mean()  # top-right stays top-right
    photo = textured((300, 100), seed=1)
    assert np.array_equal(np.asarray(colormap.overlay(photo, hmap, 0.0)), np.asarray(photo))
    assert colormap.overlay(photo, hmap, 0.7).size == (300, 100)
    with pytest.raises(ValueError):
        colormap.overlay(photo, hmap, 1.5)


def test_side_by_side_canvas():
    q = textured((120, 90), seed=1)
    r = textured((60, 110), seed=2)
    img = colormap.side_by_side(q, r, "line one\nline two")
    assert img.width == 120 + colormap.GAP + 60
    assert img.height > 110
    # the shorter photo is centred vertically; the caption band is below, never over them
    assert np.array_equal(np.asarray(img)[10:100, :120], np.asarray(q))
    assert np.array_equal(np.asarray(img)[:110, 120 + colormap.GAP :], np.asarray(r))


# --------------------------------------------------------------------------- CLI


def test_cli_writes_png_and_json(weights_file, tmp_path, capsys):
    q = make_jpeg(tmp_path / "q.jpg", size=(120, 90), seed=11)
    r = make_png(tmp_path / "r.png", size=(80, 100), seed=12)
    out = tmp_path / "out" / "explain.png"
    args = cli_args(tmp_path / "data", weights_file)
    rc = main([*args, "explain", str(q), str(r), "-o", str(out), "--json", "--max-side", "100"])
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    assert info["output"] == str(out)
    assert set(info["branches"]) == {"attention", "global"}
    assert info["query_map_sum"] == pytest.approx(info["score"], abs=1e-6)
    assert info["result_map_sum"] == pytest.approx(info["score"], abs=1e-6)
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.width == 100 + colormap.GAP + 80  # q thumbnailed to 100x75, r is 80x100
        assert img.height > 100
        assert list(img.size) == info["size"]
    rc = main([*args, "explain", str(q), str(r), "-o", str(out), "--branch", "global", "--json"])
    info = json.loads(capsys.readouterr().out)
    assert info["branch"] == "global"
    assert info["query_map_sum"] == pytest.approx(info["branches"]["global"], abs=1e-6)


def test_cli_errors_are_one_line(weights_file, tmp_path, capsys):
    q = make_jpeg(tmp_path / "q.jpg", seed=1)
    args = cli_args(tmp_path / "data", weights_file)
    out = str(tmp_path / "o.png")
    assert main([*args, "explain", str(q), str(tmp_path / "missing.jpg"), "-o", out]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.jpg" in err and "not found" in err
    assert main([*args, "explain", str(q), str(q), "-o", out, "--opacity", "2"]) == 2
    assert "opacity" in capsys.readouterr().err
