"""Command-line interface: `imgfinder SUBCOMMAND ...`; the GUI is imported only for `gui`."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from imgfinder import __version__, paths
from imgfinder.cli import dupes_cmd, eval_cmd, explain_cmd, library_cmds, train_cmd
from imgfinder.core.modelspec import BACKBONES, DEFAULT_BACKBONE, OFFLINE_BACKBONE
from imgfinder.errors import ImgfinderError
from imgfinder.logsetup import setup_logging

log = logging.getLogger(__name__)

# Each module registers its subcommands with `register(subparsers, parent)`.
COMMAND_MODULES = [library_cmds, eval_cmd, explain_cmd, train_cmd, dupes_cmd]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="where the catalog, vectors, index and logs live "
        "(default: IMGFINDER_DATA_DIR or the platform's app-data dir)",
    )
    g.add_argument(
        "--backbone",
        default=argparse.SUPPRESS,
        choices=list(BACKBONES),
        help=f"network that makes the descriptors (default: IMGFINDER_BACKBONE, else "
        f"{DEFAULT_BACKBONE}; {OFFLINE_BACKBONE} needs no download). "
        "A different backbone is a different model: the library is indexed again",
    )
    g.add_argument(
        "--weights",
        default=argparse.SUPPRESS,
        help="local state dict of the backbone (default: IMGFINDER_WEIGHTS, else the "
        "backbone's ImageNet weights: ResNet50's downloaded into the data dir once, "
        "Lite0's from its installed package)",
    )
    g.add_argument("--head", default=argparse.SUPPRESS, help="trained ECA head file")
    g.add_argument(
        "--whiten",
        dest="whitening",
        default=argparse.SUPPRESS,
        help="PCA-whitening file from `imgfinder whiten` (applied before the index)",
    )
    g.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        choices=["auto", "cpu", "cuda", "mps"],
        help="inference device (default auto: CUDA, then MPS, then CPU)",
    )
    g.add_argument(
        "--input-size",
        type=int,
        default=argparse.SUPPRESS,
        help="model input size in pixels (default 224)",
    )
    g.add_argument(
        "--index",
        dest="index_backend",
        default=argparse.SUPPRESS,
        choices=["lsh", "annoy", "exact"],
        help="search index backend (default lsh)",
    )
    g.add_argument(
        "--offline",
        action="store_true",
        default=argparse.SUPPRESS,
        help="never download model weights",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="more log output on stderr (-vv for debug)",
    )

    parser = argparse.ArgumentParser(
        prog="imgfinder",
        parents=[common],
        description="Find similar photos and duplicates in your photo folders.",
    )
    parser.add_argument("--version", action="version", version=f"imgfinder {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gui = sub.add_parser("gui", parents=[common], help="launch the desktop app")
    gui.add_argument(
        "open",
        nargs="*",
        metavar="IMAGE",
        help="image files or URLs to search for on start (the .desktop entry's %%U)",
    )
    gui.set_defaults(func=_run_gui)
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return parser


DEFAULTS = {
    "data_dir": None,
    "backbone": None,
    "weights": None,
    "head": None,
    "whitening": None,
    "device": "auto",
    "input_size": 224,
    "index_backend": "lsh",
    "offline": False,
    "verbose": 0,
}


def _run_gui(args: argparse.Namespace) -> int:
    from imgfinder.gui.app import run_app  # noqa: PLC0415 (Qt only when asked for)

    return run_app(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    if args.data_dir:
        paths.set_data_dir(args.data_dir)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        setup_logging(args.verbose)
    except OSError as exc:
        print(f"imgfinder: cannot use data directory: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except ImgfinderError as exc:
        print(f"imgfinder: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("imgfinder: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
