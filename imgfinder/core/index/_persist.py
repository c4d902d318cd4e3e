"""Index files: the single-file container (see _format) plus the identity checks made before
any section is read. Knows nothing of the index classes: `BaseIndex.save` hands it a header
and sections, `BaseIndex.load` gets them back and rebuilds the object itself."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from ...errors import IndexFormatError, IndexStateError, ModelMismatchError
from . import _format

log = logging.getLogger(__name__)


# The LSH refine codes are mapped from the index file, except on Windows: there a mapped file
# cannot be replaced, and in the app (vectors in the external store) the index file is
# otherwise never mapped, so mapping it would make the next atomic save fail while any
# process has it loaded. There the codes are read into RAM (256 B/photo over the budget).
MAPPED_EXTRA = ("refine_codes",) if os.name != "nt" else ()


def write(path: str | os.PathLike, header: dict[str, Any], sections: dict[str, np.ndarray]):
    """Write one index file atomically (header + sections)."""
    _format.write_container(path, header, sections)
    log.info("saved %s index (%s items) to %s", header.get("backend"), header.get("count"), path)


def read(
    path: str | os.PathLike,
    backend: str,
    model_id: str | None,
    with_source: bool,
    verify_vectors: bool,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Header and sections of an index file, after checking (from the header alone) that it
    is a `backend` index ("" = any), built by `model_id` (None = any), and that it holds its
    vectors unless the caller supplies a source. The vector section and the LSH refine codes
    (a compressed copy of the vectors) are memory-mapped."""
    header = _format.read_header(path)
    stored_backend = header.get("backend")
    if backend and stored_backend != backend:
        raise IndexFormatError(path, f"is a {stored_backend!r} index, not {backend!r}")
    stored = str(header.get("model_id", ""))
    if model_id is not None and stored != model_id:
        raise ModelMismatchError(
            f"index {os.fspath(path)} was built by model {stored!r}, "
            f"but the current model is {model_id!r}; rebuild the index",
            stored=stored,
            current=model_id,
        )
    if not header.get("has_vectors") and not with_source:
        raise IndexStateError(f"{os.fspath(path)} was saved without vectors; load it with source=")
    skip = ("vectors", "inv_norm") if with_source else ()
    return _format.read_container(
        path,
        mmap_sections=("vectors", *MAPPED_EXTRA),
        skip_sections=skip,
        verify_mmapped=verify_vectors,
    )


def map_section(path: str | os.PathLike, name: str) -> np.ndarray:
    """Memory-map one section of a (just written) index file read-only, after checking its
    crc32, so a saved index can serve that section from the file instead of from RAM."""
    header, out = _format.read_container(
        path,
        mmap_sections=(name,),
        skip_sections=tuple(
            s["name"] for s in _format.read_header(path)["sections"] if s["name"] != name
        ),
    )
    if name not in out:
        raise IndexFormatError(path, f"no section {name}")
    return out[name]
