"""The C allocator's policy for imgfinder's processes: big numpy temporaries reuse memory.

Why: the duplicate scan, the LSH search and the signature self-join make numpy temporaries
of a few to tens of MB, block after block. glibc's malloc serves blocks above its mmap
threshold (128 kB at first, adapting up to 32 MB) with fresh mappings and returns them to
the system on free, so every block touches fresh pages again. On the 2-core test VM those
first touches are slow: the 100k signature self-join took 5.2-5.6 s on its first call in a
process and 3.2-3.4 s on the next; the app's 100k duplicate scan (benchmarks/dupes_scan.py
--app-store, idle machine) took 32.5 s wall with the default allocator and 27.5 s with this
policy (signature pass 6.0 -> 2.3 s, feature k-NN 25.8 -> 24.6 s), the same groups. With a
smaller heap reserve (256 MB kept, 16 MB steps) it was 30.7 s.

The policy (`tune_allocator`, called once at start by the CLI, the app and each worker
process): blocks up to MMAP_THRESHOLD come from the heap, the heap grows in TOP_PAD steps
and keeps up to TRIM_THRESHOLD of free memory at its top for the next block instead of
returning it at once. The price is memory kept after a large job (at most TRIM_THRESHOLD at
the heap's top, plus what fragmentation keeps anyway): the 100k scan's process peaked at
2,450 MiB and held that afterwards, against 2,285 MiB with the default allocator (+7%).
glibc only (Linux); elsewhere, or with IMGFINDER_MALLOC_TUNE=0, nothing changes. No Qt, no
torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV = "IMGFINDER_MALLOC_TUNE"  # "0": leave the allocator as it is
MMAP_THRESHOLD = 128 << 20  # bytes: larger blocks are still mapped on their own
TRIM_THRESHOLD = 1 << 30  # free bytes at the heap's top kept for reuse
TOP_PAD = 256 << 20  # the heap grows by at least this much (address space; pages on use)
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3

_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the policy above once per process; True when glibc took it."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux") or os.environ.get(ENV, "").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
            (_M_TOP_PAD, TOP_PAD),
        )
    )
    if not _done:
        log.debug("the C allocator did not take imgfinder's malloc policy")
    return _done
