"""Subcommands over the library: index, search, status, roots."""

from __future__ import annotations

import argparse
import json
import sys

from imgfinder.cli.common import ProgressBar, open_library
from imgfinder.core.library import run
from imgfinder.errors import ImgfinderError


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("index", parents=[common], help="add folders and index new/changed photos")
    p.add_argument("paths", nargs="*", help="folders to add as library roots (default: all roots)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("search", parents=[common], help="find photos similar to an image")
    p.add_argument("image", help="query image file (inside the library or not)")
    p.add_argument("-k", type=int, default=20, help="number of results (default 20)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
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
    lib = open_library(args)
    bar = ProgressBar()
    try:
        summary = run(lib.index(args.paths), bar)
    finally:
        bar.close()
        lib.close()
    if args.json:
        print(json.dumps(summary.__dict__, indent=2))
        return 0
    print(
        f"indexed {summary.indexed} (moved {summary.moved}), unchanged {summary.unchanged}, "
        f"removed {summary.removed}, skipped {len(summary.skipped)} "
        f"in {summary.seconds:.1f} s"
    )
    for path, reason in sorted(summary.skipped.items()):
        print(f"  skipped {path}: {reason}")
    for root in summary.missing_roots:
        print(f"  folder not available (entries kept): {root}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise ImgfinderError("-k must be at least 1")
    lib = open_library(args)
    try:
        hits = lib.search(args.image, k=args.k)
    finally:
        lib.close()
    if args.json:
        out = {"query": args.image, "results": [{"path": h.path, "score": h.score} for h in hits]}
        print(json.dumps(out, indent=2))
    else:
        if not hits:
            print(
                "no results (is the library indexed? try `imgfinder index FOLDER`)", file=sys.stderr
            )
        for h in hits:
            print(f"{h.score:.4f}  {h.path}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    lib = open_library(args)
    try:
        info = lib.status()
        info["index_recall"] = _index_recall(lib)
    finally:
        lib.close()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"data directory: {info['data_dir']}")
    print(f"images: {info['images']} indexed, {info['failed']} failed")
    if info.get("model_id"):
        print(f"model: {info['model']} ({info['model_id']})")
    else:
        print(f"model: unavailable: {info.get('model_error', '')}")
    if info.get("device"):
        print(f"device: {info['device']}")
    if info.get("stale"):
        print(f"re-index needed: {info['stale']} images were indexed with another model")
    print(f"index: {info['index_backend']}{_recall_text(info['index_recall'])}")
    usage = info["bytes_on_disk"]
    print(
        "on disk: "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in usage.items())
        + f" ({info['bytes_per_image']} bytes per image)"
    )
    print("folders:")
    for r in info["roots"]:
        state = "" if r["available"] else "  [missing]"
        print(f"  {r['path']}: {r['images']} images, {r['failed']} failed{state}")
    return 0


def _index_recall(lib) -> dict | None:
    from imgfinder.core.index import stored_recall

    return stored_recall(lib.index_path)


def _recall_text(rec: dict | None) -> str:
    if not rec or not rec.get("queries"):
        return ""
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
