"""Exact, gradient-free heatmaps: where the fused descriptor looks, and where two photos match.

The descriptor of a layer4 map A (C x h x w, ReLU output) with ECA weights e is

    avg = e * mean_hw A          mx = max_hw A          (both C-vectors)
    d   = [avg/|avg|, mx/|mx|] / n,   n = |[avg/|avg|, mx/|mx|]|  (= sqrt 2)

so the cosine of a query q and a result r splits exactly into two branch scores,

    s_att  = <qa, ra> / (n_q n_r)            qa, ra: unit average vectors
    s_glob = <qm, rm> / (n_q n_r)            qm, rm: unit max vectors

and each branch score splits over positions of either image without gradients:

    attention, result side: s_att = sum_p <qa * e_r, A_r[:, p]> / (h w |avg_r| n_q n_r)
    global, result side:    channel c adds qm_c rm_c / (n_q n_r) at the argmax of A_r[c]

(the query side swaps q and r). Each map therefore sums to its branch score, and the fused map
(both branches) to the cosine. The attention map of one photo is its split against itself:
a CAM whose channel weights are the descriptor's own components, summing to |d|^2 = 1.

Search scores are centred on the library mean m (centring.py): s = <u_q, u_r> / (|u_q||u_r|)
with u = d - m. Given m, the split is the same with the other image's u in place of its d:
the result side is <d_r, u_q> over r's positions, plus -<m, u_q>, the mean's share, which has
no position and is spread evenly, so each map again sums to its branch score
(<u_q, u_r> restricted to the branch's half, over |u_q||u_r|) and the fused map to s.

A CBAM head (core/model.py) also weights each position by its spatial attention a_p:
avg = e * mean_hw (a * A), so the attention split sums over a_p A[:, p] instead: still exact,
and the heatmaps show where the spatial attention looked (`spatial_attention` is the map
itself). With GeM (exponent p) on the second branch, g_c = (mean_hw A_c^p)^(1/p) is split
over positions by each position's share A_c[p]^p / sum A_c^p of g_c: exact as well.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from imgfinder.atomic import atomic_write_bytes
from imgfinder.core import colormap, decode
from imgfinder.errors import ImgfinderError

if TYPE_CHECKING:
    from imgfinder.core.extract import Extractor
    from imgfinder.core.model import FusedOutput

log = logging.getLogger(__name__)

BRANCHES = ("fused", "attention", "global")
BRANCH_LABELS = {
    "fused": "fused (both branches)",
    "attention": "attention (ECA/avg branch)",
    "global": "global (max branch)",
}
_EPS = 1e-12  # F.normalize's eps: the same clamp keeps the identities exact for all-zero maps


@dataclass(frozen=True)
class _Pooled:
    """What the splits need from one image, derived once from its map (vectors in float64)."""

    flat: np.ndarray  # (C, h*w) float32 view of the map
    avg_unit: np.ndarray  # (C,)
    avg_norm: float  # max(|avg|, eps)
    max_unit: np.ndarray  # (C,)
    argmax: np.ndarray  # (C,) flat position of each channel's maximum
    fuse_norm: float  # n: the norm of the concatenated unit branches
    attended: np.ndarray  # (C, h*w) the map the average branch pools (flat, or CBAM-weighted)
    share: np.ndarray | None = None  # (C, h*w) GeM: each position's share of g_c; None: max


@dataclass(eq=False)
class Activations:
    """One image's layer4 map, ECA weights and descriptor: everything its heatmaps need."""

    fmap: np.ndarray  # (C, h, w) float32
    eca: np.ndarray  # (C,) float32
    descriptor: np.ndarray  # (2C,) float32, L2-normalised
    image_size: tuple[int, int]  # (W, H) of the upright (EXIF-oriented) photo
    label: str = ""  # file name or other tag, for captions and logs
    spatial: np.ndarray | None = None  # (h, w) CBAM spatial attention; None for ECA
    gem_p: float | None = None  # GeM exponent of the second branch; None: max pooling
    _pooled: _Pooled | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.fmap = np.asarray(self.fmap, dtype=np.float32)
        self.eca = np.asarray(self.eca, dtype=np.float32).reshape(-1)
        self.descriptor = np.asarray(self.descriptor, dtype=np.float32).reshape(-1)
        if self.fmap.ndim != 3 or self.fmap.shape[0] != self.eca.shape[0]:
            raise ValueError(f"fmap {self.fmap.shape} and eca {self.eca.shape} do not match")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        if self.spatial is not None:
            self.spatial = np.asarray(self.spatial, dtype=np.float32).reshape(self.grid)

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the layer4 map, i.e. of every heatmap of this image."""
        return self.fmap.shape[1], self.fmap.shape[2]

    @property
    def nbytes(self) -> int:
        return self.fmap.nbytes + self.eca.nbytes + self.descriptor.nbytes

    def pooled(self) -> _Pooled:
        if self._pooled is None:
            c = self.fmap.shape[0]
            flat = self.fmap.reshape(c, -1)  # a view: products are formed in float64 anyway
            attended = flat if self.spatial is None else flat * self.spatial.reshape(1, -1)
            avg = self.eca.astype(np.float64) * attended.mean(axis=1, dtype=np.float64)
            avg_norm = max(float(np.linalg.norm(avg)), _EPS)
            share = None
            if self.gem_p is None:
                mx = flat.max(axis=1).astype(np.float64)
            else:  # GeM as the model computes it (clamped at 1e-6), and each position's share
                powered = np.maximum(flat.astype(np.float64), 1e-6) ** self.gem_p
                total = powered.sum(axis=1)
                mx = (total / flat.shape[1]) ** (1.0 / self.gem_p)
                share = powered / total[:, None]
            max_unit = mx / max(float(np.linalg.norm(mx)), _EPS)
            avg_unit = avg / avg_norm
            fuse_norm = max(float(np.sqrt(avg_unit @ avg_unit + max_unit @ max_unit)), _EPS)
            self._pooled = _Pooled(
                flat, avg_unit, avg_norm, max_unit, flat.argmax(axis=1), fuse_norm, attended, share
            )
        return self._pooled


@dataclass
class MatchExplanation:
    """A pair's cosine, its split over the two branches, and one branch's map on each image."""

    score: float  # cosine of the two descriptors (both branches), centred when `centred`
    branch_scores: dict[str, float]  # {"attention": s_att, "global": s_glob}, summing to score
    branch: str  # which branch the maps show
    query_map: np.ndarray  # (h, w) float64, sums to `total`
    result_map: np.ndarray  # (h, w) float64, sums to `total`
    centred: bool = False  # the score is the cosine after subtracting the library mean

    @property
    def score_name(self) -> str:
        """What the score is, for labels ("similarity" is what search shows)."""
        return "similarity (centred cosine)" if self.centred else "cosine"

    @property
    def total(self) -> float:
        """What each map sums to: the score of the shown branch (the cosine for "fused")."""
        return self.score if self.branch == "fused" else self.branch_scores[self.branch]

    def shares(self) -> dict[str, float]:
        """Each branch's fraction of the score (0 for both when the score is 0)."""
        if abs(self.score) < _EPS:
            return {k: 0.0 for k in self.branch_scores}
        return {k: v / self.score for k, v in self.branch_scores.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "centred": self.centred,
            "branch": self.branch,
            "branches": dict(self.branch_scores),
            "shares": self.shares(),
            "query_map_sum": float(self.query_map.sum()),
            "result_map_sum": float(self.result_map.sum()),
            "map_size": list(self.query_map.shape),
        }


def _check_branch(branch: str) -> None:
    if branch not in BRANCHES:
        raise ValueError(f"unknown branch {branch!r}; choose one of {', '.join(BRANCHES)}")


def _split(
    q: Activations, r: Activations, mean: np.ndarray | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Per-branch (query map, result map, branch score) for a pair; see the module docstring."""
    if q.fmap.shape[0] != r.fmap.shape[0]:
        raise ValueError("the two images come from models with different channel counts")
    pq, pr = q.pooled(), r.pooled()
    c = pq.avg_unit.shape[0]
    dq = np.concatenate([pq.avg_unit, pq.max_unit]) / pq.fuse_norm
    dr = np.concatenate([pr.avg_unit, pr.max_unit]) / pr.fuse_norm
    if mean is None:
        uq, ur, z = dq, dr, 1.0
    else:
        m = np.asarray(mean, dtype=np.float64).reshape(-1)
        if m.shape != dq.shape:
            raise ValueError(f"a {m.shape[0]}-d mean for {dq.shape[0]}-d descriptors")
        uq, ur = dq - m, dr - m
        z = max(float(np.linalg.norm(uq) * np.linalg.norm(ur)), _EPS)
    hw_q, hw_r = pq.flat.shape[1], pr.flat.shape[1]
    # attention branch: each position's share of the pooled vector, dotted with the other one
    vq = ur[:c] * q.eca.astype(np.float64) / (hw_q * pq.avg_norm * pq.fuse_norm * z)
    vr = uq[:c] * r.eca.astype(np.float64) / (hw_r * pr.avg_norm * pr.fuse_norm * z)
    att_q, att_r = vq @ pq.attended, vr @ pr.attended
    s_att = float(uq[:c] @ ur[:c]) / z
    # global branch: channel c's product sits where channel c peaks, in each image
    glob_q = _global_split(pq, pq.max_unit * ur[c:] / (pq.fuse_norm * z), hw_q)
    glob_r = _global_split(pr, pr.max_unit * uq[c:] / (pr.fuse_norm * z), hw_r)
    s_glob = float(uq[c:] @ ur[c:]) / z
    if mean is not None:  # the mean's share has no position: spread evenly over each map
        att_q += (s_att - att_q.sum()) / hw_q
        att_r += (s_att - att_r.sum()) / hw_r
        glob_q += (s_glob - glob_q.sum()) / hw_q
        glob_r += (s_glob - glob_r.sum()) / hw_r
    return {
        "attention": (att_q.reshape(q.grid), att_r.reshape(r.grid), s_att),
        "global": (glob_q.reshape(q.grid), glob_r.reshape(r.grid), s_glob),
    }


def _global_split(p: _Pooled, weights: np.ndarray, hw: int) -> np.ndarray:
    """Channel c's product `weights[c]` over positions: at its maximum (max pooling) or by
    each position's share of the channel's GeM."""
    if p.share is None:
        return np.bincount(p.argmax, weights=weights, minlength=hw)
    return weights @ p.share


def spatial_attention(act: Activations) -> np.ndarray | None:
    """CBAM's spatial attention map of one photo (h, w) in (0, 1); None for an ECA model."""
    return None if act.spatial is None else act.spatial.astype(np.float64)


def match_all(
    q: Activations, r: Activations, mean: np.ndarray | None = None
) -> dict[str, MatchExplanation]:
    """The explanation for every branch at once (the splits are shared, so this is cheap).
    `mean`: the library mean the search centres on (its scores are then the centred cosine)."""
    parts = _split(q, r, mean)
    scores = {k: v[2] for k, v in parts.items()}
    score = scores["attention"] + scores["global"]
    centred = mean is not None
    out = {
        k: MatchExplanation(score, dict(scores), k, qm, rm, centred)
        for k, (qm, rm, _) in parts.items()
    }
    (aq, ar, _), (gq, gr, _) = parts["attention"], parts["global"]
    out["fused"] = MatchExplanation(score, dict(scores), "fused", aq + gq, ar + gr, centred)
    return {k: out[k] for k in BRANCHES}


def match_maps(
    q: Activations, r: Activations, branch: str = "fused", mean: np.ndarray | None = None
) -> MatchExplanation:
    """Per-position contributions to the pair's cosine, on the query and on the result."""
    _check_branch(branch)
    return match_all(q, r, mean)[branch]


def attention_map(act: Activations, branch: str = "fused") -> np.ndarray:
    """Where one photo's descriptor draws its weight (sums to 1 fused, 0.5 per branch).

    attention: the ECA-weighted channel sum, each channel weighted by its descriptor component;
    global: each channel's squared (normalised) descriptor weight at the channel's maximum.
    """
    _check_branch(branch)
    return match_all(act, act)[branch].query_map


def attention_maps(act: Activations) -> dict[str, np.ndarray]:
    """All three attention maps of one photo."""
    return {k: v.query_map for k, v in match_all(act, act).items()}


# --------------------------------------------------------------------------- from images


def _label(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    filename = getattr(source, "filename", "")
    return Path(filename).name if filename else "<image>"


def _upright_size(source: Any) -> tuple[int, int] | None:
    try:
        info = decode.image_info(source)
    except Exception as exc:  # noqa: BLE001 - the size is only informative; decoding decides
        log.debug("no header size for %s: %s", _label(source), exc)
        return None
    return int(info["width"]), int(info["height"])


def from_output(
    out: FusedOutput, index: int, image_size: tuple[int, int], label: str = ""
) -> Activations:
    """Activations of image `index` of an Extractor.forward_maps batch."""
    return Activations(
        fmap=out.fmap[index].float().numpy(),
        eca=out.eca[index].float().numpy(),
        descriptor=out.descriptor[index].float().numpy(),
        image_size=image_size,
        label=label,
        spatial=None if out.spatial is None else out.spatial[index].float().numpy(),
        gem_p=out.gem_p,
    )


def activations_many(extractor: Extractor, sources: list[Any]) -> list[Activations]:
    """Recompute layer4 maps for a few images in one batch (decoded exactly as for indexing)."""
    arrays, sizes = [], []
    for src in sources:
        arrays.append(extractor.load_array(src))  # the same pixels the library embedded
        size = _upright_size(src)
        sizes.append(size or (extractor.input_size, extractor.input_size))
    out = extractor.forward_maps(arrays)
    return [from_output(out, i, sizes[i], _label(s)) for i, s in enumerate(sources)]


def activations(extractor: Extractor, source: Any) -> Activations:
    """One image's activations: recomputed on demand rather than stored (400 KB each at 224)."""
    return activations_many(extractor, [source])[0]


def load_photo(source: Any, max_side: int = 1024) -> Image.Image:
    """The upright photo scaled to fit `max_side`, for display and export (never enlarged).

    Decoding asks only for a short side of max_side/2: at 1024 a 12 MP JPEG is DCT-scaled by
    1/4 (1008 x 756) instead of 1/2, so the photo may come out a little under `max_side`, for
    a fraction of the decode and resize cost.
    """
    if max_side < 1:
        raise ValueError("max_side must be positive")
    img = decode.open_image(source, min_size=max(1, max_side // 2))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


# --------------------------------------------------------------------------- rendering


def caption_text(expl: MatchExplanation, query_label: str = "", result_label: str = "") -> str:
    """Two caption lines: the score with the shown branch, and each branch's share."""
    s, b = expl.branch_scores, expl.shares()
    names = f"   {query_label}  vs  {result_label}" if query_label or result_label else ""
    return (
        f"{expl.score_name} {expl.score:.4f}   map: {BRANCH_LABELS[expl.branch]}{names}\n"
        f"attention (ECA/avg) {s['attention']:.4f} ({100 * b['attention']:.0f}%)   "
        f"global (max) {s['global']:.4f} ({100 * b['global']:.0f}%)"
    )


def render_match(
    query_photo: Image.Image,
    result_photo: Image.Image,
    expl: MatchExplanation,
    *,
    opacity: float = 0.5,
    cmap: str = "inferno",
    caption: str | None = None,
) -> Image.Image:
    """The exported picture: both overlays on one colour scale, with the score caption."""
    vmax = colormap.peak(expl.query_map, expl.result_map)
    signed = colormap.is_signed(expl.query_map) or colormap.is_signed(expl.result_map)
    qo = colormap.overlay(query_photo, expl.query_map, opacity, cmap, vmax=vmax, signed=signed)
    ro = colormap.overlay(result_photo, expl.result_map, opacity, cmap, vmax=vmax, signed=signed)
    text = caption_text(expl) if caption is None else caption
    return colormap.side_by_side(qo, ro, text, cmap=cmap, signed=signed)


def save_image(img: Image.Image, path: str | os.PathLike) -> Path:
    """Write atomically, in the format the extension names (PNG when it names none we can write)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        fmt = "PNG"
    buf = io.BytesIO()
    try:
        img.convert("RGB").save(buf, fmt)
        atomic_write_bytes(path, buf.getvalue())
        # the temp file was private (0600); an exported picture gets the usual permissions
        os.chmod(path, 0o666 & ~_umask())
    except OSError as exc:
        raise ImgfinderError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _umask() -> int:
    """The process umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
