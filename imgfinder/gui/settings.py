"""GUI settings: a small versioned JSON file in the data directory, written atomically."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from imgfinder.atomic import atomic_write_bytes
from imgfinder.config import (
    DEFAULT_DEVICE,
    DEFAULT_INDEX_BACKEND,
    DEFAULT_INPUT_SIZE,
    DEVICES,
    INDEX_BACKENDS,
    INPUT_SIZE_RANGE,
)
from imgfinder.core.modelspec import BACKBONES, ModelConfig, get_spec
from imgfinder.core.torchinfo import head_tag, read_state
from imgfinder.core.weights import BUNDLE_FORMAT, file_digest

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: min_score -1 means off (centred scores go below 0)
NO_MIN_SCORE = -1.0
SETTINGS_FILE = "settings.json"
BACKENDS = INDEX_BACKENDS
THUMB_MIN, THUMB_MAX = 64, 384
MAX_RESULTS = 10_000

# Fields that change the Library (model, device or index); the others only change the view.
LIBRARY_FIELDS = (
    "backbone", "device", "input_size", "index_backend", "weights", "head", "whitening",
    "attention", "pooling",
)  # fmt: skip
# Fields that change the vectors themselves (so the model id), beyond the device.
MODEL_FIELDS = ("backbone", "input_size", "weights", "head", "whitening", "attention", "pooling")
PATH_FIELDS = ("weights", "head", "whitening")  # a file, or None for the default
# Saved Qt layouts (hex of a saveGeometry()/saveState()), or None for the default layout.
LAYOUT_FIELDS = ("window_geometry", "window_state", "search_split_state", "dupes_split_state")


@dataclass
class GuiSettings:
    """What the user chose in the settings dialog (and what the window remembers)."""

    schema_version: int = SCHEMA_VERSION
    backbone: str | None = None  # a name in modelspec.BACKBONES; None: the default
    device: str = DEFAULT_DEVICE
    input_size: int = DEFAULT_INPUT_SIZE
    index_backend: str = DEFAULT_INDEX_BACKEND
    weights: str | None = None  # a local weights file picked in the app; None: the default
    head: str | None = None  # a trained ECA head file (imgfinder train); None: the weights' own
    whitening: str | None = None  # a PCA-whitening file (imgfinder whiten); None: off
    thumb_size: int = 160
    result_count: int = 60
    min_score: float = NO_MIN_SCORE  # -1: no filter
    rescan_minutes: int = 10
    raw_pairs_as_one: bool = False  # show a RAW+JPEG pair of one shot as one search result
    window_geometry: str | None = None  # hex of QMainWindow.saveGeometry()
    window_state: str | None = None  # hex of QMainWindow.saveState()
    search_split_state: str | None = None  # hex of QSplitter.saveState(): results | explanations
    dupes_split_state: str | None = None  # hex of QSplitter.saveState(): groups | review
    explain_folded: bool | None = None  # explanations folded to their tab bar; None: by height
    attention: str | None = None  # "cbam" or None (ECA, the default); its own model id
    pooling: str | None = None  # "gem" or None (max, the default); its own model id
    # search re-ranking: "" (none, the default), "aqe", "dba+aqe", "diffusion", "verify", or
    # several joined by commas (README: "Re-ranking")
    rerank: str = ""

    @classmethod
    def load(cls, data_dir: str | os.PathLike) -> GuiSettings:
        """Read the file, keeping defaults for anything missing, unknown or of the wrong type."""
        path = Path(data_dir) / SETTINGS_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable settings file %s: %s", path, exc)
            return cls()
        if not isinstance(raw, dict):
            log.warning("ignoring settings file %s: not a JSON object", path)
            return cls()
        version = int(raw.get("schema_version", 0) or 0)
        if version > SCHEMA_VERSION:
            log.warning("%s was written by a newer imgfinder; reading what is known", path)
        if version < 2 and raw.get("min_score") == 0.0:
            # version 1's default, which hides every result below the library's mean once
            # search is centred: not a choice the user made
            raw["min_score"] = NO_MIN_SCORE
        out = cls()
        for f in dataclasses.fields(cls):
            if f.name == "schema_version" or f.name not in raw:
                continue
            value = raw[f.name]
            default = getattr(out, f.name)
            if _type_ok(value, default, f.name):
                setattr(out, f.name, value)
            else:
                log.warning("settings: ignoring %s=%r (wrong type)", f.name, value)
        out.normalise()
        return out

    def save(self, data_dir: str | os.PathLike) -> Path:
        path = Path(data_dir) / SETTINGS_FILE
        self.schema_version = SCHEMA_VERSION
        data = json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(path, data.encode("utf-8"))
        return path

    def normalise(self) -> None:
        """Clamp values a hand-edited file could get wrong."""
        if self.device not in DEVICES:
            self.device = DEFAULT_DEVICE
        if self.backbone not in BACKBONES:
            self.backbone = None
        self.normalise_retrieval()
        if self.index_backend not in BACKENDS:
            self.index_backend = DEFAULT_INDEX_BACKEND
        lo, hi = INPUT_SIZE_RANGE
        self.input_size = min(hi, max(lo, int(self.input_size)))
        self.thumb_size = min(THUMB_MAX, max(THUMB_MIN, int(self.thumb_size)))
        self.result_count = min(MAX_RESULTS, max(1, int(self.result_count)))
        self.min_score = min(1.0, max(-1.0, float(self.min_score)))
        self.rescan_minutes = min(24 * 60, max(1, int(self.rescan_minutes)))
        for name in PATH_FIELDS:
            if not (getattr(self, name) or "").strip():
                setattr(self, name, None)

    def normalise_retrieval(self) -> None:
        """Attention, pooling and re-ranking (issue 18): unknown values fall back to off."""
        from imgfinder.core.modelspec import ATTENTIONS, POOLINGS  # noqa: PLC0415
        from imgfinder.core.rerank import parse_methods  # noqa: PLC0415

        if self.attention not in ATTENTIONS or self.attention == "eca":
            self.attention = None
        if self.pooling not in POOLINGS or self.pooling == "max":
            self.pooling = None
        try:
            methods = parse_methods(self.rerank)
        except ValueError:
            methods = ()
        self.rerank = ",".join(methods)


def _type_ok(value, default, name: str) -> bool:
    if name in (*PATH_FIELDS, *LAYOUT_FIELDS, "backbone", "attention", "pooling"):
        return value is None or isinstance(value, str)
    if name == "explain_folded":
        return value is None or isinstance(value, bool)
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(default))


@dataclass
class LaunchOptions:
    """Command-line choices; a value that is not None overrides the saved settings."""

    data_dir: str | None = None
    backbone: str | None = None
    weights: str | None = None
    head: str | None = None
    whitening: str | None = None
    device: str | None = None
    input_size: int | None = None
    index_backend: str | None = None
    attention: str | None = None
    pooling: str | None = None
    offline: bool = False
    overrides: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        for name in LIBRARY_FIELDS:
            if getattr(self, name) is not None:
                self.overrides.add(name)


@dataclass
class Effective:
    """The library configuration in use: saved settings with command-line overrides on top."""

    device: str
    input_size: int
    index_backend: str
    weights: str | None
    head: str | None
    whitening: str | None = None
    backbone: str | None = None
    attention: str | None = None
    pooling: str | None = None

    @classmethod
    def resolve(cls, settings: GuiSettings, opts: LaunchOptions) -> Effective:
        values = {}
        for name in LIBRARY_FIELDS:
            cli = getattr(opts, name)
            values[name] = cli if name in opts.overrides else getattr(settings, name)
        values["backbone"] = get_spec(
            values["backbone"]
        ).name  # None: env or default, made explicit
        return cls(**values)

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            backbone=self.backbone,
            weights=self.weights,
            head=self.head,
            whitening=self.whitening,
            device=self.device,
            input_size=self.input_size,
            attention=self.attention,
            pooling=self.pooling,
        )

    def weights_file(self) -> str | None:
        """The explicit weights file in use (a setting, --weights or IMGFINDER_WEIGHTS)."""
        return self.weights or os.environ.get("IMGFINDER_WEIGHTS") or None


# -- model ids of candidate configurations (for the settings dialog, without loading a model) ---
_file_cache: dict[tuple, object] = {}


def _cached(kind: str, path: Path, compute):
    """`compute(path)` once per file version (path, size, mtime)."""
    st = path.stat()
    key = (kind, str(path), st.st_size, st.st_mtime_ns)
    if key not in _file_cache:
        if len(_file_cache) > 64:
            _file_cache.clear()
        _file_cache[key] = compute(path)
    return _file_cache[key]


def _head_tag_of_bundle(path: Path) -> str:
    state = read_state(path)
    return head_tag(state.get("head") if state.get("format") == BUNDLE_FORMAT else None)


def _head_tag_of_head(path: Path) -> str:
    state = read_state(path)
    head = state.get("head", state)
    return head_tag(head if isinstance(head, dict) else None)


def candidate_model_id(
    weights: str | None,
    head: str | None,
    input_size: int,
    backbone: str | None = None,
    attention: str | None = None,
    pooling: str | None = None,
) -> str | None:
    """The raw (unwhitened) model id an Extractor would get for this choice; None if unknown.

    Reads the files (a digest, the head tensors) but loads no model; the id itself comes
    from the backbone's spec, as Extractor.model_id does.
    """
    try:
        spec = get_spec(backbone)
        explicit = weights or os.environ.get("IMGFINDER_WEIGHTS")
        if explicit:
            wpath = Path(explicit).expanduser()
            tag = "file-" + _cached("digest", wpath, file_digest)
            htag = None if head else _cached("bundle-head", wpath, _head_tag_of_bundle)
        else:
            tag, htag = spec.weights_tag, None if head else head_tag(None)
        if htag is not None and not head and (attention or pooling):  # an untrained CBAM/GeM
            htag = head_tag(None, attention or "eca", pooling or "max")
        if head:
            htag = _cached("head", Path(head).expanduser(), _head_tag_of_head)
    except Exception as exc:  # noqa: BLE001 - a missing or foreign file: id unknown
        log.info("cannot tell the model id of weights=%s head=%s: %s", weights, head, exc)
        return None
    return spec.model_id(tag, htag, input_size)
