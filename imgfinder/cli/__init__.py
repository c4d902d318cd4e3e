"""Command-line interface: `imgfinder SUBCOMMAND ...`; the GUI is imported only for `gui`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from imgfinder import __version__, paths
from imgfinder.errors import ImgfinderError
from imgfinder.logsetup import setup_logging

log = logging.getLogger(__name__)

# Each module registers its subcommands with `register(subparsers, parent)`. Most of them
# import torch, which takes seconds: a command line that names one subcommand imports only
# its module (so `status` and a no-change `index` start fast); --help imports them all.
COMMAND_MODULES = ["library_cmds", "eval_cmd", "explain_cmd", "train_cmd", "dupes_cmd"]
MODULE_OF = {
    "index": "library_cmds",
    "search": "library_cmds",
    "status": "library_cmds",
    "roots": "library_cmds",
    "eval": "eval_cmd",
    "explain": "explain_cmd",
    "train": "train_cmd",
    "whiten": "train_cmd",
    "dupes": "dupes_cmd",
    "gui": None,
}
# global options that take a value (so the token after them is no subcommand)
VALUE_OPTIONS = {"--data-dir", "--weights", "--head", "--whiten", "--device", "--input-size"}
VALUE_OPTIONS |= {"--index"}


def command_of(argv: Sequence[str]) -> str | None:
    """The subcommand an argument list names (None: none, or --help/--version first)."""
    skip = False
    for tok in argv:
        if skip:
            skip = False
            continue
        if tok in ("-h", "--help", "--version"):
            return None
        if tok.startswith("-"):
            skip = tok in VALUE_OPTIONS  # "--data-dir DIR"; "--data-dir=DIR" is one token
            continue
        return tok if tok in MODULE_OF else None
    return None


def _modules(argv: Sequence[str] | None) -> list:
    cmd = command_of(argv)
    names = COMMAND_MODULES if cmd is None else [m for m in (MODULE_OF[cmd],) if m]
    return [importlib.import_module(f"imgfinder.cli.{name}") for name in names]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser: every subcommand, or for an `argv` naming one only that one (so its module
    alone is imported)."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="where the catalog, vectors, index and logs live "
        "(default: IMGFINDER_DATA_DIR or the platform's app-data dir)",
    )
    g.add_argument(
        "--weights",
        default=argparse.SUPPRESS,
        help="local ResNet50 state dict (default: IMGFINDER_WEIGHTS, else torchvision's "
        "IMAGENET1K_V1 downloaded into the data dir)",
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
    modules = (
        [importlib.import_module(f"imgfinder.cli.{m}") for m in COMMAND_MODULES]
        if argv is None
        else _modules(argv)
    )
    for module in modules:
        module.register(sub, common)
    return parser


DEFAULTS = {
    "data_dir": None,
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
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
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
