"""``failscope demo``: the whole pipeline on the built-in world, offline."""

from __future__ import annotations

import argparse
import time
from typing import Any

from failscope.cli._tables import (
    add_threads_argument,
    new_table,
    print_line,
    results_console,
    text,
)

EPILOG = """\
examples:
  failscope demo --out runs/demo
  failscope demo --plant spurious:7:color=red:0.95 --plant rare:3:size=small:0.02 --seed 1
  failscope demo --list-attributes
  # clusters of where the audited model looks (Grad-CAM), with attribution mosaics
  failscope demo --slicer attribution --plant spurious:0:background=pink:0.95

plant grammar: KIND:CLASS:FAMILY=VALUE:RATE
  spurious:7:color=red:0.95    in train, 95% of 7s are red, and red is rare elsewhere
  rare:3:size=small:0.02       small 3s are 2% of the train 3s
  noisy:5:texture=dotted:0.7   70% of the dotted 5s carry a wrong label in train
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run everything on the built-in world (offline, ~2 minutes on 2 CPU cores)",
        description=(
            "Build a world of digit scenes with planted failure modes, train the model "
            "under audit on its biased train split, then discover, caption, evaluate, "
            "retrain and report, exactly as on your own data. Prints what was found "
            "beside the planted truth."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="runs/demo", metavar="RUN",
                   help="run directory (default: runs/demo)")  # fmt: skip
    p.add_argument("--plant", action="append", metavar="SPEC",
                   help="a planted failure mode (repeatable); default: two built-ins")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of everything (default: 0)")
    p.add_argument("--list-attributes", action="store_true",
                   help="print the attribute families and their values, then exit")  # fmt: skip
    p.add_argument(
        "--slicer",
        metavar="SPEC",
        help="slicer for discover, NAME[:key=value,...] (default: discover's; 'attribution' "
        "clusters where the audited model looks, with Grad-CAM on the CNN)",
    )
    p.add_argument("--no-captions", action="store_true", help="skip captions")
    p.add_argument("--no-retrain", action="store_true", help="skip slice-aware retraining")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="audited-model cache (default: $FAILSCOPE_CACHE or ~/.cache/failscope)",
    )
    add_threads_argument(p)
    # A smaller world (TRAIN,VAL,TEST images), for tests and quick looks; not a user knob.
    p.add_argument("--sizes", type=_sizes, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _sizes(value: str) -> dict[str, int]:
    try:
        train, val, test = (int(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TRAIN,VAL,TEST counts, got {value!r}") from None
    return {"train": train, "val": val, "test": test}


def _print_attributes() -> None:
    from failscope.world import DEFAULT_PLANTS, FAMILIES

    table = new_table("World attribute families")
    text(table, "family")
    text(table, "values", ratio=1)
    for family, values in FAMILIES.items():
        table.add_row(family, ", ".join(values))
    console = results_console()
    console.print(table)
    console.print("default plants: " + "  ".join(DEFAULT_PLANTS))


def run(args: argparse.Namespace) -> int:
    """Run the demo with progress on stderr, then print the results on stdout."""
    if args.list_attributes:
        _print_attributes()
        return 0
    from contextlib import nullcontext

    from failscope._threads import torch_threads
    from failscope.cli._progress import StageBars
    from failscope.cli.discover import print_summary
    from failscope.cli.evaluate import print_evaluation
    from failscope.demo import run_demo

    start = time.perf_counter()
    threads = nullcontext() if args.threads is None else torch_threads(args.threads)
    with StageBars() as bars, threads:
        result = run_demo(
            out=args.out, plants=args.plant, seed=args.seed,
            captions=not args.no_captions, retrain=not args.no_retrain,
            report=not args.no_report, cache_dir=args.cache_dir, sizes=args.sizes,
            threads=args.threads, slicer=args.slicer, progress=bars.update,
            on_stage=lambda name: bars.stage(name, announce=False),
        )  # fmt: skip
    run_dir = result["run"]
    console = results_console()
    print_summary(run_dir, console=console)
    if any(s.captions for s in run_dir.slices):
        from failscope.caption.display import caption_table

        console.print(caption_table(run_dir.slices))
    print_evaluation(result["evaluation"], console=console)
    if result["retrain"] is not None:
        from failscope.cli.retrain import print_metrics

        print_metrics(result["retrain"], console=console)
    elapsed = time.perf_counter() - start
    print_line(console, f"\nrun directory: {run_dir.path}   ({elapsed:.0f} s)")
    if result["report"] is not None:
        print_line(console, f"report: {result['report']}")
    return 0
