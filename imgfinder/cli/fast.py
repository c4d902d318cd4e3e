"""Commands that need no model answer without importing torch: `status` and a no-change `index`.

Loading torch, torchvision and the weights takes seconds. `status` and an `index` that finds
nothing new need only the catalog and the model *id*, so the id (with the device and weights
file it was measured with) is remembered in `<data dir>/model-id-cache.json` whenever a
command has loaded the model. While the configuration and the files it names are unchanged
(same paths, sizes and mtimes), the fast paths use it; otherwise the command loads the model
as before and refreshes the file. Nothing here imports torch, numpy's heavy users or the core
modules that do (core.extract, core.library).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from imgfinder import paths
from imgfinder.atomic import atomic_write_bytes
from imgfinder.core import scan
from imgfinder.core.catalog import Catalog
from imgfinder.core.modelspec import (
    BACKBONES,
    DEFAULT_BACKBONE,
    describe_model_id,
    get_spec,
    spec_of_model_id,
)
from imgfinder.core.types import IndexSummary, Progress
from imgfinder.core.vectors import VectorStore
from imgfinder.errors import ImgfinderError
from imgfinder.lock import WriterLock

log = logging.getLogger(__name__)

CACHE_FILE = "model-id-cache.json"
CACHE_FORMAT = "imgfinder-model-id-cache"
CACHE_VERSION = 2  # 2: the vectors' dimension is remembered too


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir).resolve() if args.data_dir else paths.data_dir()


def library_backbone(args: argparse.Namespace) -> str | None:
    """The backbone of the library's stored vectors when the command names none (no
    --backbone, IMGFINDER_BACKBONE or --weights): a library indexed with Lite0 is searched,
    scanned and shown with Lite0, not with the default ResNet50. None: no catalog yet, no
    vectors, or vectors of more than one backbone (then the default applies)."""
    if args.backbone or args.weights or os.environ.get("IMGFINDER_BACKBONE"):
        return None
    path = data_dir(args) / "catalog.sqlite"
    if not path.is_file():
        return None
    try:
        catalog = Catalog(path, check=False)
        try:
            present = catalog.model_prefixes_present(s.id_prefix for s in BACKBONES.values())
        finally:
            catalog.close()
    except Exception as exc:  # noqa: BLE001 - damaged or locked: the command deals with it
        log.debug("cannot read the library's models from %s: %s", path, exc)
        return None
    if len(present) != 1:
        return None
    name = spec_of_model_id(present.pop()).name
    if name == DEFAULT_BACKBONE:
        return None  # the default anyway
    log.info("using the library's backbone %s (its photos were indexed with it)", name)
    return name


def _stat(path: str | None) -> list[int] | None:
    if not path:
        return None
    try:
        st = Path(path).expanduser().stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _requested(args: argparse.Namespace) -> dict:
    """The model configuration a command asks for (what Library/ModelConfig would be given)."""
    weights = args.weights or os.environ.get("IMGFINDER_WEIGHTS") or None
    head, whitening = args.head, getattr(args, "whitening", None)
    return {
        "backbone": get_spec(getattr(args, "backbone", None)).name,  # or IMGFINDER_BACKBONE
        "weights": str(Path(weights).expanduser().resolve()) if weights else None,
        "head": str(Path(head).expanduser().resolve()) if head else None,
        "whitening": str(Path(whitening).expanduser().resolve()) if whitening else None,
        "input_size": int(args.input_size),
        "device": args.device,
        "attention": getattr(args, "attention", None) or "eca",
        "pooling": getattr(args, "pooling", None) or "max",
    }


def remember_model(args: argparse.Namespace, lib) -> None:
    """After a command that loaded the model: note its id for the next fast `status`/`index`."""
    ex = getattr(lib, "_extractor", None)
    if ex is None:
        return
    from imgfinder.core.extract import device_description  # noqa: PLC0415 (torch is loaded)

    req = _requested(args)
    files = [ex.weights_source, req["head"], req["whitening"]]
    entry = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "requested": req,
        "files": {f: _stat(f) for f in files if f},
        "model_id": lib.model_id,
        "raw_model_id": ex.model_id,
        "dim": lib.dim,
        "device": device_description(ex.device),
        "weights": ex.weights_source,
    }
    if any(v is None for v in entry["files"].values()):
        return  # a file it names cannot be checked later: do not remember
    try:
        data = json.dumps(entry, indent=1, sort_keys=True).encode("utf-8")
        atomic_write_bytes(lib.data_dir / CACHE_FILE, data)
    except OSError as exc:
        log.info("cannot remember the model id: %s", exc)


def known_model(args: argparse.Namespace) -> dict | None:
    """The remembered model of this configuration, if its files are unchanged; else None."""
    path = data_dir(args) / CACHE_FILE
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != CACHE_FORMAT:
        return None
    if entry.get("version") != CACHE_VERSION or entry.get("requested") != _requested(args):
        return None
    files = entry.get("files")
    if not isinstance(files, dict) or any(_stat(f) != s for f, s in files.items()):
        return None
    return entry


def _catalog(args: argparse.Namespace) -> Catalog | None:
    """The catalog, or None when there is none or it needs the full path (recovery)."""
    path = data_dir(args) / "catalog.sqlite"
    if not path.is_file():
        return None
    try:
        return Catalog(path)
    except ImgfinderError as exc:  # damaged: Library recovers it, under the writer lock
        log.info("fast status not possible: %s", exc)
        return None


def _damaged_vectors(cat: Catalog, root: Path, model_id: str, dim: int) -> int:
    """Library.vector_health() without the library: rows that fail their check, plus the
    images already marked for re-extraction (the store is opened read-only)."""
    pairs = cat.vector_rows(model_id)
    name = cat.vector_file(model_id)
    awaiting = cat.awaiting_vectors()
    if name is None or not pairs:
        return awaiting
    store = VectorStore(root / "vectors" / name, dim, model_id, writable=False)
    try:
        bad = set(store.verify(np.asarray([r for _, r in pairs], dtype=np.int64)).tolist())
    finally:
        store.close()
    return sum(1 for _, r in pairs if r in bad) + awaiting


def disk_usage(root: Path) -> dict[str, int]:
    """Bytes of the catalog, vectors and index (as Library.disk_usage counts them)."""

    def size(pattern: str) -> int:
        return sum(f.stat().st_size for f in root.glob(pattern) if f.is_file())

    return {
        "catalog": size("catalog.sqlite*"),
        "vectors": size("vectors/*.f16"),
        "index": size("index/*"),
    }


def _model_and_catalog(args: argparse.Namespace) -> tuple[dict, Catalog] | None:
    """The remembered model and the open catalog, or None when the fast path cannot answer."""
    model = known_model(args)
    if model is None:
        return None
    cat = _catalog(args)
    return None if cat is None else (model, cat)


def fast_status(args: argparse.Namespace) -> dict | None:
    """`imgfinder status` from the catalog and the remembered model id; None: load the model."""
    found = _model_and_catalog(args)
    if found is None:
        return None
    model, cat = found
    root = data_dir(args)
    try:
        counts, model_counts, root_counts = cat.counts(), cat.model_counts(), cat.root_counts()
        roots = cat.roots()
        damaged = _damaged_vectors(cat, root, model["model_id"], int(model["dim"]))
    except (ImgfinderError, OSError) as exc:  # a store that cannot even be opened
        log.info("fast status not possible: %s", exc)
        return None
    finally:
        cat.close()
    usage = disk_usage(root)
    ok = counts.get("ok", 0)
    return {
        "data_dir": str(root),
        "roots": [
            {
                "path": p,
                "available": scan.root_available(p),
                "images": root_counts.get(rid, (0, 0))[0],
                "failed": root_counts.get(rid, (0, 0))[1],
            }
            for rid, p in roots
        ],
        "images": ok,
        "failed": counts.get("failed", 0),
        "index_backend": args.index_backend,
        "backbone": get_spec(getattr(args, "backbone", None)).name,
        "bytes_on_disk": usage,
        "writer": WriterLock(root).holder(),
        "model_id": model["model_id"],
        "model": describe_model_id(model["model_id"], model["weights"]),
        "centred": not getattr(args, "whitening", None),
        "device": model["device"],
        "weights": model["weights"],
        "stale": sum(n for m, n in model_counts.items() if m != model["model_id"]),
        "vectors_damaged": damaged,
        "bytes_per_image": sum(usage.values()) // ok if ok else 0,
    }


def unchanged_index(args: argparse.Namespace, on_progress=None) -> tuple[IndexSummary, dict] | None:
    """A no-change `index` without the model: the summary and catalog counts, or None when
    anything is new, changed, moved, gone, or the model is not known (then index for real).

    The freshness test is Library.index()'s: same size and mtime, and indexed with this model
    (or recorded as unreadable).
    """
    t0 = time.perf_counter()
    found = _model_and_catalog(args)
    if found is None:
        return None
    model, cat = found
    try:
        known = {p for _, p in cat.roots()}
        wanted = {str(Path(p).expanduser().resolve()) for p in args.paths}
        if not wanted <= known:
            return None  # a folder to add
        summary = IndexSummary()
        model_id = model["model_id"]
        for rid, root in cat.roots():
            if not scan.root_available(root):
                summary.missing_roots.append(root)
                continue
            if on_progress:
                on_progress(Progress("scan", 0, None, message=f"scanning {root}"))
            existing = cat.images_under(rid)
            seen = 0
            for f in scan.iter_image_files([root]):
                row = existing.get(str(f))
                try:
                    st = f.stat()
                except OSError:
                    return None
                fresh = (
                    row is not None and row.size == st.st_size and row.mtime_ns == st.st_mtime_ns
                )
                if not (fresh and (row.status == "failed" or row.model_id == model_id)):
                    return None
                seen += 1
                if on_progress and seen % 2000 == 0:
                    on_progress(Progress("scan", seen, None, message=root))
            if seen != len(existing):
                return None  # some files are gone
            summary.unchanged += seen
        counts = cat.counts()
    finally:
        cat.close()
    summary.seconds = time.perf_counter() - t0
    return summary, counts
