"""``failscope select RUN --pool DATA --per-slice N``: which pool images to label next."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  failscope select runs/demo --pool unlabelled/ --per-slice 75
  failscope select runs/demo --pool pool.csv --per-slice 50 --slice 3/0 --out to_label.csv
  failscope select runs/mine --pool unlabelled/ --per-slice 100 --class-filter none

Without --slice, the slices annotated core (failscope review) are used. The manifest
lists, per slice, the N pool images that lie furthest along the slice's failure
direction (or score highest for the slice); fill in its label column and add the
images to your training data.
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "select",
        help="pick the unlabelled pool images to label for each core slice",
        description=(
            "Embed a pool of unlabelled images with the run's CLIP, score each image for "
            "every core slice with the run's fitted slicer (alignment with the slice's "
            "failure direction), and write the best N per slice as a manifest to label "
            "(default RUN/selection.csv). Unreadable pool images are skipped and listed."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    p.add_argument(
        "--pool", required=True, metavar="DATA",
        help="folder of unlabelled images, or a .csv/.parquet manifest with a path column",
    )  # fmt: skip
    p.add_argument("--per-slice", type=int, required=True, metavar="N", help="images per slice")
    p.add_argument(
        "--slice", action="append", metavar="ID", help="slice id (repeatable; default: core)"
    )
    p.add_argument(
        "--class-filter",
        choices=("model", "none"),
        default="model",
        help="draw a slice's images only from those whose --top-k classes under the audited "
        "model include the slice's class (model, default), or from the whole pool (none)",
    )
    p.add_argument("--top-k", type=int, default=3, help="classes of the class filter (default 3)")
    p.add_argument("--out", metavar="FILE", help="manifest to write (default RUN/selection.csv)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from failscope.cli._progress import StageBars
    from failscope.cli._tables import print_line, results_console
    from failscope.retrain.select import select_pool

    with StageBars() as bars:
        bars.stage("selecting")
        sel = select_pool(
            args.run, args.pool, per_slice=args.per_slice, slices=args.slice,
            top_k=args.top_k, class_filter=args.class_filter, out=args.out,
        )  # fmt: skip
    console = results_console()
    for sid, n in sel.n_candidates.items():
        picked = int((sel.frame["slice_id"] == sid).sum())
        print_line(console, f"slice {sid}: {picked} of {n} candidate pool images")
    if sel.skipped:
        first = sel.skipped[0]
        print_line(
            console,
            f"skipped {len(sel.skipped)} unreadable pool images (first: "
            f"{first['path']}: {first['reason']})",
        )
    print(sel.out)
    return 0
