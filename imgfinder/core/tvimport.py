"""Import torchvision without loading torch._dynamo, which it does not need at import time.

torchvision's `ops/roi_align.py` imports `torch._dynamo.utils.is_compile_supported` at module
level (its own `lazy_compile` helper says it means to avoid importing dynamo eagerly), and
`import torchvision` imports `ops` through `models`. That one line loads all of torch._dynamo:
on this 2-core machine `import torchvision` took 0.89 s with it and 0.09 s without, out of a
3.1 s cold `imgfinder search` (see benchmarks/cli_startup.py).

`torchvision()` imports it with a stand-in `torch._dynamo.utils` whose `is_compile_supported`
imports the real function on its first call (roi_align only calls it when it runs). The
stand-ins leave `sys.modules` right after the import, so a later `import torch._dynamo`
(torch.compile, anything else) gets the real package. Should a torchvision version need more
of dynamo at import time, the stand-in import fails and torchvision is imported the ordinary
way, so this can only cost the time it saves, never break the import.
"""

from __future__ import annotations

import logging
import sys
import threading
import types

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_DYNAMO, _UTILS = "torch._dynamo", "torch._dynamo.utils"


def _is_compile_supported(device_type):
    from torch._dynamo.utils import is_compile_supported  # noqa: PLC0415 - the real one

    return is_compile_supported(device_type)


def torchvision() -> types.ModuleType:
    """The torchvision module, imported once (see the module docstring)."""
    with _LOCK:
        if "torchvision" in sys.modules:
            return sys.modules["torchvision"]
        import torch  # noqa: PLC0415

        if _DYNAMO in sys.modules:  # already paid for: nothing to save
            import torchvision as tv  # noqa: PLC0415

            return tv
        pkg = types.ModuleType(_DYNAMO)
        pkg.__path__ = []  # a package, so `torch._dynamo.utils` resolves to the stand-in
        utils = types.ModuleType(_UTILS)
        utils.is_compile_supported = _is_compile_supported
        sys.modules[_DYNAMO], sys.modules[_UTILS] = pkg, utils
        try:
            import torchvision as tv  # noqa: PLC0415
        except ImportError as exc:
            log.debug("torchvision needs torch._dynamo at import (%s); importing it fully", exc)
            tv = None
        finally:
            for name, mod in ((_UTILS, utils), (_DYNAMO, pkg)):
                if sys.modules.get(name) is mod:
                    del sys.modules[name]
            if torch.__dict__.get("_dynamo") is pkg:  # plain getattr would import the real one
                del torch._dynamo
        if tv is None:
            for name in [
                m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")
            ]:
                del sys.modules[name]
            import torchvision as tv  # noqa: PLC0415
        return tv
