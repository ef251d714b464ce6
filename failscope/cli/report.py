"""``failscope report RUN``: write the self-contained HTML report of a run."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """\
examples:
  failscope report runs/audit                       # writes runs/audit/report.html
  failscope report runs/audit --out audit.html --split val
  failscope report runs/big --max-classes-expanded 20 --thumbs 9

The report is one file with no external resources: open it from disk, attach it to a
CI job, or mail it. Re-run after `failscope caption` or `failscope retrain` to show
their results.
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``failscope report``."""
    p = subparsers.add_parser(
        "report",
        help="write the self-contained HTML report of a run",
        description=(
            "Write RUN/report.html: every slice, most severe first (weak ones marked), and "
            "each class's slices with their captions, checks, mosaics and plots, in one file "
            "that opens from disk (images and plots are embedded). The plots are also saved "
            "under RUN/plots/; failscope replaces only files it wrote there."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="where to write the HTML (default RUN/report.html); an existing file is "
        "replaced only if failscope wrote it",
    )
    p.add_argument(
        "--max-classes-expanded",
        type=int,
        default=50,
        metavar="N",
        help="draw thumbnails and plots for the N most severe classes (default 50)",
    )
    p.add_argument(
        "--thumbs",
        type=int,
        default=16,
        metavar="N",
        dest="thumbs_per_mosaic",
        help="thumbnails per mosaic (default 16)",
    )
    p.add_argument(
        "--split",
        default="auto",
        help="split shown by mosaics and histograms: auto (test if present, else the "
        "fitting split), all, or a split name",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the report and print where it is."""
    from pathlib import Path

    from failscope._validation import fail
    from failscope.cli._progress import StageBars
    from failscope.report import build_report

    if args.out is not None and Path(args.out).is_dir():
        raise fail(
            f"--out {args.out} is a folder; give the report's file name, "
            f"e.g. --out {Path(args.out) / 'report.html'}"
        )
    with StageBars() as bars:
        bars.stage("building the report")
        out = build_report(
            args.run,
            out=args.out,
            max_classes_expanded=args.max_classes_expanded,
            thumbs_per_mosaic=args.thumbs_per_mosaic,
            split=args.split,
        )
    print(out)
    return 0
