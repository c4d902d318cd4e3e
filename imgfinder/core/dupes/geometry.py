"""Border trimming and geometric verification of "same photo" candidates with local features.

Why: the DCT signature and the old pixel check compare squashed whole frames, so a copy with a
letterbox, a border, a 25% crop or a 3-10° tilt no longer lines up with its original. Here
each photo is decoded once at WORK_SIDE px (longest side), its uniform border (any colour) is
trimmed, and keypoints are taken from it and from its mirror image. A pair is matched (ratio
test), a similarity transform (rotation, uniform scale, shift) is fitted with RANSAC, and the
pair is then checked in that alignment:

* detail correlation: grey minus a Gaussian blur, correlated over the overlap. A copy keeps
  the texture at the same place; a re-take of the scene (subject moved, other noise) does not;
* containment: a copy is a crop of the original, or the original plus a border/fill, so the
  textured pixels of one of the two lie (almost) all inside the other's frame. A shot taken a
  moment later with the camera moved has textured content on each side that the other lacks;
* tone: the median ratio of the two photos' grey levels over the overlap. A copy keeps its
  tones; a shot of the same scene at another exposure does not. It only lowers the score a
  little (TONE_WEIGHT at a x1.25 / x0.8 exposure change), so an edited copy stays a copy, but
  where a copy lies inside both its original and a re-exposed shot made from the same frame,
  it is grouped with the original (complete linkage takes the stronger link first).

SIFT in the full scan; ORB first, SIFT for near misses, in the scan without the CNN
(FAST_DETECTORS, scores cached apart under FAST_VERSION), where speed beside the hash tools is
the point. ORB's fits are a little less exact: on benchmarks/duplicates.py (7 copies and 4
shot-like variants of each original, grouped by complete linkage) the same-photo recall at
the default is 0.940 with ORB first against 0.987 with SIFT, as slightly different scores
change which of two mutually incompatible crops joins a family first. ORB (FAST corners with
a small border and threshold, so
small soft photos keep enough of them) costs about a tenth of SIFT per photo (OpenCV's SIFT
doubles the image first). On the benchmarks' 348 hard copies (crops of 10-25%, borders,
letterbox/pillarbox, tilts of 3-10°, 90° steps, mirrors, 50% resizes, JPEG q60; flower photos
of 197 px and generated 384 px scenes, benchmarks/dupes_copies.py) an ORB fit alone scored
every copy >= 0.8, so SIFT is tried only when ORB's best fit is a near miss (SIFT_FROM up to
EARLY_SCORE and not settled); a pair where ORB finds no fit at all is not a copy. A fit with
SETTLED_INLIERS inliers whose detail lines up is the alignment, so a moved frame is rejected
without trying the other orientation or detector. Keypoints and the comparison layers are
computed per photo when first needed and cached with it. Neither descriptor is
mirror-invariant, hence the mirrored sets. Scores are in [0, 1] (NaN: a file could not be
decoded); no Qt, no torch.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from imgfinder.core import imagesig
from imgfinder.core.imageborder import (  # noqa: F401 (border_box: part of this module's API)
    BORDER_DIFF,
    BORDER_MAX,
    BORDER_STD,
    border_box,
    trim_border,
)

log = logging.getLogger(__name__)

VERSION = 4  # bump when any constant below changes (1 was verify.py): cached scores are redone
EARLY_SCORE = 0.9  # a fit this good in the orientation tried first ends the check (3: new)
MIRRORING = imagesig.MIRRORING  # signature.ORIENTATIONS that include a mirror
SURE_SIGNATURE = 0.85  # a signature this close (pairs.SIG_GATE) ...
SURE_MARGIN = 0.1  # ... this much closer with than without a mirror (or the reverse) decides
# the handedness: when no fit is found that way, the other is not tried (4: new)
WORK_SIDE = 384  # photos are compared with their longest side at this many pixels
N_FEATURES = 1000  # SIFT keypoints per photo
DETECTORS = ("sift",)  # keypoints tried in turn until a fit scores EARLY_SCORE (the CNN scan)
FAST_DETECTORS = ("orb", "sift")  # ... in the scan without the CNN: ORB first (4: new)
FAST_REVISION = 2  # bump when a constant only the ORB-first check uses changes (2: ORB_FEATURES)
FAST_VERSION = 1000 * FAST_REVISION + VERSION  # its scores are cached apart (load_verified)
SIFT_FROM = 0.5  # SIFT is tried only when ORB's best fit scores this much (a near miss)
ORB_FEATURES = 200  # ORB keypoints per photo (matching costs their square; 500 before FAST_REVISION
# 2 cost 1.5x the check's CPU at the 3.5k files and found the same copies)
ORB_EDGE = 19  # ORB patch and border (default 31): keypoints nearer the edge of small photos
ORB_FAST = 10  # FAST corner threshold (default 20): corners on soft photos too
CONTRAST = 0.02  # SIFT contrast threshold (OpenCV default 0.04): keypoints on soft photos too
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 4.0  # reprojection tolerance at WORK_SIDE
MIN_INLIERS = 10
SETTLED_INLIERS = 40  # a fit with this many inliers ...
SETTLED_CORRELATION = 0.8  # ... and detail correlation is the alignment: its score stands (4)
SCALE_RANGE = (0.25, 4.0)  # a copy is not scaled beyond this relative to its original
DETAIL_SIGMA = 2.5  # detail = blur(DETAIL_FINE) - blur(DETAIL_SIGMA), in pixels
DETAIL_FINE = 1.0
TEXTURE_STD = 2.0
TEXTURE_SIGMA = 1.0
SUBPIXEL = sorted(
    ((dx, dy) for dx in (-0.5, 0.0, 0.5) for dy in (-0.5, 0.0, 0.5)), key=lambda d: d != (0, 0)
)
SUBPIXEL_ENOUGH = 0.98  # a correlation this high is not searched over sub-pixel shifts (4)
EDGE_PX = 4  # frames are compared give or take this many pixels  # local grey std above which a pixel counts as content, not flat fill
FILL_TOL = 8.0  # grey levels: fill outside the other photo's frame is one colour
CONTAIN_FULL = 0.985  # textured share of one photo inside the other from which it is a copy
CONTAIN_ZERO = 0.95  # ... and below which it is not (score scaled linearly in between)
TONE_WEIGHT = 0.1  # score x (1 - TONE_WEIGHT) at a grey-level gain of TONE_FULL or 1/TONE_FULL
TONE_FULL = 1.25  # (4: new)
TONE_RANGE = (16.0, 200.0)  # grey levels where the gain is measured (x1.25 still unclipped)


def _cv2():
    import cv2  # noqa: PLC0415 (an app dependency, imported on first use: start-up stays fast)

    return cv2


# -- per-photo features ----------------------------------------------------------------------
@dataclass
class PhotoFeatures:
    g8: np.ndarray  # (h, w) uint8 grey, border trimmed, longest side <= WORK_SIDE
    _kp: dict = field(default_factory=dict)  # (detector, mirrored) -> (xy, desc)
    _maps: tuple | None = None  # (grey, detail, textured), made when a fit is checked

    def _layers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        got = self._maps
        if got is None:  # most candidate photos never get a fit: these are made on demand
            grey = self.g8.astype(np.float32)
            mean = _blur(grey, TEXTURE_SIGMA)
            var = np.maximum(_blur(grey * grey, TEXTURE_SIGMA) - mean * mean, 0)
            got = self._maps = (grey, _band(grey, 1.0), np.sqrt(var) > TEXTURE_STD)
        return got

    @property
    def grey(self) -> np.ndarray:  # (h, w) float32
        return self._layers()[0]

    @property
    def detail(self) -> np.ndarray:  # band-pass detail of grey
        return self._layers()[1]

    @property
    def textured(self) -> np.ndarray:  # bool (h, w): content rather than flat fill
        return self._layers()[2]

    def keypoints(self, detector: str = "sift", mirrored: bool = False):
        """(xy (n, 2) float32, descriptors or None) of one detector, of the photo or of its
        mirror image (in mirrored coordinates); computed on first use and kept: most pairs
        are decided by ORB, and SIFT is most of a photo's cost. Two threads may both compute
        one: same result, no harm."""
        key = (detector, mirrored)
        got = self._kp.get(key)
        if got is None:
            g = np.ascontiguousarray(self.g8[:, ::-1]) if mirrored else self.g8
            got = self._kp[key] = _keypoints(g, detector)
        return got

    @property
    def xy(self) -> np.ndarray:  # SIFT keypoints (rerank.LocalVerifier reads these)
        return self.keypoints()[0]

    @property
    def desc(self) -> np.ndarray | None:
        return self.keypoints()[1]


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    return _cv2().GaussianBlur(x, (0, 0), sigma, borderType=_cv2().BORDER_REFLECT)


def _band(grey: np.ndarray, unit: float) -> np.ndarray:
    """Band-pass detail (edges and texture, without pixel noise that resampling smears);
    `unit`: one pixel of the comparison frame in this photo's pixels."""
    return _blur(grey, DETAIL_FINE * unit) - _blur(grey, DETAIL_SIGMA * unit)


def _keypoints(grey_u8: np.ndarray, detector: str = "sift") -> tuple[np.ndarray, np.ndarray | None]:
    kps, desc = _detector(detector).detectAndCompute(grey_u8, None)
    # KeyPoint_convert: the same (x, y) floats as [k.pt for k in kps], without the Python loop
    xy = (_cv2().KeyPoint_convert(kps) if kps else np.zeros((0, 2))).astype(np.float32)
    xy = xy.reshape(-1, 2)
    return xy, desc


_tls = threading.local()


def _detector(name: str):
    """One detector of each kind per thread: OpenCV objects are not shared across threads."""
    d = getattr(_tls, name, None)
    if d is None:
        cv2 = _cv2()
        if name == "sift":
            d = cv2.SIFT_create(nfeatures=N_FEATURES, contrastThreshold=CONTRAST)
        elif name == "orb":
            d = cv2.ORB_create(
                nfeatures=ORB_FEATURES,
                edgeThreshold=ORB_EDGE,
                patchSize=ORB_EDGE,
                fastThreshold=ORB_FAST,
            )
        else:
            raise ValueError(f"unknown detector {name!r}")
        setattr(_tls, name, d)
    return d


def features_of(img: Image.Image) -> PhotoFeatures:
    """Trim and shrink one photo to WORK_SIDE; its keypoints are taken when first needed."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")  # never changed in place
    scale = WORK_SIDE / max(rgb.size)
    if scale < 1:
        rgb = rgb.resize(
            (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
            Image.Resampling.BOX,
        )
    return PhotoFeatures(np.asarray(trim_border(rgb).convert("L")))


def load_features(path: str) -> PhotoFeatures:
    """Decode a file (upright, sRGB, shrunk while decoding) and describe it; raises DecodeError.
    Plain JPEGs are decoded by jpegfast (the same pixels, without holding the Python lock)."""
    from imgfinder.core import decode, jpegfast  # noqa: PLC0415

    data = decode.read_file(path)
    return features_of(jpegfast.open_small(data, WORK_SIDE // 2, path_hint=path)[0])


# -- one pair ----------------------------------------------------------------------------------
@dataclass
class Match:
    score: float  # detail correlation x containment factor x tone factor, in [0, 1]
    inliers: int
    correlation: float
    containment: float
    mirrored: bool
    rotation_deg: float
    scale: float
    gain: float = 1.0  # grey-level ratio of the two over their overlap (exposure, tone edits)


NO_MATCH = Match(0.0, 0, 0.0, 0.0, False, 0.0, 1.0)


def _fit(fa: PhotoFeatures, fb: PhotoFeatures, mirrored: bool, detector: str):
    """(matrix mapping b onto a, inliers) of one detector's keypoints, or None."""
    cv2 = _cv2()
    xy_a, desc_a = fa.keypoints(detector)
    xy_b, desc_b = fb.keypoints(detector, mirrored)
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return None
    pairs = _matcher(detector).knnMatch(desc_b, desc_a, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < MIN_INLIERS:
        return None
    src = xy_b[[m.queryIdx for m in good]]  # mirrored photo's coordinates when mirrored
    dst = xy_a[[m.trainIdx for m in good]]
    m, inl = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=2000
    )
    if m is None or inl is None:
        return None
    n_in = int(inl.sum())
    if n_in < MIN_INLIERS:
        return None
    if mirrored:  # x_b_mirrored = w-1-x_b: compose so the matrix maps unmirrored b onto a
        w_b = fb.g8.shape[1]
        flip = np.array([[-1, 0, w_b - 1], [0, 1, 0], [0, 0, 1]], np.float64)
        m = (np.vstack([m, [0, 0, 1]]) @ flip)[:2]
    return m, n_in


def _matcher(detector: str):
    key = "matcher_" + detector
    mt = getattr(_tls, key, None)
    if mt is None:
        cv2 = _cv2()
        mt = cv2.BFMatcher(cv2.NORM_HAMMING if detector == "orb" else cv2.NORM_L2)
        setattr(_tls, key, mt)
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
    sel = np.flatnonzero(core)  # (index arrays: gathers ~9x faster than boolean masks here)
    v = _gather(grey, sel if len(sel) else np.flatnonzero(out))
    if np.mean(np.abs(v - np.median(v)) <= FILL_TOL) >= 0.95:
        return 1.0
    return 1.0 - n_out / grey.size


def _check(fa: PhotoFeatures, fb: PhotoFeatures, m: np.ndarray) -> tuple[float, float, float]:
    """(detail correlation over the overlap, containment, tone gain) of a pair aligned by m
    (b -> a). The gain is the median ratio of the two photos' grey levels over the overlap
    (either way round). Containment is measured first: when neither photo lies inside the
    other the pair scores 0 whatever its correlation, which is then not computed (0)."""
    cv2 = _cv2()
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale > 1:  # b is the coarser photo: compare in b's frame
        fa, fb, m, scale = fb, fa, cv2.invertAffineTransform(m), 1 / scale
    ha, wa = fa.grey.shape
    hb, wb = fb.grey.shape
    inside_b = _inside(m, (hb, wb), (wa, ha))
    # how much of one photo lies inside the other's frame (flat fill outside it is allowed)
    grow = np.ones((2 * EDGE_PX + 1,) * 2, np.uint8)
    a_in_b = _contained(fa.grey, cv2.dilate(inside_b.astype(np.uint8), grow) > 0)
    inside_a = _inside(cv2.invertAffineTransform(m), (ha, wa), (wb, hb))
    b_in_a = _contained(fb.grey, cv2.dilate(inside_a.astype(np.uint8), grow) > 0)
    contain = max(a_in_b, b_in_a)
    if contain < CONTAIN_ZERO:
        return 0.0, contain, 1.0
    overlap = cv2.erode(inside_b.astype(np.uint8), grow) > 0
    both = np.flatnonzero(overlap & fa.textured)  # flat indices of the compared pixels
    if len(both) < 0.02 * ha * wa:
        return 0.0, 0.0, 1.0
    x = _gather(fa.detail, both)
    x = x - x.mean()
    nx = float(np.sqrt(x @ x))
    src = fb.grey if scale >= 0.95 else _blur(fb.grey, 0.5 / scale)
    det_src = _band(src, 1.0 / scale)
    corr = -1.0
    # keypoint fits are off by up to about half a pixel, enough to pull fine detail apart;
    # the unshifted fit comes first and one this good is not searched further
    for dx, dy in SUBPIXEL:
        if corr >= SUBPIXEL_ENOUGH:
            break
        mm = m.copy()
        mm[0, 2] += dx
        mm[1, 2] += dy
        det_b = cv2.warpAffine(det_src, mm, (wa, ha), flags=cv2.INTER_LINEAR, borderValue=0)
        y = _gather(det_b, both)
        y = y - y.mean()
        corr = max(corr, float(x @ y / max(nx * np.sqrt(y @ y), 1e-6)))
    grey_b = _gather(cv2.warpAffine(src, m, (wa, ha), flags=cv2.INTER_LINEAR, borderValue=0), both)
    grey_a = _gather(fa.grey, both)
    mid = (grey_a >= TONE_RANGE[0]) & (grey_a <= TONE_RANGE[1]) & (grey_b >= TONE_RANGE[0])
    mid &= grey_b <= TONE_RANGE[1]  # unclipped in both: a brightened copy clips its highlights
    mid = np.flatnonzero(mid)
    gain = float(np.median(grey_b[mid] / grey_a[mid])) if len(mid) >= 64 else 1.0
    return max(corr, 0.0), contain, gain


def _gather(x: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """x's pixels at flat (row-major) indices: x[mask] for flat = np.flatnonzero(mask)."""
    return x.reshape(-1)[flat]


def match(
    fa: PhotoFeatures,
    fb: PhotoFeatures,
    mirrored_first: bool = False,
    both_ways: bool = True,
    detectors: tuple[str, ...] | None = None,
) -> Match:
    """Best geometric match of b onto a, straight or mirrored; NO_MATCH when none fits.

    Keypoints of `detectors` (default DETECTORS) in turn: a fit scoring EARLY_SCORE or more
    ends the check, else the next detector is tried (only after a near miss, SIFT_FROM) and
    the best of all fits kept.
    Within a detector, the orientation tried first (`mirrored_first`: the signature's guess)
    is enough when it scores EARLY_SCORE or more; otherwise the other one is tried too,
    unless `both_ways` is False (the signature is sure of the handedness)."""
    best = NO_MATCH
    for n, detector in enumerate(detectors or DETECTORS):
        if n and best.score < SIFT_FROM:  # ORB found no fit, or one far from a copy's
            return best
        for mirrored in (mirrored_first, not mirrored_first)[: 2 if both_ways else 1]:
            if best.score >= EARLY_SCORE or _settled(best):
                return best
            cand = _match_one(fa, fb, mirrored, detector)
            if cand is not None and (cand.score, cand.inliers) > (best.score, best.inliers):
                best = cand
    return best


def _settled(m: Match) -> bool:
    """A fit this well supported whose detail lines up, or whose frames do not contain each
    other, is the pair's alignment: a low score then comes from containment (a moved frame),
    which no other orientation or detector changes."""
    if m.inliers < SETTLED_INLIERS:
        return False
    return m.correlation >= SETTLED_CORRELATION or m.containment < CONTAIN_ZERO


def _match_one(fa: PhotoFeatures, fb: PhotoFeatures, mirrored: bool, detector: str):
    fit = _fit(fa, fb, mirrored, detector)
    if fit is None:
        return None
    m, n_in = fit
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return None
    corr, contain, gain = _check(fa, fb, m)
    factor = float(np.clip((contain - CONTAIN_ZERO) / (CONTAIN_FULL - CONTAIN_ZERO), 0, 1))
    rot = float(np.degrees(np.arctan2(m[1, 0], m[0, 0])))
    tone = 1.0 - TONE_WEIGHT * min(1.0, abs(np.log(max(gain, 1e-3))) / np.log(TONE_FULL))
    return Match(corr * factor * tone, n_in, corr, contain, mirrored, rot, scale, gain)


class GeometricVerifier:
    """Scores pairs of files; described photos are kept in a small LRU shared by threads."""

    def __init__(self, cache_items: int = 256, detectors: tuple[str, ...] | None = None):
        self.cache_items = cache_items
        self.detectors = detectors or DETECTORS
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

    def match(
        self, path_a: str, path_b: str, mirrored_first: bool = False, both_ways: bool = True
    ) -> Match | None:
        fa, fb = self.features(path_a), self.features(path_b)
        if fa is None or fb is None:
            return None
        return match(fa, fb, mirrored_first, both_ways, self.detectors)

    def __call__(self, path_a: str, path_b: str, orientation: int = 0, sure: bool = False) -> float:
        """Copy score in [0, 1]; NaN when either file cannot be decoded. `orientation` (the
        signature's guess, an index into signature.ORIENTATIONS) only decides whether the
        mirrored fit is tried first: the fit finds rotation and mirroring itself; `sure`
        (handedness_sure): the other handedness is not tried."""
        got = self.match(path_a, path_b, orientation in MIRRORING, not sure)
        return float("nan") if got is None else got.score


def handedness_sure(sig_a: np.ndarray, sig_b: np.ndarray) -> bool:
    """Whether two duplicate signatures say for certain whether one photo is mirrored: close
    (SURE_SIGNATURE) and SURE_MARGIN closer in one handedness than in the other. Symmetric
    photos, and pairs proposed by CNN features alone, are checked both ways."""
    best, margin = imagesig.handedness(sig_a, sig_b)
    return best >= SURE_SIGNATURE and margin >= SURE_MARGIN


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
