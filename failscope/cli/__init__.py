"""The ``failscope`` command.

Each subcommand lives in its own module of this package, exposing
``add_parser(subparsers)``, which registers a parser whose default ``func`` takes the
parsed arguments and returns an exit code. The modules import nothing heavy at
the top, so ``failscope --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from failscope import __version__

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("demo", "discover", "caption", "evaluate", "retrain", "report")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="failscope",
        description="Find where an image classifier fails, name the failures, and fix them.",
    )
    parser.add_argument("--version", action="version", version=f"failscope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"failscope.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"failscope.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = RichHandler(
        console=Console(stderr=True), show_path=verbose > 1, show_time=False, markup=False
    )
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler])
    logging.getLogger("failscope").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``failscope`` console script."""
    from failscope._validation import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"failscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is cached and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
