"""``failscope evaluate RUN``: discovery against the planted truth."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score discovery against planted ground truth (world runs)",
        description=(
            "For each planted slice in RUN/truth.json, match it to the discovered slice of "
            "its class that ranks its members best (average precision of the slice's scores "
            "within that class), and report AP, precision@k, whether another plant matched "
            "the same slice, and whether the top-1/top-5 captions name the planted value. "
            "Writes RUN/evaluation.json."
        ),
    )
    p.add_argument("run", metavar="RUN", help="run directory with truth.json")
    p.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    p.set_defaults(func=run)


def print_evaluation(result: Any) -> None:
    """Print an :class:`~failscope.run.schema.Evaluation` as a rich table (CLI only)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    def fmt(v: Any, spec: str = ".2f") -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return format(v, spec)

    table = Table(title=f"Planted slices vs discovered ({result.split} split)")
    ks = [str(k) for k in result.ks]
    for col in ("planted slice", "matched", "members", "acc in/all", "AP",
                *(f"P@{k}" for k in ks), "top-1 caption", "top-5"):  # fmt: skip
        left = col in ("planted slice", "top-1 caption")
        table.add_column(col, justify="left" if left else "right", overflow="fold")
    for r in result.plants:
        end = "" if r.caption_end == "failure" else " (success end)"
        matched = r.matched_slice or "-"
        if r.distinct is False:
            matched += " (shared)"
        table.add_row(
            escape(r.plant),
            matched,
            f"{r.n_members}/{r.n_class}",
            f"{fmt(r.acc_in_slice)}/{fmt(r.acc_overall)}",
            fmt(r.average_precision),
            *(fmt(r.precision_at[k]) for k in ks),
            escape((r.top_captions[0] if r.top_captions else "-") + end),
            fmt(r.top5_hit),
        )
    console = Console()
    console.print(table)
    s = result.summary
    first_k = f", mean P@{ks[0]} {fmt(s[f'mean_precision_at_{ks[0]}'])}" if ks else ""
    console.print(
        f"mean AP {fmt(s['mean_average_precision'])}{first_k}, "
        f"top-1 caption hit {fmt(s['top1_caption_hit_rate'])}, "
        f"top-5 {fmt(s['top5_caption_hit_rate'])}, "
        f"distinct slices {fmt(s['distinct_rate'])}"
    )


def run(args: argparse.Namespace) -> int:
    from failscope.evaluate import evaluate_run
    from failscope.run import load_run

    result = evaluate_run(load_run(args.run), split=args.split)
    print_evaluation(result)
    return 0
