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
"""


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 0.5,0.5,0.5, got {text!r}"
        ) from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``failscope discover``."""
    p = subparsers.add_parser(
        "discover",
        help="find where a classifier fails: failure directions and slices per class",
        description=(
            "Run the audited model and CLIP over a dataset, fit one failure direction per\n"
            "class on the fitting split, flag each class's failure slice, and write the run\n"
            "directory (run.json, examples.parquet, slices.json, directions.npy)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="ImageFolder tree (ROOT/<class>/ or ROOT/<split>/<class>/) or a "
        ".csv/.parquet manifest with path,label[,split] and metadata columns",
    )
    g.add_argument(
        "--classes",
        metavar="FILE",
        help="class names in model output order (one per line, or a JSON list); "
        "default: sorted folder names / labels",
    )
    g.add_argument(
        "--split-by",
        metavar="RULE",
        help="for data without splits: 'random:F' (fraction F per class to val, "
        "rest train) or 'column:NAME'; default: everything is the 'val' split",
    )
    g.add_argument("--out", required=True, metavar="RUN", help="run directory to write")

    g = p.add_argument_group("audited model (one of --model, --predictions)")
    m = g.add_mutually_exclusive_group(required=True)
    m.add_argument(
        "--model",
        metavar="SPEC",
        help="TorchScript file, 'torchvision:ARCH' (with --checkpoint) or "
        "'module:function' returning an nn.Module",
    )
    m.add_argument(
        "--predictions",
        metavar="FILE",
        help=".npy (labels 1-D or probabilities 2-D) or .csv/.parquet with 'pred' "
        "or prob_* columns, optionally keyed by 'path' or 'id'",
    )
    g.add_argument(
        "--checkpoint", metavar="FILE", help="state_dict for torchvision:/module: models"
    )
    g.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a checkpoint that needs pickle (it can run code: trusted files only)",
    )
    g.add_argument(
        "--image-size",
        type=int,
        metavar="S",
        help="model input side: resize shorter side + centre crop (default 224 for "
        "torchvision, else images as stored)",
    )
    g.add_argument(
        "--mean",
        type=_floats,
        metavar="R,G,B",
        help="input normalisation mean (default ImageNet for torchvision, else none: "
        "inputs in [0,1])",
    )
    g.add_argument("--std", type=_floats, metavar="R,G,B", help="input normalisation std")

    g = p.add_argument_group("embeddings")
    g.add_argument(
        "--clip",
        metavar="NAME",
        help="registered name (world), open_clip model (default ViT-B-32), "
        "open_clip config .json, or local-dir:FOLDER",
    )
    g.add_argument(
        "--clip-pretrained",
        metavar="TAG",
        help="open_clip pretrained tag, already in the local cache (default laion2b_s34b_b79k)",
    )
    g.add_argument("--clip-checkpoint", metavar="FILE", help="local CLIP weights file")
    g.add_argument(
        "--clip-random-init",
        action="store_true",
        help="random CLIP weights (tests only; recorded in run.json)",
    )
    g.add_argument(
        "--embeddings",
        metavar="FILE",
        help="precomputed embeddings .npy (n_examples, d), row i = example i",
    )
    g.add_argument("--cache-dir", metavar="DIR", help="embedding cache (default RUN/cache)")

    g = p.add_argument_group("failure directions")
    g.add_argument(
        "--fit-split",
        default="val",
        metavar="NAME",
        help="split the directions are fitted on (default val)",
    )
    g.add_argument(
        "--reference-split",
        default="train",
        metavar="NAME",
        help="split whose statistics standardise embeddings, if present (default train)",
    )
    g.add_argument(
        "--threshold",
        default="zero",
        metavar="RULE",
        help="slice membership: zero (failure side), quantile:Q or topk:K (default zero)",
    )
    g.add_argument("--cv", type=int, default=2, help="CV folds to choose C (default 2)")
    g.add_argument(
        "--scoring",
        default="balanced_accuracy",
        choices=("balanced_accuracy", "roc_auc"),
        help="CV metric",
    )
    g.add_argument(
        "--solver",
        default="lssvm",
        choices=("lssvm", "logistic", "svc"),
        help="linear classifier (default lssvm)",
    )
    g.add_argument(
        "--min-examples",
        type=int,
        default=10,
        metavar="N",
        help="classes with fewer fitting examples get no direction (default 10)",
    )

    g = p.add_argument_group("compute")
    g.add_argument("--batch-size", type=int, default=64, metavar="B", help="default 64")
    g.add_argument(
        "--num-workers",
        type=int,
        default=0,
        metavar="W",
        help="image-decoding worker processes (default 0)",
    )
    g.add_argument("--device", help="cuda, mps or cpu (default: the first available)")
    g.add_argument(
        "--engine",
        default="local",
        choices=("local", "ray"),
        help="where the prediction and embedding passes run: this process, or Ray Data "
        "(pip install 'failscope[ray]'); default local",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --engine ray: 'auto' (the cluster of `ray start`), HOST:PORT or "
        "ray://HOST:PORT; default: a local Ray instance for this run",
    )
    g.add_argument(
        "--ray-actors", type=int, default=1, metavar="N", help="model actors (default 1)"
    )
    g.add_argument(
        "--ray-gpus-per-actor",
        type=float,
        default=0.0,
        metavar="G",
        help="GPUs each actor reserves; > 0 runs the models on CUDA (default 0)",
    )
    g.add_argument("--seed", type=int, default=0, help="default 0")
    g.add_argument("--no-captions", action="store_true", help="skip naming the directions")
    g.add_argument("--no-report", action="store_true", help="skip RUN/report.html")
    p.set_defaults(func=run)
    return p


def _clip_args(args: argparse.Namespace) -> tuple[str | None, str | None]:
    from failscope.embed import DEFAULT_CLIP, DEFAULT_PRETRAINED, list_clip_models

    clip = args.clip
    if clip is None:
        clip = None if args.embeddings else DEFAULT_CLIP
    tag = args.clip_pretrained
    if tag is None and clip is not None and not args.clip_checkpoint and not args.clip_random_init:
        is_open_clip_name = clip not in list_clip_models() and not clip.lower().endswith(".json")
        if is_open_clip_name and not clip.startswith("local-dir:"):
            tag = DEFAULT_PRETRAINED
    return clip, tag


def run(args: argparse.Namespace) -> int:
    """Run discovery with a progress bar per stage, then print the per-class summary."""
    from failscope.cli._progress import StageBars
    from failscope.pipeline import discover

    clip, tag = _clip_args(args)
    with StageBars() as bars:
        result = discover(
            args.data,
            out=args.out,
            model=args.model,
            checkpoint=args.checkpoint,
            trust_checkpoint=args.trust_checkpoint,
            predictions=args.predictions,
            classes=args.classes,
            split_by=args.split_by,
            image_size=args.image_size,
            mean=args.mean,
            std=args.std,
            clip=clip,
            clip_pretrained=tag,
            clip_checkpoint=args.clip_checkpoint,
            clip_random_init=args.clip_random_init,
            embeddings=args.embeddings,
            cache_dir=args.cache_dir,
            fit_split=args.fit_split,
            reference_split=args.reference_split,
            threshold=args.threshold,
            cv=args.cv,
            scoring=args.scoring,
            solver=args.solver,
            min_examples=args.min_examples,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            device=args.device,
            engine=args.engine,
            ray_address=args.ray_address,
            ray_actors=args.ray_actors,
            ray_gpus_per_actor=args.ray_gpus_per_actor,
            seed=args.seed,
            progress=bars.update,
            captions=not args.no_captions,
            report=not args.no_report,
        )
    print_summary(result)
    if any(s.get("captions") for s in result.slices):
        from rich.console import Console

        from failscope.caption.display import caption_table

        Console().print(caption_table(result.slices))
    if (result.path / "report.html").is_file():
        print(f"report: {result.path / 'report.html'}")
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def print_summary(run: Any, *, max_rows: int = 40, console: Any = None) -> None:
    """Print the per-class table, the skipped inputs and where the run is."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    slices = run.slices
    info = run.info
    metric = slices[0]["cv_metric"] if slices else "cv"
    shown = slices
    if len(slices) > max_rows:
        shown = sorted(slices, key=lambda s: -(s["error_rate_in"] or 0.0))[:max_rows]
    table = Table(title=f"failure slices on split {info['fit_split']!r}", title_justify="left")
    short = {"balanced_accuracy": "CV bal.acc", "roc_auc": "CV AUC"}.get(metric, f"CV {metric}")
    for col, justify in (
        ("class", "left"), ("n fit", "right"), ("err rate", "right"), (short, "right"),
        ("slice", "right"), ("slice err", "right"), ("rest err", "right"), ("note", "left"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)
    for s in shown:
        cv = "-" if s["cv_score"] is None else f"{s['cv_score']:.3f}"
        table.add_row(
            str(s["class_name"]), str(s["n_fit"]), _pct(s["error_rate"]), cv, str(s["size"]),
            _pct(s["error_rate_in"]), _pct(s["error_rate_out"]),
            "" if s["status"] == "ok" else f"skipped: {s['reason']}",
        )  # fmt: skip
    console.print(table)
    if len(shown) < len(slices):
        console.print(f"({len(slices) - len(shown)} more classes in slices.json)")
    skipped = run.skipped
    if skipped:
        reasons = Counter(str(s["reason"]).split(" (")[0] for s in skipped)
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        console.print(f"skipped inputs: {len(skipped)} ({detail}); listed in run.json")
    else:
        console.print("skipped inputs: 0")
    console.print(f"run written to {run.path}")
