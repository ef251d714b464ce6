"""``failscope caption RUN``: (re-)name a run's failure directions with captions."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "caption",
        help="name each failure direction with ranked text captions",
        description=(
            "Rank candidate captions (templates x vocabulary) along each class's failure "
            "direction, check the top ones on held-out images, and write them to "
            "RUN/slices.json. Re-ranking reuses cached text embeddings and never "
            "re-embeds images."
        ),
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    p.add_argument(
        "--vocab",
        action="append",
        metavar="FILE|NAME",
        help=(
            "vocabulary: a .txt file (one phrase per line), a .yaml file of families, or a "
            "registered name ('general', 'world'); repeat to combine. Default: 'world' on "
            "world runs, else 'general'"
        ),
    )
    p.add_argument("--synonyms", metavar="FILE", help="YAML mapping class -> list of other names")
    p.add_argument(
        "--method",
        choices=("centroid", "classifier"),
        default=None,
        help="how captions are scored (default: centroid)",
    )
    p.add_argument("--top-k", type=int, default=5, help="captions kept per class (default 5)")
    p.add_argument(
        "--rerank",
        type=int,
        default=None,
        metavar="N",
        help=(
            "re-order each end's first N proposals by the audited model's accuracy on the "
            "class's validation images nearest each caption (default 5; 0 turns it off)"
        ),
    )
    p.add_argument(
        "--no-check",
        action="store_true",
        help="skip the caption check (accuracy on the images nearest each caption)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from failscope.caption.display import caption_table
    from failscope.caption.pipeline import caption_run
    from failscope.caption.rank import DEFAULT_METHOD, RERANK_TOP

    console = Console()
    method = args.method or DEFAULT_METHOD
    with console.status("ranking captions"):
        slices = caption_run(
            args.run,
            vocab=args.vocab,
            synonyms=args.synonyms,
            method=method,
            top_k=args.top_k,
            checks=not args.no_check,
            rerank=RERANK_TOP if args.rerank is None else args.rerank,
        )
    console.print(caption_table(slices, top=args.top_k, title=f"Failure captions ({method})"))
    return 0
