"""``failscope retrain RUN``: slice-aware retraining (SBL / MoA) against baselines."""

from __future__ import annotations

import argparse
from typing import Any

from failscope.cli._tables import (
    add_json_argument,
    add_threads_argument,
    literal,
    new_table,
    num,
    print_json,
    print_line,
    results_console,
    text,
)
from failscope.retrain.crm import PERTURBATIONS, REGIONS

METHOD_CHOICES = (
    "sbl, moa, erm, erm-mlp, upweight (all three), upweight-hard, upweight-balanced, "
    "upweight-soft, oracle, sbl-balanced, moa-balanced, the fixes of annotated slices "
    "core-sbl, core-moa, noisy-relabel, spurious-crm (fixes: all four), all (with every "
    "fix that has annotated slices)"
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "retrain",
        help="retrain with the discovered slices (SBL, MoA) and compare with baselines",
        description=(
            "Train slice-aware heads (slice-based learning and its mixture-of-attentions "
            "variant) on the audited model's frozen penultimate features, using the run's "
            "discovered slices as training signal, beside ERM and upweighting baselines on "
            "the same budget (and the oracle with the planted slices of a world run). "
            "Slices annotated in RUN/annotations.json (failscope review) get their fix: "
            "core -> SBL/MoA on the core slices, noisy -> relabelling, spurious -> "
            "core-risk-style training of the backbone; not-a-failure slices are left out "
            "of every method. "
            "Writes RUN/retrain/: models/<method>.safetensors + .json, predictions.parquet "
            "(test split), metrics.json, relabelled.parquet (noisy-relabel); prints a "
            "comparison on the test split."
        ),
        epilog=(
            "examples:\n"
            "  failscope retrain runs/demo\n"
            "  failscope retrain runs/demo --method sbl,erm --epochs 100 --membership soft\n"
            "  failscope retrain runs/mine --slice-column is_night --backbone clip\n"
            "  failscope retrain runs/demo --method fixes --noisy drop\n"
            "  failscope retrain runs/demo --method spurious-crm --crm-epochs 2"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", metavar="RUN", help="run directory written by `failscope discover`")
    p.add_argument(
        "--method",
        action="append",
        metavar="NAME",
        help=f"method(s), repeatable or comma-separated: {METHOD_CHOICES} (default: all)",
    )
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: 40)")
    p.add_argument(
        "--membership",
        choices=("hard", "soft"),
        default=None,
        help="discovered-slice membership of SBL/MoA: hard cutoff or Platt-calibrated "
        "probability (default: hard)",
    )
    p.add_argument(
        "--slice-column",
        action="append",
        metavar="COL",
        help="boolean column of examples.parquet to use as a slice instead of the "
        "discovered ones (repeatable)",
    )
    p.add_argument(
        "--slice-mask",
        metavar="FILE.npy",
        help="slice mask aligned with examples.parquet rows, shape (n,) or (n, K)",
    )
    p.add_argument(
        "--backbone",
        choices=("model", "clip"),
        default="model",
        help="features to train on: the audited model's penultimate layer, or the run's "
        "CLIP embeddings (default: model)",
    )
    p.add_argument(
        "--finetune",
        action="store_true",
        help="fine-tune the audited model's backbone with each head (slow; default: frozen, "
        "cached features)",
    )
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow a pickled audited-model checkpoint (unpickling can run code)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN/retrain)")
    p.add_argument("--expert-dim", type=int, default=None, help="slice expert width")
    p.add_argument("--temperature", type=float, default=None, help="SBL attention temperature")
    p.add_argument(
        "--confidence",
        choices=("max_prob", "entropy"),
        default=None,
        help="predictor confidence used by the SBL attention",
    )
    p.add_argument(
        "--master-weighting",
        choices=("none", "balanced", "balanced-soft"),
        default=None,
        help="weights of SBL/MoA's master cross-entropy: none (Snorkel's SBL), balanced "
        "(flagged and unflagged examples each carry half of their class) or balanced-soft "
        "(the same rule with soft membership); default: balanced",
    )
    p.add_argument(
        "--annotations",
        metavar="FILE",
        help="annotation file of this run that picks each slice's fix (default: "
        "RUN/annotations.json if present)",
    )
    p.add_argument("--no-annotations", action="store_true", help="ignore RUN/annotations.json")
    p.add_argument(
        "--keep-moved-labels",
        action="store_true",
        help="train SBL/MoA on unannotated slices whose training labels moved to another "
        "class too (default: left out as likely noisy labels)",
    )
    p.add_argument(
        "--noisy",
        choices=("relabel", "drop"),
        default="relabel",
        help="noisy-relabel: relabel the disputed training labels, or drop those examples "
        "(default: relabel)",
    )
    p.add_argument(
        "--noisy-model",
        choices=("backbone", "head"),
        default="backbone",
        help="noisy-relabel: dispute labels with the audited architecture trained from "
        "scratch without the noisy slices and fine-tune the audited model on the corrected "
        "labels (backbone, default), or use linear heads on its frozen features (head: cheap, "
        "but a backbone trained on wrong labels keeps them)",
    )
    p.add_argument("--crm-epochs", type=int, default=None, help="spurious-crm: fine-tuning epochs")
    p.add_argument(
        "--crm-perturbation",
        choices=PERTURBATIONS,
        default=None,
        help="spurious-crm: what is done to the spurious region (default: noise)",
    )
    p.add_argument(
        "--crm-region",
        choices=REGIONS,
        default=None,
        help="spurious-crm: the pixels perturbed: the attribution region, its complement, "
        "the whole image's colours (image), both attribution and colours, none, or (auto, "
        "default) a model trained with each but both, keeping the one with the best "
        "balanced fitting-split accuracy (the slice and the rest of its class)",
    )
    p.add_argument(
        "--crm-penalty",
        type=float,
        default=None,
        help="spurious-crm: weight of the attribution-mass penalty on the region (default 0)",
    )
    p.add_argument(
        "--crm-consistency",
        type=float,
        default=None,
        help="spurious-crm: weight of the divergence between the predictions for each image "
        "and its perturbed copy (default 1; 0: cross-entropy on both only)",
    )
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (0: full batch)")
    add_threads_argument(p, help="torch threads for training (default: torch's own)")
    add_json_argument(p)
    p.set_defaults(func=run)


def _cell(v: Any, ref: Any = None, *, delta: bool = False) -> str:
    """``"52.9"`` or ``"52.9 (+21.1)"``: accuracy in percent, with points vs ``ref``."""
    if v is None:
        return "-"
    text = f"{100 * v:.1f}"
    if delta and ref is not None:
        text += f" ({100 * (v - ref):+.1f})"
    return text


def print_metrics(metrics: dict[str, Any], *, console: Any = None) -> None:
    """Print a retrain comparison table (test split) that fits 80 columns."""
    console = console or results_console()
    if metrics.get("status") != "ok":
        console.print(literal(metrics.get("message", "nothing retrained")))
        return
    methods = metrics["methods"]
    aud = methods["audited"]
    has_planted = aud.get("mean_planted_accuracy") is not None
    table = new_table(
        "Retraining: test accuracy % (points vs audited)",
        caption="discovered/planted: mean over slices; worst: lowest slice",
    )
    text(table, "method", ratio=1)
    for c in ["overall", "discovered", *(["planted"] if has_planted else []), "worst", "params"]:
        num(table, c)
    for name, m in methods.items():
        delta = name != "audited"
        row = [
            literal(name),
            _cell(m["test_accuracy"], aud["test_accuracy"], delta=delta),
            _cell(m.get("mean_discovered_accuracy"), aud.get("mean_discovered_accuracy"),
                  delta=delta),
        ]  # fmt: skip
        if has_planted:
            row.append(
                _cell(m.get("mean_planted_accuracy"), aud.get("mean_planted_accuracy"), delta=delta)
            )
        params = m.get("parameters")
        row += [_cell(m.get("worst_slice_accuracy")), "-" if params is None else f"{params:,}"]
        table.add_row(*row)
    console.print(table)
    plan = metrics["annotations"]
    if plan["source"] is not None:
        counts = ", ".join(f"{k} {len(v)}" for k, v in plan["slices"].items()) or "none"
        line = f"fixes from {plan['source']} (version {plan['version']}): {counts}"
        noisy = methods.get("noisy-relabel")
        if noisy is not None:
            line += f"; {noisy['changed']} training labels {noisy['noisy']}ed (relabelled.parquet)"
        print_line(console, line)
    tr = metrics["slices"]["training"]
    for sid, shift in tr["moved_labels"].items():  # our own words: wrapped at the width
        console.print(
            literal(
                f"slice {sid} left out as likely noisy labels: its region lacks "
                f"{shift['missing']:.0f} training examples of its class and holds "
                f"{shift['extra']:.0f} more labelled {'/'.join(map(str, shift['confusions']))} "
                "than the fitting split predicts; annotate it to choose its fix, or "
                "--keep-moved-labels"
            )
        )
    print_line(
        console,
        f"{len(tr['names'])} training slice(s) ({tr['source']}); features: "
        f"{metrics['features']['source']} (d={metrics['features']['dim']}); "
        f"{metrics['seconds']['total']:.1f} s"
        + (f"; written to {metrics['out']}" if metrics.get("out") else ""),
    )


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from failscope.retrain.crm import CrmConfig
    from failscope.retrain.pipeline import RetrainConfig, retrain_run
    from failscope.retrain.train import TrainConfig
    from failscope.run import load_run

    cfg = RetrainConfig()
    overrides = {
        k: getattr(args, k)
        for k in ("expert_dim", "temperature", "confidence", "master_weighting")
        if getattr(args, k) is not None
    }
    cfg = replace(cfg, **overrides, skip_moved_labels=not args.keep_moved_labels)
    tcfg = TrainConfig()
    t_over = {k: getattr(args, k) for k in ("lr", "batch_size") if getattr(args, k) is not None}
    tcfg = replace(tcfg, **t_over)

    crm_over = {
        k: getattr(args, f"crm_{k}")
        for k in ("epochs", "perturbation", "penalty", "region", "consistency")
        if getattr(args, f"crm_{k}") is not None
    }
    annotations = False if args.no_annotations else args.annotations
    from contextlib import nullcontext

    from failscope._threads import torch_threads
    from failscope.cli._progress import StageBars

    threads = nullcontext() if args.threads is None else torch_threads(args.threads)
    with StageBars() as bars, threads:
        bars.stage("retraining")
        metrics = retrain_run(
            load_run(args.run),
            methods=args.method or "all",
            epochs=args.epochs,
            seed=args.seed,
            membership=args.membership,
            slice_columns=args.slice_column,
            slice_mask=args.slice_mask,
            backbone=args.backbone,
            finetune=args.finetune,
            trust_checkpoint=args.trust_checkpoint,
            config=cfg,
            train_config=tcfg,
            out=args.out,
            progress=lambda m: bars.stage(f"retraining: {m}"),
            annotations=annotations,
            noisy=args.noisy,
            noisy_model=args.noisy_model,
            crm=CrmConfig(**crm_over),
        )
    if args.json:
        print_json(metrics)
    elif metrics.get("status") != "ok":
        print(f"failscope retrain: {metrics.get('message')}")
    else:
        print_metrics(metrics)
    return 0
