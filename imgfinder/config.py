"""Defaults and choice lists shared by the CLI, the GUI and the core (no Qt, no torch).

One place for what a user can choose (devices, index backends, the input-size range) and
what they get when they choose nothing; `core/modelspec.py` keeps the backbones themselves
(their specs), `cli` builds its options from this module and `gui/settings.py` clamps a
hand-edited settings file with it.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda", "mps")
DEFAULT_DEVICE = "auto"
DEFAULT_INPUT_SIZE = 224
INPUT_SIZE_RANGE = (32, 1024)
INDEX_BACKENDS = ("lsh", "annoy", "exact")  # the names of core.index.BACKENDS, in menu order
DEFAULT_INDEX_BACKEND = "lsh"
ATTENTIONS = ("eca", "cbam")  # the attention branch's head (core/model.py)
POOLINGS = ("max", "gem")  # the second branch's pooling

# The CLI's global options when not given (argparse leaves them unset); the GUI takes a
# value equal to its default as "not given", so it does not override the saved settings.
DEFAULTS: dict[str, object] = {
    "data_dir": None,
    "backbone": None,  # None: IMGFINDER_BACKBONE, else modelspec.DEFAULT_BACKBONE
    "weights": None,
    "head": None,
    "attention": None,
    "pooling": None,
    "whitening": None,
    "device": DEFAULT_DEVICE,
    "input_size": DEFAULT_INPUT_SIZE,
    "index_backend": DEFAULT_INDEX_BACKEND,
    "offline": False,
    "verbose": 0,
}
