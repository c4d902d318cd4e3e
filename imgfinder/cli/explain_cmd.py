"""`imgfinder explain QUERY RESULT -o out.png`: match heatmaps of two images, side by side."""

from __future__ import annotations

import argparse
import json
import logging

from imgfinder import paths
from imgfinder.cli.common import DownloadBar, model_config
from imgfinder.core import colormap
from imgfinder.core.centring import load_centre
from imgfinder.core.explain import (
    BRANCHES,
    activations_many,
    caption_text,
    load_photo,
    match_maps,
    render_match,
    save_image,
)
from imgfinder.errors import ImgfinderError

log = logging.getLogger(__name__)


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="show where two images match (heatmaps over both, side by side)",
        description="Split the cosine similarity of two images over the positions of each "
        "image and draw it over the photos. No library needed.",
    )
    p.add_argument("query", help="query image file")
    p.add_argument("result", help="result image file")
    p.add_argument(
        "-o", "--output", help="image to write (PNG unless -o says); optional with --json"
    )
    p.add_argument(
        "--branch",
        choices=BRANCHES,
        default="fused",
        help="which part of the descriptor to map: fused (both, default), attention "
        "(ECA/average branch) or global (max branch)",
    )
    p.add_argument("--opacity", type=float, default=0.5, help="heatmap opacity 0..1 (default 0.5)")
    p.add_argument(
        "--cmap", choices=colormap.SEQUENTIAL, default="inferno", help="colour map (inferno)"
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=768,
        help="longest side of each photo in the output, pixels (default 768)",
    )
    p.add_argument("--json", action="store_true", help="print score and map sums as JSON")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    if not 0.0 <= args.opacity <= 1.0:
        raise ImgfinderError(f"--opacity must be within 0..1, got {args.opacity}")
    if not 16 <= args.max_side <= 8192:
        raise ImgfinderError(f"--max-side must be within 16..8192, got {args.max_side}")
    if not args.output and not args.json:
        raise ImgfinderError("give -o FILE to write the picture, or --json for the numbers")
    from imgfinder.core.extract import Extractor  # noqa: PLC0415 (torch only when needed)

    extractor = Extractor(
        model_config(args),
        allow_download=not args.offline,
        progress=None if args.offline else DownloadBar(),
    )
    q, r = activations_many(extractor, [args.query, args.result])
    centre = None  # the library's mean, as `search` centres on it (a whitening centres itself)
    if not getattr(args, "whitening", None):
        centre = load_centre(
            paths.data_dir() / "index" / "centre.npz", extractor.model_id, extractor.dim
        )
    expl = match_maps(q, r, args.branch, centre.mean if centre is not None else None)
    out = picture = None
    if args.output:
        picture = render_match(
            load_photo(args.query, args.max_side),
            load_photo(args.result, args.max_side),
            expl,
            opacity=args.opacity,
            cmap=args.cmap,
            caption=caption_text(expl, q.label, r.label),
        )
        out = save_image(picture, args.output)
        log.info("explanation of %s vs %s written to %s", args.query, args.result, out)
    if args.json:
        info = expl.to_json()
        info["output"] = str(out) if out is not None else None
        info["size"] = list(picture.size) if picture is not None else None
        print(json.dumps(info, indent=2))
    else:
        s = expl.branch_scores
        print(
            f"{expl.score_name} {expl.score:.4f} (attention {s['attention']:.4f}, "
            f"global {s['global']:.4f}) -> {out}"
        )
    return 0
