"""How big is the report, and how long does it take to build, for 10 and 1,000 classes?

Builds planted multi-mode runs with the real stages (the report tests' factory,
``tests/report/synthetic_run.make_run``: discover with a three-mode test slicer, so
classes have up to three slices, some of them weak; captions and caption checks;
evaluation; a few skipped classes; retraining with ``--retrain``), builds each
report with the default settings (mosaics and plots for the 50 most severe
classes, 16 thumbnails per mosaic) and prints its size, build time and what it
holds. The same report is built a second time to show the steady-state time (warm
imports, caches).

Usage::

    python benchmarks/report_size.py                     # 10 and 1,000 classes
    python benchmarks/report_size.py --classes 10 100 1000 --per-class 40 --retrain
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "report"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--per-class", type=int, default=40, help="examples per class")
    parser.add_argument("--expanded", type=int, default=50, help="max_classes_expanded")
    parser.add_argument("--thumbs", type=int, default=16, help="thumbs_per_mosaic")
    parser.add_argument("--retrain", action="store_true", help="also retrain (erm, sbl)")
    parser.add_argument("--keep", metavar="DIR", help="write the runs here and keep them")
    args = parser.parse_args()

    from synthetic_run import make_run

    from failscope.report import build_report

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="report-bench-"))
    rows = []
    for n in args.classes:
        t0 = time.perf_counter()
        run = make_run(
            root / f"run-{n}",
            n_classes=n,
            n_per_class=args.per_class,
            skipped_classes=range(0, n, 25),
            retrain=args.retrain,
            evaluation=True,
            n_images=64,
        )
        stages = time.perf_counter() - t0
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            out = build_report(
                run, max_classes_expanded=args.expanded, thumbs_per_mosaic=args.thumbs
            )
            times.append(time.perf_counter() - t0)
        text = out.read_text(encoding="utf-8")
        rows.append(
            {
                "classes": n,
                "examples": n * args.per_class,
                "slices": len(run.slices),
                "weak": sum(s.status == "weak" for s in run.slices),
                "size_mb": out.stat().st_size / 1e6,
                "stages_s": stages,
                "first_s": times[0],
                "second_s": times[1],
                "thumbs": text.count("<figure"),
                "plots": len(list((run.path / "plots").glob("*.png"))),
            }
        )

    head = (
        f"{'classes':>8} {'examples':>9} {'slices':>7} {'weak':>5} {'size MB':>8} "
        f"{'build s':>8} {'rebuild s':>9} {'thumbnails':>10} {'plots':>6} {'run s':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['classes']:>8,} {r['examples']:>9,} {r['slices']:>7,} {r['weak']:>5,} "
            f"{r['size_mb']:>8.2f} {r['first_s']:>8.1f} {r['second_s']:>9.1f} "
            f"{r['thumbs']:>10,} {r['plots']:>6} {r['stages_s']:>6.1f}"
        )
    print(
        f"(max_classes_expanded={args.expanded}, thumbs_per_mosaic={args.thumbs}; 'run s' is "
        f"discover + captions + evaluation{' + retrain' if args.retrain else ''}; runs in {root})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
