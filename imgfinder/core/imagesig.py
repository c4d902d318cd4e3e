"""Dihedral-aware DCT signatures (the duplicate signature): the cheap pixel-level second signal of
the "same photo" tier. Computed by extraction from the decode the model already paid for, and
used by the duplicate finder (core/dupes); neither imports the other's package.

A photo is squashed to a GRID x GRID grey square (as the extractor squashes it for the model),
transformed with a 2-D DCT-II, and the lowest COEFFS x COEFFS coefficients without the DC term
are kept, L2-normalised (so uniform brightness and contrast changes cancel). Resizing, JPEG
recompression, format conversion and small crops barely move these coefficients; distinct
photos of the same subject do.

The eight rotations/mirrors of an image act on DCT coefficients exactly: a left-right mirror
negates the odd horizontal frequencies, an up-down mirror the odd vertical ones, and a transpose
swaps the two axes (rotations are compositions of these). So `similarity` scores a pair as the
best of the eight orientations of one signature against the other from four parity-class
partial sums per axis order, without decoding anything again.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
from PIL import Image

from imgfinder.core.imageborder import trim_border

log = logging.getLogger(__name__)

GRID = 64  # the photo is squashed to GRID x GRID grey pixels
COEFFS = 12  # COEFFS x COEFFS lowest DCT frequencies are kept (minus DC); must be even
SIG_DIM = COEFFS * COEFFS
SIG_DTYPE = np.float16  # 288 bytes per distinct photo in the catalog
VERSION = 2  # bump when GRID, COEFFS or the decoding change (2: border trimmed): recomputed


@functools.lru_cache(maxsize=4)
def _dct_matrix(n: int, k: int) -> np.ndarray:
    """First k rows of the orthonormal DCT-II matrix of size n."""
    i = np.arange(n)[None, :]
    u = np.arange(k)[:, None]
    m = np.cos(np.pi * (2 * i + 1) * u / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float64)


def grey_square(img: Image.Image, grid: int | None = None) -> np.ndarray:
    """The whole picture as a grid x grid float grey array (aspect ratio squashed, not cropped)."""
    grid = grid or GRID
    g = img.convert("L")
    if g.size != (grid, grid):
        g = g.resize((grid, grid), Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(g, dtype=np.float64)


def signature_of(img: Image.Image) -> np.ndarray:
    """(SIG_DIM,) float32 unit vector; all zeros for a flat image (it matches nothing).

    A uniform border of any colour (letterbox, pillarbox, mat) is trimmed first, so a framed
    copy signs like its original (imageborder.trim_border)."""
    x = grey_square(trim_border(img))
    d = _dct_matrix(GRID, COEFFS)
    c = d @ x @ d.T
    c[0, 0] = 0.0
    norm = float(np.linalg.norm(c))
    if norm < 1e-6 * GRID:
        return np.zeros(SIG_DIM, np.float32)
    return (c / norm).astype(np.float32).ravel()


def signature_of_path(path: str, decode_size: int = GRID) -> np.ndarray:
    """Decode a file (JPEG DCT-scaled, EXIF-upright, sRGB) and sign it; raises DecodeError."""
    from imgfinder.core import decode  # noqa: PLC0415 (keeps this module importable alone)

    return signature_of(decode.open_image(path, min_size=decode_size))


# sign of parity class (p, q) under each of the four mirror combinations
_SIGNS = np.array(
    [[[1, 1], [1, 1]], [[1, -1], [1, -1]], [[1, 1], [-1, -1]], [[1, -1], [-1, 1]]],
    dtype=np.float32,
)
# (SIG_DIM, 4): the sign of coefficient (u, v) under each of the four mirror combinations
_ORIENTATION_SIGNS = np.ascontiguousarray(
    _SIGNS[:, np.arange(COEFFS)[:, None] % 2, np.arange(COEFFS)[None, :] % 2].reshape(4, -1).T
)
ORIENTATIONS = (
    "same",
    "mirrored left-right",
    "mirrored top-bottom",
    "rotated 180°",
    "transposed",
    "rotated 90° clockwise",
    "rotated 90° counter-clockwise",
    "transverse",
)


def similarity(
    a: np.ndarray, b: np.ndarray, *, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """Best cosine over the 8 dihedral orientations, row by row; also which orientation won.

    a, b: (P, SIG_DIM) signatures (any float dtype). Returns (scores float32 (P,), orientation
    index int8 (P,) into ORIENTATIONS). A zero signature scores 0 against everything.
    """
    a = np.asarray(a, np.float32).reshape(-1, COEFFS, COEFFS)
    b = np.asarray(b, np.float32).reshape(-1, COEFFS, COEFFS)
    n = a.shape[0]
    scores = np.empty(n, np.float32)
    which = np.empty(n, np.int8)
    for lo in range(0, n, chunk):
        cand = _orientation_scores(a[lo : lo + chunk], b[lo : lo + chunk])
        best = cand.argmax(axis=1)
        scores[lo : lo + chunk] = cand[np.arange(len(cand)), best]
        which[lo : lo + chunk] = best
    return scores, which


def _orientation_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(P, 8) cosine of a with b in each of ORIENTATIONS; a, b: (P, COEFFS, COEFFS).

    Each orientation's cosine is a signed sum of the coefficient products, the sign set by
    the coefficient's parity class: one matrix product per axis order (_ORIENTATION_SIGNS)."""
    p = a.shape[0]
    straight = (a * b).reshape(p, SIG_DIM) @ _ORIENTATION_SIGNS
    swapped = (a * b.transpose(0, 2, 1)).reshape(p, SIG_DIM) @ _ORIENTATION_SIGNS
    return np.concatenate([straight, swapped], axis=1)


MIRRORING = (1, 2, 4, 7)  # ORIENTATIONS that include a mirror (determinant -1)


def handedness(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(best-orientation similarity, mirror margin) of one pair of signatures: the margin is
    how much better the best orientation scores than the best one of the other handedness
    (mirrored vs not), large when the signature is sure whether b is mirrored."""
    cand = _orientation_scores(
        np.asarray(a, np.float32).reshape(1, COEFFS, COEFFS),
        np.asarray(b, np.float32).reshape(1, COEFFS, COEFFS),
    )[0]
    mirrored = cand[list(MIRRORING)].max()
    straight = cand[[o for o in range(8) if o not in MIRRORING]].max()
    return float(max(mirrored, straight)), float(abs(mirrored - straight))


def invariant(sigs: np.ndarray) -> np.ndarray:
    """(N, SIG_DIM) signatures -> (N, INV_DIM) vectors unchanged by any of the 8 orientations.

    Mirrors only flip signs and a transpose swaps (u, v) with (v, u), so absolute values,
    summed and differenced over each transposed pair, do not change. They lose the signs, so
    they serve only to find candidates in an index; `similarity` then scores the pair exactly.
    """
    c = np.abs(np.asarray(sigs, np.float32).reshape(-1, COEFFS, COEFFS))
    iu, ju = np.triu_indices(COEFFS, 1)
    diag = c[:, np.arange(1, COEFFS), np.arange(1, COEFFS)]
    upper, lower = c[:, iu, ju], c[:, ju, iu]
    return np.concatenate([diag, upper + lower, np.abs(upper - lower)], axis=1)


INV_DIM = (COEFFS - 1) + COEFFS * (COEFFS - 1)


def orient(x: np.ndarray, orientation: int) -> np.ndarray:
    """Apply ORIENTATIONS[orientation] to the last two axes of an image-like array.

    `similarity(a, b)` reports the orientation that maps b onto a, so orient(b_pixels, o)
    lines b up with a.
    """
    if orientation & 4:
        x = np.swapaxes(x, -1, -2)
    if orientation & 1:
        x = x[..., :, ::-1]
    if orientation & 2:
        x = x[..., ::-1, :]
    return x


def to_blob(sig: np.ndarray) -> bytes:
    return np.asarray(sig, SIG_DTYPE).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    arr = np.frombuffer(blob, SIG_DTYPE)
    if arr.shape != (SIG_DIM,):
        raise ValueError(f"signature blob of {len(blob)} bytes, expected {SIG_DIM * 2}")
    return arr.astype(np.float32)
