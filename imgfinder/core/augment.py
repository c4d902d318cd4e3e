"""Training augmentations from the seed papers, as torchvision transforms v2 on uint8 images.

Each image is first squashed to the model's input square exactly as the extractor
does (so view 0, the un-augmented view, is what indexing sees), then random crop
(resized back to the square), flip, small rotation, brightness/contrast, blur,
Gaussian noise and random erasing. Views come out as uint8 (3, S, S) tensors: the
same dtype, range and normalisation path as indexing. Randomness is drawn from a
seed per image, so a cache of views can be rebuilt bit for bit after an interruption.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from imgfinder.core import tvimport

tvimport.torchvision()  # without torch._dynamo (see tvimport); then the subpackage:
from torchvision.transforms import v2  # noqa: E402

log = logging.getLogger(__name__)

AUGMENT_VERSION = 1  # bump when the recipe changes: it is part of the view cache's key


@dataclass(frozen=True)
class AugmentParams:
    """Strengths of the random transforms (probabilities and ranges)."""

    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_p: float = 0.5
    rotate_p: float = 0.5
    rotate_degrees: float = 15.0
    brightness: float = 0.3
    contrast: float = 0.3
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    noise_p: float = 0.3
    noise_sigma: float = 0.03
    erase_p: float = 0.3
    erase_scale: tuple[float, float] = (0.02, 0.15)


def _gaussian_noise(sigma: float):
    """v2.GaussianNoise where torchvision has it (>= 0.20), else the same thing by hand."""
    if hasattr(v2, "GaussianNoise"):
        return v2.GaussianNoise(sigma=sigma, clip=True)

    def add_noise(x: torch.Tensor) -> torch.Tensor:
        return (x + sigma * torch.randn_like(x)).clamp_(0.0, 1.0)

    return v2.Lambda(add_noise)


def build_transform(size: int, params: AugmentParams | None = None) -> v2.Compose:
    """uint8 (3, S, S) -> float (3, S, S) in [0, 1]; geometric first, photometric after."""
    p = params or AugmentParams()
    blur_kernel = max(3, (size // 32) | 1)  # odd, grows with the input size
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=p.crop_scale, antialias=True),
            v2.RandomHorizontalFlip(p.flip_p),
            v2.RandomApply([v2.RandomRotation(p.rotate_degrees)], p=p.rotate_p),
            v2.ColorJitter(brightness=p.brightness, contrast=p.contrast),
            v2.RandomApply([v2.GaussianBlur(blur_kernel, sigma=p.blur_sigma)], p=p.blur_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([_gaussian_noise(p.noise_sigma)], p=p.noise_p),
            v2.RandomErasing(p=p.erase_p, scale=p.erase_scale, value=0.0),
        ]
    )


def squash(img: Image.Image, size: int) -> np.ndarray:
    """The extractor's preprocessing: the whole picture resized to size x size, uint8 HWC."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def make_views(
    img: Image.Image | np.ndarray,
    size: int,
    views: int,
    seed: int,
    *,
    transform: v2.Compose | None = None,
    include_clean: bool = True,
) -> torch.Tensor:
    """(views, 3, S, S) uint8: view 0 un-augmented (if include_clean), the rest random.

    The global torch RNG is forked, seeded with `seed`, and restored, so callers'
    randomness is untouched and the same seed always gives the same views.
    """
    arr = img if isinstance(img, np.ndarray) else squash(img, size)
    if arr.shape != (size, size, 3) or arr.dtype != np.uint8:
        raise ValueError(f"expected a ({size}, {size}, 3) uint8 array, got {arr.shape} {arr.dtype}")
    base = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).contiguous()
    tf = transform or build_transform(size)
    out = torch.empty((views, 3, size, size), dtype=torch.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for v in range(views):
            if v == 0 and include_clean:
                out[v] = base
            else:
                out[v] = to_uint8(tf(base))
    return out


def view_seed(seed: int, index: int) -> int:
    """A per-image seed that does not collide for nearby (seed, index) pairs."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
