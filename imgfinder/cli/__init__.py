"""Command-line interface: `imgfinder SUBCOMMAND ...`; the GUI is imported only for `gui`."""

from __future__ import annotations

import argparse
import codecs
import errno
import importlib
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence

from imgfinder import __version__, paths
from imgfinder.config import DEFAULTS, DEVICES, INDEX_BACKENDS  # noqa: F401 (DEFAULTS re-exported)
from imgfinder.core.memtune import tune_allocator
from imgfinder.core.modelspec import BACKBONES, DEFAULT_BACKBONE, OFFLINE_BACKBONE
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
VALUE_OPTIONS = {
    "--data-dir", "--backbone", "--weights", "--head", "--whiten", "--device", "--attention",
    "--pooling",
}  # fmt: skip
VALUE_OPTIONS |= {"--input-size"}
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
        "--backbone",
        default=argparse.SUPPRESS,
        choices=list(BACKBONES),
        help=f"network that makes the descriptors (default: IMGFINDER_BACKBONE, else the "
        f"one the library's photos were indexed with, else {DEFAULT_BACKBONE}; "
        f"{OFFLINE_BACKBONE} needs no download). "
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
        "--attention",
        default=argparse.SUPPRESS,
        choices=["eca", "cbam"],
        help="attention head of the first branch: eca (default, the fused-ECA paper's) or "
        "cbam (channel + 7x7 spatial attention); a different head is a different model",
    )
    g.add_argument(
        "--pooling",
        default=argparse.SUPPRESS,
        choices=["max", "gem"],
        help="pooling of the second branch: max (default) or gem (GeM, p = 3 untrained, "
        "learnt by `imgfinder train`); a different pooling is a different model",
    )
    g.add_argument(
        "--whiten",
        dest="whitening",
        default=argparse.SUPPRESS,
        help="PCA-whitening file from `imgfinder whiten` (applied before the index)",
    )
    g.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        choices=list(DEVICES),
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
        choices=list(INDEX_BACKENDS),
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


def _run_gui(args: argparse.Namespace) -> int:
    from imgfinder.gui.app import run_app  # noqa: PLC0415 (Qt only when asked for)

    return run_app(args)


def _display_surrogates(exc: UnicodeError):
    """Codec error handler: a file name's undecodable byte 0xNN (a surrogate escape) as \\xNN."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for ch in exc.object[exc.start : exc.end]:
        c = ord(ch)
        out.append(f"\\x{c - 0xDC00:02x}" if 0xDC80 <= c <= 0xDCFF else f"\\u{c:04x}")
    return "".join(out), exc.end


codecs.register_error("imgfinder-display", _display_surrogates)


def _setup_streams() -> None:
    """File names that are not UTF-8 never crash a print: on a terminal their odd bytes show
    as \\xNN; into a pipe or file the original bytes are written (like `find`), so scripts
    get the real name back."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue
        try:
            tty = stream.isatty()
        except (OSError, ValueError):
            tty = False
        errors = "imgfinder-display" if tty or stream is sys.stderr else "surrogateescape"
        try:
            reconfigure(errors=errors)
        except (OSError, ValueError):
            pass


def write_error_message(exc: BaseException) -> str | None:
    """One line for an OS or SQLite write/read failure (disk full, read-only, I/O), or None."""
    if isinstance(exc, sqlite3.Error):
        text = str(exc)
        if "full" in text:
            return (
                "disk full: the catalog could not be written; nothing was lost (free some "
                "space and run the command again)"
            )
        return f"catalog error: {text}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return (
                f"disk full: cannot write{where}; nothing was lost (free some space and run "
                "the command again)"
            )
        if exc.errno == errno.EROFS:
            return f"read-only file system: cannot write{where}"
        return f"{exc.strerror or exc}{where}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    _setup_streams()
    tune_allocator()  # numpy's big temporaries reuse memory (core/memtune.py)
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
    if args.backbone is None and args.command != "gui":  # the app keeps its own settings
        from imgfinder.cli.fast import library_backbone  # noqa: PLC0415

        args.backbone = library_backbone(args)
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
    except (OSError, sqlite3.Error) as exc:  # disk full, read-only, I/O error: one line
        log.debug("write failure", exc_info=True)
        print(f"imgfinder: error: {write_error_message(exc)}", file=sys.stderr)
        return 4
