"""Duplicate-finder quality: precision/recall per tier against a perceptual-hash baseline.

Builds a temporary library from Oxford Flowers-17 (read only; never copied into the repo) and
generated scenes: originals, 7 transformed copies of each (resize 50%, JPEG q60, crop 5%,
rotate 90°, mirror, brightness +20%, PNG/WEBP), byte-identical copies, synthetic re-takes
("bursts": shifted, zoomed, tilted 3°, darker), shot-like variants of every flower original
(SHOTS: the frame shifted 6%, a 16% crop, exposure -15% with a warm white balance, tilted
2°; each a "similar shot" of its source, not the same photo) and distinct photos of the same
classes as hard negatives (two photos of one flower class are NOT similar shots). The dataset itself holds duplicates (mirrored and cropped ones too); images in such
internal pairs are left out (found with pHash over 8 orientations and the DCT signature, both
at strict settings, and listed in the output).

Classes are split in two halves: thresholds are calibrated on one and reported on the other,
next to the code's defaults. Metrics are over pairs of photos (co-grouped = predicted).
The similar tier's threshold is calibrated on the calibration half as the lowest that
keeps precision >= 0.95 there, and reported on the test half.

    python benchmarks/duplicates.py [--backbone efficientnet-lite0] [--input-size 224]
        [--per-class 5] [--threads 1] [--keep DIR]

Weights: `--backbone efficientnet-lite0` (default) uses the installed package's ImageNet
weights; `--backbone resnet50` uses IMGFINDER_WEIGHTS or a seeded random-init ResNet50.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DEFAULT_DATASET, backbone_weights, table  # noqa: E402

DATA = DEFAULT_DATASET
TRANSFORMS = ("resize50", "jpeg60", "crop5", "rot90", "mirror", "bright20", "format")
SHOTS = ("shift", "smallcrop", "exposure", "tilt")  # similar shots of their source
RETAKES = (*SHOTS, "burst")  # kinds that are not the same photo as their source


def transform(im: Image.Image, name: str, i: int) -> tuple[Image.Image, str, dict]:
    """(image, file extension, save options) of one transformed copy."""
    if name == "resize50":
        return im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), ".jpg", {}
    if name == "jpeg60":
        return im, ".jpg", {"quality": 60}
    if name == "crop5":
        dx, dy = round(im.width * 0.025), round(im.height * 0.025)
        return im.crop((dx, dy, im.width - dx, im.height - dy)), ".jpg", {"quality": 92}
    if name == "rot90":
        return im.transpose(Image.Transpose.ROTATE_90), ".jpg", {"quality": 92}
    if name == "mirror":
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ".jpg", {"quality": 92}
    if name == "bright20":
        return ImageEnhance.Brightness(im).enhance(1.2), ".jpg", {"quality": 92}
    if name == "format":
        return im, (".png" if i % 2 == 0 else ".webp"), {}
    raise ValueError(name)


def burst(im: Image.Image, rng: random.Random) -> Image.Image:
    """A synthetic re-take: the frame moved 12%, zoomed 8%, tilted 3°, a little darker."""
    w, h = im.size
    side_w, side_h = round(w * 0.88), round(h * 0.88)
    ox = round((w - side_w) * rng.choice((0.0, 1.0)))
    oy = round((h - side_h) * rng.choice((0.0, 1.0)))
    out = im.rotate(rng.choice((-3, 3)), Image.Resampling.BICUBIC, expand=False)
    out = out.crop((ox, oy, ox + side_w, oy + side_h)).resize((w, h), Image.Resampling.BICUBIC)
    return ImageEnhance.Brightness(out).enhance(0.92)


def shot(im: Image.Image, name: str, rng: random.Random) -> Image.Image:
    """A shot-like variant: what a second frame of the same scene could look like."""
    w, h = im.size
    if name == "shift":  # the frame moved 6% of its width / height, same zoom
        cw, ch = round(w * 0.92), round(h * 0.92)
        ox = round((w - cw) * rng.choice((0.0, 0.75)))
        oy = round((h - ch) * rng.choice((0.0, 0.75)))
        return im.crop((ox, oy, ox + cw, oy + ch)).resize((w, h), Image.Resampling.BICUBIC)
    if name == "smallcrop":  # 8% off each side (a 16% zoom-in, off centre by 2%)
        dx, dy = round(w * 0.08), round(h * 0.08)
        sx = rng.choice((-1, 1)) * round(w * 0.02)
        return im.crop((dx + sx, dy, w - dx + sx, h - dy))
    if name == "exposure":  # -15% exposure, warmer white balance
        arr = np.asarray(im, np.float32) * 0.85 * np.asarray([1.08, 1.0, 0.9], np.float32)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if name == "tilt":  # 2° rotation, cropped to hide the corners
        out = im.rotate(rng.choice((-2, 2)), Image.Resampling.BICUBIC, expand=False)
        dx, dy = round(w * 0.04), round(h * 0.04)
        return out.crop((dx, dy, w - dx, h - dy))
    raise ValueError(name)


def scene_layout(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A generated scene without sensor grain: gradient sky and ground, 14 shapes with edges
    (the draws from `rng` are the same for every caller, so seeds give the same scenes)."""
    w, h = size
    top, bottom = rng.integers(40, 220, 3), rng.integers(20, 200, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    arr = (top * (1 - t) + bottom * t) * np.ones((1, w, 1))
    img = Image.fromarray(arr.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(14):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(20, w // 2), y0 + rng.integers(20, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            d.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            d.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            d.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(2, 9)))
    return img


def scene(seed: int, size: tuple[int, int] = (480, 320)) -> Image.Image:
    """A generated non-square 'photo': gradient sky, ground, shapes with edges, fine noise."""
    rng = np.random.default_rng(seed)
    img = scene_layout(rng, size)
    noise = rng.normal(0, 6, (size[1], size[0], 1))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------- baselines
def phash_bits(im: Image.Image) -> np.ndarray:
    """64-bit pHash (ImageHash if installed, else the same DCT recipe implemented here)."""
    try:
        import imagehash  # noqa: PLC0415 (benchmark-only dependency)

        return np.asarray(imagehash.phash(im).hash, bool).ravel()
    except ImportError:
        g = np.asarray(im.convert("L").resize((32, 32), Image.Resampling.LANCZOS), np.float64)
        n = 32
        k = np.arange(n)
        m = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
        low = (m @ g @ m.T)[:8, :8]
        return (low > np.median(low)).ravel()


def phash_name() -> str:
    try:
        import imagehash  # noqa: PLC0415, F401

        return f"ImageHash {imagehash.__version__} phash (64 bit)"
    except ImportError:
        return "pHash (own DCT implementation, 64 bit)"


ORIENT_OPS = [None, *Image.Transpose][:8]


def all_pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n, 1)


def pr(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, int, int]:
    tp = int((pred & truth).sum())
    fp = int((pred & ~truth).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / int(truth.sum()) if truth.sum() else 1.0
    return p, r, tp, fp


# --------------------------------------------------------------------------- dataset
KNOWN_DUPLICATES = Path(__file__).with_name("flowers17_duplicates.txt")


def known_duplicates(files: list[Path]) -> list[tuple[Path, Path]]:
    """Pairs of `files` listed in KNOWN_DUPLICATES (the flower dataset's own crops/zooms,
    found with benchmarks/dataset_duplicates.py and checked by eye), matched by class/name."""
    if not KNOWN_DUPLICATES.is_file():
        return []
    by_name = {f"{f.parent.name}/{f.name}": f for f in files}
    out = []
    for line in KNOWN_DUPLICATES.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            a, b = by_name.get(parts[1]), by_name.get(parts[2])
            if a is not None and b is not None:
                out.append((a, b))
    return out


def clean_dataset(files: list[Path]) -> tuple[set[Path], list[tuple[str, str]]]:
    """Dataset images that are the same photo as another dataset image (to leave out): near-
    identical ones by signature or pHash, and the verified crops/zooms of KNOWN_DUPLICATES."""
    from imgfinder.core.dupes import signature  # noqa: PLC0415

    ims = [Image.open(f).convert("RGB") for f in files]
    sig = np.stack([signature.signature_of(im) for im in ims])
    ph = np.stack(
        [[phash_bits(im if op is None else im.transpose(op)) for op in ORIENT_OPS] for im in ims]
    )  # (n, 8, 64)
    a, b = all_pairs(len(files))
    s, _ = signature.similarity(sig[a], sig[b])
    dist = np.min([(ph[a, 0] != ph[b, o]).sum(axis=1) for o in range(8)], axis=0)
    bad = (s >= 0.94) | (dist <= 6)
    drop: set[Path] = set()
    listed = []
    for i, j in zip(a[bad], b[bad]):
        drop |= {files[i], files[j]}
        listed.append((files[i].parent.name + "/" + files[i].name, files[j].name))
    for x, y in known_duplicates(files):
        if not {x, y} <= drop:
            listed.append((x.parent.name + "/" + x.name, y.name))
        drop |= {x, y}
    return drop, listed


def build(
    root: Path,
    per_class: int,
    negatives: int,
    bursts: int,
    generated: int,
    seed: int,
    shots: bool = True,
    data: Path = DATA,
):
    """Write the test library; returns records (path, family, kind, half)."""
    rng = random.Random(seed)
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    files = sorted(data.glob("*/*.jpg"))
    drop, listed = clean_dataset(files)
    half_of = {c: ("calibrate" if i % 2 == 0 else "test") for i, c in enumerate(classes)}
    records: list[tuple[Path, int, str, str]] = []
    family = 0
    originals: list[tuple[Image.Image, int, str, str, str]] = []
    for c in classes:
        pool = sorted(f for f in (data / c).glob("*.jpg") if f not in drop)
        rng.shuffle(pool)
        for f in pool[:per_class]:
            originals.append((Image.open(f).convert("RGB"), family, c, half_of[c], f.name))
            family += 1
        for f in pool[per_class : per_class + negatives]:
            dst = root / half_of[c] / c / f"neg_{f.name}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
            records.append((dst, -1 - len(records), "negative", half_of[c]))
    for g in range(generated):
        half = "calibrate" if g % 2 == 0 else "test"
        originals.append((scene(seed * 1000 + g), family, "generated", half, f"scene{g:02d}.jpg"))
        family += 1
    for n, (im, fam, c, half, name) in enumerate(originals):
        folder = root / half / c
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        im.save(folder / f"{stem}.jpg", quality=95)
        records.append((folder / f"{stem}.jpg", fam, "original", half))
        for t in TRANSFORMS:
            out, ext, opts = transform(im, t, n)
            p = folder / f"{stem}_{t}{ext}"
            out.save(p, **opts)
            records.append((p, fam, t, half))
        if n % 6 == 0:  # byte-identical copy in another folder
            p = root / half / "backup" / f"{stem}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / f"{stem}.jpg", p)
            records.append((p, fam, "exact", half))
        if bursts and n % max(1, len(originals) // bursts) == 1:
            p = folder / f"{stem}_burst.jpg"
            burst(im, rng).save(p, quality=92)
            records.append((p, fam, "burst", half))
        if shots and c != "generated":
            for k in SHOTS:
                p = folder / f"{stem}_{k}.jpg"
                shot(im, k, rng).save(p, quality=92)
                records.append((p, fam, k, half))
    return records, listed


# --------------------------------------------------------------------------- evaluation
class Half:
    """Pairs of one half of the library: truth and score lookups over all its photo pairs."""

    def __init__(self, name: str, recs: list, pos_of: dict[Path, int], hashes: list[str]):
        self.name = name
        self.recs = [r for r in recs if r[3] == name]
        self.pos = np.asarray([pos_of[r[0]] for r in self.recs])
        fam = np.asarray([r[1] for r in self.recs])
        kind = np.asarray([r[2] for r in self.recs])
        self.kind = kind
        h = np.asarray([hashes[p] for p in self.pos])
        self.a, self.b = all_pairs(len(self.recs))
        same = fam[self.a] == fam[self.b]
        self.exact = h[self.a] == h[self.b]
        retake = np.isin(kind, RETAKES)
        self.copy = (same & ~retake[self.a] & ~retake[self.b]) | self.exact
        self.scene = same
        self.burst = same & ((kind[self.a] == "burst") ^ (kind[self.b] == "burst"))
        # a shot-like variant against its own original (the similar tier's recall)
        orig = kind == "original"
        self.shot = same & (
            (orig[self.a] & np.isin(kind[self.b], SHOTS))
            | (orig[self.b] & np.isin(kind[self.a], SHOTS))
        )
        # The 'same photo' figures leave out a shot-like variant against its own family: an
        # exposure change or a crop of one photo is both an edit (a copy) and a re-take (a
        # similar shot), so neither answer is wrong there; `shots_as_copies` reports them.
        is_shot = np.isin(kind, SHOTS)
        self.counted = ~(same & (is_shot[self.a] | is_shot[self.b]))
        self.key_index = {
            (int(self.pos[i]), int(self.pos[j])): k for k, (i, j) in enumerate(zip(self.a, self.b))
        }

    def same_photo(self, pred: np.ndarray) -> np.ndarray:
        """Predictions that count in the 'same photo' figures (see `counted`)."""
        return pred & self.counted

    def grouped(self, groups, pos_of_path: dict[str, int]) -> np.ndarray:
        out = np.zeros(len(self.a), bool)
        for g in groups:
            ps = sorted(pos_of_path[p] for p in g.paths)
            for x in range(len(ps)):
                for y in range(x + 1, len(ps)):
                    k = self.key_index.get((ps[x], ps[y]))
                    if k is None:
                        k = self.key_index.get((ps[y], ps[x]))
                    if k is not None:
                        out[k] = True
        return out


def same_photo_groups(pairs, t_copy: float):
    from imgfinder.core import dupes  # noqa: PLC0415

    return dupes.group(pairs, "exact") + dupes.group(pairs, "copy", t_copy)


def row(name: str, pred: np.ndarray, truth: np.ndarray, **extra) -> dict:
    p, r, tp, fp = pr(pred, truth)
    return {
        "method": name,
        "precision": f"{p:.3f}",
        "recall": f"{r:.3f}",
        "TP": tp,
        "FP": fp,
        **extra,
    }


def calibrate_copy(pairs, half: Half, pos_of_path, target: float = 0.995) -> float:
    """Lowest copy threshold whose grouped precision on this half reaches `target`."""
    best = 1.0
    for t in np.round(np.arange(0.99, 0.49, -0.01), 2):
        pred = half.grouped(same_photo_groups(pairs, float(t)), pos_of_path)
        p, _, _, _ = pr(half.same_photo(pred), half.copy)
        if p < target:
            break
        best = float(t)
    return best


def main() -> int:
    from imgfinder.core.modelspec import BACKBONES, OFFLINE_BACKBONE  # noqa: PLC0415

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", choices=list(BACKBONES), default=OFFLINE_BACKBONE)
    ap.add_argument("--dataset", type=Path, default=DATA, help="folder-per-class photos")
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--per-class", type=int, default=5, help="originals per class")
    ap.add_argument("--negatives", type=int, default=10, help="hard negatives per class")
    ap.add_argument("--bursts", type=int, default=24, help="synthetic re-takes")
    ap.add_argument("--generated", type=int, default=12, help="generated non-square originals")
    ap.add_argument("--index", default="lsh", choices=["lsh", "annoy", "exact"])
    ap.add_argument("--no-shots", action="store_true", help="leave out the shot-like variants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (shared machine)")
    ap.add_argument("--keep", help="build in this folder and keep it (default: a temp dir)")
    args = ap.parse_args()
    import torch  # noqa: PLC0415

    torch.set_num_threads(args.threads)

    from imgfinder.core import dupes  # noqa: PLC0415
    from imgfinder.core.extract import ModelConfig  # noqa: PLC0415
    from imgfinder.core.library import Library, run  # noqa: PLC0415

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="imgfinder-dupes-"))
    try:
        weights, described = backbone_weights(args.backbone, tmp)
        print(f"weights: {described}; input size {args.input_size}; index {args.index}")
        t0 = time.perf_counter()
        records, listed = build(
            tmp / "photos", args.per_class, args.negatives, args.bursts, args.generated,
            args.seed, not args.no_shots, args.dataset,
        )  # fmt: skip
        print(
            f"built {len(records)} files in {time.perf_counter() - t0:.1f} s; left out "
            f"{len({x for pair in listed for x in pair})} dataset images in {len(listed)} "
            "internal same-photo pairs:"
        )
        print("  " + ", ".join(f"{a}~{b}" for a, b in listed[:80]))
        cfg = ModelConfig(
            weights=weights, device="cpu", input_size=args.input_size, backbone=args.backbone
        )
        lib = Library(tmp / "data", cfg, index_backend=args.index, allow_download=False)
        t0 = time.perf_counter()
        summary = run(lib.index([tmp / "photos"]))
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        pairs = run(dupes.scan(lib))
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        rescan = run(dupes.scan(lib))
        t_rescan = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(10):
            dupes.group(pairs, "copy", 0.8)
            dupes.group(pairs, "similar", 0.7)
        t_group = (time.perf_counter() - t0) / 10
        print(
            f"indexed {summary.indexed} in {t_index:.1f} s; scan {t_scan:.1f} s "
            f"({pairs.stats}); re-scan {t_rescan:.2f} s (verified pairs cached: "
            f"{rescan.stats['verified_now']} new); group() both tiers {t_group * 1000:.1f} ms"
        )
        pos_of = {Path(p): i for i, p in enumerate(pairs.paths)}
        pos_of_path = {p: i for i, p in enumerate(pairs.paths)}
        halves = {h: Half(h, records, pos_of, pairs.hashes) for h in ("calibrate", "test")}
        cal = calibrate_copy(pairs, halves["calibrate"], pos_of_path)
        default_copy = dupes.DEFAULT_THRESHOLDS["copy"]
        print(f"\ncopy threshold calibrated on the calibration half (precision >= 0.995): {cal}")
        report(pairs, halves, pos_of_path, default_copy, cal, records)
        shots_as_copies(pairs, halves["test"], pos_of_path, default_copy)
        similar_report(pairs, halves, pos_of_path, default_copy, lib.model_id)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _phash_table(records, half: Half) -> tuple[np.ndarray, np.ndarray]:
    """Plain and best-of-8-orientations pHash Hamming distance of every pair in the half."""
    bits = []
    for r in half.recs:
        im = Image.open(r[0]).convert("RGB")
        bits.append([phash_bits(im if op is None else im.transpose(op)) for op in ORIENT_OPS])
    ph = np.asarray(bits)
    plain = (ph[half.a, 0] != ph[half.b, 0]).sum(axis=1)
    best = np.min([(ph[half.a, 0] != ph[half.b, o]).sum(axis=1) for o in range(8)], axis=0)
    return plain, best


def _best_t(dist: np.ndarray, truth: np.ndarray, target: float = 0.99) -> int:
    best = 0
    for t in range(0, 33):
        p, _, _, _ = pr(dist <= t, truth)
        if p >= target:
            best = t
    return best


def report(pairs, halves: dict, pos_of_path, default_copy: float, cal: float, records) -> None:
    from dataclasses import replace  # noqa: PLC0415

    from imgfinder.core import dupes  # noqa: PLC0415
    from imgfinder.core.dupes.pairs import SIG_GATE  # noqa: PLC0415

    sig_only = replace(pairs, copy=np.where(pairs.exact, np.float32(1), pairs.sig))
    feat = replace(pairs, copy=np.full(len(pairs), np.nan, np.float32))

    def cal_on(pl, tier: str) -> float:
        h = halves["calibrate"]
        best = 1.0
        for t in np.round(np.arange(0.99, 0.39, -0.01), 2):
            pred = h.grouped(
                dupes.group(pl, "exact") + dupes.group(pl, tier, float(t)), pos_of_path
            )
            if pr(h.same_photo(pred), h.copy)[0] < 0.995:
                break
            best = float(t)
        return best

    t_sig = cal_on(sig_only, "copy")
    t_feat = cal_on(feat, "similar")
    ph = {name: _phash_table(records, h) for name, h in halves.items()}
    hc = halves["calibrate"]
    t_plain = _best_t(np.where(hc.counted, ph["calibrate"][0], 99), hc.copy)
    t_best = _best_t(np.where(hc.counted, ph["calibrate"][1], 99), hc.copy)
    cols = ["method", "threshold", "precision", "recall", "TP", "FP"]
    for name, h in halves.items():
        rows = []
        for label, pl, tier, t in (
            ("same photo (signature + pixel check), default", pairs, "copy", default_copy),
            ("same photo (signature + pixel check), calibrated", pairs, "copy", cal),
            ("ablation: signature only, calibrated", sig_only, "copy", t_sig),
            ("ablation: CNN centred cosine only, calibrated", feat, "similar", t_feat),
        ):
            pred = h.grouped(dupes.group(pl, "exact") + dupes.group(pl, tier, t), pos_of_path)
            rows.append(row(label, h.same_photo(pred), h.copy, threshold=t))
        rows.append(
            row(
                "baseline pHash <= T",
                h.same_photo(ph[name][0] <= t_plain),
                h.copy,
                threshold=f"T={t_plain}",
            )
        )
        rows.append(
            row(
                "baseline pHash, best of 8 orientations",
                h.same_photo(ph[name][1] <= t_best),
                h.copy,
                threshold=f"T={t_best}",
            )
        )
        print(
            f"\n== 'same photo' (exact + copy tiers), {name} half: {len(h.recs)} photos, "
            f"{int(h.copy.sum())} same-photo pairs of {len(h.a)} =="
        )
        print(table(rows, cols))
    print(
        "\n== copy scores (pixel check) of checked pairs, both halves: the margin around the "
        "default =="
    )
    rows = []
    for name, h in halves.items():
        score = np.full(len(h.a), np.nan)
        sig = np.full(len(h.a), np.nan)
        for i in range(len(pairs)):
            x, y = int(pairs.a[i]), int(pairs.b[i])
            k = h.key_index.get((x, y), h.key_index.get((y, x)))
            if k is not None:
                score[k], sig[k] = pairs.copy[i], pairs.sig[i]
        pos = h.copy & ~h.exact & np.isfinite(score)
        neg = ~h.copy & h.counted & np.isfinite(score)
        rows.append(
            {
                "half": name,
                "same-photo pairs checked": int(pos.sum()),
                "min / 1st pct": f"{np.min(score[pos]):.3f} / {np.percentile(score[pos], 1):.3f}",
                "other pairs checked": int(neg.sum()),
                "max / 99th pct": (
                    f"{np.max(score[neg]):.3f} / {np.percentile(score[neg], 99):.3f}"
                    if neg.any()
                    else "-"
                ),
                "re-takes: max": f"{np.nanmax(np.where(h.burst, score, np.nan)):.3f}"
                if np.isfinite(np.where(h.burst, score, np.nan)).any()
                else "-",
                "same-photo pairs never checked": int(
                    (h.copy & ~h.exact & ~(sig >= SIG_GATE)).sum()
                ),
            }
        )
    print(table(rows, list(rows[0])))
    h = halves["test"]
    print("\n== recall per transform, test half (original vs its copy) ==")
    groups = same_photo_groups(pairs, default_copy)
    pred = h.grouped(groups, pos_of_path)
    rows = []
    for t in (*TRANSFORMS, "exact", "burst"):
        m = h.scene & (
            ((h.kind[h.a] == "original") & (h.kind[h.b] == t))
            | ((h.kind[h.b] == "original") & (h.kind[h.a] == t))
        )
        if not m.any():
            continue
        rows.append(
            {
                "transform": t,
                "pairs": int(m.sum()),
                "ours (same photo)": f"{pred[m].mean():.3f}",
                "pHash": f"{(ph['test'][0][m] <= t_plain).mean():.3f}",
                "pHash 8-orient": f"{(ph['test'][1][m] <= t_best).mean():.3f}",
            }
        )
    print(table(rows, ["transform", "pairs", "ours (same photo)", "pHash", "pHash 8-orient"]))
    where = {}
    for i in range(len(pairs)):
        where[(int(pairs.a[i]), int(pairs.b[i]))] = i
    missed = np.flatnonzero(h.copy & ~h.exact & ~pred & (h.kind[h.a] == "original"))
    for k in missed[:10]:
        x, y = int(h.pos[h.a[k]]), int(h.pos[h.b[k]])
        i = where.get((min(x, y), max(x, y)))
        detail = (
            "not a candidate"
            if i is None
            else (f"signature {pairs.sig[i]:.3f}, pixel check {pairs.copy[i]:.3f}")
        )
        print(f"  missed: {Path(pairs.paths[x]).name} ~ {Path(pairs.paths[y]).name}: {detail}")
    print("  (burst = a re-take: it should NOT be grouped as the same photo)")
    print("\n== exact tier, test half ==")
    print(
        table(
            [
                row(
                    "exact (content hash)",
                    h.grouped(dupes.group(pairs, "exact"), pos_of_path),
                    h.exact,
                    threshold="-",
                )
            ],
            cols,
        )
    )


def similar_steps() -> np.ndarray:
    """Thresholds from 0.95 down to the loosest the pair list keeps."""
    from imgfinder.core.dupes.pairs import LOOSE_SIMILAR  # noqa: PLC0415

    return np.round(np.arange(0.95, LOOSE_SIMILAR - 0.001, -0.05), 2)


def similar_pred(pairs, half: Half, pos_of_path, t: float, copy_t: float) -> np.ndarray:
    """Pairs of the half co-grouped by the similar tier at threshold t (the product's rule)."""
    from imgfinder.core import dupes  # noqa: PLC0415

    return half.grouped(dupes.group(pairs, "similar", t, copy_threshold=copy_t), pos_of_path)


def similar_row(pairs, half: Half, pos_of_path, t: float, copy_t: float) -> dict:
    pred = similar_pred(pairs, half, pos_of_path, t, copy_t)
    p, _, tp, fp = pr(pred, half.scene)
    # the same without the pairs that are copies of one photo (the copy tier's): the
    # precision of what only the similar tier adds
    p_shots, _, _, _ = pr(pred & ~half.copy, half.scene & ~half.copy)
    same_class_fp = int((pred & ~half.scene & half.same_class).sum())
    return {
        "threshold": f"{t:.2f}",
        "precision": f"{p:.3f}",
        "precision w/o copy pairs": f"{p_shots:.3f}",
        "shot recall": f"{pred[half.shot].mean():.3f}" if half.shot.any() else "-",
        "re-take recall": f"{pred[half.burst].mean():.3f}" if half.burst.any() else "-",
        "same-scene recall": f"{pred[half.scene].mean():.3f}",
        "TP": tp,
        "FP": fp,
        "FP same class": same_class_fp,
        "_p": p_shots,
    }


def similar_report(pairs, halves: dict, pos_of_path, copy_t: float, model_id: str) -> None:
    """The similar tier on shot-like variants: calibrated on one half, reported on the other."""
    from imgfinder.core import dupes  # noqa: PLC0415

    default = dupes.DEFAULT_THRESHOLDS["similar"]
    for h in halves.values():  # two different photos of one flower class: a hard negative
        cls = np.asarray([Path(r[0]).parent.name for r in h.recs])
        h.same_class = cls[h.a] == cls[h.b]
    cal = halves["calibrate"]
    rows_cal = [similar_row(pairs, cal, pos_of_path, float(t), copy_t) for t in similar_steps()]
    ok = [float(r["threshold"]) for r in rows_cal if r["_p"] >= 0.95]
    # lowest threshold from which every higher one also keeps precision >= 0.95
    t95 = 1.0
    for r in rows_cal:
        if r["_p"] < 0.95:
            break
        t95 = float(r["threshold"])
    # the highest threshold that reaches the calibration half's best shot recall
    best_recall = max((float(r["shot recall"]) for r in rows_cal if r["_p"] >= 0.95), default=0.0)
    t_recall = (
        max(
            float(r["threshold"])
            for r in rows_cal
            if r["_p"] >= 0.95 and float(r["shot recall"]) >= best_recall
        )
        if best_recall
        else 1.0
    )
    cols = ["threshold", "precision", "precision w/o copy pairs", "shot recall"]
    cols += ["re-take recall", "same-scene recall"]
    cols += ["TP", "FP", "FP same class"]
    print(
        f"\n== similar tier ({model_id}): precision = co-grouped pairs of one scene (copies, "
        "shots and re-takes of one original), also without the pairs that are copies of one "
        "photo; shot recall = original vs its shot-like variant; FP same class = two "
        "different photos of one flower class =="
    )
    print("calibration half:")
    print(table(rows_cal, cols))
    print(
        "lowest threshold with precision >= 0.95 (copy pairs left out) on the calibration "
        f"half: {t95:.2f} "
        f"(thresholds reaching it: {', '.join(f'{t:.2f}' for t in ok) or 'none'}); highest "
        f"threshold with its best shot recall ({best_recall:.3f}): {t_recall:.2f}"
    )
    test = halves["test"]
    rows = [similar_row(pairs, test, pos_of_path, float(t), copy_t) for t in similar_steps()]
    print("test half:")
    print(table(rows, cols))
    for label, t in (
        ("calibrated (lowest with precision >= 0.95)", t95),
        ("calibrated (highest with the best shot recall)", t_recall),
        ("shipped default", default),
    ):
        r = similar_row(pairs, test, pos_of_path, t, copy_t)
        print(
            f"test half, {label} {t:.2f}: precision {r['precision']} ("
            f"{r['precision w/o copy pairs']} without copy pairs), shot recall "
            f"{r['shot recall']}, re-take recall {r['re-take recall']}, same-scene recall "
            f"{r['same-scene recall']} ({r['TP']} TP, {r['FP']} FP, {r['FP same class']} of "
            "them two photos of one class)"
        )
    # per kind, at the calibrated threshold, and the score distributions behind it
    pred = similar_pred(pairs, test, pos_of_path, t95, copy_t)
    score = _pair_scores(pairs, test)
    kind = test.kind
    rows = []
    for k in (*SHOTS, "burst"):
        m = test.scene & (
            ((kind[test.a] == "original") & (kind[test.b] == k))
            | ((kind[test.b] == "original") & (kind[test.a] == k))
        )
        if not m.any():
            continue
        s = score[m]
        rows.append(
            {
                "variant": k, "pairs": int(m.sum()), f"grouped at {t95:.2f}": f"{pred[m].mean():.3f}",
                "candidate (k-NN)": f"{np.isfinite(s).mean():.3f}",
                "centred cosine min / median": (
                    f"{np.nanmin(s):.3f} / {np.nanmedian(s):.3f}" if np.isfinite(s).any() else "-"
                ),
            }
        )  # fmt: skip
    neg = test.same_class & ~test.scene
    s = score[neg]
    rows.append(
        {
            "variant": "two photos, one class (negatives)", "pairs": int(neg.sum()),
            f"grouped at {t95:.2f}": f"{pred[neg].mean():.4f}",
            "candidate (k-NN)": f"{np.isfinite(s).mean():.3f}",
            "centred cosine min / median": (
                f"max {np.nanmax(s):.3f}, 99th pct {np.nanpercentile(s, 99):.3f}"
                if np.isfinite(s).any()
                else "-"
            ),
        }
    )  # fmt: skip
    print(f"\nper variant, test half (original vs variant), grouped at {t95:.2f}:")
    print(table(rows, list(rows[0])))


def shots_as_copies(pairs, half: Half, pos_of_path, copy_t: float) -> None:
    """How often the 'same photo' tier takes a shot-like variant for a copy of its source."""
    if not half.shot.any():
        return
    pred = half.grouped(same_photo_groups(pairs, copy_t), pos_of_path)
    kind = half.kind
    rows = []
    for k in SHOTS:
        m = half.shot & ((kind[half.a] == k) | (kind[half.b] == k))
        rows.append({"variant": k, "pairs": int(m.sum()), "same photo": f"{pred[m].mean():.3f}"})
    print(
        f"\n== shot-like variants (original vs variant, test half) grouped as the same photo "
        f"at the default copy threshold {copy_t} (left out of the same-photo figures above) =="
    )
    print(table(rows, ["variant", "pairs", "same photo"]))


def _pair_scores(pairs, half: Half) -> np.ndarray:
    """The centred feature cosine of every pair of the half (NaN: not a k-NN candidate)."""
    score = np.full(len(half.a), np.nan, np.float32)
    for i in range(len(pairs)):
        k = half.key_index.get((int(pairs.a[i]), int(pairs.b[i])))
        if k is None:
            k = half.key_index.get((int(pairs.b[i]), int(pairs.a[i])))
        if k is not None:
            score[k] = pairs.similar[i]
    return score


if __name__ == "__main__":
    raise SystemExit(main())
