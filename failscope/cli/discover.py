"""``failscope discover``: find each class's failure direction and slice."""

from __future__ import annotations

import argparse
from collections import Counter
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
  # a TorchScript classifier on an ImageFolder tree (ROOT/train/<class>/, ROOT/val/<class>/)
  failscope discover --data images/ --model model.pt --out runs/audit

  # a torchvision architecture with a state_dict, on a CSV manifest (path,label,split,...)
  failscope discover --data data.csv --model torchvision:resnet50 --checkpoint ck.pt \\
      --out runs/audit

  # your own factory function (my_models.py in the working directory)
  failscope discover --data data.csv --model my_models:build --checkpoint ck.pt --out runs/a

  # no model at hand: its predictions (labels, or prob_* columns) plus precomputed embeddings
  failscope discover --data data.csv --predictions preds.csv --embeddings emb.npy --out runs/a

  # clusters of where the model looks (Grad-CAM on its last conv layer, through Captum)
  failscope discover --data data.csv --model torchvision:resnet50 --checkpoint ck.pt \\
      --slicer attribution --out runs/attr

  # another CLIP: an open_clip tag, a hub model, a local weights file, or the world CLIP
  failscope discover ... --clip ViT-L-14 --clip-pretrained datacomp_xl_s13b_b90k
  failscope discover ... --clip hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K
  failscope discover ... --clip ViT-B-32 --clip-checkpoint open_clip_pytorch_model.bin
  failscope discover ... --clip world

notes:
  Data without splits is one fitting split named 'val' unless --split-by random:F or
  column:NAME. Unreadable images are skipped and listed in RUN/run.json. Embeddings are
  cached in RUN/cache (or --cache-dir): a re-run, or a run restarted after a crash,
  computes only what is missing. CLIP weights missing from the local cache are
  downloaded by open_clip on first use, unless --offline or HF_HUB_OFFLINE=1.
  Slicers: --slicer directions (default; one failure direction per class) or
  NAME:key=value,... (see failscope.list_slicers()). --slicer attribution clusters
  attribution-weighted features; TorchScript models cannot be hooked, so they get
  saliency maps instead of Grad-CAM (run.json says so).
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``failscope discover``; its options come from ``DiscoverConfig``."""
    from failscope.cli._config import add_config_arguments
    from failscope.run.config import DiscoverConfig

    p = subparsers.add_parser(
        "discover",
        help="find where a classifier fails: failure slices per class",
        description=(
            "Run the audited model and CLIP over a dataset, fit a slicer on the fitting split\n"
            "(by default one failure direction per class), flag each class's failure slices,\n"
            "and write the run directory (run.json, examples.parquet, slices.json, ...)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    add_config_arguments(p, DiscoverConfig)
    add_json_argument(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run discovery with a progress bar per stage, then print the per-slice summary."""
    from failscope.cli._config import config_from_args
    from failscope.cli._progress import StageBars
    from failscope.pipeline import discover
    from failscope.run.config import DiscoverConfig

    config = config_from_args(DiscoverConfig, args)
    with StageBars() as bars:
        result = discover(config.data, out=args.out, config=config, progress=bars.update)
    if args.json:
        print_json(summary_json(result))
        return 0
    console = results_console()
    print_summary(result, console=console)
    if any(s.captions for s in result.slices):
        from failscope.caption.display import caption_table

        console.print(caption_table(result.slices))
    if (result.path / "report.html").is_file():
        print_line(console, f"report: {result.path / 'report.html'}")
    return 0


#: Slice entry fields copied into the ``--json`` summary.
JSON_SLICE_FIELDS = (
    "id", "class_index", "class_name", "rank", "status", "size", "n_errors_in",
    "error_rate_in", "error_rate_out",
)  # fmt: skip


def summary_json(run: Any) -> dict[str, Any]:
    """The ``--json`` summary of a run: where it is, its skipped inputs, its slices."""
    slices = []
    for s in run.slices:
        entry = {k: getattr(s, k) for k in JSON_SLICE_FIELDS}
        entry["p_value"] = s.support.p_value
        entry["top_caption"] = s.captions.failure[0].text if s.captions else None
        slices.append(entry)
    report = run.path / "report.html"
    return {
        "run": str(run.path),
        "report": str(report) if report.is_file() else None,
        "fit_split": run.fit_split,
        "skipped_inputs": len(run.skipped),
        "classes_skipped": [c.class_name for c in run.classes if c.status == "skipped"],
        "slices": slices,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(run: Any, *, max_rows: int = 40, console: Any = None) -> None:
    """Print the per-slice table (most severe first), the skipped inputs and where the run is."""
    console = console or results_console()
    slices = sorted(run.slices, key=lambda s: (s.status != "ok", -s.severity, s.id))
    shown = slices[:max_rows]
    table = new_table(
        f"failure slices on split {run.fit_split!r}",
        caption="n: examples in the slice; errors: the model's errors there (the severity); "
        "err in/out: error rate inside the slice and in the rest of its class; p: its "
        "significance test (weak: not below alpha)",
    )
    text(table, "slice", ratio=1)
    text(table, "class", ratio=1)
    for col in ("n", "errors", "err in", "err out", "p"):
        num(table, col)
    text(table, "note", ratio=1)
    for s in shown:
        p = s.support.p_value
        table.add_row(
            literal(s.id), literal(s.class_name), str(s.size), str(s.n_errors_in),
            _pct(s.error_rate_in), _pct(s.error_rate_out), "-" if p is None else f"{p:.2g}",
            literal("" if s.status == "ok" else "weak"),
        )  # fmt: skip
    console.print(table)
    if len(shown) < len(slices):
        print_line(console, f"({len(slices) - len(shown)} more slices in slices.json)")
    skipped_classes = [c for c in run.classes if c.status == "skipped"]
    if skipped_classes:
        first = skipped_classes[0]
        console.print(  # wrapped at the console's width, user strings literal
            literal(
                f"classes without a slice fit: {len(skipped_classes)} "
                f"(e.g. {first.class_name}: {first.reason})"
            )
        )
    skipped = run.skipped
    if skipped:
        reasons = Counter(s.reason.split(" (")[0] for s in skipped)
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        print_line(console, f"skipped inputs: {len(skipped)} ({detail}); listed in run.json")
    else:
        console.print("skipped inputs: 0")
    print_line(console, f"run written to {run.path}")
