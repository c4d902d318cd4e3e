"""Uniform borders (letterbox, pillarbox, mat, canvas) of any colour, found and trimmed.

Used by the duplicate signature (core/imagesig.py) and the geometric check (core/dupes/
geometry.py), so a framed copy compares like its original. Changing a constant here changes
both: bump imagesig.VERSION and dupes.geometry.VERSION with it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BORDER_STD = 3.0  # a border row/column varies less than this (0-255 scale) ...
BORDER_DIFF = 6.0  # ... and its mean colour stays this close to the outermost row's
BORDER_MAX = 0.4  # never trim more than this fraction of a side from one edge


def _uniform_run(lines: np.ndarray) -> int:
    """How many leading lines (axis 0 of (L, W, C)) are a flat band of one colour.

    Lines are tested in growing blocks (most photos fail on the first line, a border runs
    on), each block's std and mean in one numpy call: the same test line by line."""
    ref = lines[0].astype(np.float32).mean(axis=0)
    limit = int(len(lines) * BORDER_MAX)
    n, step = 0, 1
    while n < limit:
        block = lines[n : min(limit, n + step)].astype(np.float32)  # only the lines tested
        bad = (block.std(axis=1).max(axis=1) > BORDER_STD) | (
            np.abs(block.mean(axis=1) - ref).max(axis=1) > BORDER_DIFF
        )
        if bad.any():
            return n + int(np.argmax(bad))
        n += len(block)
        step *= 4
    return n


def _flat_edges(x: np.ndarray) -> np.ndarray:
    """(top, bottom, left, right): whether each outermost line of (H, W, C) x varies by at most
    BORDER_STD in every channel. The four lines' variances from one pass of sums (a few small
    numpy calls, not four std calls: this runs once per photo signed)."""
    h, w = x.shape[:2]
    lines = np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]]).astype(np.float64)  # (2w+2h, C)
    starts = np.array([0, w, 2 * w, 2 * w + h])
    n = np.array([w, w, h, h], np.float64)[:, None]
    mean = np.add.reduceat(lines, starts, axis=0) / n
    var = np.add.reduceat(lines * lines, starts, axis=0) / n - mean * mean
    return var.max(axis=1) <= BORDER_STD * BORDER_STD


def border_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the picture inside a uniform border of any colour.

    `rgb`: (H, W, 3) or (H, W) array. A border is a run of rows/columns, each of near-constant
    colour, all of the colour of the outermost one (letterbox, pillarbox, mat, canvas). One
    more line is trimmed past the border, where resampling and JPEG blend it with the picture.
    """
    x = np.asarray(rgb)  # lines are converted to float as they are tested
    if x.ndim == 2:
        x = x[:, :, None]
    h, w = x.shape[:2]
    flat = _flat_edges(x)
    if not flat.any():
        return 0, 0, w, h  # no edge is flat (most photos): what _uniform_run would find
    # an edge whose outermost line is not flat has no border (_uniform_run's first test)
    top = _uniform_run(x) if flat[0] else 0
    bottom = _uniform_run(x[::-1]) if flat[1] else 0
    left = _uniform_run(x.transpose(1, 0, 2)) if flat[2] else 0
    right = _uniform_run(x.transpose(1, 0, 2)[::-1]) if flat[3] else 0
    top, bottom, left, right = (v + 1 if v else 0 for v in (top, bottom, left, right))
    if h - top - bottom < h * 0.2 or w - left - right < w * 0.2:
        return 0, 0, w, h  # nearly all flat: not a bordered picture
    return left, top, w - right, h - bottom


def trim_border(img: Image.Image) -> Image.Image:
    """The picture without its uniform border (the image itself when it has none)."""
    box = border_box(np.asarray(img if img.mode == "RGB" else img.convert("RGB")))
    return img if box == (0, 0, img.width, img.height) else img.crop(box)
