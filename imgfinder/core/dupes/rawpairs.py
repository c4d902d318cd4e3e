"""RAW+JPEG pairs: a camera's RAW file and the JPEG (or HEIC) it wrote of the same shot.

They are one photo to a photographer, so the duplicate finder's "same photo" tier groups them
(score 1, like identical files) and search results can show a pair as one photo. Two files
pair when they are in the same folder with the same base name (IMG_0042.CR3 + IMG_0042.JPG),
or when their EXIF capture time (to the second) and camera are the same and no other file of
that camera shares that second (a burst of several frames per second never pairs by time).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from imgfinder.core.photometa import PhotoMeta
from imgfinder.core.raw import RAW_EXTENSIONS

# Formats a camera writes next to its RAW (what "the JPEG" of a RAW+JPEG pair can be).
DEVELOPED_EXTENSIONS = frozenset(".jpg .jpeg .jpe .heic .heif .hif .avif .tif .tiff".split())


def is_raw(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in RAW_EXTENSIONS


def _developed(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in DEVELOPED_EXTENSIONS


def raw_jpeg_pairs(
    paths: Sequence[str], metas: Mapping[int, PhotoMeta] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) positions into `paths` (a < b) of RAW+JPEG pairs; `metas`: position -> metadata."""
    metas = metas or {}
    pairs: set[tuple[int, int]] = set()
    by_stem: dict[tuple[str, str], list[int]] = {}
    for i, p in enumerate(paths):
        if is_raw(p) or _developed(p):
            folder, name = os.path.split(p)
            stem = os.path.splitext(name)[0]
            by_stem.setdefault((os.path.normcase(folder), stem.casefold()), []).append(i)
    for members in by_stem.values():
        raws = [i for i in members if is_raw(paths[i])]
        others = [i for i in members if not is_raw(paths[i])]
        for r in raws:
            for o in others:
                pairs.add((min(r, o), max(r, o)))
    by_shot: dict[tuple[str, str], list[int]] = {}
    for i, m in metas.items():
        if m.taken and m.camera and (is_raw(paths[i]) or _developed(paths[i])):
            by_shot.setdefault((m.taken[:19], m.camera.casefold()), []).append(int(i))
    for members in by_shot.values():
        raws = [i for i in members if is_raw(paths[i])]
        others = [i for i in members if not is_raw(paths[i])]
        if len(raws) == 1 and len(others) == 1:  # unambiguous: not a burst
            r, o = raws[0], others[0]
            pairs.add((min(r, o), max(r, o)))
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.asarray(sorted(pairs), np.int64)
    return arr[:, 0], arr[:, 1]


def collapse_pairs(hits: Sequence, companion_of: Mapping[int, int]) -> list:
    """Search results with each RAW+JPEG pair shown once: the first (best-scoring) of the two
    stays, its companion is dropped. `companion_of`: image id -> the other file's image id."""
    seen: set[int] = set()
    out = []
    for h in hits:
        if h.image_id in seen:
            continue
        seen.add(h.image_id)
        other = companion_of.get(h.image_id)
        if other is not None:
            seen.add(other)
        out.append(h)
    return out
