"""Result tables and the results console (stdout) shared by the subcommands.

Tables fit 80 columns: numbers never wrap (``num``), names and captions fold
(``text``), headers are short and legends go in the table caption. Every user
string (class names, captions, paths) enters a table as :func:`literal` text, and the
results console reads no markup, so ``[/bold]ant`` or ``:smile:`` prints as typed
instead of being read as rich markup or emoji.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def results_console() -> Any:
    """The console for results (stdout). It reads no markup or emoji codes in what it
    prints, so a line with a user string is printed as typed."""
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False)


def print_line(console: Any, line: str) -> None:
    """Print one line of our own words and user strings (paths) literally, never wrapped,
    so that a path stays whole for copying."""
    console.print(literal(line), soft_wrap=True)


def literal(value: Any) -> Any:
    """A user string as rich ``Text``: printed as typed, never parsed as markup."""
    from rich.text import Text

    return Text("-" if value is None else str(value))


def new_table(title: str | None = None, *, caption: str | None = None, lines: bool = False) -> Any:
    """A compact table (no vertical rules) with a left-aligned title and caption, as wide
    as the console, so that ``ratio`` columns share what the numbers leave."""
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_lines=lines,
        expand=True,
    )


def text(table: Any, header: str, **kwargs: Any) -> None:
    """A left-aligned column of names or captions; long values fold onto more lines."""
    table.add_column(header, overflow="fold", **kwargs)


def num(table: Any, header: str, **kwargs: Any) -> None:
    """A right-aligned column of numbers, never wrapped."""
    table.add_column(header, justify="right", no_wrap=True, **kwargs)


def print_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout (NaN as null, numpy scalars as numbers)."""
    from failscope.run._io import _json_default, _nan_to_none

    sys.stdout.write(json.dumps(_nan_to_none(data), default=_json_default, allow_nan=False))
    sys.stdout.write("\n")


def add_json_argument(parser: Any) -> None:
    """``--json``: one JSON summary on stdout instead of the tables."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON summary on stdout instead of the tables (logs stay on stderr)",
    )


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return n


#: ``--threads`` help of commands whose model and CLIP passes pick their own default.
PASSES_THREADS_HELP = (
    "torch threads (default: for the model and CLIP passes, half the usable cores less "
    "one per --num-workers, between 1 and 4)"
)


def add_threads_argument(parser: Any, *, help: str = PASSES_THREADS_HELP) -> None:
    """``--threads N``: torch intra-op threads (see :mod:`failscope._threads`)."""
    parser.add_argument("--threads", type=_positive_int, metavar="N", help=help)
