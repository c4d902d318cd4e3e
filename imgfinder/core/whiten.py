"""Whitening of descriptors: centre, project to D', whiten, re-normalise.

Two ways to learn one. *PCA whitening* from a library's own vectors needs no labels (Jégou & Chum, "Negative evidences and co-occurrences in image
retrieval", 2012; Radenović et al. learn it the same way for CNN descriptors).
Eigenvalues are shrunk toward their mean, l' = (1 - b) l + b mean(l), and each
component is scaled by l'^-p: p = 0.5 is full whitening, smaller p whitens partially,
b > 0 keeps weak (noisy) components from being blown up. The file records the model
id it was learned for; the whitened vectors get their own model id (`output_model_id`),
so a store or index of whitened vectors never mixes with raw ones.

*Supervised (discriminative) whitening* learns from photos in a folder per class
(Radenović, Tolias & Chum, "Fine-tuning CNN image retrieval with no human annotation",
TPAMI 2018, sec. 3.3): the within-class scatter, shrunk toward its mean eigenvalue, is
whitened, so that directions in which photos of one subject vary (pose, light,
background) count less; the whitened data is then rotated to its principal axes and cut
to D'. Radenović et al. take the second step from non-matching pairs; the covariance of
random-pair differences is twice the data covariance, so the principal axes are the same.
Learned on some classes it transfers to others (`benchmarks/training.py`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from imgfinder.atomic import atomic_write_npz
from imgfinder.core.types import Progress
from imgfinder.errors import ImgfinderError, ModelMismatchError

if TYPE_CHECKING:
    from imgfinder.core.library import Library

log = logging.getLogger(__name__)

WHITEN_FORMAT = "imgfinder-whitening"
WHITEN_VERSION = 2  # 2: `kind` and `classes` (1: PCA only, still read)
KINDS = ("pca", "supervised")
DEFAULT_DIM = 1024


class LearningCancelled(ImgfinderError):
    """`learn_from_library` stopped because its cancel event was set."""


def default_dim(samples: int) -> int:
    """D' when none is asked for: 1024, or a quarter of the vectors if fewer (~4 per axis)."""
    return max(1, min(DEFAULT_DIM, samples // 4))


@dataclass
class Whitening:
    """y = normalise((x - mean) @ projection); projection already holds the per-axis scale."""

    mean: np.ndarray  # (D,) float32
    projection: np.ndarray  # (D, D') float32, eigenvectors times shrunk eigenvalue^-power
    eigenvalues: np.ndarray  # (D',) covariance eigenvalues, before shrinkage, descending
    model_id: str  # the model whose vectors it was learned from
    power: float
    shrinkage: float
    samples: int
    kind: str = "pca"  # "pca" (unlabelled) or "supervised" (folder per class)
    classes: int = 0  # number of classes a supervised whitening was learned from
    centred_on: str = ""  # what `mean` is: "the library's mean (N photos)", ...

    @property
    def dim_in(self) -> int:
        return int(self.projection.shape[0])

    @property
    def dim_out(self) -> int:
        return int(self.projection.shape[1])

    @property
    def tag(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.mean, np.float32).tobytes())
        h.update(np.ascontiguousarray(self.projection, np.float32).tobytes())
        prefix = "lw" if self.kind == "supervised" else "pw"
        return f"{prefix}{self.dim_out}-{h.hexdigest()[:10]}"

    @property
    def file_name(self) -> str:
        """The name it is saved under in the models folder: whiten-<tag>.npz."""
        return f"whiten-{self.tag}.npz"

    @property
    def output_model_id(self) -> str:
        """Model id of the whitened vectors: the raw model's id plus this whitening's tag."""
        return f"{self.model_id}/{self.tag}"

    def truncated(self, dim: int) -> Whitening:
        """The same whitening keeping only the `dim` strongest components (no re-learning)."""
        if not 1 <= dim <= self.dim_out:
            raise ImgfinderError(f"cannot truncate a {self.dim_out}-d whitening to {dim}")
        return replace(
            self,
            projection=self.projection[:, :dim].copy(),
            eigenvalues=self.eigenvalues[:dim].copy(),
        )

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) raw descriptors -> unit-norm (N, D') or (D',) float32."""
        x = np.asarray(vectors, dtype=np.float32)
        single = x.ndim == 1
        x = np.atleast_2d(x)
        if x.shape[1] != self.dim_in:
            raise ImgfinderError(f"whitening expects {self.dim_in}-d vectors, got {x.shape[1]}")
        y = (x - self.mean) @ self.projection
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        y /= np.maximum(norms, 1e-12)
        return y[0] if single else y


def learn_whitening(
    vectors: np.ndarray,
    dim: int,
    *,
    model_id: str = "",
    power: float = 0.5,
    shrinkage: float = 0.1,
    chunk: int = 4096,
) -> Whitening:
    """PCA-whitening from unlabelled vectors (N, D); D' is capped at the data's rank N - 1.

    With N >= D the D x D scatter matrix is accumulated in float64 over `chunk` rows at a
    time, shifted by the first rows' mean for accuracy, so memory stays at the input plus
    one chunk (100k x 4096 vectors: ~0.3 GB extra instead of two float64 copies, ~6.6 GB).
    """
    v = np.asarray(vectors)
    if v.ndim != 2:
        raise ImgfinderError(f"whitening needs an (N, D) array, got shape {v.shape}")
    n, d = v.shape
    if n < 3:
        raise ImgfinderError(f"whitening needs at least 3 vectors, got {n}")
    if not 0.0 <= shrinkage <= 1.0 or not 0.0 <= power <= 1.0:
        raise ImgfinderError("shrinkage and power must lie in [0, 1]")
    rank = min(n - 1, d)
    if dim > rank:
        log.warning("whitening to %d dims needs more vectors; using %d (rank of %d)", dim, rank, n)
        dim = rank
    elif n < 4 * dim:
        log.warning("%d vectors for %d dims: the weakest components will be noisy", n, dim)
    if n < d:  # eigenvectors of the D x D covariance from the smaller N x N Gram matrix
        x = torch.from_numpy(np.asarray(v, dtype=np.float64))
        mean = x.mean(dim=0)
        xc = x - mean
        trace = float((xc * xc).sum())
        evals, vecs = _principal_axes(xc, dim)
    else:
        step = max(1, int(chunk))
        shift = torch.from_numpy(np.asarray(v[:step], dtype=np.float64)).mean(dim=0)
        total = torch.zeros(d, dtype=torch.float64)
        scatter = torch.zeros(d, d, dtype=torch.float64)
        for lo in range(0, n, step):
            c = torch.from_numpy(np.asarray(v[lo : lo + step], dtype=np.float64)) - shift
            total += c.sum(dim=0)
            scatter.addmm_(c.T, c)
        offset = total / n  # mean - shift
        scatter.sub_(torch.outer(offset, offset), alpha=n)  # sum of (x - mean)(x - mean)^T
        mean = shift + offset
        trace = float(scatter.diagonal().sum())
        evals, vecs = torch.linalg.eigh(scatter)
        evals, vecs = evals.flip(0)[:dim].clamp_min(0) / (n - 1), vecs.flip(1)[:, :dim]
    mean_eval = trace / (n - 1) / d  # trace of the covariance / D
    vecs = _fixed_signs(vecs)
    shrunk = (1.0 - shrinkage) * evals + shrinkage * mean_eval
    scale = shrunk.clamp_min(1e-12 * max(mean_eval, 1e-30)) ** -power
    return Whitening(
        mean=mean.float().numpy(),
        projection=(vecs * scale).float().numpy(),
        eigenvalues=evals.float().numpy(),
        model_id=model_id,
        power=float(power),
        shrinkage=float(shrinkage),
        samples=int(n),
    )


DEFAULT_SUPERVISED_SHRINKAGE = 0.5  # chosen on the flowers' class splits (README, training)


def _fixed_signs(vecs: torch.Tensor) -> torch.Tensor:
    """Eigenvectors (D, k) with a deterministic sign per axis (largest component positive),
    so that learning twice writes the same file."""
    signs = torch.sign(vecs.gather(0, vecs.abs().argmax(dim=0, keepdim=True)))
    return vecs * torch.where(signs == 0, 1.0, signs)


def _shrunk_inverse_sqrt(a: torch.Tensor, shrinkage: float):
    """y -> y @ S^-1/2 for S = (1 - b) A^T A + b t I, t = trace(A^T A) / D, A (n, D).

    With n < D (a few hundred photos, 2560-4096-d descriptors) S is the identity scaled
    by b t outside the rows' span, so only an n x n eigenproblem is solved.
    """
    n, d = a.shape
    t = float((a * a).sum()) / d
    c = shrinkage * t
    if n >= d:
        w, u = torch.linalg.eigh((1.0 - shrinkage) * (a.T @ a) + c * torch.eye(d, dtype=a.dtype))
        m = (u * w.clamp_min(1e-12 * t).rsqrt()) @ u.T
        return lambda y: y @ m
    lam, u = torch.linalg.eigh(a @ a.T)  # A A^T = U L U^T, so A^T A = V L V^T, V = A^T U L^-1/2
    keep = lam > 1e-10 * max(float(lam.max()), 1e-30)
    lam, u = lam[keep], u[:, keep]
    v = (a.T @ u) * lam.rsqrt()
    gain = ((1.0 - shrinkage) * lam + c).rsqrt() - c**-0.5
    return lambda y: c**-0.5 * y + ((y @ v) * gain) @ v.T


def _principal_axes(z: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Covariance eigenvalues (dim,) and axes (D, dim), strongest first, of rows z (n, D)
    with zero mean, from the n x n Gram matrix when n < D."""
    n, d = z.shape
    if n >= d:
        evals, vecs = torch.linalg.eigh(z.T @ z)
        evals, vecs = evals.flip(0)[:dim].clamp_min(0), vecs.flip(1)[:, :dim]
    else:
        evals, u = torch.linalg.eigh(z @ z.T)
        evals, u = evals.flip(0)[:dim].clamp_min(0), u.flip(1)[:, :dim]
        vecs = (z.T @ u) / evals.clamp_min(1e-12).sqrt()
    return evals / max(n - 1, 1), vecs


def learn_supervised_whitening(
    vectors: np.ndarray,
    labels: np.ndarray,
    dim: int,
    *,
    model_id: str = "",
    shrinkage: float = DEFAULT_SUPERVISED_SHRINKAGE,
    centre: np.ndarray | None = None,
) -> Whitening:
    """Discriminative whitening from labelled vectors (N, D), labels (N,) of >= 2 classes.

    Rows are L2-normalised first (stored descriptors already are). `shrinkage` b mixes
    the within-class scatter with b * mean eigenvalue * I: some is needed, since N
    photos of K classes give a scatter of rank N - K at most. `centre`: the mean to
    subtract when applying it, normally the library's (searching centres on the
    library's mean; the default is the training photos' mean).
    """
    v = np.asarray(vectors, dtype=np.float64)
    lab = np.asarray(labels)
    if v.ndim != 2 or lab.shape != (len(v),):
        raise ImgfinderError(f"need (N, D) vectors and N labels, got {v.shape}, {lab.shape}")
    n, d = v.shape
    classes, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    if len(classes) < 2 or n - len(classes) < 2:
        raise ImgfinderError(
            f"supervised whitening needs at least two classes and more photos than classes "
            f"(got {n} photos in {len(classes)} classes)"
        )
    if not 0.0 < shrinkage <= 1.0:
        raise ImgfinderError("shrinkage must lie in (0, 1] for a supervised whitening")
    if dim > min(d, n - 1):  # the second step's covariance has rank n - 1 at most
        log.warning(
            "supervised whitening to %d dims from %d photos: using %d", dim, n, min(d, n - 1)
        )
        dim = min(d, n - 1)
    x = torch.from_numpy(v)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
    idx = torch.from_numpy(inverse.astype(np.int64))
    sums = torch.zeros(len(classes), d, dtype=torch.float64).index_add_(0, idx, x)
    within = (x - (sums / torch.from_numpy(counts).double()[:, None])[idx]) / n**0.5
    inv_sqrt = _shrunk_inverse_sqrt(within, shrinkage)
    mean = x.mean(dim=0)
    z = inv_sqrt(x - mean)  # the training photos with the within-class scatter whitened
    evals, vecs = _principal_axes(z, dim)
    vecs = _fixed_signs(vecs)
    projection = inv_sqrt(vecs.T).T  # x -> inv_sqrt(x) @ vecs, inv_sqrt being symmetric
    return Whitening(
        mean=(mean.numpy() if centre is None else np.asarray(centre)).astype(np.float32),
        projection=projection.float().numpy(),
        eigenvalues=evals.float().numpy(),
        model_id=model_id,
        power=0.5,
        shrinkage=float(shrinkage),
        samples=int(n),
        kind="supervised",
        classes=len(classes),
        centred_on="the training photos' mean" if centre is None else "a given mean",
    )


def learn_from_classes(
    lib: Library,
    dataset: str | os.PathLike,
    dim: int | None = None,
    shrinkage: float = DEFAULT_SUPERVISED_SHRINKAGE,
    cancel: threading.Event | None = None,
) -> Generator[Progress, None, Whitening]:
    """Supervised whitening from a folder per class, with the library's model.

    Yields Progress once per batch while the photos are embedded (through the same decode
    and preprocessing as indexing; unreadable ones are logged and skipped). The whitening
    is centred on the library's mean as search estimates it (Library.raw_centre, from at
    least centring.MIN_VECTORS photos), else on the training photos' mean.
    """
    import time

    from imgfinder.core.train import discover  # noqa: PLC0415 (training code loads lazily)

    tset = discover(dataset)
    ex = lib.extractor
    vectors, labels, skipped = [], [], 0
    label_of = dict(zip(tset.files, tset.labels.tolist()))
    t0 = time.perf_counter()
    done = 0
    for batch in ex.pipeline(tset.files, cancel=cancel):
        for p in batch:
            if p.vector is None:
                skipped += 1
                log.warning("skipping %s: %s", p.path, p.error or "not decoded")
                continue
            vectors.append(p.vector)
            labels.append(label_of[p.path])
        done += len(batch)
        yield Progress.since("whiten", done, len(tset.files), t0, message=str(tset.root))
    if cancel is not None and cancel.is_set():
        raise LearningCancelled("learning the whitening was cancelled")
    if skipped:
        log.warning("%d of %d photos could not be read and were skipped", skipped, done)
    if not vectors:
        raise ImgfinderError(f"no readable photos in {tset.root}")
    library = lib.raw_centre()  # None below centring.MIN_VECTORS photos, as search
    w = learn_supervised_whitening(
        np.stack(vectors),
        np.asarray(labels),
        dim or DEFAULT_DIM,
        model_id=ex.model_id,
        shrinkage=shrinkage,
        centre=None if library is None else library.mean,
    )
    if library is not None:
        w.centred_on = f"the library's mean ({library.count} photos)"
    return w


def learn_from_library(
    lib: Library,
    dim: int | None = None,
    power: float = 0.5,
    shrinkage: float = 0.1,
    cancel: threading.Event | None = None,
) -> Whitening:
    """Learn from the library's raw vectors of its model, even while it uses a whitening.

    `dim` None: `default_dim` of the vector count. A set `cancel` raises LearningCancelled
    before and after the (uninterruptible) eigendecomposition.
    """

    def check() -> None:
        if cancel is not None and cancel.is_set():
            raise LearningCancelled("learning the whitening was cancelled")

    check()
    model_id = lib.extractor.model_id  # the raw model's id, whatever whitening is configured
    vectors = lib.raw_vectors()
    if len(vectors) < 3:
        message = f"the library has {len(vectors)} vectors for model {model_id}; "
        if lib.config.whitening:  # a whitened re-index keeps no raw vectors to learn from
            message += "photos indexed with a whitening have none: turn it off and re-index"
        else:
            message += "index some photos first"
        raise ImgfinderError(message)
    check()
    w = learn_whitening(
        vectors,
        dim or default_dim(len(vectors)),
        model_id=model_id,
        power=power,
        shrinkage=shrinkage,
    )
    check()
    return w


def save_whitening(w: Whitening, path: str | os.PathLike) -> Path:
    """Write an .npz atomically (format, version, model id, arrays, settings)."""
    return atomic_write_npz(
        path,
        format=np.array(WHITEN_FORMAT),
        version=np.array(WHITEN_VERSION),
        model_id=np.array(w.model_id),
        mean=w.mean.astype(np.float32),
        projection=w.projection.astype(np.float32),
        eigenvalues=w.eigenvalues.astype(np.float32),
        power=np.array(w.power),
        shrinkage=np.array(w.shrinkage),
        samples=np.array(w.samples),
        kind=np.array(w.kind),
        classes=np.array(w.classes),
        centred_on=np.array(w.centred_on),
    )


def load_whitening(path: str | os.PathLike, model_id: str | None = None) -> Whitening:
    """Read a whitening file; with `model_id`, refuse one learned for another model."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != WHITEN_FORMAT:
                raise ImgfinderError(f"{path} is not an imgfinder whitening file")
            version = int(z["version"])
            if version not in (1, WHITEN_VERSION):
                raise ImgfinderError(f"{path}: whitening version {version} unsupported")
            kind = str(z["kind"]) if version >= 2 else "pca"
            if kind not in KINDS:
                raise ImgfinderError(f"{path}: unknown whitening kind {kind!r}")
            w = Whitening(
                mean=z["mean"],
                projection=z["projection"],
                eigenvalues=z["eigenvalues"],
                model_id=str(z["model_id"]),
                power=float(z["power"]),
                shrinkage=float(z["shrinkage"]),
                samples=int(z["samples"]),
                kind=kind,
                classes=int(z["classes"]) if version >= 2 else 0,
                centred_on=str(z["centred_on"]) if version >= 2 else "",
            )
    except FileNotFoundError:
        raise ImgfinderError(f"no such whitening file: {path}") from None
    except (OSError, KeyError, ValueError) as exc:
        raise ImgfinderError(f"cannot read whitening file {path}: {exc}") from None
    if model_id is not None and w.model_id != model_id:
        raise ModelMismatchError(
            f"{path} was learned for model {w.model_id}, the current model is {model_id}; "
            "learn it again with `imgfinder whiten`",
            stored=w.model_id,
            current=model_id,
        )
    return w


def list_whitening_files(
    model_id: str | None = None, directory: str | os.PathLike | None = None
) -> list[tuple[Path, Whitening]]:
    """`whiten-*.npz` files in the models folder, only those for `model_id` when given."""
    from imgfinder import paths  # noqa: PLC0415 (keeps this module usable without a data dir)

    folder = Path(directory) if directory else paths.models_dir()
    found = []
    for f in sorted(folder.glob("*.npz")):
        try:
            w = load_whitening(f)
        except ImgfinderError as exc:
            log.warning("skipping %s: %s", f, exc)
            continue
        if model_id is None or w.model_id == model_id:
            found.append((f, w))
    return found
