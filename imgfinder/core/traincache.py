"""Frozen-trunk features of augmented training views, computed once and cached on disk.

Per image and view the cache holds the pooled last-stage statistics (GAP and GMP,
float32: all ECA-only training needs) and, for last-stage training, the map at the
frozen / trainable split (float16; ResNet50's layer3, Lite0's block 10). Arrays are .npy memory maps under `paths.cache_dir()/train/<key>-<level>/`;
`meta.json` (replaced atomically after each flushed chunk) records how many images
are done, so an interrupted build continues where it stopped. Views are seeded per
image, so a rebuilt chunk is identical. The key covers the files (path, size, mtime),
the backbone and its weights, the input size, the number of views, the seed and the
augmentation recipe; a layer3 cache also serves ECA-only runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from imgfinder import paths
from imgfinder.atomic import atomic_write_bytes
from imgfinder.core import decode
from imgfinder.core.augment import AUGMENT_VERSION, build_transform, make_views, squash, view_seed
from imgfinder.core.extract import normaliser
from imgfinder.core.model import FusedECA
from imgfinder.core.modelspec import BackboneSpec, Preprocessing
from imgfinder.core.types import Progress
from imgfinder.errors import DecodeError, ImgfinderError

log = logging.getLogger(__name__)

CACHE_VERSION = 2
FP16_MAX = 65504.0


def normalise(x: torch.Tensor, device: torch.device, pre: Preprocessing) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> float32 normalised as the backbone expects, on `device`."""
    mean, std = normaliser(pre, device)
    x = (x.to(device).float() - mean) / std
    return x.contiguous(memory_format=torch.channels_last)


def _file_identity(path: str) -> list:
    try:
        st = Path(path).stat()
        return [path, st.st_size, st.st_mtime_ns]
    except OSError:
        return [path, -1, -1]


def cache_for(
    spec: BackboneSpec,
    files: Sequence[str],
    weights_tag: str,
    size: int,
    views: int,
    seed: int,
    *,
    layer3: bool,
) -> FeatureCache:
    """The cache for these files and settings; ECA-only runs reuse a finished layer3 cache."""
    ident = {
        "version": CACHE_VERSION,
        "augment": AUGMENT_VERSION,
        "backbone": spec.name,
        "files": [_file_identity(f) for f in files],
        "weights": weights_tag,
        "size": size,
        "views": views,
        "seed": seed,
    }
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:20]
    base = paths.cache_dir() / "train"
    full = FeatureCache(spec, base / f"{key}-split", key, list(files), size, views, seed, True)
    if layer3 or full.complete():
        return full
    return FeatureCache(spec, base / f"{key}-pooled", key, list(files), size, views, seed, False)


class FeatureCache:
    """Pooled last-stage statistics (and optionally the split's maps) of K views per image."""

    def __init__(
        self,
        spec: BackboneSpec,
        directory: Path,
        key: str,
        files: list[str],
        size: int,
        views: int,
        seed: int,
        layer3: bool,
    ):
        self.spec = spec
        self.channels = spec.channels
        self.directory = directory
        self.key = key
        self.files = files
        self.size = size
        self.views = views
        self.seed = seed
        self.layer3 = layer3
        self.side = spec.cache_side(size)
        self._pooled: np.ndarray | None = None
        self._l3: np.ndarray | None = None
        self.meta = self._read_meta()

    # -- state ---------------------------------------------------------------------------
    @property
    def _meta_path(self) -> Path:
        return self.directory / "meta.json"

    def _fresh_meta(self) -> dict:
        return {
            "version": CACHE_VERSION,
            "key": self.key,
            "n": len(self.files),
            "views": self.views,
            "size": self.size,
            "layer3": self.layer3,
            "done": 0,
            "failed": {},
        }

    def _read_meta(self) -> dict:
        try:
            meta = json.loads(self._meta_path.read_text())
        except (OSError, ValueError):
            return self._fresh_meta()
        fresh = self._fresh_meta()
        if any(meta.get(k) != fresh[k] for k in ("version", "key", "n", "views", "layer3")):
            return fresh
        return meta

    def _write_meta(self) -> None:
        atomic_write_bytes(self._meta_path, json.dumps(self.meta).encode())

    def complete(self) -> bool:
        return self.meta["done"] >= len(self.files)

    def valid_indices(self) -> np.ndarray:
        failed = {int(i) for i in self.meta["failed"]}
        return np.asarray([i for i in range(len(self.files)) if i not in failed], dtype=np.int64)

    def bytes_needed(self) -> int:
        per_view = 2 * self.channels * 4
        if self.layer3:
            per_view += self.spec.cache_channels * self.side * self.side * 2
        return len(self.files) * self.views * per_view

    def _open(self) -> None:
        n, k = len(self.files), self.views
        fresh = self.meta["done"] == 0
        self.directory.mkdir(parents=True, exist_ok=True)
        if fresh:
            free = shutil.disk_usage(self.directory).free
            need = self.bytes_needed()
            if need > 0.9 * free:
                raise ImgfinderError(
                    f"the training cache needs {need / 1e9:.1f} GB but {self.directory} has "
                    f"{free / 1e9:.1f} GB free; use fewer --views, a smaller --input-size "
                    "or --train eca"
                )
        mode = "w+" if fresh else "r+"
        self._pooled = np.lib.format.open_memmap(
            self.directory / "pooled.npy", mode, np.float32, (n, k, 2, self.channels)
        )
        if self.layer3:
            shape = (n, k, self.spec.cache_channels, self.side, self.side)
            self._l3 = np.lib.format.open_memmap(
                self.directory / "layer3.npy", mode, np.float16, shape
            )

    def remove(self) -> None:
        self._pooled = self._l3 = None
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- reading -------------------------------------------------------------------------
    def pooled_rows(self, idx: np.ndarray, view: np.ndarray) -> np.ndarray:
        """(B, 2, C) float32: GAP and GMP of the last stage for (image, view) pairs."""
        return np.asarray(self._pooled[np.asarray(idx), np.asarray(view)], dtype=np.float32)

    def layer3_rows(self, idx: np.ndarray, view: np.ndarray) -> np.ndarray:
        if self._l3 is None:
            raise ImgfinderError("this training cache holds no maps of the frozen part")
        return np.asarray(self._l3[np.asarray(idx), np.asarray(view)])

    # -- building ------------------------------------------------------------------------
    def _decode(self, path: str) -> np.ndarray | str:
        try:
            return squash(decode.open_image(path, min_size=self.size), self.size)
        except DecodeError as exc:
            return exc.reason

    def build(
        self,
        model: FusedECA,
        device: torch.device,
        cancel: threading.Event,
        batch: int | None = None,
    ) -> Generator[Progress, None, bool]:
        """Fill the cache from where it stopped; False if cancelled before the end."""
        if self.complete():
            self._open()
            return True
        self._open()
        n = len(self.files)
        batch = batch or (128 if device.type == "cuda" else 32)  # views per forward pass
        chunk = max(1, batch // self.views)
        transform = build_transform(self.size)
        start0 = self.meta["done"]
        started = time.perf_counter()
        log.info("caching trunk features of %d views of %d images", self.views, n - start0)
        with ThreadPoolExecutor(2, thread_name_prefix="train-decode") as pool:
            ahead = [pool.submit(self._decode, f) for f in self.files[start0 : start0 + 2 * chunk]]
            for start in range(start0, n, chunk):
                end = min(n, start + chunk)
                arrays = [ahead.pop(0).result() for _ in range(end - start)]
                nxt = end + len(ahead)
                ahead += [pool.submit(self._decode, f) for f in self.files[nxt : nxt + chunk]]
                self._fill(model, device, transform, start, arrays)
                self._pooled.flush()
                if self._l3 is not None:
                    self._l3.flush()
                self.meta["done"] = end
                self._write_meta()
                rate = (end - start0) / max(1e-9, time.perf_counter() - started)
                yield Progress("cache", end, n, rate, (n - end) / rate, message="trunk features")
                if cancel.is_set() and end < n:
                    for f in ahead:
                        f.cancel()
                    return False
        return True

    def _fill(self, model, device, transform, start: int, arrays: list) -> None:
        ok = [(start + j, a) for j, a in enumerate(arrays) if not isinstance(a, str)]
        for j, a in enumerate(arrays):
            if isinstance(a, str):
                log.warning("skipping %s: %s", self.files[start + j], a)
                self.meta["failed"][str(start + j)] = a
        if not ok:
            return
        views = torch.cat(
            [
                make_views(a, self.size, self.views, view_seed(self.seed, i), transform=transform)
                for i, a in ok
            ]
        )
        with torch.inference_mode():
            x = normalise(views, device, self.spec.preprocessing)
            with torch.autocast("cuda", dtype=torch.float16, enabled=device.type == "cuda"):
                l3 = model.trunk.frozen(x)
                l4 = model.trunk.last(l3).float()
        pooled = torch.stack([l4.mean(dim=(2, 3)), l4.amax(dim=(2, 3))], dim=1)
        rows = np.asarray([i for i, _ in ok])
        k = self.views
        self._pooled[rows] = pooled.cpu().numpy().reshape(len(ok), k, 2, self.channels)
        if self._l3 is not None:
            l3 = l3.float()
            peak = float(l3.abs().max())
            if peak > FP16_MAX:
                log.warning("cached activations up to %.0f exceed float16; clipped", peak)
                l3 = l3.clamp(-FP16_MAX, FP16_MAX)
            maps = l3.half().cpu().contiguous().numpy()
            self._l3[rows] = maps.reshape(
                len(ok), k, self.spec.cache_channels, self.side, self.side
            )
