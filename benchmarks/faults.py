"""Fault injection at scale: kill -9, damaged files, a full disk, two writers, bad input.

Prints a table of trials -> failures per fault, then the costs of the checks:
  * kill -9 at random moments of `index` (its final index save included), `whiten`,
    `train --train eca`, a duplicate resolution moving files to a quarantine "trash", and
    `roots remove/add`; after each kill the library must open, pass its checks (catalog
    quick_check, no row past the vector file, no damaged row, no duplicate path) and keep
    every folder and decision it had;
  * every way of damaging the vector file, the catalog and the index file (tests/faultkit.py),
    each followed by `status`, `search`, `index`, `search` through the CLI (in-process), which
    must give no traceback, keep folders/decisions and end with vectors equal to a clean run;
  * ENOSPC: a real 8 MiB tmpfs when this machine lets us mount one, else an injected fsync
    failure at a random write;
  * two `index` processes at once, and one writer with readers polling search/status;
  * a bad-input corpus through the CLI (one error line, non-zero exit, no traceback).
Costs: `PRAGMA quick_check` at catalog open on a synthetic 100k-image catalog, and the
per-row CRC-32 check of vector reads (vs. unchecked reads in the same run).

Model: seeded random-init ResNet50 at a small input size (plumbing; no quality figure here).

    python benchmarks/faults.py [--kills 50] [--trials 3] [--photos 40] [--input-size 64]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.common import table, weights_for_bench  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BAD_NAME = b"bad\xff name.jpg"


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}

    def add(self, fault: str, problems: list[str]) -> None:
        r = self.rows.setdefault(fault, {"fault": fault, "trials": 0, "failures": 0, "first": ""})
        r["trials"] += 1
        if problems:
            r["failures"] += 1
            r["first"] = r["first"] or "; ".join(problems)[:90]


def make_corpus(base: Path, n: int) -> Path:
    from tests.imgutil import make_jpeg

    photos = base / "photos"
    for i in range(n):
        make_jpeg(photos / f"c{i % 2}" / f"p{i:03d}.jpg", size=(96 + 4 * (i % 9), 80), seed=i)
    shutil.copyfile(
        os.fsencode(photos / "c0" / "p000.jpg"), os.path.join(os.fsencode(photos), BAD_NAME)
    )
    return photos


def lib_snapshot(lib) -> tuple[set[str], int]:
    from imgfinder.core.dupes import store as dupe_store

    return {p for _, p in lib.catalog.roots()}, len(dupe_store.load_decisions(lib.catalog))


def check_after(data: Path, cfg, extractor, roots_before: set[str], decisions_before: int):
    """Open the library like the next command would; return (problems, roots, decisions)."""
    from imgfinder.core.library import Library
    from tests import faultkit

    try:
        lib = Library(data, cfg, index_backend="lsh")
    except Exception as exc:  # noqa: BLE001 - an unloadable store is the failure we count
        return [f"unloadable: {type(exc).__name__}: {exc}"], set(), 0
    lib._extractor = extractor
    try:
        problems = faultkit.check_consistent(lib)
        roots, decisions = lib_snapshot(lib)
        if not roots_before <= roots:
            problems.append(f"lost folders {sorted(roots_before - roots)}")
        if decisions < decisions_before:
            problems.append(f"lost {decisions_before - decisions} decisions")
        return problems, roots, decisions
    finally:
        lib.close()


def cli(argv: list[str], extractor) -> tuple[int | None, str]:
    """Run the CLI in this process (sharing one loaded model); (rc or None if it raised, err)."""
    from imgfinder.cli import main
    from imgfinder.core.library import Library

    real_init = Library.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        self._extractor = extractor

    err, out = io.StringIO(), io.StringIO()
    Library.__init__ = init
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                rc = main(argv)
            except BaseException:  # noqa: BLE001 - a traceback is what we count
                traceback.print_exc()
                rc = None
    finally:
        Library.__init__ = real_init
    return rc, err.getvalue()


def one_error_line(rc, err) -> list[str]:
    problems = []
    if rc is None or "Traceback" in err:
        problems.append("traceback: " + err.strip().splitlines()[-1][:60] if err.strip() else "")
    elif rc == 0:
        problems.append("exit 0 on bad input")
    elif len([ln for ln in err.splitlines() if ln.startswith("imgfinder: error")]) != 1:
        problems.append("not one error line: " + err[:60])
    return problems


def main() -> int:  # noqa: C901, PLR0915 - one linear script
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--trials", type=int, default=3, help="trials per damage mode")
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from imgfinder.core.catalog import Catalog
    from imgfinder.core.dupes import store as dupe_store
    from imgfinder.core.dupes import trash
    from imgfinder.core.extract import Extractor, ModelConfig
    from imgfinder.core.library import Library, run
    from imgfinder.core.vectors import VectorStore
    from tests import faultkit

    rng = random.Random(args.seed)
    tally = Tally()
    figures: list[str] = []
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    tmp = Path(tempfile.mkdtemp(prefix="imgfinder-faults-"))
    try:
        weights, wdesc = weights_for_bench(tmp)
        cfg = ModelConfig(weights=weights, device="cpu", input_size=args.input_size)
        extractor = Extractor(cfg)
        photos = make_corpus(tmp, args.photos)
        n_files = args.photos + 1

        def cmd(data: Path, *a: str) -> list[str]:
            return faultkit.imgfinder_cmd(data, Path(weights), args.input_size, *a)

        # -- the clean reference ----------------------------------------------------------
        clean = tmp / "clean"
        lib = Library(clean, cfg)
        lib._extractor = extractor
        t = time.perf_counter()
        run(lib.index([photos]))
        index_s = time.perf_counter() - t
        hashes = sorted(
            {r.hash for r in lib.catalog.images_under(lib.catalog.roots()[0][0]).values()}
        )
        dupe_store.remember(lib.catalog, [(hashes[0], hashes[1])], dupe_store.DISTINCT)
        reference = faultkit.vectors_by_path(lib)
        lib.close()
        print(
            f"model: {wdesc}, input {args.input_size} px; {n_files} photos (one non-UTF-8 "
            f"name); clean index {index_s:.1f} s; timings on a shared, loaded machine"
        )

        def same_as_reference(data: Path) -> list[str]:
            lib = Library(data, cfg)
            lib._extractor = extractor
            try:
                got = faultkit.vectors_by_path(lib)
            finally:
                lib.close()
            if got.keys() != reference.keys():
                return [
                    f"{len(reference.keys() - got.keys())} photos missing, "
                    f"{len(got.keys() - reference.keys())} extra"
                ]
            diff = sum(not np.array_equal(got[p], reference[p]) for p in reference)
            return [f"{diff} vectors differ from a clean run"] if diff else []

        # -- kill -9 ------------------------------------------------------------------------
        kinds = ["index", "whiten", "train", "resolve", "roots"]
        share = {"index": 0.4, "whiten": 0.15, "train": 0.15, "resolve": 0.15, "roots": 0.15}
        counts = {k: max(1, round(args.kills * share[k])) for k in kinds}
        counts["index"] += max(0, args.kills - sum(counts.values()))
        killed = 0
        # index: repeated kills on one data dir, as a user would, then the final run
        kdata = tmp / "killed-index"
        roots_before, dec_before = set(), 0
        t_index = max(4.0, index_s * 1.5 + 4.0)  # process start + extraction + final save
        for _ in range(counts["index"]):
            rc, err = faultkit.kill_at_random(
                cmd(kdata, "index", str(photos)), rng, 1.5, t_index, env
            )
            killed += rc is None
            problems, roots_before, dec_before = check_after(
                kdata, cfg, extractor, roots_before, dec_before
            )
            if "Traceback" in err:
                problems.append("traceback")
            tally.add("kill -9: index (+ save)", problems)
        rc, err = cli(cmd(kdata, "index", str(photos))[3:], extractor)
        tally.add(
            "after kills: index completes, vectors = clean run",
            ([] if rc == 0 else [f"rc {rc}: {err[-80:]}"]) + same_as_reference(kdata),
        )

        # whiten / train / roots / resolve on copies of the clean library
        work = tmp / "work"
        shutil.copytree(clean, work)
        labelled = photos  # c0/ and c1/ are two classes
        for kind in ("whiten", "train", "roots"):
            for i in range(counts[kind]):
                roots_before, dec_before = lib_snapshot_of(work, cfg, extractor)
                if kind == "whiten":
                    argv, hi = cmd(work, "whiten", "--dim", "8"), 12.0
                elif kind == "train":
                    argv = cmd(
                        work,
                        "train",
                        str(labelled),
                        "--train",
                        "eca",
                        "--epochs",
                        "2",
                        "--threads",
                        "1",
                        "--views",
                        "2",
                        "-o",
                        "head-bench.pt",
                    )
                    if i % 2:
                        argv.append("--resume")
                    hi = 25.0
                else:
                    other = tmp / "other"
                    if not other.exists():
                        faultkit_make_small(other)
                    action = "remove" if str(other) in roots_before else "add"
                    argv, hi = cmd(work, "roots", action, str(other)), 8.0
                rc, err = faultkit.kill_at_random(argv, rng, 1.5, hi, env)
                killed += rc is None
                problems, _, _ = check_after(
                    work, cfg, extractor, roots_before - {str(tmp / "other")}, dec_before
                )
                problems += loadable_models(work / "models", cfg, extractor)
                if "Traceback" in err:
                    problems.append("traceback: " + err.strip().splitlines()[-1][:60])
                tally.add(f"kill -9: {kind}", problems)

        # duplicate resolution to a quarantine folder, killed mid-move
        unjournaled: list[str] = []
        for _ in range(counts["resolve"]):
            rdata = tmp / "resolve"
            shutil.rmtree(rdata, ignore_errors=True)
            shutil.copytree(clean, rdata)
            group = tmp / "group"
            shutil.rmtree(group, ignore_errors=True)
            group.mkdir()
            members = []
            for j in range(6):
                dst = group / f"copy{j}.jpg"
                shutil.copyfile(photos / "c0" / "p002.jpg", dst)
                members.append(str(dst))
            quarantine = tmp / "quarantine"
            shutil.rmtree(quarantine, ignore_errors=True)
            roots_before, dec_before = lib_snapshot_of(rdata, cfg, extractor)
            script = (
                "import sys, time\n"
                "from imgfinder.core.dupes import trash, store\n"
                "from imgfinder.core.catalog import Catalog\n"
                f"members = {members!r}\n"
                f"j = trash.Journal({str(rdata / 'dupes-journal.jsonl')!r})\n"
                f"move = trash.quarantine_fn({str(quarantine)!r})\n"
                "def slow(p):\n    time.sleep(0.05)\n    return move(p)\n"
                "trash.resolve(members, members[0], slow, j)\n"
                f"c = Catalog({str(rdata / 'catalog.sqlite')!r})\n"
                "store.remember(c, [('a' * 40, 'b' * 40)], store.KEEP_BOTH)\n"
            )
            rc, err = faultkit.kill_at_random([sys.executable, "-c", script], rng, 0.3, 2.5, env)
            killed += rc is None
            problems, _, _ = check_after(rdata, cfg, extractor, roots_before, dec_before)
            journal = trash.Journal(rdata / "dupes-journal.jsonl")
            trash.recover(journal)
            if not os.path.isfile(members[0]):
                problems.append("keeper moved")
            for m in members[1:]:
                where = journal.where(m) if not os.path.exists(m) else m
                if not where or not os.path.exists(where):
                    # killed between the rename and its "moved" record: recover() cannot tell
                    # where a quarantined file went (it only searches the system trash), but
                    # the file is intact in the quarantine folder; counted apart
                    name = Path(m).name
                    if quarantine.exists() and any(quarantine.rglob(name)):
                        unjournaled.append(m)
                    else:
                        problems.append(f"lost {m}")
            if "Traceback" in err:
                problems.append("traceback")
            tally.add("kill -9: duplicate resolve (trash)", problems)
        figures.append(
            f"duplicate resolve: {len(unjournaled)} file(s) intact in the quarantine folder but "
            "not located by trash.recover() (killed between the move and its journal record)"
        )
        figures.append(
            f"kill -9 trials {sum(counts.values())}, of which {killed} killed a "
            "running process (the rest had finished)"
        )

        # -- damaged files ---------------------------------------------------------------
        q = str(photos / "c1" / "p003.jpg")
        for family, modes, damage, target in (
            ("vector file", faultkit.VECTOR_DAMAGE, faultkit.damage_vectors, "vectors/*.f16"),
            ("catalog", faultkit.CATALOG_DAMAGE, faultkit.damage_catalog, "catalog.sqlite"),
            ("index file", faultkit.INDEX_DAMAGE, faultkit.damage_index, "index/*.idx"),
        ):
            for mode in modes:
                for trial in range(args.trials):
                    d = tmp / "damaged"
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.copytree(clean, d)
                    (f,) = d.glob(target)
                    damage(f, mode, random.Random(f"{mode}{trial}"))
                    problems = []
                    g = cmd(d)[3:]
                    for argv in (["status"], ["search", q], ["index"], ["search", q]):
                        rc, err = cli([*g, *argv], extractor)
                        if rc is None or "Traceback" in err:
                            problems.append(f"{argv[0]}: traceback")
                        elif rc != 0:
                            problems.append(f"{argv[0]}: rc {rc} {err.strip()[-60:]}")
                    p2, roots, dec = check_after(d, cfg, extractor, {str(photos)}, 1)
                    problems += p2 + same_as_reference(d)
                    tally.add(f"{family}: {mode}", problems)

        # -- disk full -----------------------------------------------------------------------
        tfs = tmp / "tmpfs"
        tfs.mkdir()
        mounted = (
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(tfs)], capture_output=True
            ).returncode
            == 0
        )
        try:
            if mounted:
                full = tfs / "data"
                rc, err = cli([*cmd(full)[3:], "index", str(photos)], extractor)
                problems = [] if rc == 4 and "disk full" in err else [f"rc {rc}: {err[-80:]}"]
                problems += one_error_line(rc, err) if rc != 4 else []
                rc2, err2 = cli([*cmd(full)[3:], "search", q], extractor)
                if rc2 is None or "Traceback" in err2:
                    problems.append("search traceback while full")
                p2, _, _ = check_after(full, cfg, extractor, {str(photos)}, 0)
                moved = tmp / "moved-off-tmpfs"
                shutil.copytree(full, moved)
                rc3, err3 = cli([*cmd(moved)[3:], "index"], extractor)
                tally.add(
                    "ENOSPC: real 8 MiB tmpfs (index, search)",
                    problems + p2 + ([] if rc3 == 0 else [f"after: rc {rc3}"]),
                )
        finally:
            if mounted:
                subprocess.run(["umount", str(tfs)], capture_output=True)
        for trial in range(max(5, args.trials * 3)):
            d = tmp / f"enospc{trial}"
            limit = rng.randrange(1, 12)
            calls = {"n": 0}
            real = os.fsync

            def fsync(fd, _calls=calls, _limit=limit, _real=real):
                _calls["n"] += 1
                if _calls["n"] > _limit:
                    raise OSError(errno.ENOSPC, "No space left on device")
                return _real(fd)

            os.fsync = fsync
            try:
                rc, err = cli([*cmd(d)[3:], "index", str(photos)], extractor)
            finally:
                os.fsync = real
            problems = [] if rc in (0, 4) and "Traceback" not in err else [f"rc {rc}: {err[-80:]}"]
            if (
                rc == 4
                and len([ln for ln in err.splitlines() if ln.startswith("imgfinder: error")]) != 1
            ):
                problems.append("not one line")
            p2, _, _ = check_after(d, cfg, extractor, set(), 0)
            rc3, _ = cli([*cmd(d)[3:], "index", str(photos)], extractor)
            tally.add(
                "ENOSPC: injected at a random fsync",
                problems + p2 + ([] if rc3 == 0 else [f"after: rc {rc3}"]) + same_as_reference(d),
            )

        # -- two writers; a writer with readers -----------------------------------------------
        for trial in range(args.trials):
            d = tmp / f"two{trial}"
            procs = [
                subprocess.Popen(
                    cmd(d, "index", str(photos)),
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                for _ in range(2)
            ]
            outs = [(p.communicate()[1].decode(), p.returncode) for p in procs]
            problems = [f"rc {rc}" for _, rc in outs if rc not in (0, 2)]
            problems += ["traceback" for e, _ in outs if "Traceback" in e]
            if sum(rc == 2 for _, rc in outs) and not all(
                "in progress in process" in e for e, rc in outs if rc == 2
            ):
                problems.append("busy message without the holder")
            lib = Library(d, cfg)
            rows = len(lib.store())
            lib.close()
            if rows > n_files:
                problems.append(f"{rows} vector rows for {n_files} photos")
            p2, _, _ = check_after(d, cfg, extractor, {str(photos)}, 0)
            tally.add("two index processes at once", problems + p2)
        for trial in range(args.trials):
            d = tmp / f"readers{trial}"
            writer = subprocess.Popen(
                cmd(d, "index", str(photos)),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            problems = []
            sizes = []
            while writer.poll() is None:
                if (d / "catalog.sqlite").exists():
                    try:
                        lib = Library(d, cfg)
                        lib._extractor = extractor
                        lib.status()
                        lib.search(q, k=3)
                        sizes.append(lib.store().nbytes())
                        lib.close()
                    except Exception as exc:  # noqa: BLE001
                        problems.append(f"reader: {type(exc).__name__}: {exc}"[:80])
                time.sleep(0.2)
            if writer.returncode != 0:
                problems.append(f"writer rc {writer.returncode}")
            if any(b < a for a, b in zip(sizes, sizes[1:])):
                problems.append("vector file shrank under a live writer")
            problems += same_as_reference(d)
            tally.add("one writer + polling readers", problems)

        # -- bad input corpus -----------------------------------------------------------------
        bad = tmp / "bad"
        bad.mkdir()
        (bad / "empty.jpg").write_bytes(b"")
        (bad / "text.jpg").write_text("not an image")
        (bad / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
        (bad / "trunc.jpg").write_bytes((photos / "c0" / "p002.jpg").read_bytes()[:300])
        os.mkfifo(bad / "fifo.jpg")
        (bad / "loop").symlink_to(bad / "loop")
        nl = bad / "new\nline.jpg"
        shutil.copyfile(photos / "c0" / "p002.jpg", nl)
        g = cmd(tmp / "clean")[3:]
        corpus = [
            ["search", str(bad / "fifo.jpg")],
            ["search", "/dev/null"],
            ["search", str(bad)],
            ["search", str(bad / "missing.jpg")],
            ["search", str(bad / "empty.jpg")],
            ["search", str(bad / "text.jpg")],
            ["search", str(bad / "drawing.svg")],
            ["search", str(bad / "trunc.jpg")],
            ["search", str(bad / "loop")],
            ["search", q, "-k", "0"],
            ["index", str(bad / "missing-folder")],
            ["index", str(bad / "empty.jpg")],
            ["roots", "remove", str(bad / "never")],
            ["whiten", "--dim", "0"],
            ["explain", q, str(bad / "text.jpg"), "-o", str(bad / "x.png")],
        ]
        for argv in corpus:
            rc, err = cli([*g, *argv], extractor)
            tally.add(
                "bad input: " + " ".join(a.replace(str(bad), "B") for a in argv[:2])[:44],
                one_error_line(rc, err),
            )
        rc, err = cli([*g, "search", str(nl)], extractor)
        tally.add("odd name: newline in a query name", [] if rc == 0 else [err[-80:]])

        # -- costs -------------------------------------------------------------------------
        big = tmp / "big.sqlite"
        cat = Catalog(big)
        rid = cat.add_root("/photos")
        with cat.transaction() as c:
            c.executemany(
                "INSERT INTO images (path, root_id, size, mtime_ns, hash, width, height, status,"
                " vec_row, model_id, updated_at) VALUES (?, ?, 1, 1, ?, 10, 10, 'ok', ?, 'm', 0)",
                (
                    (f"/photos/{i // 1000:04d}/IMG_{i:06d}.jpg", rid, f"{i:040x}", i)
                    for i in range(100_000)
                ),
            )
        cat.close()
        for check in (False, True):
            t = time.perf_counter()
            for _ in range(3):
                Catalog(big, check=check).close()
            ms = (time.perf_counter() - t) / 3 * 1e3
            figures.append(
                f"catalog open, 100k images ({big.stat().st_size / 1e6:.0f} MB), "
                f"{'with' if check else 'without'} quick_check: {ms:.1f} ms"
            )
        dim = 4096
        vs = VectorStore(tmp / "big.f16", dim, "m")
        for _ in range(5):
            vs.append(np.random.default_rng(0).standard_normal((4000, dim)).astype(np.float16))
        rows = np.random.default_rng(1).integers(0, len(vs), 2000)
        for verify in (False, True):
            vs.get(rows[:10], verify=verify)
            t = time.perf_counter()
            for s in range(0, len(rows), 100):
                vs.get(rows[s : s + 100], verify=verify)
            us = (time.perf_counter() - t) / len(rows) * 1e6
            figures.append(
                f"vector read, 4096-d, random rows in batches of 100, "
                f"{'CRC-checked' if verify else 'unchecked'}: {us:.1f} us/row"
            )
        t = time.perf_counter()
        vs.verify()
        s = time.perf_counter() - t
        figures.append(
            f"full verify (index start, status): {len(vs)} rows in {s:.2f} s "
            f"({len(vs) * vs.row_bytes / s / 1e6:.0f} MB/s)"
        )
        vs.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rows = list(tally.rows.values())
    print(table(rows, ["fault", "trials", "failures", "first"]))
    total = sum(r["trials"] for r in rows)
    fails = sum(r["failures"] for r in rows)
    print(f"total: {total} trials, {fails} failures")
    for f in figures:
        print(f)
    return 1 if fails else 0


def lib_snapshot_of(data: Path, cfg, extractor):
    from imgfinder.core.library import Library

    lib = Library(data, cfg)
    try:
        return lib_snapshot(lib)
    finally:
        lib.close()


def faultkit_make_small(folder: Path) -> None:
    from tests.imgutil import make_jpeg

    for i in range(3):
        make_jpeg(folder / f"o{i}.jpg", size=(90, 90), seed=500 + i)


def loadable_models(models: Path, cfg, extractor) -> list[str]:
    """Every whitening / head / checkpoint file left in models/ must load."""
    import torch

    from imgfinder.core.whiten import load_whitening

    problems = []
    if not models.exists():
        return problems
    for f in models.iterdir():
        if f.name.startswith("."):
            continue  # temp files: removed at the next open once their writer is gone
        try:
            if f.suffix == ".npz":
                load_whitening(f)
            elif f.suffix in (".pt", ".ckpt"):
                torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{f.name} unloadable: {exc}"[:80])
    return problems


if __name__ == "__main__":
    raise SystemExit(main())
