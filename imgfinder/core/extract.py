"""Batched feature extraction: decoder threads overlapped with inference on the best device.

Decoding (file read, hash, JPEG DCT-scaled decode, resize) runs in a thread pool
(Pillow releases the GIL while decoding) that stays a bounded number of images
ahead of the model, so the model is fed while the previous batch decodes.
Normalisation and the dtype cast happen on the device, so only uint8 crosses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imgfinder.core import decode
from imgfinder.core.imagesig import signature_of
from imgfinder.core.model import FusedECA, FusedOutput
from imgfinder.core.modelspec import (
    DEVICES,
    INPUT_SIZE_RANGE,
    ModelConfig,
    Preprocessing,
    untrained_head_tag,
)
from imgfinder.core.photometa import PhotoMeta
from imgfinder.core.weights import LoadedWeights, ProgressFn, resolve_weights
from imgfinder.errors import DecodeError, ImgfinderError

log = logging.getLogger(__name__)

__all__ = ["DEVICES", "Extractor", "ModelConfig", "PreparedFile", "load_model", "pick_device"]


def pick_device(name: str = "auto") -> torch.device:
    if name not in DEVICES:
        raise ImgfinderError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ImgfinderError("--device cuda requested but no CUDA GPU is available")
    if name == "mps" and not has_mps:
        raise ImgfinderError("--device mps requested but Metal is not available")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type


def cpu_has_native_bf16() -> bool:
    """bf16 autocast is only worth it with AVX512-BF16 or AMX; on AVX2 it is ~7x slower."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def normaliser(pre: Preprocessing, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) on the 0..255 scale as (1, 3, 1, 1) tensors on `device`."""
    mean = torch.tensor(pre.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(pre.std, device=device).view(1, 3, 1, 1) * 255
    return mean, std


def read_head(path: str) -> dict[str, torch.Tensor]:
    """A trained ECA head file ({"head": state, "meta": ...} or a bare state dict)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a foreign or damaged file
        raise ImgfinderError(f"cannot read head file {path}: {exc}") from None
    head = state.get("head", state) if isinstance(state, dict) else None
    if not isinstance(head, dict):
        raise ImgfinderError(f"{path} is not an imgfinder ECA head file")
    return head


def load_model(
    config: ModelConfig,
    *,
    allow_download: bool = True,
    progress: ProgressFn | None = None,
    loaded: LoadedWeights | None = None,
    models_dir: Path | None = None,
) -> tuple[FusedECA, LoadedWeights, dict[str, torch.Tensor] | None]:
    """FusedECA (float32, eval, CPU) with the configured backbone, weights and head
    (default weights looked up in `models_dir`, a library's, else the process's)."""
    spec = config.spec
    weights = loaded or resolve_weights(
        config.weights,
        backbone=spec,
        allow_download=allow_download,
        progress=progress,
        models_dir=models_dir,
    )
    head = read_head(config.head) if config.head else weights.head
    attention, pooling = head_kinds(head, config)
    model = FusedECA(spec, attention=attention, pooling=pooling)
    try:
        model.load_backbone(weights.backbone)
    except (RuntimeError, ValueError) as exc:
        raise ImgfinderError(
            f"{weights.source} is not a {spec.title} state dict: {str(exc).splitlines()[0]}"
        ) from None
    if head is not None:
        try:
            model.load_head(head)
        except RuntimeError as exc:
            raise ImgfinderError(
                f"the {attention.upper()} head does not fit {spec.title} "
                f"({spec.channels} channels, {pooling} pooling): "
                f"{str(exc).splitlines()[0]}"
            ) from None
    return model.eval(), weights, head


def head_kinds(head: dict[str, torch.Tensor] | None, config: ModelConfig) -> tuple[str, str]:
    """(attention, pooling) of the model: a trained head file's own (its keys say which it
    was trained with, so `--head` needs no `--attention`), else the configuration's."""
    if head is None:
        return config.attention_kind, config.pooling_kind
    attention = "cbam" if any(k.startswith("mlp.") for k in head) else "eca"
    return attention, "gem" if "gem.p" in head else "max"


def head_tag(
    head: dict[str, torch.Tensor] | None, attention: str = "eca", pooling: str = "max"
) -> str:
    """The head's part of the model id: "eca0" (untrained ECA, max branch), "cbam0",
    "eca0-gem3" (GeM, p = 3, on the second branch); trained heads "eca-<digest>",
    "cbam-<digest>", "...-gem" (p is in the digest). A trained head's own keys say which
    attention and pooling it was trained with."""
    if head is not None:
        attention = "cbam" if any(k.startswith("mlp.") for k in head) else "eca"
        pooling = "gem" if "gem.p" in head else "max"
    if head is None:
        return untrained_head_tag(attention, pooling)
    h = hashlib.sha256()
    for k in sorted(head):
        h.update(k.encode())
        h.update(head[k].detach().cpu().float().numpy().tobytes())
    return f"{attention}-" + h.hexdigest()[:10] + ("-gem" if pooling == "gem" else "")


@dataclass
class PreparedFile:
    """One file after the decode stage (array is None when skipped or failed)."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    hash: str = ""
    width: int = 0
    height: int = 0
    array: np.ndarray | None = None  # (S, S, 3) uint8, dropped once embedded
    vector: np.ndarray | None = None  # (2C,) float32
    signature: np.ndarray | None = None  # the duplicate finder's DCT signature (imagesig)
    error: str | None = None
    known: bool = False  # content hash already has a vector: no decode needed
    # how the model's image was decoded: "full", "dct-draft", "mpf-preview", "raw-preview",
    # "raw-demosaic" (decode.SOURCE_*), and the photo's EXIF facts (core/photometa.py)
    source: str | None = None
    meta: PhotoMeta | None = None


def _dupe_signature(img: Image.Image, path: str) -> np.ndarray | None:
    """The duplicate finder's signature from the decode the model already paid for (~0.2 ms),
    so a first duplicate scan need not read every photo again; None if it fails."""
    try:
        return signature_of(img)
    except Exception as exc:  # noqa: BLE001 - the scan computes it later from the file
        log.info("no duplicate signature for %s: %s", path, exc)
        return None


class Extractor:
    """Owns the model on its device; turns images into 2C-d float32 descriptors."""

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        allow_download: bool = True,
        progress: ProgressFn | None = None,
        loaded: LoadedWeights | None = None,
        models_dir: Path | None = None,
    ):
        self.config = config or ModelConfig()
        self.spec = self.config.spec
        self.input_size = int(self.config.input_size)
        lo, hi = INPUT_SIZE_RANGE
        if not lo <= self.input_size <= hi:
            raise ImgfinderError(f"input size {self.input_size} out of range {lo}..{hi}")
        self.device = pick_device(self.config.device)
        model, weights, head = load_model(
            self.config,
            allow_download=allow_download,
            progress=progress,
            loaded=loaded,
            models_dir=models_dir,
        )
        self.dim = self.spec.descriptor_dim
        self.model_id = self.spec.model_id(
            weights.tag,
            head_tag(head, self.config.attention_kind, self.config.pooling_kind),
            self.input_size,
        )
        self.weights_source = weights.source
        self.half = self.device.type in ("cuda", "mps")
        self.bf16 = self.device.type == "cpu" and cpu_has_native_bf16()
        model.eval().to(self.device, memory_format=torch.channels_last)
        if self.half:
            model.half()
        self.model = model
        default_batch = 128 if self.device.type == "cuda" else 16
        self.batch_size = self.config.batch_size or default_batch
        cores = os.cpu_count() or 2
        self.decode_workers = self.config.decode_workers or max(2, min(8, cores))
        self._mean, self._std = normaliser(self.spec.preprocessing, self.device)
        log.info("model %s on %s", self.model_id, device_description(self.device))

    # -- preprocessing -------------------------------------------------------------
    def to_array(self, img: Image.Image) -> np.ndarray:
        """RGB image -> (S, S, 3) uint8, the whole picture squashed to the input square."""
        s = self.input_size
        if img.size != (s, s):
            img = img.resize((s, s), Image.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(img, dtype=np.uint8)

    def load_array(self, source, path_hint: str | os.PathLike | None = None) -> np.ndarray:
        """`path_hint`: the file name of `source` bytes (a RAW file is told by its extension)."""
        img = decode.open_image(source, min_size=self.input_size, path_hint=path_hint)
        return self.to_array(img)

    def _batch_tensor(self, arrays: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(arrays)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()
        x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        return x.half() if self.half else x

    # -- inference -----------------------------------------------------------------
    def forward_maps(self, arrays: list[np.ndarray]) -> FusedOutput:
        """Descriptors plus layer4 maps and ECA weights (float32, on CPU)."""
        x = self._batch_tensor(arrays)
        with torch.inference_mode():
            if self.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    fmap = self.model.trunk(x)
            else:
                fmap = self.model.trunk(x)
            out = self.model.fuse(fmap.float())
        spatial = None if out.spatial is None else out.spatial.cpu()
        return FusedOutput(out.descriptor.cpu(), out.fmap.cpu(), out.eca.cpu(), spatial, out.gem_p)

    def embed_arrays(self, arrays: list[np.ndarray]) -> np.ndarray:
        if not arrays:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for i in range(0, len(arrays), self.batch_size):
            out.append(self.forward_maps(arrays[i : i + self.batch_size]).descriptor.numpy())
        return np.concatenate(out).astype(np.float32, copy=False)

    def embed(self, source, path_hint: str | os.PathLike | None = None) -> np.ndarray:
        """One image (path, bytes or PIL image) -> (2C,) float32."""
        return self.embed_arrays([self.load_array(source, path_hint)])[0]

    # -- the pipelined path used for indexing ------------------------------------------
    def prepare(self, path: str, known_hashes: Callable[[str], bool] | None = None) -> PreparedFile:
        """Decode stage, run in worker threads: stat, read, hash, decode unless known."""
        p = PreparedFile(path=path)
        try:
            st = os.stat(path)
            p.size, p.mtime_ns = st.st_size, st.st_mtime_ns
            data = decode.read_file(path)
            p.hash = decode.content_hash(data)
            if known_hashes is not None and known_hashes(p.hash):
                p.known = True
                return p
            got = decode.decode(data, min_size=self.input_size, path_hint=path, with_meta=True)
            img = got.image
            # the photo's real (EXIF-oriented) size, not the DCT-scaled decode's
            p.width, p.height = got.width, got.height
            p.source, p.meta = got.source, got.meta
            p.array = self.to_array(img)
            p.signature = _dupe_signature(img, path)
        except DecodeError as exc:
            p.error = exc.reason
        except OSError as exc:  # e.g. deleted mid-run: "file not found", not the OS's wording
            p.error = decode._os_error_reason(exc)
        except Exception as exc:  # a decoder bug must not stop a library scan
            log.exception("unexpected failure preparing %s", path)
            p.error = f"unexpected error: {exc}"
        return p

    def pipeline(
        self,
        paths: Iterable[str],
        *,
        known_hashes: Callable[[str], bool] | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[list[PreparedFile]]:
        """Yield batches of prepared files, decoded ones with `vector` set, decode overlapped."""
        ahead = self.batch_size * 2 + self.decode_workers
        it = iter(paths)
        pending: deque[Future[PreparedFile]] = deque()
        with ThreadPoolExecutor(self.decode_workers, thread_name_prefix="decode") as pool:

            def refill() -> None:
                while len(pending) < ahead:
                    try:
                        path = next(it)
                    except StopIteration:
                        return
                    pending.append(pool.submit(self.prepare, str(path), known_hashes))

            refill()
            while pending:
                if cancel is not None and cancel.is_set():
                    for f in pending:
                        f.cancel()
                    return
                batch: list[PreparedFile] = []
                decoded: list[PreparedFile] = []
                while pending and len(decoded) < self.batch_size:
                    item = pending.popleft().result()
                    batch.append(item)
                    if item.array is not None:
                        decoded.append(item)
                    refill()
                vecs = self.embed_arrays([d.array for d in decoded])
                for d, v in zip(decoded, vecs):
                    d.vector, d.array = v, None
                yield batch
