"""``failscope discover``: find each class's failure direction and slice."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

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

  # another CLIP: a cached open_clip tag, a local weights file, or the built-in world CLIP
  failscope discover ... --clip ViT-L-14 --clip-pretrained datacomp_xl_s13b_b90k
  failscope discover ... --clip ViT-B-32 --clip-checkpoint open_clip_pytorch_model.bin
  failscope discover ... --clip world

notes:
  Data without splits is one fitting split named 'val' unless --split-by random:F or
  column:NAME. Unreadable images are skipped and listed in RUN/run.json. Embeddings are
  cached in RUN/cache (or --cache-dir): a re-run, or a run restarted after a crash,
  computes only what is missing. failscope never downloads weights.
  Slicers: --slicer directions (default; one failure direction per class) or
  NAME:key=value,... (see failscope.list_slicers()).
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
    print_summary(result)
    if any(s.captions for s in result.slices):
        from rich.console import Console

        from failscope.caption.display import caption_table

        Console().print(caption_table(result.slices))
    if (result.path / "report.html").is_file():
        print(f"report: {result.path / 'report.html'}")
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(run: Any, *, max_rows: int = 40, console: Any = None) -> None:
    """Print the per-slice table (most severe first), the skipped inputs and where the run is."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    slices = sorted(run.slices, key=lambda s: (s.status != "ok", -s.severity, s.id))
    shown = slices[:max_rows]
    table = Table(title=f"failure slices on split {run.fit_split!r}", title_justify="left")
    for col, justify in (
        ("slice", "left"), ("class", "left"), ("size", "right"), ("errors", "right"),
        ("slice err", "right"), ("rest err", "right"), ("p", "right"), ("note", "left"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)
    for s in shown:
        p = s.support.p_value
        table.add_row(
            s.id, s.class_name, str(s.size), str(s.n_errors_in), _pct(s.error_rate_in),
            _pct(s.error_rate_out), "-" if p is None else f"{p:.3g}",
            "" if s.status == "ok" else "weak: not significant",
        )  # fmt: skip
    console.print(table)
    if len(shown) < len(slices):
        console.print(f"({len(slices) - len(shown)} more slices in slices.json)")
    skipped_classes = [c for c in run.classes if c.status == "skipped"]
    if skipped_classes:
        console.print(
            f"classes without a slicer fit: {len(skipped_classes)} "
            f"(e.g. {skipped_classes[0].class_name}: {skipped_classes[0].reason})"
        )
    skipped = run.skipped
    if skipped:
        reasons = Counter(s.reason.split(" (")[0] for s in skipped)
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        console.print(f"skipped inputs: {len(skipped)} ({detail}); listed in run.json")
    else:
        console.print("skipped inputs: 0")
    console.print(f"run written to {run.path}")
