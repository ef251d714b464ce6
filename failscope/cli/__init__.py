"""The ``failscope`` command.

Each subcommand lives in its own module of this package, exposing
``add_parser(subparsers)``, which registers a parser whose default ``func`` takes the
parsed arguments and returns an exit code. The modules import nothing heavy at
the top, so ``failscope --help`` is instant.

Exit codes: 0 success, 1 an internal failure (a bug: one line saying so; ``-v`` or
``FAILSCOPE_TRACEBACK=1`` shows the traceback) or a ``check`` that failed its bar,
2 bad input or an unusable file (one line naming it), 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from failscope import __version__

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = (
    "demo", "discover", "attribute", "caption", "evaluate", "check", "review", "retrain",
    "select", "report",
)  # fmt: skip
#: Set to 1 to print the traceback of an internal failure (as ``-v`` does).
TRACEBACK_ENV = "FAILSCOPE_TRACEBACK"
#: Longest error line printed; longer messages are cut with an ellipsis.
MAX_ERROR_CHARS = 500

_OS_HINTS = {
    errno.ENOSPC: "free some space and re-run",
    errno.EEXIST: "a file is in the way: give a folder that does not exist or is a folder",
    errno.ENOTDIR: "a file is in the way: give a folder that does not exist or is a folder",
    errno.EISDIR: "that is a folder: give a file name",
    errno.EACCES: "not writable: fix its permissions or choose another path",
    errno.EPERM: "not permitted: fix its permissions or choose another path",
    errno.EROFS: "read-only file system: choose another path",
}


def _add_log_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``-v``/``-q``, before the subcommand (``top``) or after it (never overriding it)."""
    unset = argparse.SUPPRESS
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if top else unset,
        help="more log output (-vv: debug); also prints the traceback of an internal failure",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else unset,
        help="only warnings and errors, no progress",
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="failscope",
        description="Find where an image classifier fails, name the failures, and fix them.",
    )
    parser.add_argument("--version", action="version", version=f"failscope {__version__}")
    _add_log_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"failscope.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"failscope.cli.{name}":
                raise
            continue
        module.add_parser(sub)
        _add_log_options(sub.choices[name], top=False)
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


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


def os_error_line(exc: OSError, *, context: str | None = None) -> str:
    """One line for a failed file operation: what failed, on which path, and what to do.

    ``context`` (e.g. the run directory) names the place when the error carries no path.
    """
    what = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename if exc.filename is not None else context
    line = f"{what}: {path}" if path is not None else what
    if exc.filename2 is not None:
        line += f" -> {exc.filename2}"
    hint = _OS_HINTS.get(exc.errno or -1)
    return f"{line} ({hint})" if hint else line


def _run_dir(args: argparse.Namespace) -> str | None:
    """The run directory a command writes (``--out`` of discover and demo, else RUN)."""
    place = args.out if args.command in ("discover", "demo") else getattr(args, "run", None)
    return None if place is None else str(place)


def _earlier_run(run_dir: str | None) -> str:
    """Whether a readable run is left in ``run_dir`` after a failed write, as a clause."""
    if run_dir is None:
        return ""
    from pathlib import Path

    from failscope.run import RUN_JSON, load_run

    if not (Path(run_dir) / RUN_JSON).is_file():
        return f"; no readable run is left in {run_dir}"
    try:
        load_run(run_dir)
    except Exception:
        return f"; no readable run is left in {run_dir}"
    return f"; the earlier run in {run_dir} is intact"


def _show_traceback(args: argparse.Namespace) -> bool:
    return args.verbose > 0 or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``failscope`` console script."""
    from failscope._validation import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    _setup_logging(args.verbose, args.quiet)
    prefix = f"failscope {args.command}"
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is cached and a re-run resumes", file=sys.stderr)
        return 130
    except OSError as exc:
        if _show_traceback(args):
            import traceback

            traceback.print_exc()
        run_dir = _run_dir(args)
        line = os_error_line(exc, context=run_dir)
        if exc.errno == errno.ENOSPC:
            line += _earlier_run(run_dir)
        print(f"{prefix}: error: {_one_line(line)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if _show_traceback(args):
            import traceback

            traceback.print_exc()
        detail = _one_line(f"{type(exc).__name__}: {exc}")
        print(
            f"{prefix}: internal error (a bug in failscope, please report it): {detail} "
            f"(re-run with -v or {TRACEBACK_ENV}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
