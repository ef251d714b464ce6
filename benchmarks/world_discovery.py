"""How well does discovery find the planted failures? AP and precision@k on the built-in world.

For each seed, this runs ``failscope demo`` with the default plants (world ->
audited CNN -> ``discover`` with the world CLIP; captions, retraining and the
report off) and scores ``failure_score`` within each planted slice's class on the
**test** split (``failscope evaluate``): average precision, and precision@10/@25
(the fraction of the class's 10/25 most failure-like test images that belong to
the planted slice). Targets: mean precision@10 >= 0.8 and mean AP >= 0.6.

Runs are cached under ``--workdir`` by world key (shared with
``benchmarks/caption_accuracy.py``).

Usage::

    python benchmarks/world_discovery.py               # seeds 0 1 2, default plants
    python benchmarks/world_discovery.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from caption_accuracy import build_world_run

TARGET_P10 = 0.8
TARGET_AP = 0.6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--workdir", type=Path, default=Path("runs/caption_accuracy"))
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()

    import torch

    from failscope.evaluate import evaluate_run
    from failscope.world import DEFAULT_PLANTS

    torch.set_num_threads(args.threads)
    rows = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        run, _ = build_world_run(tuple(DEFAULT_PLANTS), seed=seed, workdir=args.workdir)
        for r in evaluate_run(run, write=False)["plants"]:
            rows.append({"seed": seed, **r})

    print(f"default plants: {', '.join(DEFAULT_PLANTS)}; test split; seeds {args.seeds}\n")
    print("| seed | planted slice | members / class | audited acc in slice / overall "
          "| AP | P@10 | P@25 |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['name']} | {r['n_members']} / {r['n_class']} "
            f"| {r['acc_in_slice']:.2f} / {r['acc_overall']:.2f} "
            f"| {r['average_precision']:.3f} | {r['precision_at_10']:.2f} "
            f"| {r['precision_at_25']:.2f} |"
        )
    ap_mean = np.mean([r["average_precision"] for r in rows])
    p10 = np.mean([r["precision_at_10"] for r in rows])
    p25 = np.mean([r["precision_at_25"] for r in rows])
    base = np.mean([r["base_rate"] for r in rows])
    print(f"| **mean** | | | | **{ap_mean:.3f}** | **{p10:.2f}** | **{p25:.2f}** |")
    print(
        f"\nmean AP {ap_mean:.3f} (target >= {TARGET_AP}; chance = slice share of its class, "
        f"{base:.3f}) -> {'PASS' if ap_mean >= TARGET_AP else 'FAIL'}"
    )
    print(f"mean precision@10 {p10:.2f} (target >= {TARGET_P10}) -> "
          f"{'PASS' if p10 >= TARGET_P10 else 'FAIL'}")  # fmt: skip
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
