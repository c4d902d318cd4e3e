"""--rerank and its knobs, shared by `imgfinder search` and `imgfinder eval` (no torch)."""

from __future__ import annotations

import argparse

from imgfinder.errors import ImgfinderError

# search's default re-ranking: none. DBA + αQE beat plain search on both halves of the flowers
# and on the instance set (benchmarks/rerank.py), but a re-ranked list is no longer in
# decreasing score order, which search's output promises (README: "Re-ranking")
DEFAULT_RERANK = "none"


def add_rerank_options(p: argparse.ArgumentParser, default: str = "none") -> None:
    """--rerank and its knobs, for `eval` (default none: the index alone) and `search`."""
    p.add_argument(
        "--rerank",
        default=default,
        metavar="METHODS",
        help=f"re-rank the top results (default {default}): none, aqe (query expansion), dba+aqe "
        "(neighbourhood averaging + query expansion), diffusion (on the k-NN graph; its "
        "offline part is built over the whole library, in memory, at the first search), "
        "verify (SIFT + RANSAC local verification: same object or scene); combine with "
        "commas, e.g. dba+aqe,verify",
    )
    p.add_argument(
        "--rerank-k",
        type=int,
        default=100,
        metavar="N",
        help="how many of the first results αQE / DBA re-rank (default 100)",
    )
    p.add_argument(
        "--verify-k",
        type=int,
        default=20,
        metavar="N",
        help="how many of the first results local verification checks (default 20)",
    )


def rerank_options(args: argparse.Namespace):
    """The RerankOptions the command line asks for (ImgfinderError on a bad value)."""
    from imgfinder.core.rerank import RerankOptions, parse_methods  # noqa: PLC0415

    try:
        methods = parse_methods(getattr(args, "rerank", None))
    except ValueError as exc:
        raise ImgfinderError(str(exc)) from None
    k, vk = getattr(args, "rerank_k", 100), getattr(args, "verify_k", 20)
    if k < 1 or vk < 1:
        raise ImgfinderError("--rerank-k and --verify-k must be at least 1")
    return RerankOptions(methods=methods, shortlist=k, verify_k=vk)
