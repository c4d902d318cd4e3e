"""Subcommands over the library: index, search, status, roots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imgfinder.cli.common import ProgressBar, open_library
from imgfinder.cli.fast import data_dir as fast_data_dir
from imgfinder.cli.fast import fast_status, remember_model, unchanged_index
from imgfinder.cli.rerank_opts import DEFAULT_RERANK, add_rerank_options, rerank_options
from imgfinder.core import photometa
from imgfinder.core.modelspec import describe_model_id
from imgfinder.core.types import count_text, library_counts_text, run, run_summary_text
from imgfinder.errors import ImgfinderError, WeightsUnavailableError


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("index", parents=[common], help="add folders and index new/changed photos")
    p.add_argument("paths", nargs="*", help="folders to add as library roots (default: all roots)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--signatures-only",
        action="store_true",
        help="no CNN: only hash and sign the photos for `dupes` (exact and same-photo tiers, "
        "in seconds); a later plain `index` adds the vectors for search and similar shots",
    )
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", parents=[common], help="find photos similar to an image")
    p.add_argument("image", help="query image file (inside the library or not)")
    p.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    p.add_argument(
        "--json", action="store_true", help="print results (with each photo's metadata) as JSON"
    )
    add_photo_options(p)
    add_rerank_options(p, default=DEFAULT_RERANK)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("status", parents=[common], help="library, model and storage summary")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("roots", parents=[common], help="list, add or remove library folders")
    rs = p.add_subparsers(dest="roots_cmd", metavar="ACTION", required=True)
    rs.add_parser("list", parents=[common], help="list folders").set_defaults(func=cmd_roots_list)
    a = rs.add_parser("add", parents=[common], help="add folders (index them with `index`)")
    a.add_argument("paths", nargs="+")
    a.set_defaults(func=cmd_roots_add)
    r = rs.add_parser("remove", parents=[common], help="forget folders (files are not touched)")
    r.add_argument("paths", nargs="+")
    r.set_defaults(func=cmd_roots_remove)


def cmd_index(args: argparse.Namespace) -> int:
    if getattr(args, "signatures_only", False):
        return _index_signatures(args)
    bar = ProgressBar()
    try:
        quick = unchanged_index(args, bar)  # nothing to do: no model, no torch
    finally:
        bar.close()
    if quick is not None:
        summary, counts = quick
    else:
        summary, counts = _index(args)
    photos, skipped = counts.get("ok", 0), counts.get("failed", 0)
    if args.json:
        out = dict(summary.__dict__, library={"photos": photos, "skipped": skipped})
        print(json.dumps(out, indent=2))
        return 0
    print(run_summary_text(summary, photos, skipped))
    if summary.repaired:
        print(
            f"  re-extracted {summary.repaired} images whose stored vector was missing or damaged"
        )
    print_skipped(summary)
    return 0


def print_skipped(summary, file=None) -> None:
    """An index run's files that could not be read, with why, and folders not available."""
    for path, reason in sorted(summary.skipped.items()):
        print(f"  skipped {path}: {reason}", file=file)
    for root in summary.missing_roots:
        print(f"  folder not available (entries kept): {root}", file=file)


def _index_signatures(args: argparse.Namespace) -> int:
    """`index --signatures-only`: core/dupes/sigindex.py, no model and no torch."""
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415

    data = fast_data_dir(args)
    bar = ProgressBar()
    try:
        summary = run(sigindex.index_signatures(data, args.paths), bar)
    finally:
        bar.close()
    counts = sigindex.library_counts(data)
    photos, skipped = counts["ok"] + counts["signed"], counts["failed"]
    if args.json:
        lib = {"photos": photos, "skipped": skipped, "signatures_only": counts["signed"]}
        print(json.dumps(dict(summary.__dict__, library=lib), indent=2))
        return 0
    print(run_summary_text(summary, photos, skipped).replace("Indexed", "Signed", 1))
    print_skipped(summary)
    if counts["signed"]:
        print(
            f"  {count_text(counts['signed'], 'photo')} with duplicate signatures only: "
            "`imgfinder dupes` "
            "finds exact copies and the same photo; `imgfinder index` adds the CNN vectors "
            "for search and similar shots"
        )
    return 0


def add_photo_options(p: argparse.ArgumentParser) -> None:
    """Capture-date sorting/filtering and RAW+JPEG pairs for `search`."""
    p.add_argument(
        "--sort",
        choices=["score", "date", "date-desc"],
        default="score",
        help="order of the results: similarity (default), capture date oldest or newest first",
    )
    p.add_argument(
        "--since", metavar="DATE", help="only photos taken on/after DATE (YYYY[-MM[-DD[THH:MM]]])"
    )
    p.add_argument("--until", metavar="DATE", help="only photos taken on/before DATE (inclusive)")
    p.add_argument(
        "--raw-pairs",
        choices=["one", "both"],
        default="both",
        help="show a RAW+JPEG pair of one shot as one result (the better match) or as both "
        "files (default both)",
    )


# how many more neighbours to fetch when a date filter may drop most of them
_DATE_FILTER_FETCH = 10


def _index(args: argparse.Namespace):
    """A real index run (loads the model); returns the summary and the catalog's counts."""
    from imgfinder.core.library import run  # noqa: PLC0415

    lib = open_library(args)
    bar = ProgressBar()
    try:
        before = {p for _, p in lib.catalog.roots()}
        try:
            summary = run(lib.index(args.paths), bar)
        except WeightsUnavailableError as exc:
            _forget_new_roots(lib, before)
            raise WeightsUnavailableError(f"{exc} (no folder was added)") from None
        remember_model(args, lib)
        return summary, lib.catalog.counts()
    finally:
        bar.close()
        lib.close()


def _forget_new_roots(lib, before: set[str]) -> None:
    """An `index FOLDER` that could not run leaves the library as it was: no new folder."""
    for _, path in lib.catalog.roots():
        if path not in before:
            lib.catalog.remove_root(path)


def cmd_search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ImgfinderError("-k must be at least 1")
    try:  # bad dates are a user error before any model loads
        photometa.filter_by_date([], lambda _: None, args.since, args.until)
    except ValueError as exc:
        raise ImgfinderError(str(exc)) from None
    dated = bool(args.since or args.until)
    pairs = args.raw_pairs == "one"
    rerank = rerank_options(args)
    lib = open_library(args)
    try:
        fetch = max(args.k * _DATE_FILTER_FETCH, 200) if dated else args.k
        hits = lib.search(args.image, k=fetch, raw_pairs_as_one=pairs, rerank=rerank)
        metas = lib.photo_meta([h.image_id for h in hits])
        sources = lib.decode_sources([h.image_id for h in hits])
        remember_model(args, lib)
    finally:
        lib.close()

    def taken(h):
        m = metas.get(h.image_id)
        return m.taken if m is not None else None

    hits = photometa.filter_by_date(hits, taken, args.since, args.until)[: args.k]
    if args.sort != "score":
        hits = photometa.sort_by_date(hits, taken, newest_first=args.sort == "date-desc")
    if args.json:
        out = {  # the query as an absolute path, like the results
            "query": str(Path(args.image).expanduser().resolve()),
            "results": [
                {
                    "path": h.path,
                    "score": h.score,
                    "metadata": metas[h.image_id].to_json() if h.image_id in metas else None,
                    "decoded_from": sources.get(h.image_id),
                }
                for h in hits
            ],
        }
        print(json.dumps(out, indent=2))
    else:
        if not hits:
            print(
                "no results (is the library indexed? try `imgfinder index FOLDER`)"
                if not dated
                else "no results taken in that period",
                file=sys.stderr,
            )
        show_date = dated or args.sort != "score"
        for h in hits:
            when = f"{(taken(h) or '-')[:19]:19}  " if show_date else ""
            print(f"{h.score:.4f}  {when}{h.path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = fast_status(args)  # from the catalog and the remembered model id: no torch
    if info is None:
        lib = open_library(args)
        try:
            info = lib.status()
            remember_model(args, lib)
        finally:
            lib.close()
    info["index_recall"] = _index_recall(Path(info["data_dir"]), info["index_backend"])
    info["signatures_only"] = _signatures_only(Path(info["data_dir"]))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"data directory: {info['data_dir']}")
    print(f"images: {library_counts_text(info['images'], info['failed'])} (could not be read)")
    if info.get("model_id"):
        print(f"model: {describe_model_id(info['model_id'], info.get('weights'))}")
        print(f"model id: {info['model_id']}")
    else:
        print(f"model: unavailable: {info.get('model_error', '')}")
    if info.get("device"):
        print(f"device: {info['device']}")
    if info.get("signatures_only"):
        print(
            f"signatures only: {count_text(info['signatures_only'], 'photo')} (from `index "
            "--signatures-only`; in `dupes`, not yet in search: `imgfinder index` adds them)"
        )
    if info.get("stale"):
        print(f"re-index needed: {info['stale']} images were indexed with another model")
    if info.get("vectors_damaged"):
        print(
            f"vectors damaged or missing: {info['vectors_damaged']} images (left out of results; "
            "`imgfinder index` re-extracts them)"
        )
    if info.get("writer"):
        w = info["writer"]
        print(f"being written: {w.get('what', 'writing')} in process {w['pid']}")
    print(f"index: {info['index_backend']}{_recall_text(info.get('index_recall'))}")
    usage = info["bytes_on_disk"]
    print(
        "on disk: "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in usage.items())
        + f" ({info['bytes_per_image']} bytes per image)"
    )
    print("folders:")
    for r in info["roots"]:
        state = "" if r["available"] else "  [missing]"
        print(f"  {r['path']}: {library_counts_text(r['images'], r['failed'])}{state}")
    return 0


def _signatures_only(data: Path) -> int:
    """Photos catalogued by `index --signatures-only` that have no vector yet."""
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415

    if not (data / sigindex.CATALOG_NAME).is_file():
        return 0
    try:
        return sigindex.library_counts(data)["signed"]
    except ImgfinderError:
        return 0


def _index_recall(data: Path, backend: str) -> dict | None:
    from imgfinder.core.index import stored_recall

    return stored_recall(data / "index" / f"{backend}.idx")


def _recall_text(rec: dict | None) -> str:
    if not rec or not rec.get("queries"):
        return ""
    if rec.get("exact"):  # calibration found no LSH setting cheaper than a scan
        return (
            f", searched exactly (an exact scan is cheaper than LSH at this size or on "
            f"these vectors): recall@10 {rec['recall_at_10']:.3f} measured at build on "
            f"{int(rec['queries'])} held-out photos"
        )
    return (
        f", recall@10 {rec['recall_at_10']:.3f} against exact search "
        f"(measured at build on {int(rec['queries'])} held-out photos, "
        f"target {rec.get('target', 0.95):.2f})"
    )


def cmd_roots_list(args: argparse.Namespace) -> int:
    lib = open_library(args)
    try:
        for root in lib.roots():
            print(root.path + ("" if root.available else "  [missing]"))
    finally:
        lib.close()
    return 0


def cmd_roots_add(args: argparse.Namespace) -> int:
    lib = open_library(args)
    try:
        for p in args.paths:
            print(f"added {lib.add_root(p)}")
    finally:
        lib.close()
    return 0


def cmd_roots_remove(args: argparse.Namespace) -> int:
    lib = open_library(args)
    try:
        for p in args.paths:
            n = lib.remove_root(p)
            print(f"removed {p} ({n} images forgotten; files untouched)")
    finally:
        lib.close()
    return 0
