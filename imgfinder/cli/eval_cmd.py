"""`imgfinder eval DATASET_DIR`: retrieval quality and speed on a folder-per-class set."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from imgfinder.cli.common import ProgressBar, model_config
from imgfinder.cli.rerank_opts import add_rerank_options, rerank_options
from imgfinder.core.evaluate import dataset_labels, evaluate_vectors, first_of_each
from imgfinder.core.library import Library, run
from imgfinder.errors import ImgfinderError


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "eval", parents=[common], help="measure retrieval quality on a folder-per-class dataset"
    )
    p.add_argument("dataset", help="folder with one sub-folder of images per class")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--queries",
        choices=["all", "first"],
        default="all",
        help="all: every image queries the others (class-level sets, the default); first: "
        "the first image (by name) of each folder queries the rest (one folder per object "
        "or scene: instance-level sets)",
    )
    add_rerank_options(p)
    p.set_defaults(func=cmd_eval)


def evaluate_dataset(args: argparse.Namespace, dataset: Path, data_dir: Path) -> dict:
    lib = Library(
        data_dir,
        model_config(args),
        index_backend=args.index_backend,
        allow_download=not args.offline,
    )
    bar = ProgressBar()
    try:
        summary = run(lib.index([dataset]), bar)
        bar.close()
        pairs = lib.catalog.vector_rows(lib.model_id)
        rows = lib.catalog.images(i for i, _ in pairs)
        inside = [(i, r) for i, r in pairs if Path(rows[i].path).is_relative_to(dataset)]
        if len(inside) < 2:
            raise ImgfinderError(f"{dataset} has fewer than two readable images")
        ids = np.asarray([i for i, _ in inside], dtype=np.int64)
        vectors = lib.store().get(np.asarray([r for _, r in inside])).astype(np.float32)
        labels = dataset_labels(dataset, [rows[i].path for i in ids.tolist()])
        if len(set(labels)) < 2:
            raise ImgfinderError(f"{dataset} needs at least two class sub-folders")
        index = lib.load_index()  # also settles the space it searches (centred or not)
        space = lib.index_space(vectors)
        paths = [rows[i].path for i in ids.tolist()]
        queries = first_of_each(labels, paths) if args.queries == "first" else None
        reranker, extra = eval_reranker(rerank_options(args), index, ids, space, paths)
        report = evaluate_vectors(
            ids, space, labels, index, queries=queries, reranker=reranker, paths=paths
        )
        out = report.as_dict()
        out.update(extra)
        out["skipped"] = len(summary.skipped)
        out["model_id"] = lib.model_id
        out["weights"] = lib.extractor.weights_source
        return out
    finally:
        lib.close()


def eval_reranker(options, index, ids: np.ndarray, space: np.ndarray, paths: list[str]):
    """(Reranker or None, facts for the report) over the evaluated vectors."""
    import time  # noqa: PLC0415

    from imgfinder.core.rerank import Diffusion, Reranker  # noqa: PLC0415

    extra = {"rerank": ",".join(options.methods) or "none"}
    if not options.active:
        return None, extra
    pos = {int(i): p for p, i in enumerate(ids.tolist())}
    diffusion = None
    if "diffusion" in options.methods:
        t = time.perf_counter()
        diffusion = Diffusion(ids, space)
        extra["diffusion_offline_s"] = time.perf_counter() - t
        extra["diffusion_mb"] = diffusion.nbytes / 1e6
    reranker = Reranker(
        options,
        index.query,
        lambda got: space[[pos[int(i)] for i in got]],
        path_of=lambda got: [paths[pos[int(i)]] for i in got],
        diffusion=diffusion,
    )
    return reranker, extra


def cmd_eval(args: argparse.Namespace) -> int:
    dataset = Path(args.dataset).expanduser().resolve()
    if not dataset.is_dir():
        raise ImgfinderError(f"no such dataset folder: {dataset}")
    if args.data_dir:
        out = evaluate_dataset(args, dataset, Path(args.data_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="imgfinder-eval-") as tmp:
            out = evaluate_dataset(args, dataset, Path(tmp))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{out['images']} images, {out['classes']} classes, {out['queries']} queries, "
        f"index {out['index']}, re-ranking {out['rerank']}"
    )
    print(f"mAP {out['map']:.4f} (exact {out['exact_map']:.4f}, ratio {out['map_ratio']:.3f})")
    print("n      P@n     R@n     MAP@n(paper, query excl/incl)")
    for n in out["precision_at"]:
        print(
            f"{n:<6} {out['precision_at'][n]:.4f}  {out['recall_at'][n]:.4f}  "
            f"{out['paper_map_at']['excluded'][n]:.4f} / {out['paper_map_at']['included'][n]:.4f}"
        )
    print(
        f"query ms: median {out['query_ms_median']:.2f}, p95 {out['query_ms_p95']:.2f}; "
        f"index recall@10 vs exact {out['index_recall_at_10']:.3f}"
    )
    return 0
