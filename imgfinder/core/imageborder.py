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
    rows = x[[0, -1]].astype(np.float32).std(axis=1).max(axis=1)  # outermost lines' spread
    cols = x[:, [0, -1]].astype(np.float32).std(axis=0).max(axis=1)
    if (rows > BORDER_STD).all() and (cols > BORDER_STD).all():
        return 0, 0, w, h  # no edge is flat (most photos): what _uniform_run would find
    top = _uniform_run(x)
    bottom = _uniform_run(x[::-1])
    left = _uniform_run(x.transpose(1, 0, 2))
    right = _uniform_run(x.transpose(1, 0, 2)[::-1])
    top, bottom, left, right = (v + 1 if v else 0 for v in (top, bottom, left, right))
    if h - top - bottom < h * 0.2 or w - left - right < w * 0.2:
        return 0, 0, w, h  # nearly all flat: not a bordered picture
    return left, top, w - right, h - bottom


def trim_border(img: Image.Image) -> Image.Image:
    """The picture without its uniform border (the image itself when it has none)."""
    box = border_box(np.asarray(img.convert("RGB")))
    return img if box == (0, 0, img.width, img.height) else img.crop(box)
