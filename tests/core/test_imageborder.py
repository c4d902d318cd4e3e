"""Uniform borders found by imageborder.border_box, against the rule applied line by line."""

from __future__ import annotations

import numpy as np

from imgfinder.core.imageborder import BORDER_DIFF, BORDER_MAX, BORDER_STD, border_box


def _reference(x: np.ndarray) -> tuple[int, int, int, int]:
    """border_box's rule, one line at a time (slow and plain)."""
    x = x[:, :, None] if x.ndim == 2 else x
    h, w = x.shape[:2]

    def run(lines: np.ndarray) -> int:
        ref = lines[0].astype(np.float64).mean(axis=0)
        n = 0
        while n < int(len(lines) * BORDER_MAX):
            line = lines[n].astype(np.float64)
            if line.std(axis=0).max() > BORDER_STD or np.abs(line.mean(axis=0) - ref).max() > (
                BORDER_DIFF
            ):
                break
            n += 1
        return n

    t, b = run(x), run(x[::-1])
    left, r = run(x.transpose(1, 0, 2)), run(x.transpose(1, 0, 2)[::-1])
    t, b, left, r = (v + 1 if v else 0 for v in (t, b, left, r))
    if h - t - b < h * 0.2 or w - left - r < w * 0.2:
        return 0, 0, w, h
    return left, t, w - r, h - b


def test_border_box_follows_the_line_by_line_rule():
    rng = np.random.default_rng(3)
    bordered = 0
    for k in range(120):
        h, w = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        x = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        if k % 4 == 1:  # a smooth picture: flat-ish lines that are no border
            x = np.broadcast_to(np.linspace(0, 255, w, dtype=np.uint8)[None, :, None], (h, w, 3))
            x = np.ascontiguousarray(x)
        for side in np.flatnonzero(rng.random(4) < 0.4):  # bands of one colour, some noisy
            depth = int(rng.integers(1, 20))
            colour = rng.integers(0, 256, 3)
            band = colour + rng.normal(0, 1.5 if k % 3 else 0.0, (depth, 1, 3))
            band = np.clip(band, 0, 255).astype(np.uint8)
            if side == 0:
                x[:depth] = band
            elif side == 1:
                x[h - depth :] = band
            elif side == 2:
                x[:, :depth] = band.transpose(1, 0, 2)
            else:
                x[:, w - depth :] = band.transpose(1, 0, 2)
        box = border_box(x)
        assert box == _reference(x), k
        assert border_box(x.mean(axis=2).astype(np.uint8)) == _reference(
            x.mean(axis=2).astype(np.uint8)
        ), k
        bordered += box != (0, 0, w, h)
    assert bordered > 30  # the borders were found, not only the plain pictures
