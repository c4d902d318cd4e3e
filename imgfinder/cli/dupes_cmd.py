"""`imgfinder dupes`: list duplicate groups with the suggested keeper and why; never moves files."""

from __future__ import annotations

import argparse
import json
import sys

from imgfinder.cli.common import ProgressBar, open_library
from imgfinder.core import dupes
from imgfinder.core.catalog import Catalog
from imgfinder.core.types import count_text, run
from imgfinder.errors import ImgfinderError

TIER_CHOICES = (*dupes.TIERS, "all")


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dupes",
        parents=[common],
        help="list duplicate groups (exact, same photo, similar shot); moves nothing",
        description="List groups of duplicate photos with the suggested keeper and the reason. "
        "Tiers: exact (same bytes), copy (same photo: resized, recompressed, converted, "
        "slightly cropped, rotated, mirrored or brightened), similar (similar shots, e.g. a "
        "burst). Every two members of a group are above the tier's threshold. This command "
        "never moves or deletes anything; resolve groups in the app.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        help="folders to add to the library first: their new and changed photos are "
        "catalogued without the CNN (as `index --signatures-only`), so `dupes FOLDER` on a "
        "fresh folder needs no model and no second command",
    )
    p.add_argument("--tier", choices=TIER_CHOICES, default="all", help="which tier (default all)")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="link threshold for the chosen tier (default: the library's saved setting; "
        f"copy {dupes.DEFAULT_THRESHOLDS['copy']}, similar {dupes.DEFAULT_THRESHOLDS['similar']})",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the pixel check of new copies")
    p.add_argument("--json", action="store_true", help="print groups as JSON")
    p.set_defaults(func=cmd_dupes)


def _thresholds(args: argparse.Namespace, saved: dict[str, float]) -> dict[str, float]:
    th = dict(saved)
    if args.threshold is None:
        return th
    if args.tier == "all":
        raise ImgfinderError("--threshold needs a single --tier (exact, copy or similar)")
    lo, hi = dupes.THRESHOLD_RANGES[args.tier]
    if not lo <= args.threshold <= hi:
        raise ImgfinderError(f"--threshold for {args.tier} must be between {lo} and {hi}")
    th[args.tier] = args.threshold
    return th


def _scan_without_model(args: argparse.Namespace):
    """(catalog, pairs, notes) when the scan needs no model: a library of duplicate
    signatures only (`index --signatures-only`), or one whose pairs are cached for the
    remembered model (cli/fast.py). None: open the library and load the model."""
    from imgfinder.cli import fast  # noqa: PLC0415
    from imgfinder.core.dupes import session, sigindex  # noqa: PLC0415

    data = fast.data_dir(args)
    catalog = _open_catalog(data)
    if catalog is None:
        return None
    try:
        pairs = None
        if sigindex.signatures_only(catalog):
            if args.tier == "similar":
                raise ImgfinderError(sigindex.SIMILAR_NEEDS_VECTORS)
            bar = ProgressBar()
            try:
                pairs = run(sigindex.scan_signatures(catalog, data, verify=not args.no_verify), bar)
            finally:
                bar.close()
            notes = [sigindex.SIMILAR_NEEDS_VECTORS] if args.tier == "all" else []
            return catalog, pairs, notes
        model = fast.known_model(args)
        if model is not None and model["model_id"] in catalog.model_counts():
            inputs = session.scan_inputs(
                catalog,
                data,
                model["model_id"],
                verify=not args.no_verify,
                index_backend=args.index_backend,
            )
            pairs = session.cached_scan(inputs)
        if pairs is not None:
            return catalog, pairs, _notes(pairs)
    except BaseException:
        catalog.close()
        raise
    catalog.close()
    return None


def _notes(pairs) -> list[str]:
    n = int(pairs.stats.get("without_vectors", 0) or 0)
    if not n:
        return []
    return [
        f"{count_text(n, 'photo')} with duplicate signatures but no CNN vector yet: in the "
        "exact and same-photo tiers only (`imgfinder index` adds the vectors for similar shots)"
    ]


def _groups(args: argparse.Namespace, catalog, pairs) -> list[dict]:
    """The groups to list, each with its suggested keeper and the reason."""
    th = _thresholds(args, dupes.load_thresholds(catalog))
    if args.tier == "all":  # no two photos listed together twice
        groups = dupes.group_all(pairs, th)
    else:
        groups = dupes.group(pairs, args.tier, th[args.tier], copy_threshold=th["copy"])
    rule = dupes.load_rule(catalog)
    out = []
    for g, (_, choice) in zip(groups, dupes.suggest_keepers(catalog, groups, rule)):
        k = choice.keeper
        out.append(
            {
                "tier": g.tier,
                "weakest": round(g.weakest, 4),
                "keeper": g.members[k].path,
                "reason": choice.reason,
                "members": [
                    {"path": m.path, "score": round(g.score(k, i), 4)}
                    for i, m in enumerate(g.members)
                ],
            }
        )
    return out


def _exact_without_model(args: argparse.Namespace):
    """(catalog, pairs, no notes) for `--tier exact`: byte-identical files come from the
    catalog's content hashes alone, whatever the library holds (no model, no torch)."""
    from imgfinder.cli import fast  # noqa: PLC0415
    from imgfinder.core.dupes import session  # noqa: PLC0415

    catalog = _open_catalog(fast.data_dir(args))
    if catalog is None:
        return None
    try:
        return catalog, session.exact_scan(catalog), []
    except BaseException:
        catalog.close()
        raise


def _open_catalog(data) -> Catalog | None:
    """The data dir's catalog opened for reading, or None: none yet, or damaged (the
    library recovers it, under the writer lock)."""
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415

    if not (data / sigindex.CATALOG_NAME).is_file():
        return None
    try:
        return Catalog(data / sigindex.CATALOG_NAME)
    except ImgfinderError:
        return None


def _add_folders(args: argparse.Namespace) -> None:
    """`dupes FOLDER...`: catalog the folders' new and changed photos by content hash and
    signature (core/dupes/sigindex.py: no model, no torch), in this process, whose worker
    processes the scan then reuses."""
    from imgfinder.cli import fast  # noqa: PLC0415
    from imgfinder.cli.library_cmds import print_skipped  # noqa: PLC0415
    from imgfinder.core.dupes import sigindex  # noqa: PLC0415

    bar = ProgressBar()
    try:
        summary = run(sigindex.index_signatures(fast.data_dir(args), args.paths), bar)
    finally:
        bar.close()
    if summary.indexed:
        print(f"signed {count_text(summary.indexed, 'new or changed photo')}", file=sys.stderr)
    print_skipped(summary, file=sys.stderr)


def cmd_dupes(args: argparse.Namespace) -> int:
    if args.paths:
        _add_folders(args)
    if args.tier == "exact":
        got = _exact_without_model(args)
    else:  # signatures-only library, or cached pairs: no torch
        got = _scan_without_model(args)
    if got is not None:
        catalog, pairs, notes = got
        try:
            out = _groups(args, catalog, pairs)
        finally:
            catalog.close()
    else:
        lib = open_library(args)
        try:
            if lib.catalog.counts().get("ok", 0) == 0:
                raise ImgfinderError(
                    "the library is not indexed yet; run `imgfinder index FOLDER` first"
                )
            bar = ProgressBar()
            try:
                pairs = run(dupes.scan(lib, verify=not args.no_verify), bar)
            finally:
                bar.close()
            notes = _notes(pairs)
            out = _groups(args, lib.catalog, pairs)
            from imgfinder.cli.fast import remember_model  # noqa: PLC0415

            remember_model(args, lib)  # the next unchanged `dupes` needs no model
        finally:
            lib.close()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"groups": out}, indent=2, ensure_ascii=False))
        return 0
    if not out:
        print("no duplicates found", file=sys.stderr)
        return 0
    for g in out:
        label = dupes.TIER_LABELS[g["tier"]]
        print(f"{label}: {len(g['members'])} photos, weakest link {g['weakest']:.3f}")
        for m in g["members"]:
            mark = "keep" if m["path"] == g["keeper"] else "    "
            print(f"  {mark} {m['score']:.3f}  {m['path']}")
        print(f"  {g['reason']}")
    n = sum(len(g["members"]) - 1 for g in out)
    groups = "1 group" if len(out) == 1 else f"{len(out)} groups"
    photos = "1 photo" if n == 1 else f"{n} photos"
    print(f"{groups}; {photos} would move if every group were resolved", file=sys.stderr)
    return 0
