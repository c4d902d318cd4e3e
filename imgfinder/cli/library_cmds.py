"""Subcommands over the library: index, search, status, roots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imgfinder.cli.common import ProgressBar, open_library
from imgfinder.cli.fast import fast_status, remember_model, unchanged_index
from imgfinder.core.types import library_counts_text, run_summary_text
from imgfinder.errors import ImgfinderError, WeightsUnavailableError


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
    for path, reason in sorted(summary.skipped.items()):
        print(f"  skipped {path}: {reason}")
    for root in summary.missing_roots:
        print(f"  folder not available (entries kept): {root}")
    return 0


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
    lib = open_library(args)
    try:
        hits = lib.search(args.image, k=args.k)
        remember_model(args, lib)
    finally:
        lib.close()
    if args.json:  # the query as an absolute path, like the results
        query = str(Path(args.image).expanduser().resolve())
        out = {"query": query, "results": [{"path": h.path, "score": h.score} for h in hits]}
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
    info = fast_status(args)  # from the catalog and the remembered model id: no torch
    if info is None:
        lib = open_library(args)
        try:
            info = lib.status()
            remember_model(args, lib)
        finally:
            lib.close()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"data directory: {info['data_dir']}")
    print(f"images: {library_counts_text(info['images'], info['failed'])} (could not be read)")
    if info.get("model_id"):
        print(f"model: {model_name(info['model_id'], info.get('weights'))}")
        print(f"model id: {info['model_id']}")
    else:
        print(f"model: unavailable: {info.get('model_error', '')}")
    if info.get("device"):
        print(f"device: {info['device']}")
    if info.get("stale"):
        print(f"re-index needed: {info['stale']} images were indexed with another model")
    print(f"index: {info['index_backend']}")
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


BACKBONE_NAMES = {"fused-eca-r50": "ResNet50"}


def model_name(model_id: str, weights: str | None = None) -> str:
    """A readable name for a model id ("fused-eca-r50/tv-IMAGENET1K_V1/eca0/224/sq-in1k"):
    backbone, weights, head, input size, and whitening when there is one."""
    parts = model_id.split("/")
    if len(parts) < 4:
        return model_id
    backbone, tag, head, size = parts[:4]
    name = BACKBONE_NAMES.get(backbone, backbone)
    if tag.startswith("tv-"):
        source = f"torchvision {tag[3:]} ImageNet weights"
    elif tag.startswith("file-") and weights:
        source = f"weights file {Path(weights).name}"
    else:
        source = f"weights {tag}"
    eca = "untrained ECA head" if head == "eca0" else f"trained ECA head ({head})"
    text = f"{name}, {source}, {eca}, {size} px input"
    if len(parts) > 5:  # a whitening's tag follows the preprocessing
        text += f", PCA whitening {parts[5]}"
    return text


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
