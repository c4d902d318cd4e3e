"""Border trimming and geometric verification of "same photo" candidates with local features.

Why: the DCT signature and the old pixel check compare squashed whole frames, so a copy with a
letterbox, a border, a 25% crop or a 3-10° tilt no longer lines up with its original. Here
each photo is decoded once at WORK_SIDE px (longest side), its uniform border (any colour) is
trimmed, and SIFT keypoints are taken from it and from its mirror image. A pair is matched
(ratio test), a similarity transform (rotation, uniform scale, shift) is fitted with RANSAC,
and the pair is then checked twice in that alignment:

* detail correlation: grey minus a Gaussian blur, correlated over the overlap. A copy keeps
  the texture at the same place; a re-take of the scene (subject moved, other noise) does not;
* containment: a copy is a crop of the original, or the original plus a border/fill, so the
  textured pixels of one of the two lie (almost) all inside the other's frame. A shot taken a
  moment later with the camera moved has textured content on each side that the other lacks.

SIFT rather than ORB: measured on the benchmark's copies (see benchmarks/duplicates.py), SIFT
keeps enough RANSAC inliers on 50% downscales, JPEG q60 and ±10° rotations where ORB's FAST
corners thin out on soft flower photos; descriptors are computed once per photo (cached), so
its extra cost is per photo, not per pair. Neither descriptor is mirror-invariant, hence the
mirrored set. Scores are in [0, 1] (NaN: a file could not be decoded); no Qt, no torch.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgfinder.core.imageborder import (  # noqa: F401 (border_box: part of this module's API)
    BORDER_DIFF,
    BORDER_MAX,
    BORDER_STD,
    border_box,
    trim_border,
)

log = logging.getLogger(__name__)

VERSION = 3  # bump when any constant below changes (1 was verify.py): cached scores are redone
EARLY_SCORE = 0.9  # a fit this good in the orientation tried first ends the check (3: new)
MIRRORING = (1, 2, 4, 7)  # signature.ORIENTATIONS that include a mirror (determinant -1)
WORK_SIDE = 384  # photos are compared with their longest side at this many pixels
N_FEATURES = 1000
CONTRAST = 0.02  # SIFT contrast threshold (OpenCV default 0.04): keypoints on soft photos too
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 4.0  # reprojection tolerance at WORK_SIDE
MIN_INLIERS = 10
SCALE_RANGE = (0.25, 4.0)  # a copy is not scaled beyond this relative to its original
DETAIL_SIGMA = 2.5  # detail = blur(DETAIL_FINE) - blur(DETAIL_SIGMA), in pixels
DETAIL_FINE = 1.0
TEXTURE_STD = 2.0
TEXTURE_SIGMA = 1.0
SUBPIXEL = [(dx, dy) for dx in (-0.5, 0.0, 0.5) for dy in (-0.5, 0.0, 0.5)]
EDGE_PX = 4  # frames are compared give or take this many pixels  # local grey std above which a pixel counts as content, not flat fill
FILL_TOL = 8.0  # grey levels: fill outside the other photo's frame is one colour
CONTAIN_FULL = 0.985  # textured share of one photo inside the other from which it is a copy
CONTAIN_ZERO = 0.95  # ... and below which it is not (score scaled linearly in between)


def _cv2():
    import cv2  # noqa: PLC0415 (an app dependency, imported on first use: start-up stays fast)

    return cv2


# -- per-photo features ----------------------------------------------------------------------
@dataclass
class PhotoFeatures:
    grey: np.ndarray  # (h, w) float32, border trimmed, longest side <= WORK_SIDE
    detail: np.ndarray  # grey minus its blur
    textured: np.ndarray  # bool (h, w): content rather than flat fill
    xy: np.ndarray  # (n, 2) float32 keypoint positions
    desc: np.ndarray | None  # (n, 128) float32 SIFT descriptors
    g8: np.ndarray  # (h, w) uint8 grey, for the mirror image's keypoints
    _mirror: tuple[np.ndarray, np.ndarray | None] | None = None

    def mirrored(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Keypoints of the mirror image, in mirrored coordinates (computed on first use:
        most pairs fit without them, and SIFT is most of a photo's cost)."""
        got = self._mirror
        if got is None:  # two threads may both compute it: same result, no harm
            got = self._mirror = _keypoints(np.ascontiguousarray(self.g8[:, ::-1]))
        return got


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return _cv2().GaussianBlur(x, (0, 0), sigma, borderType=_cv2().BORDER_REFLECT)


def _band(grey: np.ndarray, unit: float) -> np.ndarray:
    """Band-pass detail (edges and texture, without pixel noise that resampling smears);
    `unit`: one pixel of the comparison frame in this photo's pixels."""
    return _blur(grey, DETAIL_FINE * unit) - _blur(grey, DETAIL_SIGMA * unit)


def _keypoints(grey_u8: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    sift = _sift()
    kps, desc = sift.detectAndCompute(grey_u8, None)
    xy = np.asarray([k.pt for k in kps], np.float32).reshape(-1, 2)
    return xy, desc


@functools.lru_cache(maxsize=1)
def _sift_factory():
    return _cv2().SIFT_create


_tls = threading.local()


def _sift():
    s = getattr(_tls, "sift", None)
    if s is None:  # one detector per thread: OpenCV objects are not shared across threads
        s = _tls.sift = _sift_factory()(nfeatures=N_FEATURES, contrastThreshold=CONTRAST)
    return s


def features_of(img: Image.Image) -> PhotoFeatures:
    """Trim, shrink to WORK_SIDE and describe one photo (both orientations of its mirror)."""
    rgb = img.convert("RGB")
    scale = WORK_SIDE / max(rgb.size)
    if scale < 1:
        rgb = rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
            Image.Resampling.BOX,
        )
    rgb = trim_border(rgb)
    g8 = np.asarray(rgb.convert("L"))
    grey = g8.astype(np.float32)
    detail = _band(grey, 1.0)
    mean = _blur(grey, TEXTURE_SIGMA)
    var = np.maximum(_blur(grey * grey, TEXTURE_SIGMA) - mean * mean, 0)
    textured = np.sqrt(var) > TEXTURE_STD
    xy, desc = _keypoints(g8)
    return PhotoFeatures(grey, detail, textured, xy, desc, g8)


def load_features(path: str) -> PhotoFeatures:
    """Decode a file (upright, sRGB, shrunk while decoding) and describe it; raises DecodeError."""
    from imgfinder.core import decode  # noqa: PLC0415

    return features_of(decode.open_image(path, min_size=WORK_SIDE // 2))


# -- one pair ----------------------------------------------------------------------------------
@dataclass
class Match:
    score: float  # detail correlation x containment factor, in [0, 1]
    inliers: int
    correlation: float
    containment: float
    mirrored: bool
    rotation_deg: float
    scale: float


NO_MATCH = Match(0.0, 0, 0.0, 0.0, False, 0.0, 1.0)


def _fit(fa: PhotoFeatures, xy_b: np.ndarray, desc_b, w_b: int, mirrored: bool):
    cv2 = _cv2()
    if fa.desc is None or desc_b is None or len(fa.desc) < 2 or len(desc_b) < 2:
        return None
    pairs = _matcher().knnMatch(desc_b, fa.desc, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = xy_b[[m.queryIdx for m in good]]  # mirrored photo's coordinates when mirrored
    dst = fa.xy[[m.trainIdx for m in good]]
    m, inl = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=2000
    )
    if m is None or inl is None:
        return None
    n_in = int(inl.sum())
    if n_in < MIN_INLIERS:
        return None
    if mirrored:  # x_b_mirrored = w-1-x_b: compose so the matrix maps unmirrored b onto a
        flip = np.array([[-1, 0, w_b - 1], [0, 1, 0], [0, 0, 1]], np.float64)
        m = (np.vstack([m, [0, 0, 1]]) @ flip)[:2]
    return m, n_in


@functools.lru_cache(maxsize=1)
def _matcher_factory():
    return _cv2().BFMatcher


def _matcher():
    mt = getattr(_tls, "matcher", None)
    if mt is None:
        mt = _tls.matcher = _matcher_factory()(_cv2().NORM_L2)
    return mt


def _inside(m: np.ndarray, src_shape, size) -> np.ndarray:
    """Which pixels of a frame of `size` (w, h) the warped frame of src_shape (h, w) covers."""
    cv2 = _cv2()
    ones = np.ones(src_shape, np.uint8)
    return cv2.warpAffine(ones, m, size, flags=cv2.INTER_NEAREST, borderValue=0) > 0


def _contained(grey: np.ndarray, near: np.ndarray) -> float:
    """Share of a photo inside the other's frame (`near`): 1 when what lies outside is flat
    fill of one colour (the corners of a rotated copy, a border the trim left), else by area."""
    out = ~near
    n_out = int(out.sum())
    if n_out == 0:
        return 1.0
    core = _cv2().erode(out.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0  # off the seam
    v = grey[core] if core.any() else grey[out]
    if np.mean(np.abs(v - np.median(v)) <= FILL_TOL) >= 0.95:
        return 1.0
    return 1.0 - n_out / grey.size


def _check(fa: PhotoFeatures, fb: PhotoFeatures, m: np.ndarray) -> tuple[float, float]:
    """(detail correlation over the overlap, containment) of a pair aligned by m (b -> a)."""
    cv2 = _cv2()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale > 1:  # b is the coarser photo: compare in b's frame
        fa, fb, m, scale = fb, fa, cv2.invertAffineTransform(m), 1 / scale
    ha, wa = fa.grey.shape
    hb, wb = fb.grey.shape
    inside_b = _inside(m, (hb, wb), (wa, ha))
    overlap = cv2.erode(inside_b.astype(np.uint8), np.ones((2 * EDGE_PX + 1,) * 2, np.uint8)) > 0
    both = overlap & fa.textured
    if both.sum() < 0.02 * ha * wa:
        return 0.0, 0.0
    x = fa.detail[both]
    x = x - x.mean()
    nx = float(np.sqrt(x @ x))
    src = fb.grey if scale >= 0.95 else _blur(fb.grey, 0.5 / scale)
    det_src = _band(src, 1.0 / scale)
    corr = -1.0
    # keypoint fits are off by up to about half a pixel, enough to pull fine detail apart
    for dx, dy in SUBPIXEL:
        mm = m.copy()
        mm[0, 2] += dx
        mm[1, 2] += dy
        det_b = cv2.warpAffine(det_src, mm, (wa, ha), flags=cv2.INTER_LINEAR, borderValue=0)
        y = det_b[both]
        y = y - y.mean()
        corr = max(corr, float(x @ y / max(nx * np.sqrt(y @ y), 1e-6)))
    # how much of one photo lies inside the other's frame (flat fill outside it is allowed)
    grow = np.ones((2 * EDGE_PX + 1,) * 2, np.uint8)
    a_in_b = _contained(fa.grey, cv2.dilate(inside_b.astype(np.uint8), grow) > 0)
    inside_a = _inside(cv2.invertAffineTransform(m), (ha, wa), (wb, hb))
    b_in_a = _contained(fb.grey, cv2.dilate(inside_a.astype(np.uint8), grow) > 0)
    return max(corr, 0.0), max(a_in_b, b_in_a)


def match(fa: PhotoFeatures, fb: PhotoFeatures, mirrored_first: bool = False) -> Match:
    """Best geometric match of b onto a, straight or mirrored; NO_MATCH when none fits.

    The orientation tried first (`mirrored_first`: the signature's guess) is enough when it
    scores EARLY_SCORE or more; otherwise the other one is tried too and the better kept."""
    wb = fb.grey.shape[1]
    best = NO_MATCH
    for mirrored in (mirrored_first, not mirrored_first):
        if best.score >= EARLY_SCORE:
            break
        xy, desc = fb.mirrored() if mirrored else (fb.xy, fb.desc)
        fit = _fit(fa, xy, desc, wb, mirrored)
        if fit is None:
            continue
        m, n_in = fit
        lin = m[:, :2]
        scale = float(np.sqrt(abs(np.linalg.det(lin))))
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            continue
        corr, contain = _check(fa, fb, m)
        factor = float(np.clip((contain - CONTAIN_ZERO) / (CONTAIN_FULL - CONTAIN_ZERO), 0, 1))
        rot = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
        cand = Match(corr * factor, n_in, corr, contain, mirrored, rot, scale)
        if (cand.score, cand.inliers) > (best.score, best.inliers):
            best = cand
    return best


class GeometricVerifier:
    """Scores pairs of files; described photos are kept in a small LRU shared by threads."""

    def __init__(self, cache_items: int = 256):
        self.cache_items = cache_items
        self._cache: OrderedDict[str, PhotoFeatures | None] = OrderedDict()
        self._lock = threading.Lock()
        self.decoded = 0

    def features(self, path: str) -> PhotoFeatures | None:
        with self._lock:
            if path in self._cache:
                self._cache.move_to_end(path)
                return self._cache[path]
        try:
            f: PhotoFeatures | None = load_features(path)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is simply not verified
            log.info("cannot verify %s: %s", path, exc)
            f = None
        with self._lock:
            self.decoded += 1
            self._cache[path] = f
            while len(self._cache) > self.cache_items:
                self._cache.popitem(last=False)
        return f

    def match(self, path_a: str, path_b: str, mirrored_first: bool = False) -> Match | None:
        fa, fb = self.features(path_a), self.features(path_b)
        if fa is None or fb is None:
            return None
        return match(fa, fb, mirrored_first)

    def __call__(self, path_a: str, path_b: str, orientation: int = 0) -> float:
        """Copy score in [0, 1]; NaN when either file cannot be decoded. `orientation` (the
        signature's guess, an index into signature.ORIENTATIONS) only decides whether the
        mirrored fit is tried first: the fit finds rotation and mirroring itself."""
        got = self.match(path_a, path_b, orientation in MIRRORING)
        return float("nan") if got is None else got.score


# -- closing groups of copies ----------------------------------------------------------------
CLOSE_FROM = 0.5  # copy score (the copy slider's lower end) from which links join components
CLOSE_MAX = 40  # components up to this size have their missing pairs checked


def missing_links(
    a: np.ndarray, b: np.ndarray, copy: np.ndarray, n: int, exact: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs inside a component of verified copy links that were never checked.

    Candidate search proposes each photo's k nearest neighbours only, and the feature gate
    checks only a photo's nearest (pairs.FEATURE_RANK), so in a family of many copies some
    pairs are never proposed or never checked (copy NaN), and complete-linkage grouping (every
    two members linked) then splits the family. These pairs are checked like any other, not
    assumed: A~B and B~C only make A~C worth checking. (a < b positions; returns a < b, both
    pairs absent from (a, b) and pairs present there with a NaN copy score.)
    """
    with np.errstate(invalid="ignore"):
        strong = copy >= CLOSE_FROM
    if exact is not None:
        strong |= exact
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a[strong].tolist(), b[strong].tolist()):
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)
    members: dict[int, list[int]] = {}
    for x in set(a[strong].tolist()) | set(b[strong].tolist()):
        members.setdefault(find(x), []).append(x)
    checked = np.isfinite(copy) if exact is None else (np.isfinite(copy) | exact)
    have = set((a[checked] * n + b[checked]).tolist())
    out_a, out_b = [], []
    for m in members.values():
        if not 2 < len(m) <= CLOSE_MAX:
            continue
        m.sort()
        for i in range(len(m)):
            for j in range(i + 1, len(m)):
                if m[i] * n + m[j] not in have:
                    out_a.append(m[i])
                    out_b.append(m[j])
    return np.asarray(out_a, np.int64), np.asarray(out_b, np.int64)
