"""``failscope attribute RUN``: add where the audited model looks to an existing run."""

from __future__ import annotations

import argparse
from typing import Any

from failscope.cli._tables import (
    add_json_argument,
    literal,
    new_table,
    num,
    print_json,
    print_line,
    results_console,
    text,
)

EPILOG = """\
examples:
  failscope attribute runs/audit                  # Grad-CAM, or saliency for TorchScript
  failscope attribute runs/audit --attribution-layer layer4.2.conv3
  failscope attribute runs/audit --attribution-method integrated_gradients --device cuda

notes:
  The images are re-read from the run's dataset and the audited model is re-loaded
  from run.json (its file hashes are checked); the embeddings are not recomputed.
  Attributions are cached in RUN/cache like the embeddings: a re-run, or a run
  restarted after a crash, computes only what is missing. Every slice gets
  attribution-focus metrics and a mosaic, RUN/plots/mosaic-<slice>.png; re-run
  `failscope report RUN` to show them. A run made from a predictions file has no
  model to attribute: the command says so and exits 0.
  To find slices from attributions, run discover with --slicer attribution.
"""

#: DiscoverConfig fields this command takes (same flags and help as discover's).
OPTIONS = ("attribution_method", "attribution_layer", "batch_size", "num_workers", "device",
           "threads")  # fmt: skip
#: Slice metrics shown in the table: column title -> metrics key.
SHOWN = {
    "conf": "confidence",
    "focus": "attr_concentration",
    "off centre": "attr_outside_centre",
    "off class": "attr_outside_class_region",
    "backgr.": "attr_background",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``failscope attribute``."""
    from failscope.cli._config import add_config_arguments
    from failscope.run.config import DiscoverConfig

    p = subparsers.add_parser(
        "attribute",
        help="add attributions (where the model looks), focus metrics and mosaics to a run",
        description=(
            "Attribute the audited model's predicted class for every scored image (Grad-CAM\n"
            "on its last conv layer through Captum, or a gradient method where Grad-CAM\n"
            "cannot hook the model), record the maps in run.json, add attribution-focus\n"
            "metrics to every slice and write its attribution mosaic."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    add_config_arguments(p, DiscoverConfig, only=OPTIONS)
    add_json_argument(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Attribute, then print the method and each slice's focus metrics."""
    from failscope.attribute import attribute_run, unavailable_reason
    from failscope.cli._progress import StageBars
    from failscope.run import load_run

    run_dir = load_run(args.run)
    reason = unavailable_reason(run_dir)
    if reason is not None:
        if args.json:
            print_json({"run": str(run_dir.path), "attributions": None, "reason": reason})
        else:
            print_line(results_console(), reason)
        return 0
    with StageBars() as bars:
        attr = attribute_run(
            run_dir, method=args.attribution_method, layer=args.attribution_layer,
            batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
            threads=args.threads, progress=lambda done, total: bars.update("attribute", done,
                                                                          total),
        )  # fmt: skip
    if args.json:
        print_json(summary_json(run_dir, attr))
        return 0
    console = results_console()
    info = attr.info
    why = f" ({info.fallback_reason})" if info.fallback_reason else ""
    layer = f" on layer {info.layer}" if info.layer else ""
    grid = "x".join(map(str, info.grid))
    print_line(console, f"attributions: {info.method}{layer}{why}; {grid} maps of "
                        f"{attr.maps.shape[0]} examples; features: "
                        f"{', '.join(attr.feature_kinds) or 'none'}")  # fmt: skip
    print_slices(run_dir, console=console)
    print_line(console, f"mosaics: {run_dir.path / 'plots'}/mosaic-<slice>.png")
    return 0


def summary_json(run: Any, attr: Any) -> dict[str, Any]:
    """The ``--json`` summary: the attribution record and each slice's metrics."""
    return {
        "run": str(run.path),
        "attributions": attr.info.to_json(),
        "slices": [{"id": s.id, "metrics": dict(s.metrics)} for s in run.slices],
    }


def print_slices(run: Any, *, console: Any) -> None:
    """One row per slice: size, errors and the attribution metrics present."""
    cols = {t: k for t, k in SHOWN.items() if any(k in s.metrics for s in run.slices)}
    table = new_table(
        f"where the model looks, split {run.fit_split!r}",
        caption="slice/its class's correct examples. conf: mean confidence; focus: "
        "concentration of attribution (0 spread, 1 one cell); off centre / off class: share "
        "outside the image centre / the region the class's correct examples attend to; "
        "backgr.: share off the glyph (world runs)",
    )
    text(table, "slice", ratio=1)
    for col in ("n", "errors", *cols):
        num(table, col)
    for s in run.slices:
        cells = [_pair(s.metrics.get(k), s.metrics.get(f"{k}_correct")) for k in cols.values()]
        table.add_row(literal(s.id), str(s.size), str(s.n_errors_in), *cells)
    console.print(table)


def _pair(value: float | None, correct: float | None) -> str:
    """``"0.52/0.41"``: the slice's value and its class's correct examples' (if known)."""
    shown = "-" if value is None else f"{value:.2f}"
    return shown if correct is None else f"{shown}/{correct:.2f}"
