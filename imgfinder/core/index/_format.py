"""The single-file container every index backend saves into: versioned header + aligned sections.

Layout (little-endian)::

    0   8   magic  b"IMGFIDX\\0"
    8   4   format version (uint32), currently 3 (1 and 2 are still read: same layout; an
            LSH index of format 1 has no sketch/recall sections and is rebuilt on load, one
            of format 2 has no refine codes and loads with its refine stage off)
    12  4   header length H (uint32)
    16  4   crc32 of the header bytes
    20  12  reserved (zero)
    32  H   header: UTF-8 JSON {backend, dim, model_id, count, seed, params, state,
            sections: [{name, dtype, shape, offset, nbytes, crc32}], file_size}
    ...     sections, each starting at a 64-byte aligned offset (so they can be memory-mapped)

Every section carries its own crc32. Loading checks magic, version, the header crc, that the
file is exactly `file_size` long, that every section lies inside it with the size its dtype and
shape imply, and the crc32 of every section. The float16 vector section is the only large one
(hundreds of MB); its crc (~3 GB/s) is checked too unless the caller opts out with
`verify_vectors=False`, in which case it is memory-mapped without being read. Any mismatch
raises IndexFormatError; nothing is ever half-loaded.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ...atomic import atomic_write
from ...errors import IndexFormatError

log = logging.getLogger(__name__)

MAGIC = b"IMGFIDX\x00"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
_PREFIX = struct.Struct("<8sIII12x")  # magic, version, header length, header crc32
_ALIGN = 64
_CRC_BLOCK = 1 << 24


def _align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _blocks(a: np.ndarray):
    """Yield an array's bytes in bounded blocks (no full copy of memory-mapped data)."""
    rows = max(1, _CRC_BLOCK // max(1, a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64))))
    if a.ndim == 0:
        yield np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        return
    for lo in range(0, len(a), rows):
        yield np.ascontiguousarray(a[lo : lo + rows]).reshape(-1).view(np.uint8)


def _crc_array(parts: list[np.ndarray]) -> int:
    """crc32 of the concatenated bytes of `parts`, streamed block by block."""
    crc = 0
    for a in parts:
        for blk in _blocks(a):
            crc = zlib.crc32(blk, crc)
    return crc


def _as_parts(v) -> list[np.ndarray]:
    parts = [np.asarray(p) for p in v] if isinstance(v, list | tuple) else [np.asarray(v)]
    if len({(p.dtype.str, p.shape[1:]) for p in parts}) > 1:
        raise ValueError("section parts must share dtype and trailing shape")
    return parts


def _json_default(o: Any) -> Any:
    """numpy scalars in params (e.g. probes=np.int64(64)) become plain numbers."""
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"cannot store {type(o).__name__} in an index header")


def write_container(path: str | os.PathLike, header: dict[str, Any], sections: dict) -> None:
    """Atomically write `header` plus named `sections` to `path`.

    A section is an ndarray or a list of ndarrays concatenated along axis 0 (so a memory-mapped
    block plus an in-RAM tail can be saved without first joining them).
    """
    header = dict(header)
    arrays = {k: _as_parts(v) for k, v in sections.items()}
    crcs = {k: _crc_array(a) for k, a in arrays.items()}
    # Section offsets depend on the header length, which depends on the offsets' digits:
    # iterate until stable (two rounds in practice).
    start = _align(_PREFIX.size)
    for _ in range(8):
        specs = []
        pos = start
        for name, parts in arrays.items():
            shape = [sum(len(p) for p in parts), *parts[0].shape[1:]] if parts[0].ndim else []
            nbytes = sum(int(p.nbytes) for p in parts)
            specs.append(
                {
                    "name": name,
                    "dtype": parts[0].dtype.str,
                    "shape": shape,
                    "offset": pos,
                    "nbytes": nbytes,
                    "crc32": crcs[name],
                }
            )
            pos = _align(pos + nbytes)
        header["sections"] = specs
        header["file_size"] = pos
        blob = json.dumps(header, sort_keys=True, default=_json_default).encode()
        need = _align(_PREFIX.size + len(blob))
        if need <= start:
            break
        start = need
    else:  # pragma: no cover
        raise AssertionError("index header layout did not converge")
    with atomic_write(path) as fh:
        fh.write(_PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob), zlib.crc32(blob)))
        fh.write(blob)
        pos = _PREFIX.size + len(blob)
        for spec, parts in zip(specs, arrays.values(), strict=True):
            fh.write(b"\x00" * (spec["offset"] - pos))
            for a in parts:
                for blk in _blocks(a):
                    fh.write(blk)
            pos = spec["offset"] + spec["nbytes"]
        fh.write(b"\x00" * (header["file_size"] - pos))
    log.debug("wrote index %s (%d bytes)", path, header["file_size"])


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate the prefix and header of a container (no section data)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            prefix = fh.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise IndexFormatError(path, "truncated: file is shorter than the index header")
            magic, version, hlen, hcrc = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise IndexFormatError(path, "not an imgfinder index (bad magic bytes)")
            if version not in READABLE_VERSIONS:
                raise IndexFormatError(
                    path,
                    f"unknown index format version {version} (this build reads "
                    f"{', '.join(map(str, READABLE_VERSIONS))}); rebuild the index",
                )
            blob = fh.read(hlen)
    except OSError as e:
        raise IndexFormatError(path, f"cannot read index: {e}") from e
    if len(blob) < hlen:
        raise IndexFormatError(path, "truncated inside the index header")
    if zlib.crc32(blob) != hcrc:
        raise IndexFormatError(path, "corrupt index header (checksum mismatch)")
    try:
        header = json.loads(blob)
    except ValueError as e:  # pragma: no cover - crc makes this nearly impossible
        raise IndexFormatError(path, f"corrupt index header: {e}") from e
    expected = header.get("file_size")
    if not isinstance(expected, int):
        raise IndexFormatError(path, "corrupt index header (no file size)")
    header["format_version"] = version
    if size < expected:
        raise IndexFormatError(path, f"truncated: {size} of {expected} bytes present")
    if size > expected:
        raise IndexFormatError(path, f"corrupt: {size - expected} unexpected trailing bytes")
    return header


def read_container(
    path: str | os.PathLike,
    *,
    mmap_sections: tuple[str, ...] = (),
    skip_sections: tuple[str, ...] = (),
    verify_mmapped: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Load a container; sections named in `mmap_sections` are memory-mapped read-only.

    Raises IndexFormatError on any structural or checksum problem.
    """
    path = Path(path)
    header = read_header(path)
    out: dict[str, np.ndarray] = {}
    try:
        specs = header["sections"]
        with open(path, "rb") as fh:
            for spec in specs:
                name = spec["name"]
                dtype = np.dtype(spec["dtype"])
                shape = tuple(int(s) for s in spec["shape"])
                nbytes, offset = int(spec["nbytes"]), int(spec["offset"])
                if int(np.prod(shape)) * dtype.itemsize != nbytes or offset < 0:
                    raise IndexFormatError(path, f"corrupt section table ({name})")
                if offset + nbytes > header["file_size"]:
                    raise IndexFormatError(path, f"truncated: section {name} runs past the end")
                if name in skip_sections:
                    continue
                if name in mmap_sections and nbytes > 0:
                    arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
                    check = verify_mmapped
                else:
                    arr = np.empty(shape, dtype=dtype)
                    fh.seek(offset)
                    got = fh.readinto(memoryview(arr.reshape(-1).view(np.uint8)))
                    if got != nbytes:
                        raise IndexFormatError(path, f"truncated inside section {name}")
                    check = True
                if check and _crc_array([arr]) != int(spec["crc32"]):
                    raise IndexFormatError(path, f"corrupt section {name} (checksum mismatch)")
                out[name] = arr
    except IndexFormatError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise IndexFormatError(path, f"corrupt index header: {e!r}") from e
    except OSError as e:
        raise IndexFormatError(path, f"cannot read index: {e}") from e
    return header, out
