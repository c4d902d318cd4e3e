"""What the GUI asks of torch, with torch imported only when a function is called.

The GUI imports no torch at module level (a rule test checks it): starting the window
must not wait for torch, and the settings dialog only needs a few answers ("is CUDA
there?", "what is in this weights file?"). Each function here imports torch itself.
"""

from __future__ import annotations

from pathlib import Path

from imgfinder.core.modelspec import untrained_head_tag


def device_available(name: str) -> bool:
    """Whether an inference device ("auto", "cpu", "cuda", "mps") can be used here."""
    if name not in ("cuda", "mps"):
        return True
    import torch  # noqa: PLC0415 (lazy: see the module docstring)

    if name == "cuda":
        return torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def read_state(path: str | Path) -> dict:
    """A weights/head/bundle file's top-level dict ({} when it holds something else).

    Memory-mapped when the file allows it, so a 100 MB bundle is read only as far as its
    head; errors (missing, foreign or damaged file) propagate to the caller.
    """
    import torch  # noqa: PLC0415 (lazy)

    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # not a zip-format file: mmap is not possible
        state = torch.load(path, map_location="cpu", weights_only=True)
    return state if isinstance(state, dict) else {}


def head_tag(head: dict | None, attention: str = "eca", pooling: str = "max") -> str:
    """The model id's part for a head state dict (None: the untrained head of that
    attention and pooling, told without torch)."""
    if head is None:
        return untrained_head_tag(attention, pooling)
    from imgfinder.core.extract import head_tag as tag  # noqa: PLC0415 (lazy: torch)

    return tag(head)


def describe_device(device) -> str:
    """A torch.device, or a device name it resolves to ("auto"), in words: "cuda (NVIDIA
    ...)", "cpu (8 threads)"."""
    from imgfinder.core.extract import device_description, pick_device  # noqa: PLC0415 (lazy)

    return device_description(pick_device(device) if isinstance(device, str) else device)


_default_threads: int | None = None


def default_threads() -> int:
    """torch's intra-op thread count as the process started (read once, then remembered)."""
    global _default_threads
    if _default_threads is None:
        import torch  # noqa: PLC0415 (lazy)

        _default_threads = torch.get_num_threads()
    return _default_threads


def set_threads(n: int) -> None:
    """torch's intra-op thread count for the calling OS thread."""
    import torch  # noqa: PLC0415 (lazy)

    torch.set_num_threads(n)
