"""Which copy to keep: a visible, editable rule and a human sentence saying why.

The rule compares files criterion by criterion, in order (editable), the first difference
deciding: camera RAW (a RAW+JPEG pair keeps the RAW, whatever the JPEG's size), resolution
(more pixels of picture), format (earlier in the preference list), file size
(larger: less compressed), capture date (earlier: the original; EXIF DateTimeOriginal, else
the file's modification time) and preferred folders (earlier in the list). Facts come from file
headers (no full decode), so a group of camera files is described in milliseconds.

Resolution counts the picture, not the canvas: a copy framed with a border, letterboxed or put
on a larger canvas has more pixels than its original and no more of the photo. So when
resolution would decide between two frames of different shape, each member is decoded small
(PICTURE_SIDE px, JPEG DCT-scaled) and its uniform border (imageborder.border_box, the test the
duplicate signature trims with) is taken off its pixel count before the files are ranked
again. A group decided by anything else, or by resolution between frames of one shape (a
resized copy), reads no pixels; so a frame that keeps the shape (an even mat on a square
photo) is not seen.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from imgfinder.core import decode, jpegfast
from imgfinder.core.imageborder import border_box
from imgfinder.errors import DecodeError

log = logging.getLogger(__name__)

CRITERIA = ("raw", "resolution", "format", "size", "date", "folder")
DEFAULT_FORMATS = ("RAW", "TIFF", "PNG", "HEIC", "JPEG")
RAW_EXTENSIONS = frozenset(
    ".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .x3f .3fr .iiq "
    ".erf .kdc .dcr .mrw .raw .rwl".split()
)
_FORMAT_ALIASES = {"MPO": "JPEG", "JPEG2000": "JPEG2000", "HEIF": "HEIC", "AVIF": "AVIF"}
PICTURE_SIDE = 256  # borders are measured at this longest side (one scale for every member, so
# the same picture loses the same share to a flat sky whatever its resolution)
ASPECT_MATCH = 0.03  # a framed picture has another member's shape within this (relative)


@dataclass
class KeeperRule:
    """The keeper rule; `criteria` order and `formats` order are the user's to change."""

    criteria: tuple[str, ...] = CRITERIA
    formats: tuple[str, ...] = DEFAULT_FORMATS
    preferred_folders: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.criteria = tuple(self.criteria)
        self.formats = tuple(f.upper() for f in self.formats)
        self.preferred_folders = tuple(str(f) for f in self.preferred_folders)
        unknown = [c for c in self.criteria if c not in CRITERIA]
        if unknown:
            raise ValueError(f"unknown keeper criteria {unknown}; use {', '.join(CRITERIA)}")

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict | None) -> KeeperRule:
        if not d:
            return cls()
        try:
            criteria = tuple(d.get("criteria", CRITERIA))
            if "raw" not in criteria:  # a rule saved before the criterion existed
                criteria = ("raw", *criteria)
            return cls(
                criteria,
                tuple(d.get("formats", DEFAULT_FORMATS)),
                tuple(d.get("preferred_folders", ())),
            )
        except (TypeError, ValueError) as exc:
            log.warning("ignoring invalid keeper rule %r: %s", d, exc)
            return cls()

    def describe(self) -> str:
        parts = []
        for c in self.criteria:
            if c == "raw":
                parts.append("the camera RAW")
            elif c == "resolution":
                parts.append("highest resolution")
            elif c == "format":
                parts.append("format " + " > ".join(self.formats))
            elif c == "size":
                parts.append("largest file")
            elif c == "date":
                parts.append("earliest capture date")
            elif c == "folder":
                folders = ", ".join(self.preferred_folders) or "none set"
                parts.append(f"preferred folders ({folders})")
        return "Keep: " + ", then ".join(parts) + "."


@dataclass
class FileFacts:
    """What the keeper rule and the review screen need to know about one file."""

    path: str
    exists: bool = True
    width: int = 0
    height: int = 0
    format: str = ""
    size: int = 0
    mtime: float = 0.0
    taken: float | None = None  # EXIF DateTimeOriginal as a local timestamp
    error: str | None = None
    measured: tuple[int, int] | None = None  # (w, h) inside a uniform border (measure_picture)
    picture: tuple[int, int] | None = None  # `measured` where the group finds it credible
    exif_taken: str = ""  # DateTimeOriginal as read ("YYYY-MM-DDTHH:MM:SS"; "" if none)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def picture_pixels(self) -> int:
        """Pixels of the photo inside its border when measured, else of the whole frame."""
        return self.picture[0] * self.picture[1] if self.picture else self.pixels

    @property
    def framed(self) -> bool:
        """Whether a border was measured around the picture."""
        return self.picture is not None and self.picture != (self.width, self.height)

    @property
    def date(self) -> float:
        return self.taken if self.taken is not None else self.mtime

    @property
    def date_source(self) -> str:
        return "capture date" if self.taken is not None else "file date"

    @property
    def folder(self) -> str:
        return str(Path(self.path).parent)

    def date_text(self, seconds: bool = False) -> str:
        if not self.date:
            return "?"
        fmt = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
        return datetime.fromtimestamp(self.date).strftime(fmt)

    def dims_text(self) -> str:
        return f"{self.width}×{self.height}" if self.pixels else "?"

    def picture_text(self) -> str:
        """dims_text, and the picture's size inside a measured frame."""
        if not self.framed:
            return self.dims_text()
        return f"{self.dims_text()} framed, {self.picture[0]}×{self.picture[1]} of picture"


def file_facts(path: str, cached: str | None = None) -> FileFacts:
    """Header-only facts; a missing or unreadable file says so instead of raising.

    `cached`: what `to_cache` stored for the file's content hash. Used (the file is not
    opened, only stat'ed) when the file still has the stored size."""
    facts = FileFacts(path=path)
    try:
        st = os.stat(path)
    except OSError as exc:
        return FileFacts(path=path, exists=False, error=exc.strerror or str(exc))
    facts.size, facts.mtime = st.st_size, st.st_mtime
    if cached is not None and _from_cache(facts, cached):
        return facts
    ext = os.path.splitext(path)[1].lower()
    try:
        info = decode.image_info(path)
        facts.width, facts.height = int(info["width"]), int(info["height"])
        fmt = str(info.get("format") or "").upper()
        facts.format = _FORMAT_ALIASES.get(fmt, fmt)
    except DecodeError as exc:
        facts.error = exc.reason
    if ext in RAW_EXTENSIONS:
        facts.format = "RAW"  # Pillow may read a DNG's TIFF preview; it is still the raw file
    # EXIF through the decoder's header reader: RAW files too, and no Pillow bomb warning
    facts.exif_taken = decode.read_meta(path).taken or ""
    facts.taken = _timestamp(facts.exif_taken)
    return facts


def _timestamp(taken: str) -> float | None:
    if not taken:
        return None
    try:
        return datetime.strptime(taken[:19], "%Y-%m-%dT%H:%M:%S").timestamp()
    except (ValueError, OverflowError, OSError):
        return None


FACTS_VERSION = 1  # bump when what file_facts or measure_picture finds changes: re-read


def to_cache(facts: FileFacts) -> str | None:
    """The content-derived facts as JSON for the catalog (keyed by content hash); None for a
    file that could not be read (asked again next time)."""
    if not facts.exists or facts.error or not facts.pixels:
        return None
    return json.dumps(
        [facts.size, facts.width, facts.height, facts.format, facts.exif_taken, facts.measured]
    )


def _from_cache(facts: FileFacts, text: str) -> bool:
    try:
        size, w, h, fmt, taken, measured = json.loads(text)
    except (ValueError, TypeError):
        return False
    if size != facts.size:  # not the content the hash was stored for
        return False
    facts.width, facts.height, facts.format, facts.exif_taken = int(w), int(h), str(fmt), taken
    facts.taken = _timestamp(taken)
    facts.measured = tuple(measured) if measured else None
    return True


def measure_picture(facts: FileFacts) -> None:
    """Set `facts.measured`: the frame less its uniform border (letterbox, mat, canvas), in
    the file's pixels, from a small decode. Left None when the file cannot be decoded."""
    if not facts.exists or not facts.pixels:
        return
    try:
        data = decode.read_file(facts.path)
        img, w, h = jpegfast.open_small(data, PICTURE_SIDE // 2, path_hint=facts.path)
    except DecodeError as exc:
        log.info("no border measured for %s: %s", facts.path, exc.reason)
        return
    if (w, h) != (facts.width, facts.height):  # the header and the decode disagree: no guess
        return
    if max(img.size) > PICTURE_SIDE:
        scale = PICTURE_SIDE / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR)
    left, top, right, bottom = border_box(np.asarray(img.convert("RGB")))
    facts.measured = (  # the small image is upright, as the header's width and height
        min(w, round((right - left) * w / img.width)),
        min(h, round((bottom - top) * h / img.height)),
    )


@dataclass
class KeeperChoice:
    keeper: int  # index into the facts list
    reason: str  # "kept: highest resolution (6000×4000 vs 3000×2000)"
    ranking: list[int] = field(default_factory=list)  # best first
    decided_by: str | None = None  # the criterion that beat the runner-up (None: none did)


def _key(f: FileFacts, rule: KeeperRule) -> tuple:
    parts: list = [0 if f.exists else 1]
    for c in rule.criteria:
        if c == "raw":
            parts.append(0 if f.format == "RAW" else 1)
        elif c == "resolution":
            parts.append((-f.picture_pixels, f.framed))  # the same picture: the unframed
        elif c == "format":
            parts.append(_format_rank(f.format, rule))
        elif c == "size":
            parts.append(-f.size)
        elif c == "date":  # whole seconds: copies made in the same second tie
            parts.append(int(f.date) if f.date else float("inf"))
        elif c == "folder":
            parts.append(_folder_rank(f.path, rule))
    return tuple(parts)


def _format_rank(fmt: str, rule: KeeperRule) -> int:
    try:
        return rule.formats.index(fmt)
    except ValueError:
        return len(rule.formats)  # unlisted formats rank after every listed one


def _folder_rank(path: str, rule: KeeperRule) -> int:
    p = Path(path)
    for i, folder in enumerate(rule.preferred_folders):
        try:
            if p.is_relative_to(Path(folder).expanduser()):
                return i
        except ValueError:
            continue
    return len(rule.preferred_folders)


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _because(c: str, k: FileFacts, r: FileFacts, rule: KeeperRule) -> str:
    if c == "raw":
        return f"the camera RAW (over the {r.format or 'other'} file)"
    if c == "resolution":
        what = "highest resolution" if k.picture_pixels != r.picture_pixels else "no frame"
        return f"{what} ({k.picture_text()} vs {r.picture_text()})"
    if c == "format":
        return f"preferred format ({k.format or '?'} over {r.format or '?'})"
    if c == "size":
        a, b = _human_size(k.size), _human_size(r.size)
        if a == b:  # "10.1 KB vs 10.1 KB" tells nothing: the bytes do
            a, b = f"{k.size:,} bytes", f"{r.size:,} bytes"
        return f"largest file ({a} vs {b})"
    if c == "date":
        sec = k.date_text() == r.date_text()
        return f"earliest {k.date_source} ({k.date_text(sec)} vs {r.date_text(sec)})"
    folder = rule.preferred_folders[_folder_rank(k.path, rule)]
    return f"in a preferred folder ({folder})"


def choose_keeper(
    facts: list[FileFacts], rule: KeeperRule | None = None, *, measure: bool = True
) -> KeeperChoice:
    """Rank the files by the rule; the reason names the criterion that beat the runner-up.

    When resolution decides (and `measure`), the members' borders are measured first
    (measure_picture), so a framed copy does not win on the size of its canvas."""
    if not facts:
        raise ValueError("no files to choose from")
    rule = rule or KeeperRule()
    for f in facts:
        f.picture = None
    choice = _choose(facts, rule)
    if (
        measure
        and choice.decided_by == "resolution"
        and _reshaped(facts[choice.ranking[0]], facts[choice.ranking[1]])
    ):
        for f in facts:
            if f.measured is None:
                measure_picture(f)
            f.picture = f.measured
        _keep_credible_frames(facts)
        if any(f.framed for f in facts):
            choice = _choose(facts, rule)
    return choice


def _aspect(w: int, h: int) -> float:
    return w / h if w >= h else h / w  # a 90° turn keeps the shape of a frame


def _reshaped(a: FileFacts, b: FileFacts) -> bool:
    """Whether two files' frames differ in shape by more than rounding a resize to whole
    pixels explains: then a frame may have been added to one of them (a resized copy keeps
    the shape, and needs no decode to be ranked)."""
    if not (a.pixels and b.pixels):
        return False
    ra, rb = _aspect(a.width, a.height), _aspect(b.width, b.height)
    rounding = 1.0 / min(a.width, a.height) + 1.0 / min(b.width, b.height)
    return abs(ra - rb) > rounding * rb


def _keep_credible_frames(facts: list[FileFacts]) -> None:
    """Forget a measured border unless the picture inside it has the shape of another
    member's whole frame (ASPECT_MATCH): that is what a framed copy is. A flat band of sky or
    studio wall at an edge passes the border test too, and would shrink an original. A
    picture within ASPECT_MATCH of that frame's size is taken to be that size: the same photo,
    which the member without a frame then keeps."""
    for f in facts:
        if not f.framed:
            continue
        inner = _aspect(*f.picture)
        like = [
            g
            for g in facts
            if g is not f
            and g.pixels
            and abs(inner - _aspect(g.width, g.height)) <= ASPECT_MATCH * _aspect(g.width, g.height)
        ]
        if not like:
            f.picture = None
            continue
        for g in like:
            if abs(f.picture_pixels - g.pixels) <= 2 * ASPECT_MATCH * g.pixels:
                turned = (f.picture[0] >= f.picture[1]) != (g.width >= g.height)
                f.picture = (g.height, g.width) if turned else (g.width, g.height)
                break


def _choose(facts: list[FileFacts], rule: KeeperRule) -> KeeperChoice:
    ranking = sorted(range(len(facts)), key=lambda i: (_key(facts[i], rule), facts[i].path))
    k = ranking[0]
    if len(facts) == 1:
        return KeeperChoice(k, "kept: the only file", ranking)
    r = ranking[1]
    keeper, runner = facts[k], facts[r]
    if keeper.exists and not runner.exists:
        return KeeperChoice(k, "kept: the other files are missing", ranking)
    kk, rk = _key(keeper, rule), _key(runner, rule)
    for c, a, b in zip(rule.criteria, kk[1:], rk[1:]):
        if a != b:
            return KeeperChoice(k, "kept: " + _because(c, keeper, runner, rule), ranking, c)
    return KeeperChoice(k, "kept: all criteria tie; first by path", ranking)
