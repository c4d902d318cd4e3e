"""What photographers expect to see about a photo: capture date, camera, lens, exposure, GPS.

Read from the EXIF block the decoder has already parsed (JPEG, HEIC, AVIF, PNG, WebP, TIFF and
the TIFF-based RAW formats), with LibRaw's own fields for RAW files whose EXIF Pillow cannot
read. Stored in the catalog's `images` table (columns added by `catalog._migrate_photo_meta`)
so results can be sorted and filtered by capture date without opening any photo.

Capture dates are kept as EXIF writes them, local wall-clock time, as ISO 8601 text
("2024-05-01T14:03:22", plus "+02:00" when the camera recorded its offset): sorting the text
sorts the dates, and `--since 2024-05` compares as a prefix would.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

META_VERSION = 1  # bump when more fields are read: rows with an older version are re-read

_EXIF_IFD = 0x8769
_GPS_IFD = 0x8825
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXPOSURE_TIME, _F_NUMBER, _ISO = 0x829A, 0x829D, 0x8827
_DATETIME_ORIGINAL, _DATETIME_DIGITIZED = 0x9003, 0x9004
_OFFSET_TIME_ORIGINAL, _OFFSET_TIME = 0x9011, 0x9010
_FOCAL_LENGTH = 0x920A
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_GPS_LATITUDE, _GPS_LONGITUDE = 2, 4

_DATE_RE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"^\s*([+\-]\d{2}):?(\d{2})\s*$")


@dataclass(frozen=True)
class PhotoMeta:
    """Photo facts from EXIF; every field None (or False) when the file does not say."""

    taken: str | None = None  # ISO 8601 local time, with the UTC offset when known
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    exposure_time: float | None = None  # seconds
    f_number: float | None = None
    iso: int | None = None
    focal_length: float | None = None  # mm
    gps: bool = False  # the file carries a GPS position

    @property
    def camera(self) -> str | None:
        """ "Canon EOS R5", not "Canon Canon EOS R5": the make only when the model lacks it."""
        make, model = (self.make or "").strip(), (self.model or "").strip()
        if not model:
            return make or None
        first = make.split()[0].lower() if make else ""
        if not first or model.lower().startswith(first):
            return model
        return f"{make} {model}"

    @property
    def exposure(self) -> str | None:
        """ "1/250 s, f/2.8, ISO 100, 50 mm" from whichever parts are known."""
        parts = []
        if self.exposure_time:
            t = self.exposure_time
            parts.append(f"1/{round(1 / t)} s" if t < 0.5 else f"{t:g} s")
        if self.f_number:
            parts.append(f"f/{self.f_number:.1f}".replace(".0", ""))
        if self.iso:
            parts.append(f"ISO {self.iso}")
        if self.focal_length:
            parts.append(f"{self.focal_length:g} mm")
        return ", ".join(parts) or None

    def is_empty(self) -> bool:
        return self == PhotoMeta()

    def to_json(self) -> dict:
        """The `metadata` object of `search --json`."""
        return {
            "taken": self.taken,
            "camera": self.camera,
            "make": self.make,
            "model": self.model,
            "lens": self.lens,
            "exposure": self.exposure,
            "exposure_time": self.exposure_time,
            "f_number": self.f_number,
            "iso": self.iso,
            "focal_length": self.focal_length,
            "gps": self.gps,
        }


# --------------------------------------------------------------------------- reading


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:200] or None


def _number(value) -> float | None:
    try:
        if isinstance(value, tuple) and len(value) == 2:
            num, den = value
            value = float(num) / float(den) if den else None
        elif isinstance(value, (list, tuple)) and value:
            value = value[0]
        f = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return f if f == f and 0 < f < 1e7 else None  # NaN, zero and absurd values mean "unknown"


def parse_exif_date(value, offset=None) -> str | None:
    """'2024:05:01 14:03:22' (+ '+02:00') -> '2024-05-01T14:03:22+02:00'; None if invalid."""
    text = _text(value)
    if not text:
        return None
    m = _DATE_RE.match(text)
    if not m:
        return None
    y, mo, d, hh, mm, ss = (int(g) for g in m.groups())
    if not (1800 <= y <= 2200 and 1 <= mo <= 12 and 1 <= d <= 31 and hh < 24 and mm < 60):
        return None  # "0000:00:00 00:00:00" is what cameras without a clock write
    out = f"{y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mm:02d}:{min(ss, 59):02d}"
    om = _OFFSET_RE.match(_text(offset) or "")
    if om:
        out += f"{om.group(1)}:{om.group(2)}"
    return out


def from_exif(exif) -> PhotoMeta:
    """PhotoMeta from a PIL Image.Exif (a malformed block gives what could be read)."""
    try:
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - malformed EXIF comes in every flavour
        sub = {}
    try:
        gps = exif.get_ifd(_GPS_IFD)
    except Exception:  # noqa: BLE001
        gps = {}

    def get(key, *sources):
        for src in sources:
            try:
                v = src.get(key)
            except Exception:  # noqa: BLE001
                v = None
            if v is not None:
                return v
        return None

    taken = parse_exif_date(
        get(_DATETIME_ORIGINAL, sub), get(_OFFSET_TIME_ORIGINAL, sub)
    ) or parse_exif_date(
        get(_DATETIME_DIGITIZED, sub) or get(_DATETIME, exif), get(_OFFSET_TIME, sub)
    )
    iso = _number(get(_ISO, sub, exif))
    lens = _text(get(_LENS_MODEL, sub, exif))
    lens_make = _text(get(_LENS_MAKE, sub, exif))
    if lens and lens_make and not lens.lower().startswith(lens_make.split()[0].lower()):
        lens = f"{lens_make} {lens}"
    return PhotoMeta(
        taken=taken,
        make=_text(get(_MAKE, exif)),
        model=_text(get(_MODEL, exif)),
        lens=lens,
        exposure_time=_number(get(_EXPOSURE_TIME, sub, exif)),
        f_number=_number(get(_F_NUMBER, sub, exif)),
        iso=int(iso) if iso else None,
        focal_length=_number(get(_FOCAL_LENGTH, sub, exif)),
        gps=bool(gps) and (_GPS_LATITUDE in gps or _GPS_LONGITUDE in gps),
    )


def from_image(im) -> PhotoMeta:
    """PhotoMeta of an opened (not necessarily loaded) PIL image; empty when it has no EXIF."""
    try:
        if im.format == "PNG" and "exif" not in im.info:
            return PhotoMeta()  # getexif() would decode the whole PNG looking for a late eXIf
        return from_exif(im.getexif())
    except Exception as exc:  # noqa: BLE001 - EXIF is a bonus; a bad block must not lose the photo
        log.debug("unreadable EXIF: %s", exc)
        return PhotoMeta()


# --------------------------------------------------------------------------- the catalog
# SQL: core/catalog/photo_meta.py. (column, SQL type) in the catalog's images table; `meta_version` NULL means "not read yet".
COLUMNS: tuple[tuple[str, str], ...] = (
    ("taken", "TEXT"),
    ("camera_make", "TEXT"),
    ("camera_model", "TEXT"),
    ("lens", "TEXT"),
    ("exposure_time", "REAL"),
    ("f_number", "REAL"),
    ("iso", "INTEGER"),
    ("focal_length", "REAL"),
    ("has_gps", "INTEGER"),
    ("decode_source", "TEXT"),
    ("meta_version", "INTEGER"),
)


def row_values(meta: PhotoMeta) -> tuple:
    """The values of the first nine COLUMNS, in order."""
    return (
        meta.taken,
        meta.make,
        meta.model,
        meta.lens,
        meta.exposure_time,
        meta.f_number,
        meta.iso,
        meta.focal_length,
        int(meta.gps),
    )


def from_row(row: Sequence) -> PhotoMeta:
    taken, make, model, lens, t, f, iso, focal, gps = row
    return PhotoMeta(taken, make, model, lens, t, f, iso, focal, bool(gps))


# --------------------------------------------------------------------------- search results


def _date_bound(text: str | None, *, upper: bool) -> str | None:
    """'2024', '2024-05' or '2024-05-01[THH:MM[:SS]]' as a bound comparable with `taken`."""
    if text is None:
        return None
    t = text.strip().replace(" ", "T")
    if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2})?)?)?)?)?", t):
        raise ValueError(
            f"not a date: {text!r} (use YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
        )
    # '~' sorts after every digit, ':', '+' and '-': an upper bound covers the whole period
    return t + "~" if upper else t


def filter_by_date(
    items: Sequence, taken_of, since: str | None = None, until: str | None = None
) -> list:
    """Items whose capture date lies in [since, until] (inclusive, any precision); items without
    a capture date are dropped as soon as a bound is given."""
    lo, hi = _date_bound(since, upper=False), _date_bound(until, upper=True)
    if lo is None and hi is None:
        return list(items)
    out = []
    for it in items:
        t = taken_of(it)
        if t is None or (lo is not None and t < lo) or (hi is not None and t > hi):
            continue
        out.append(it)
    return out


def sort_by_date(items: Sequence, taken_of, *, newest_first: bool = False) -> list:
    """Items by capture date (stable: equal dates keep their order); undated ones last."""
    dated = [it for it in items if taken_of(it) is not None]
    undated = [it for it in items if taken_of(it) is None]
    dated.sort(key=lambda it: taken_of(it)[:19], reverse=newest_first)
    return dated + undated


def meta_dict(meta: PhotoMeta | None) -> dict | None:
    return None if meta is None else asdict(meta)
