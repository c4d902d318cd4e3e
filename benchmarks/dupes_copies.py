"""Hard copies (crops, borders, letterbox, tilts) and shot-like non-copies: imgfinder vs peers.

Corpus, built in a temp dir from Oxford Flowers-17 (read only, never copied into the repo):
each chosen photo's centre 88% is the "original"; it gets one copy, the transforms of
HARD_TRANSFORMS in turn (crops of 10% of every edge / 25% of one edge, a 40-px border and letterbox,
pillarbox of a random colour, rotations of ±3/±7/±10°, 90° steps, mirror, 50% resize, JPEG q60,
PNG, a byte-identical copy). Non-copies: a "shot" of each original (the source's frame moved
5-10% sideways, exposure x0.8 or x1.25: a similar shot, not the same photo) and other photos of
the same classes. Dataset images that are already duplicates of each other are left out
(duplicates.clean_dataset).

Truth over pairs: same original and neither a shot = same photo; different originals or a
shot vs its own original = not. Shot vs the original's copies is left out of the counts (a
25% crop can lie wholly inside the moved frame, so it is a crop of both). Each tool's groups
count as predicted pairs. Peers (the `bench` extra), in the same run on the same files:
czkawka at its default similarity, imagededup's PHash at its default (Hamming <= 10), ImageHash
pHash at Hamming <= 10. imgfinder twice: `index --signatures-only` + `dupes` (no CNN, no torch;
core/dupes/sigindex.py), then the later plain `index` on the same data dir (adds Lite0 ImageNet
vectors; features only propose candidates) + `dupes`, exact + same-photo tiers at the
default threshold.

    python benchmarks/dupes_copies.py [--per-class 12] [--negatives 6] [--keep DIR]
    python benchmarks/dupes_copies.py --issue-size --no-cnn --modes 2   # + threads vs workers
    python benchmarks/dupes_copies.py --issue-size    # ~3.5k files: 204 originals with one
        # copy each, 34 byte-identical, a shot of every original, all other flower photos,
        # 2,000 generated photos of which 150 have a re-take
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import table  # noqa: E402
from benchmarks.duplicates import (
    DATA,  # noqa: E402  (IMGFINDER_SHARED_DATA overrides it)
    clean_dataset,  # noqa: E402
    scene_layout,  # noqa: E402
)

HARD_TRANSFORMS = (
    "crop10all",
    "crop25one",
    "border40",
    "letterbox",
    "pillarbox",
    "rot3",
    "rot7",
    "rot10",
    "rot90",
    "rot180",
    "mirror",
    "resize50",
    "jpeg60",
    "png",
)
FAMILY = {
    "crops": ("crop10all", "crop25one"),
    "borders": ("border40", "letterbox", "pillarbox"),
    "rotations": ("rot3", "rot7", "rot10", "rot90", "rot180", "mirror"),
    "found before": ("resize50", "jpeg60", "png", "exact"),
}


def hard_transform(im: Image.Image, name: str, rng: random.Random) -> tuple[Image.Image, str]:
    """(copy, file extension) of one transform."""
    w, h = im.size
    if name == "crop10all":
        return im.crop((w // 10, h // 10, w - w // 10, h - h // 10)), ".jpg"
    if name == "crop25one":
        side = rng.choice("lrtb")
        box = {"l": (w // 4, 0, w, h), "r": (0, 0, w - w // 4, h)}.get(side) or (
            (0, h // 4, w, h) if side == "t" else (0, 0, w, h - h // 4)
        )
        return im.crop(box), ".jpg"
    colour = tuple(rng.randrange(256) for _ in range(3))
    if name == "border40":
        c = Image.new("RGB", (w + 80, h + 80), colour)
        c.paste(im, (40, 40))
        return c, ".jpg"
    if name == "letterbox":  # into a 16:9 frame (bars left/right for a 4:3 photo)
        cw, ch = max(w, round(h * 16 / 9)), max(h, round(w * 9 / 16))
        c = Image.new("RGB", (cw, ch), (0, 0, 0))
        c.paste(im, ((cw - w) // 2, (ch - h) // 2))
        return c, ".jpg"
    if name == "pillarbox":  # into a 9:16 portrait frame, bars top and bottom
        ch = max(h, round(w * 16 / 9))
        c = Image.new("RGB", (w, ch), colour)
        c.paste(im, (0, (ch - h) // 2))
        return c, ".jpg"
    if name.startswith("rot") and name not in ("rot90", "rot180"):
        angle = float(name[3:]) * rng.choice((-1, 1))
        return im.rotate(angle, Image.Resampling.BICUBIC, expand=rng.random() < 0.5), ".jpg"
    if name == "rot90":
        return im.transpose(Image.Transpose.ROTATE_90), ".jpg"
    if name == "rot180":
        return im.transpose(Image.Transpose.ROTATE_180), ".jpg"
    if name == "mirror":
        return im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), ".jpg"
    if name == "resize50":
        return im.resize((w // 2, h // 2), Image.Resampling.LANCZOS), ".jpg"
    if name == "jpeg60":
        return im, ".q60.jpg"
    if name == "png":
        return im, ".png"
    raise ValueError(name)


def original_and_shot(src: Image.Image, rng: random.Random) -> tuple[Image.Image, Image.Image]:
    """The centre 88% of a photo, and a 'shot' of the same scene: frame moved, exposure changed."""
    w, h = src.size
    cw, ch = round(w * 0.88), round(h * 0.88)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    dx = round(w * rng.uniform(0.05, 0.06)) * rng.choice((1, -1))
    dy = round(h * rng.uniform(0.0, 0.06)) * rng.choice((1, -1))
    orig = src.crop((x0, y0, x0 + cw, y0 + ch))
    shot = src.crop((x0 + dx, y0 + dy, x0 + dx + cw, y0 + dy + ch))
    return orig, ImageEnhance.Brightness(shot).enhance(rng.choice((0.8, 1.25)))


def build(
    root: Path,
    per_class: int,
    negatives: int,
    seed: int,
    *,
    shot_every: int = 3,
    scenes: int = 0,
    scene_shots: int = 0,
) -> list[tuple[Path, int, str]]:
    """Write the corpus; returns (path, family, kind) per file (family -1-i: a lone photo).

    As in the issue's benchmark, each original gets one transformed copy (the transforms in
    turn), every `shot_every`-th a shot of its scene and every sixth a byte-identical copy
    elsewhere. `negatives` other photos per class (-1: all the rest). `scenes`: a second
    collection of generated photos (gradient, shapes, grain), no copies; the first
    `scene_shots` of them also get a re-take (scene_pair), a same-scene shot that is not the
    same photo."""

    rng = random.Random(seed)
    files = sorted(DATA.glob("*/*.jpg"))
    drop, _ = clean_dataset(files)
    recs: list[tuple[Path, int, str]] = []
    fam = 0
    for c in sorted(p.name for p in DATA.iterdir() if p.is_dir()):
        pool = sorted(f for f in (DATA / c).glob("*.jpg") if f not in drop)
        rng.shuffle(pool)
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for f in pool[:per_class]:
            orig, shot = original_and_shot(Image.open(f).convert("RGB"), rng)
            p = d / f"p{fam:03d}.jpg"
            orig.save(p, quality=95)
            recs.append((p, fam, "original"))
            if fam % shot_every == 0:
                shot.save(d / f"p{fam:03d}_s.jpg", quality=92)
                recs.append((d / f"p{fam:03d}_s.jpg", fam, "shot"))
            t = HARD_TRANSFORMS[fam % len(HARD_TRANSFORMS)]
            out, ext = hard_transform(orig, t, rng)
            q = root / "copies" / f"c{fam:03d}{ext}"  # neutral names
            q.parent.mkdir(exist_ok=True)
            out.save(q, quality=60 if t == "jpeg60" else 92) if ext != ".png" else out.save(q)
            recs.append((q, fam, t))
            if fam % 6 == 1:
                q = root / "backup" / f"p{fam:03d}.jpg"
                q.parent.mkdir(exist_ok=True)
                shutil.copyfile(p, q)
                recs.append((q, fam, "exact"))
            fam += 1
        rest = pool[per_class:] if negatives < 0 else pool[per_class : per_class + negatives]
        for f in rest:
            shutil.copyfile(f, d / f"n_{f.name}")
            recs.append((d / f"n_{f.name}", -1 - len(recs), "negative"))
    for i in range(scenes):
        d = root / "scenes" / f"{i // 500:02d}"
        d.mkdir(parents=True, exist_ok=True)
        im, retake = scene_pair(10_000 + i, (480, 320) if i % 3 else (320, 480))
        p = d / f"g{i:05d}.jpg"
        im.save(p, quality=90)
        if i < scene_shots:
            recs.append((p, fam, "original-scene"))
            retake.save(d / f"g{i:05d}_b.jpg", quality=90)
            recs.append((d / f"g{i:05d}_b.jpg", fam, "shot"))
            fam += 1
        else:
            recs.append((p, -1 - len(recs), "negative"))
    return recs


def scene_pair(seed: int, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """A generated photo and a re-take of its scene: the same layout (gradient sky, shapes)
    seen with the frame moved 5-6% and exposure x0.85, each frame with its own sensor grain.

    No pixel of the re-take comes from the first frame (a re-take made by cropping and
    tilting the first frame's pixels would be a crop-and-tilt *copy*, which the same-photo
    tier must find: an earlier version of this benchmark did that and mislabelled them)."""
    rng = np.random.default_rng(seed)
    w, h = size
    layout = scene_layout(rng, size)
    cw, ch = round(w * 0.88), round(h * 0.88)
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    dx = round(w * rng.uniform(0.05, 0.06)) * int(rng.choice((1, -1)))
    dy = round(h * rng.uniform(0.0, 0.04)) * int(rng.choice((1, -1)))
    frames = []
    for (ox, oy), gain in (((x0, y0), 1.0), ((x0 + dx, y0 + dy), 0.85)):
        arr = np.asarray(layout.crop((ox, oy, ox + cw, oy + ch)), np.float32) * gain
        arr += rng.normal(0, 6, (ch, cw, 1))  # this frame's own grain
        frames.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return frames[0], frames[1]


class Truth:
    def __init__(self, recs):
        self.recs = recs
        self.pos = {str(r[0]): i for i, r in enumerate(recs)}
        n = len(recs)
        fam = np.array([r[1] for r in recs])
        kind = np.array([r[2] for r in recs])
        self.kind = kind
        self.a, self.b = np.triu_indices(n, 1)
        same = fam[self.a] == fam[self.b]
        shot_a, shot_b = kind[self.a] == "shot", kind[self.b] == "shot"
        orig_a = np.isin(kind[self.a], ["original", "original-scene"])
        orig_b = np.isin(kind[self.b], ["original", "original-scene"])
        self.truth = same & ~shot_a & ~shot_b
        # shot vs its copies: ambiguous (a crop can lie inside the moved frame), not counted
        self.counted = ~(same & (shot_a | shot_b) & ~((shot_a & orig_b) | (shot_b & orig_a)))
        self.shot_pairs = same & ((shot_a & orig_b) | (shot_b & orig_a))
        self.n = n

    def pairs_of(self, groups: list[list[str]]) -> np.ndarray:
        pred = np.zeros(len(self.a), bool)
        n = self.n
        key = self.a * n + self.b
        want = []
        for g in groups:
            ps = sorted(self.pos[p] for p in g if p in self.pos)
            want += [ps[i] * n + ps[j] for i in range(len(ps)) for j in range(i + 1, len(ps))]
        if want:
            pred[np.isin(key, np.asarray(want, np.int64))] = True
        return pred

    def row(
        self, name: str, pred: np.ndarray, seconds: float, note: str = "", cpu: float | None = None
    ) -> dict:
        c = self.counted
        tp = int((pred & self.truth & c).sum())
        fp = int((pred & ~self.truth & c).sum())
        pos = int((self.truth & c).sum())
        return {
            "tool": name,
            "precision": f"{tp / max(tp + fp, 1):.3f}",
            "recall": f"{tp / max(pos, 1):.3f}",
            "TP": tp,
            "FP": fp,
            "shots called same": int((pred & self.shot_pairs).sum()),
            "wall s": f"{seconds:.2f}",
            "cpu s": "" if cpu is None else f"{cpu:.2f}",
            "note": note,
        }

    def per_transform(self, preds: dict[str, np.ndarray]) -> list[dict]:
        rows = []
        ka, kb = self.kind[self.a], self.kind[self.b]
        for t in (*HARD_TRANSFORMS, "exact"):
            m = self.truth & (((ka == "original") & (kb == t)) | ((kb == "original") & (ka == t)))
            rows.append(
                {"transform": t, "pairs": int(m.sum())}
                | {name: f"{p[m].mean():.2f}" for name, p in preds.items()}
            )
        for fam, members in FAMILY.items():
            m = self.truth & (
                ((ka == "original") & np.isin(kb, members))
                | ((kb == "original") & np.isin(ka, members))
            )
            rows.append(
                {"transform": f"[{fam}]", "pairs": int(m.sum())}
                | {name: f"{p[m].mean():.2f}" for name, p in preds.items()}
            )
        return rows


def _show_errors(truth: Truth, pred: np.ndarray, pl, limit: int = 12) -> None:
    """imgfinder's false pairs and missed original/copy pairs, with their scores."""
    where = {(int(x), int(y)): i for i, (x, y) in enumerate(zip(pl.a, pl.b))}
    at = {p: i for i, p in enumerate(pl.paths)}

    def info(k: int) -> str:
        pa, pb = truth.recs[truth.a[k]][0], truth.recs[truth.b[k]][0]
        x, y = sorted((at[str(pa)], at[str(pb)]))
        i = where.get((x, y))
        sc = "not a candidate" if i is None else f"copy {pl.copy[i]:.3f} sig {pl.sig[i]:.3f}"
        return f"{pa.parent.name}/{pa.name} ~ {pb.parent.name}/{pb.name}: {sc}"

    c = truth.counted
    for label, sel in (
        ("false", pred & ~truth.truth & c),
        ("missed", ~pred & truth.truth & c & (truth.kind[truth.a] == "original")),
    ):
        for k in np.flatnonzero(sel)[:limit]:
            print(f"  {label}: {info(int(k))}")


# ------------------------------------------------------------------------------ peers
def peer_imagehash(paths: list[str], max_distance: int = 10) -> tuple[list[list[str]], float]:
    """ImageHash pHash, pairs at Hamming <= max_distance (imagededup PHash's default 10)."""
    import imagehash  # noqa: PLC0415

    t0 = time.perf_counter()
    hs = np.stack(
        [np.asarray(imagehash.phash(Image.open(p)).hash, bool).ravel() for p in paths]
    ).astype(np.uint8)
    out = []
    for lo in range(0, len(hs), 256):  # rows in chunks: 3.5k x 3.5k x 64 would be 0.8 GB
        dist = (hs[lo : lo + 256, None, :] != hs[None, :, :]).sum(-1)
        ia, ib = np.nonzero(dist <= max_distance)
        out += [[paths[lo + i], paths[j]] for i, j in zip(ia, ib) if lo + i < j]
    return out, time.perf_counter() - t0


def peer_imagededup(root: Path) -> tuple[list[list[str]], float]:
    """imagededup's PHash at its defaults (max Hamming distance 10), folders recursively."""
    from imagededup.methods import PHash  # noqa: PLC0415

    t0 = time.perf_counter()
    found = PHash(verbose=False).find_duplicates(image_dir=root, recursive=True)
    groups = [
        [str((root / k).resolve()), str((root / v).resolve())]
        for k, vs in found.items()
        for v in vs
    ]
    return groups, time.perf_counter() - t0


def peer_czkawka(root: Path) -> tuple[list[list[str]], float]:
    """czkawka (Rust, PyPI `czkawka`) at its default similarity setting."""
    from czkawka import ImageSimilarity  # noqa: PLC0415

    t0 = time.perf_counter()
    finder = ImageSimilarity()
    finder.set_directories([root])
    groups = finder.find_similar()
    return [[str(Path(p).resolve()) for p in g] for g in groups], time.perf_counter() - t0


# ------------------------------------------------------------------------------ imgfinder
def imgfinder_fast_path(photos: Path, data: Path):
    """`index --signatures-only` + `dupes` (core/dupes/sigindex.py): no CNN, no torch.

    Both steps may run their work in worker processes (core/dupes/workers.py). As the two
    CLI commands are two processes, the workers (and their fork server) are stopped after
    signing, so the scan pays for starting its own; their CPU time is counted
    (workers.cpu_seconds, read before they stop)."""
    from imgfinder.core import dupes  # noqa: PLC0415
    from imgfinder.core.catalog import Catalog  # noqa: PLC0415
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415
    from imgfinder.core.dupes import workers as worker_procs  # noqa: PLC0415
    from imgfinder.core.types import run  # noqa: PLC0415

    worker_procs.stop_all()
    c0 = time.process_time()
    t0 = time.perf_counter()
    run(sigindex.index_signatures(data, [photos]))
    t_sign = time.perf_counter() - t0
    c1, k1 = time.process_time(), worker_procs.cpu_seconds() or 0.0
    worker_procs.stop_all()  # `imgfinder index --signatures-only` ends here
    t1 = time.perf_counter()
    cat = Catalog(data / "catalog.sqlite")
    try:
        pl = run(sigindex.scan_signatures(cat, data))
        t_total = t_sign + time.perf_counter() - t1
        c2, k2 = time.process_time(), worker_procs.cpu_seconds() or 0.0
        worker_procs.stop_all()  # `imgfinder dupes` ends here
        t2 = time.perf_counter()
        again = run(sigindex.scan_signatures(cat, data))
        assert again.stats.get("cached")
        t_again = time.perf_counter() - t2
    finally:
        cat.close()
    groups = [g.paths for g in dupes.group(pl, "copy")]
    cpu = {
        "sign": (c1 - c0, k1),  # (this process, worker processes and their fork server)
        "scan": (c2 - c1, k2),
    }
    return groups, pl, t_sign, t_total, t_again, cpu


def compare_modes(photos: Path, root: Path, repeat: int = 1) -> list[dict]:
    """The no-CNN path with its work in threads and in worker processes, alternately, each a
    fresh library and cold workers (`--modes`): wall and CPU per step, same files."""
    from imgfinder.core.catalog import Catalog  # noqa: PLC0415
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415
    from imgfinder.core.dupes import workers as worker_procs  # noqa: PLC0415
    from imgfinder.core.types import run  # noqa: PLC0415

    rows = []
    for _ in range(repeat):
        for mode, procs in (("threads", False), ("worker processes", True)):
            data = root / "modes-data"
            shutil.rmtree(data, ignore_errors=True)
            row = {"work in": mode}
            for step in ("sign", "scan"):
                worker_procs.stop_all()
                c0, t0 = time.process_time(), time.perf_counter()
                if step == "sign":
                    run(sigindex.index_signatures(data, [photos], processes=procs))
                else:
                    cat = Catalog(data / "catalog.sqlite")
                    try:
                        run(sigindex.scan_signatures(cat, data, processes=procs))
                    finally:
                        cat.close()
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0 + (worker_procs.cpu_seconds() or 0.0)
                row |= {f"{step} wall s": f"{wall:.2f}", f"{step} CPU s": f"{cpu:.2f}"}
            worker_procs.stop_all()
            row["load"] = f"{os.getloadavg()[0]:.2f}"
            rows.append(row)
    shutil.rmtree(root / "modes-data", ignore_errors=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=12, help="originals per class")
    ap.add_argument("--negatives", type=int, default=6, help="other photos per class (-1: all)")
    ap.add_argument("--shot-every", type=int, default=3, help="a shot of every n-th original")
    ap.add_argument("--scenes", type=int, default=0, help="generated photos (second collection)")
    ap.add_argument("--scene-shots", type=int, default=0, help="... of which get a re-take")
    ap.add_argument(
        "--issue-size",
        action="store_true",
        help="the issue's corpus: about 3,500 files, 200 copies, shots of every original, "
        "all other flower photos, generated scenes with 150 re-takes",
    )
    ap.add_argument("--no-cnn", action="store_true", help="skip the CNN index (fast path only)")
    ap.add_argument(
        "--modes",
        type=int,
        default=0,
        metavar="N",
        help="also run the no-CNN path N times with its work in threads and in worker "
        "processes, alternately (core/dupes/workers.py)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep")
    args = ap.parse_args()
    from imgfinder.core.memtune import tune_allocator  # noqa: PLC0415

    tuned = tune_allocator()  # as the app's processes do (IMGFINDER_MALLOC_TUNE=0: not)
    print(f"allocator: {'the app policy (core/memtune.py)' if tuned else 'the default'}")
    if args.issue_size:
        args.per_class, args.negatives, args.shot_every = 17, -1, 1
        args.scenes, args.scene_shots = 2200, 150

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="imgfinder-copies-"))
    try:
        t0 = time.perf_counter()
        recs = build(
            tmp / "photos",
            args.per_class,
            args.negatives,
            args.seed,
            shot_every=args.shot_every,
            scenes=args.scenes,
            scene_shots=args.scene_shots,
        )
        recs = [(p.resolve(), f, k) for p, f, k in recs]
        # the corpus just written is still being written back by the kernel; a user's photos
        # are not being written while they scan, so every tool starts from files on disk
        os.sync()
        truth = Truth(recs)
        paths = [str(r[0]) for r in recs]
        kinds = truth.kind
        print(
            f"corpus: {len(recs)} files ({int(np.isin(kinds, HARD_TRANSFORMS).sum())} "
            f"transformed copies, {int((kinds == 'exact').sum())} byte-identical, "
            f"{int((kinds == 'shot').sum())} same-scene shots, "
            f"{int((kinds == 'negative').sum())} other photos), "
            f"{int((truth.truth & truth.counted).sum())} same-photo pairs, "
            f"{int(truth.shot_pairs.sum())} shot/original pairs (not copies); "
            f"built in {time.perf_counter() - t0:.0f} s, then synced to disk (os.sync)"
        )
        print(
            "czkawka runs cold every time: its Python binding opens no hash cache (strace of "
            "a run: no file but the photos), so --keep does not favour it"
        )
        rows, preds = [], {}
        for name, peer in (
            ("czkawka default", lambda: peer_czkawka(tmp / "photos")),
            ("imagededup PHash default", lambda: peer_imagededup(tmp / "photos")),
            ("ImageHash pHash <= 10", lambda: peer_imagehash(paths)),
        ):
            c0 = time.process_time()  # every thread of this process: the peers run in it
            try:
                g, t = peer()
            except ImportError as exc:
                print(f"{name}: not installed ({exc}; pip install -e .[bench])")
                continue
            cpu = time.process_time() - c0
            preds[name] = truth.pairs_of(g)
            rows.append(truth.row(name, preds[name], t, cpu=cpu))
        data = tmp / "data"
        shutil.rmtree(data, ignore_errors=True)  # --keep DIR again: a fresh library, not cached
        fg, fpl, t_sign, t_fast, t_again, cpu = imgfinder_fast_path(tmp / "photos", data)
        cpu_fast = sum(sum(v) for v in cpu.values())
        preds["imgfinder signatures only"] = truth.pairs_of(fg)
        rows.append(
            truth.row(
                "imgfinder index --signatures-only + dupes (no CNN)",
                preds["imgfinder signatures only"],
                t_fast,
                f"signatures {t_sign:.2f} s + scan {t_fast - t_sign:.2f} s; repeat {t_again:.2f} s",
                cpu=cpu_fast,
            )
        )
        print(f"fast-path scan stats: {fpl.stats}")
        print(
            "fast-path CPU s (this process + worker processes): "
            + ", ".join(f"{k} {a:.2f} + {b:.2f}" for k, (a, b) in cpu.items())
        )
        cz = next((r for r in rows if r["tool"] == "czkawka default"), None)
        if cz is not None:
            print(
                f"no-CNN path / czkawka, same run: wall {t_fast / float(cz['wall s']):.2f}x, "
                f"CPU {cpu_fast / max(float(cz['cpu s']), 1e-9):.2f}x; "
                f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}"
            )
        if args.modes:
            modes = compare_modes(tmp / "photos", tmp, args.modes)
            print("\nno-CNN path, threads against worker processes (CPU: this process + workers):")
            print(table(modes, list(modes[0])))
        if not args.no_cnn:
            rows.append(cnn_row(truth, preds, data, tmp / "photos"))
        print(table(rows, list(rows[0])))
        print("\nrecall per transform (original vs its copy):")
        per = truth.per_transform(preds)
        print(table(per, list(per[0])))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cnn_row(truth: Truth, preds: dict, data: Path, photos: Path) -> dict:
    """The later plain `index` (adds Lite0 ImageNet vectors to the signed rows), then `dupes`
    with feature candidates too; its verified-pair cache already holds the fast path's."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    from imgfinder.core import dupes  # noqa: PLC0415
    from imgfinder.core.extract import ModelConfig  # noqa: PLC0415
    from imgfinder.core.library import Library, run  # noqa: PLC0415

    cfg = ModelConfig(backbone="efficientnet-lite0", device="cpu", input_size=224)
    lib = Library(data, cfg, index_backend="exact", allow_download=False)
    try:
        t0 = time.perf_counter()
        summary = run(lib.index([photos]))
        t_index = time.perf_counter() - t0
        t0 = time.perf_counter()
        pl = run(dupes.scan(lib))
        t_scan = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run(dupes.scan(lib))
        t_rescan = time.perf_counter() - t0
        assert again.stats.get("cached")
    finally:
        lib.close()
    print(f"CNN index: {summary.indexed} photos given vectors in {t_index:.0f} s")
    print(f"scan stats: {pl.stats}")
    groups = [g.paths for g in dupes.group(pl, "copy")]
    preds["imgfinder"] = truth.pairs_of(groups)
    _show_errors(truth, preds["imgfinder"], pl)
    return truth.row(
        "imgfinder exact + same photo (Lite0 ImageNet)",
        preds["imgfinder"],
        t_index + t_scan,
        f"index {t_index:.0f} s + scan {t_scan:.0f} s; repeat scan {t_rescan:.2f} s",
    )


if __name__ == "__main__":
    raise SystemExit(main())
