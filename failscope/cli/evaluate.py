"""``failscope evaluate RUN``: discovery against the planted truth."""

from __future__ import annotations

import argparse
from typing import Any

from failscope.cli._tables import (
    add_json_argument,
    literal,
    new_table,
    num,
    print_json,
    results_console,
    text,
)

EPILOG = """\
examples:
  failscope evaluate runs/demo
  failscope evaluate runs/demo --split val
  failscope evaluate runs/demo --json | python -m json.tool

RUN/truth.json lists the planted slices; `failscope demo` writes it for the built-in
world. A run of your own data has no planted truth: use `failscope check` to gate it.
"""


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
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory with truth.json")
    p.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    add_json_argument(p)
    p.set_defaults(func=run)


def print_evaluation(result: Any, *, console: Any = None) -> None:
    """Print an :class:`~failscope.run.schema.Evaluation` as a table that fits 80 columns."""

    def fmt(v: Any, spec: str = ".2f") -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return format(v, spec)

    ks = [str(k) for k in result.ks]
    table = new_table(
        f"Planted slices vs discovered ({result.split} split)",
        caption="slice: the best-matching discovered slice (* shared with another plant); "
        "n: planted members/class size; acc: model accuracy in the planted slice/overall; "
        "AP, P@k: the slice's ranking of the members within the class; top-5: a top-5 "
        "caption names the planted value",
    )
    text(table, "planted slice", ratio=1)
    num(table, "slice")
    for col in ("n", "acc", "AP", *(f"P@{k}" for k in ks)):
        num(table, col)
    text(table, "top-1 caption", ratio=2)
    num(table, "top-5")
    for r in result.plants:
        end = "" if r.caption_end == "failure" else " (success end)"
        matched = (r.matched_slice or "-") + ("*" if r.distinct is False else "")
        table.add_row(
            literal(r.plant),
            literal(matched),
            f"{r.n_members}/{r.n_class}",
            f"{fmt(r.acc_in_slice)}/{fmt(r.acc_overall)}",
            fmt(r.average_precision),
            *(fmt(r.precision_at[k]) for k in ks),
            literal((r.top_captions[0] if r.top_captions else "-") + end),
            fmt(r.top5_hit),
        )
    console = console or results_console()
    console.print(table)
    s = result.summary
    first_k = f", mean P@{ks[0]} {fmt(s[f'mean_precision_at_{ks[0]}'])}" if ks else ""
    console.print(
        f"mean AP {fmt(s['mean_average_precision'])}{first_k}, "
        f"top-1 caption hit {fmt(s['top1_caption_hit_rate'])}, "
        f"top-5 {fmt(s['top5_caption_hit_rate'])}, "
        f"distinct slices {fmt(s['distinct_rate'])}",
        markup=False,
    )


def run(args: argparse.Namespace) -> int:
    from failscope.evaluate import evaluate_run
    from failscope.run import load_run

    result = evaluate_run(load_run(args.run), split=args.split)
    if args.json:
        print_json(result.to_json())
    else:
        print_evaluation(result)
    return 0
