"""``failscope check RUN``: pass or fail a run against stated bars, for CI."""

from __future__ import annotations

import argparse
from typing import Any

from failscope.cli._tables import add_json_argument, print_json, print_line, results_console

EPILOG = """\
examples:
  # fail the CI job if any slice has more than 30% errors, or the model more than 10%
  failscope check runs/audit --max-slice-error-rate 0.3 --max-error-rate 0.1

  # only slices of at least 50 examples count; weak slices count too
  failscope check runs/audit --max-slice-error-rate 0.25 --min-slice-size 50 --include-weak

  failscope check runs/audit --max-error-rate 0.05 --json

exit status:
  0  every bar is met
  1  a bar is not met (each failure is printed, one line each)
  2  bad input: no such run, a bar outside [0, 1], no bar given

The error rates are those of the fitting split, as in slices.json: a slice's error
rate is the audited model's error rate among its members. Slices whose direction is
not statistically supported (status "weak") and skipped classes do not count unless
--include-weak is given.
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``failscope check``."""
    p = sub.add_parser(
        "check",
        help="exit 1 if a run fails a bar (max slice error rate, max error rate); for CI",
        description=(
            "Read a run written by `failscope discover` and check the audited model "
            "against the bars given; print why it fails, and exit 1 if it does."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    p.add_argument(
        "--max-slice-error-rate",
        type=float,
        metavar="X",
        help="fail if any counted slice has an error rate above X (a fraction, e.g. 0.3)",
    )
    p.add_argument(
        "--max-error-rate",
        type=float,
        metavar="X",
        help="fail if the model's error rate on the fitting split is above X",
    )
    p.add_argument(
        "--min-slice-size",
        type=int,
        default=10,
        metavar="N",
        help="slices with fewer examples do not count (default 10)",
    )
    p.add_argument(
        "--include-weak",
        action="store_true",
        help="count weak (not statistically supported) slices too",
    )
    add_json_argument(p)
    p.set_defaults(func=run)
    return p


def _fit_error_rate(run: Any) -> tuple[float, int]:
    """The audited model's error rate over the fitting split's scored examples, and their count."""
    from failscope._validation import fail

    ex = run.examples
    rows = ex[ex["split"].astype(str) == run.fit_split]
    if not len(rows):
        raise fail(
            f"{run.path}/examples.parquet has no example of the fitting split {run.fit_split!r}"
        )
    return float(1.0 - rows["correct"].mean()), len(rows)


def _bar(value: float | None, flag: str) -> None:
    from failscope._validation import check_fraction

    if value is not None:
        check_fraction(value, name=flag, inclusive_low=True, inclusive_high=True)


def run(args: argparse.Namespace) -> int:
    """Check the bars; print one line per failure (or PASS); exit 0, 1 or 2."""
    from failscope._validation import check_int, fail
    from failscope.run import load_run

    if args.max_slice_error_rate is None and args.max_error_rate is None:
        raise fail("give at least one bar: --max-slice-error-rate X and/or --max-error-rate X")
    _bar(args.max_slice_error_rate, "--max-slice-error-rate")
    _bar(args.max_error_rate, "--max-error-rate")
    check_int(args.min_slice_size, name="--min-slice-size", low=1)
    run_dir = load_run(args.run)

    failures: list[str] = []
    checked: dict[str, Any] = {}
    if args.max_error_rate is not None:
        rate, n = _fit_error_rate(run_dir)
        checked["error_rate"] = {"value": rate, "n": n, "max": args.max_error_rate}
        if rate > args.max_error_rate:
            failures.append(
                f"error rate {100 * rate:.1f}% on {n} examples of the fitting split "
                f"> {100 * args.max_error_rate:.1f}%"
            )
    if args.max_slice_error_rate is not None:
        counted = [
            s
            for s in run_dir.slices
            if (s.status == "ok" or args.include_weak)
            and s.size >= args.min_slice_size
            and s.error_rate_in is not None
        ]
        checked["slices"] = {"counted": len(counted), "max": args.max_slice_error_rate}
        for s in sorted(counted, key=lambda s: -(s.error_rate_in or 0.0)):
            if s.error_rate_in > args.max_slice_error_rate:
                weak = " (weak)" if s.status == "weak" else ""
                failures.append(
                    f"slice {s.id}{weak} of class {s.class_name!r}: error rate "
                    f"{100 * s.error_rate_in:.1f}% in {s.size} examples "
                    f"> {100 * args.max_slice_error_rate:.1f}%"
                )
    if args.json:
        print_json({"run": str(run_dir.path), "passed": not failures, "failures": failures,
                    "checked": checked})  # fmt: skip
    else:
        console = results_console()
        for line in failures:
            print_line(console, f"FAIL {line}")
        if not failures:
            met = []
            if "error_rate" in checked:
                e = checked["error_rate"]
                met.append(f"error rate {100 * e['value']:.1f}% <= {100 * e['max']:.1f}%")
            if "slices" in checked:
                c = checked["slices"]
                met.append(f"{c['counted']} slice(s) counted, none above {100 * c['max']:.1f}%")
            print_line(console, f"PASS {run_dir.path}: " + "; ".join(met))
    return 1 if failures else 0
