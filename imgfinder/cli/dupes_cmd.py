"""`imgfinder dupes`: list duplicate groups with the suggested keeper and why; never moves files."""

from __future__ import annotations

import argparse
import json
import sys

from imgfinder.cli.common import ProgressBar, open_library
from imgfinder.core import dupes
from imgfinder.core.library import run
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


def cmd_dupes(args: argparse.Namespace) -> int:
    lib = open_library(args)
    try:
        if lib.catalog.counts().get("ok", 0) == 0:
            raise ImgfinderError(
                "the library is not indexed yet; run `imgfinder index FOLDER` first"
            )
        th = _thresholds(args, dupes.load_thresholds(lib.catalog))
        bar = ProgressBar()
        try:
            pairs = run(dupes.scan(lib, verify=not args.no_verify), bar)
        finally:
            bar.close()
        if args.tier == "all":  # no two photos listed together twice
            groups = dupes.group_all(pairs, th)
        else:
            groups = dupes.group(pairs, args.tier, th[args.tier], copy_threshold=th["copy"])
        rule = dupes.load_rule(lib.catalog)
        out = []
        for g in groups:
            _, choice = dupes.suggest_keeper(g, rule)
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
    finally:
        lib.close()
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
    print(f"{len(out)} groups; {n} photos would move if every group were resolved", file=sys.stderr)
    return 0
